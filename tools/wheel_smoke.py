"""Build signalprop's wheel and sdist, and use the wheel as a user would, outside the tree.

Everything happens in a temporary folder, removed at the end, so the source tree is
left as it was (no build/, dist/ or *.egg-info):

1. the tree's files (git's tracked and untracked-but-not-ignored files, as they are on
   disk) are copied there, and ``python -m build`` makes the sdist and then the wheel
   *from the sdist*, so the sdist is shown to hold what a build needs; a deprecation
   warning in the build's output fails it;
2. the wheel must hold every file of the package (modules, ``py.typed``, the study
   presets) and nothing else, the license, and the ``signalprop`` console script; the
   sdist the license and changelog and no tests;
3. a fresh virtual environment gets the README's pinned PyTorch first (an unpinned one
   would be a multi-gigabyte CUDA build), then the wheel with the ``keras`` extra;
4. from a folder outside the tree, with no ``PYTHONPATH``: ``signalprop --version``,
   ``signalprop study --preset quick`` on the real Fashion-MNIST (every run must
   finish), the README's first Python example, and ``signalprop.keras`` with Keras on
   the PyTorch backend.

Any failure stops the script with a message naming the step, and exit status 1.

    python tools/wheel_smoke.py [--data-dir DIR] [--python python3.11] [--keep]

The data folder defaults to ``$SIGNALPROP_DATA``, else the workplace's copy next to the
repository, as the tests find it (tests/_data_dir.py).
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class SmokeError(Exception):
    """A check of the built packages failed; the message says which and why."""


def default_data_dir() -> Path:
    """Where the tests look for Fashion-MNIST: ``$SIGNALPROP_DATA`` or ``../shared/...``."""
    return Path(
        os.environ.get("SIGNALPROP_DATA") or ROOT.parent / "shared" / "data" / "fashion-mnist"
    )


def readme_torch_requirement() -> str:
    """The pinned PyTorch the README's install block puts in first (``torch==X``)."""
    found = re.findall(r"^pip install (torch==\S+)$", _readme(), flags=re.M)
    if len(found) != 1:
        raise SmokeError(f"README.md should pin PyTorch in one 'pip install torch==X': {found}")
    return str(found[0])


def readme_first_python_example() -> str:
    """The README's first ```python block, as a reader would paste it."""
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    if not blocks:
        raise SmokeError("README.md has no ```python block")
    return str(blocks[0])


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def copy_source_tree(destination: Path) -> None:
    """Copy the files git tracks or would track (not the ignored ones) as they are on disk."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted on disk is not part of the tree
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build(source: Path, dist: Path) -> tuple[Path, Path]:
    """``python -m build``: the sdist, then the wheel from it. Returns (wheel, sdist)."""
    run = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
    )
    output = run.stdout + run.stderr
    if run.returncode != 0:
        raise SmokeError(f"python -m build exited {run.returncode}:\n{output}")
    deprecated = [line for line in output.splitlines() if "deprecat" in line.lower()]
    if deprecated:
        raise SmokeError("the build warns of deprecations:\n" + "\n".join(deprecated))
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise SmokeError(f"expected one wheel and one sdist in {dist}: {wheels + sdists}")
    return wheels[0], sdists[0]


def check_wheel(wheel: Path, package: Path) -> str:
    """The wheel holds exactly the package's files, the license and the console script.

    Returns the version its metadata states.
    """
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        metadata = email.parser.Parser().parsestr(
            archive.read(f"{dist_info}/METADATA").decode("utf-8")
        )
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode("utf-8")
    expected = {
        f"signalprop/{path.relative_to(package).as_posix()}"
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    packaged = {name for name in names if not name.startswith(dist_info + "/")}
    if packaged != expected:
        raise SmokeError(
            f"{wheel.name}: missing {sorted(expected - packaged)}, "
            f"unexpected {sorted(packaged - expected)}"
        )
    presets = [
        name for name in packaged if re.fullmatch(r"signalprop/study/presets/.+\.json", name)
    ]
    if not presets or "signalprop/py.typed" not in packaged:
        raise SmokeError(f"{wheel.name}: no study presets or no py.typed")
    if f"{dist_info}/licenses/LICENSE" not in names:
        raise SmokeError(f"{wheel.name}: no {dist_info}/licenses/LICENSE")
    if metadata["License-Expression"] != "MIT" or metadata["License-File"] != "LICENSE":
        raise SmokeError(
            f"{wheel.name}: License-Expression {metadata['License-Expression']!r}, "
            f"License-File {metadata['License-File']!r}"
        )
    if not re.search(r"^signalprop = signalprop\.cli:main$", entry_points, flags=re.M):
        raise SmokeError(f"{wheel.name}: no signalprop console script:\n{entry_points}")
    print(
        f"{wheel.name}: the package's {len(expected)} files ({len(presets)} study presets, "
        "py.typed), LICENSE, the signalprop console script"
    )
    return str(metadata["Version"])


def check_sdist(sdist: Path) -> None:
    """The sdist holds the license, changelog and README, and leaves the tests out."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} - names
    tests = sorted(name for name in names if name.startswith("tests/"))
    if missing or tests:
        raise SmokeError(f"{sdist.name}: missing {sorted(missing)}, tests included {tests}")


