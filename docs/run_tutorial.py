"""Run docs/tutorial.md end to end: its ```python blocks, in order, in one namespace.

    python docs/run_tutorial.py                          # the full run: docs/tutorial/*.png
    SIGNALPROP_TUTORIAL=ci python docs/run_tutorial.py   # smaller data, fewer epochs

The blocks run as a reader pasting them into one interpreter at the repository's root
would run them. A block that raises stops the run: the runner prints the traceback, whose
line numbers are those of the Markdown file, and one line naming the block and the line
it starts on, and exits with status 1. ``--check`` only compiles every block.

Before running, the runner empties ``runs/tutorial`` (the tutorial's scratch folder: its
study and logs, and its figures in the ci mode) and, when ``$SIGNALPROP_DATA`` is unset,
points it at the workplace's copy of Fashion-MNIST next to the repository, as the tests
do; the tutorial never downloads. ``MPLBACKEND`` defaults to ``agg``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
#: The tutorial's scratch folder, relative to the repository's root (ignored by git).
SCRATCH = Path("runs") / "tutorial"
MODES = ("full", "ci")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)


@dataclass(frozen=True)
class Block:
    """A ```python block: its number (from 1), the line its code starts on, its code."""

    number: int
    line: int
    code: str

    def compiled(self, filename: str) -> CodeType:
        """The block compiled so that tracebacks give the Markdown file's line numbers."""
        return compile("\n" * (self.line - 1) + self.code, filename, "exec")


def blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order."""
    return [
        Block(number, text.count("\n", 0, match.start(1)) + 1, match.group(1))
        for number, match in enumerate(FENCE.finditer(text), start=1)
    ]


def run(path: Path, *, check_only: bool = False) -> int:
    """Run (or, with ``check_only``, compile) every block of ``path``; return a status."""
    shown = os.path.relpath(path, Path.cwd())
    found = blocks(path.read_text(encoding="utf-8"))
    if not found:
        print(f"{shown}: no ```python blocks", file=sys.stderr)
        return 1
    namespace: dict[str, object] = {"__name__": "__tutorial__"}
    started = time.perf_counter()
    for block in found:
        where = f"{shown} block {block.number} (line {block.line})"
        try:
            code = block.compiled(shown)
            if check_only:
                continue
            print(f"--- {where}", flush=True)
            began = time.perf_counter()
            exec(code, namespace)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            traceback.print_exc()
            print(f"{where} failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        print(f"--- {where}: {time.perf_counter() - began:.1f} s", flush=True)
    if check_only:
        print(f"{shown}: {len(found)} blocks compile")
    else:
        print(f"{shown}: {len(found)} blocks ran in {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tutorial", type=Path, default=TUTORIAL, help="the Markdown file")
    parser.add_argument("--check", action="store_true", help="only compile every block")
    args = parser.parse_args(argv)
    mode = os.environ.get("SIGNALPROP_TUTORIAL", "full")
    if mode not in MODES:
        print(
            f"The 'SIGNALPROP_TUTORIAL' setting must be one of {list(MODES)}. "
            f"Got {mode!r} instead.",
            file=sys.stderr,
        )
        return 2
    if not args.tutorial.is_file():
        print(f"{args.tutorial}: no such file", file=sys.stderr)
        return 2
    path = args.tutorial.resolve()
    if args.check:
        return run(path, check_only=True)
    os.chdir(ROOT)
    os.environ.setdefault("SIGNALPROP_DATA", str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    os.environ.setdefault("MPLBACKEND", "agg")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"tutorial mode: {mode}; data: {os.environ['SIGNALPROP_DATA']}", flush=True)
    return run(path)


if __name__ == "__main__":
    sys.exit(main())