def size(path: Path) -> str:
    return f"{path.name}: {path.stat().st_size / 1024:.0f} KiB ({path.stat().st_size} bytes)"


def run_in(work: Path, env: dict[str, str], *command: str, capture: bool = False) -> str:
    """Run a command in ``work``, its output shown; returns its standard output if captured."""
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=work, env=env, capture_output=capture, text=True)
    if capture:
        print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        raise SmokeError(f"{' '.join(command)}: exited {done.returncode}")
    return done.stdout if capture else ""


#: How many runs the installed package's quick preset has.
QUICK_RUNS = "from signalprop.study import load_spec; print(len(load_spec('quick').runs))"


def check_installed(venv: Path, work: Path, version: str, data: Path) -> None:
    """Use the installed wheel from ``work``, outside the tree, as the README does."""
    python, signalprop = str(venv / "bin" / "python"), str(venv / "bin" / "signalprop")
    # No PYTHONPATH: the wheel, not the tree. Bytecode may be written: pip installed none
    # (--no-compile, a third of its time), so each module is compiled once, when first used.
    unset = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update(MPLBACKEND="agg", KERAS_BACKEND="torch")

    location = run_in(
        work, env, python, "-c", "import signalprop; print(signalprop.__file__)", capture=True
    )
    if not Path(location.strip()).is_relative_to(venv):
        raise SmokeError(f"signalprop was imported from {location.strip()}, not the venv")

    printed = run_in(work, env, signalprop, "--version", capture=True).strip()
    if printed != f"signalprop {version}":
        raise SmokeError(f"signalprop --version printed {printed!r}, the wheel is {version}")

    out = work / "quick"
    study = ["study", "--preset", "quick", "--data-dir", str(data), "--out", str(out)]
    run_in(work, env, signalprop, *study)
    runs = run_in(work, env, python, "-c", QUICK_RUNS, capture=True).strip()
    records = [
        json.loads(line)
        for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    failed = [record["error"] for record in records if record.get("error")]
    made_by = {record["versions"]["signalprop"] for record in records}
    if str(len(records)) != runs or failed or made_by != {version}:
        raise SmokeError(
            f"study quick: {len(records)} of {runs} runs recorded, failed {failed}, "
            f"recorded as made by signalprop {sorted(made_by)}"
        )
    if not (out / "report.md").is_file():
        raise SmokeError(f"study quick wrote no {out / 'report.md'}")

    (work / "readme_example.py").write_text(readme_first_python_example(), encoding="utf-8")
    run_in(work, env, python, "readme_example.py")

    keras = (
        "import keras, signalprop.keras; "
        "assert keras.backend.backend() == 'torch', keras.backend.backend(); "
        "print(signalprop.keras.Monitor)"
    )
    run_in(work, env, python, "-c", keras)


@contextmanager
def step(name: str, times: dict[str, float]) -> Iterator[None]:
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    try:
        yield
    except (SmokeError, subprocess.CalledProcessError, OSError) as error:
        raise SmokeError(f"{name}: {error}") from None
    times[name] = time.perf_counter() - start


def smoke(temp: Path, python: str, data: Path, times: dict[str, float]) -> str:
    """Every step, in ``temp``; returns the wheel's and the sdist's sizes."""
    with step("copy the tree and build the sdist, then the wheel from it", times):
        copy_source_tree(temp / "source")
        wheel, sdist = build(temp / "source", temp / "dist")
    with step("check the wheel's and the sdist's contents", times):
        version = check_wheel(wheel, temp / "source" / "src" / "signalprop")
        check_sdist(sdist)
        sizes = f"{size(wheel)}\n{size(sdist)}"
        print(sizes)
    venv = temp / "venv"
    with step("install PyTorch, then the wheel with the keras extra, in a fresh venv", times):
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
        subprocess.run([*pip, readme_torch_requirement()], check=True)
        subprocess.run([*pip, f"{wheel}[keras]"], check=True)
    with step("use the installed wheel outside the tree", times):
        (temp / "work").mkdir()
        check_installed(venv, temp / "work", version, data)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="Fashion-MNIST files (default: $SIGNALPROP_DATA or ../shared/...)",
    )
    parser.add_argument("--python", default="python3.11", help="the venv's Python (python3.11)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"wheel smoke: no Fashion-MNIST at {args.data_dir} (--data-dir)", file=sys.stderr)
        return 2

    start = time.perf_counter()
    times: dict[str, float] = {}
    temp = Path(tempfile.mkdtemp(prefix="signalprop-wheel-"))
    try:
        sizes = smoke(temp, args.python, args.data_dir, times)
    except SmokeError as error:
        print(f"\nwheel smoke: FAILED at {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {temp}")
        else:
            cleaned = time.perf_counter()
            shutil.rmtree(temp, ignore_errors=True)
            times["remove the temporary folder"] = time.perf_counter() - cleaned
    print("\nwheel smoke: passed")
    print(sizes)
    for name, seconds in times.items():
        print(f"{seconds:7.1f} s  {name}")
    print(f"{time.perf_counter() - start:7.1f} s  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
