"""docs/tutorial.md and its runner, without running the tutorial (CI runs it apart).

The tutorial itself takes minutes (`SIGNALPROP_TUTORIAL=ci python docs/run_tutorial.py`,
a separate README "Develop" command); here only what is fast: its blocks compile, every
figure it shows is one its code saves and is committed, and the runner stops at a block
that fails, naming it and the Markdown line.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_tutorial", ROOT / "docs" / "run_tutorial.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_tutorial"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_every_block_of_the_tutorial_compiles(capsys):
    runner = _runner()
    assert runner.main(["--check"]) == 0
    assert len(runner.blocks(TUTORIAL.read_text(encoding="utf-8"))) >= 15
    assert "blocks compile" in capsys.readouterr().out


def test_every_figure_shown_is_saved_by_the_code_and_committed():
    text = TUTORIAL.read_text(encoding="utf-8")
    shown = re.findall(r"!\[[^\]]*\]\(tutorial/([^)]+)\)", text)
    code = "".join(block.code for block in _runner().blocks(text))
    saved = re.findall(r"""["']([\w.-]+\.png)["']\)""", code)
    assert shown and sorted(shown) == sorted(set(saved))
    for name in shown:
        assert (ROOT / "docs" / "tutorial" / name).is_file(), name


def test_the_runner_stops_at_a_failing_block_and_names_its_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Text.\n\n```python\nx = 1\n```\n\nMore text.\n\n"
        "```python\ny = x + 1\nz = y / 0\n```\n\n"
        f"```python\nopen({str(marker)!r}, 'w').close()\n```\n",
        encoding="utf-8",
    )
    runner = _runner()
    assert runner.run(doc) == 1
    err = capsys.readouterr().err
    assert "doc.md block 2 (line 10) failed: ZeroDivisionError" in err
    assert re.search(r'File ".*doc\.md", line 11', err)  # the traceback reads the Markdown
    assert not marker.exists()  # nothing after the failing block ran


def test_the_runner_runs_the_blocks_in_one_namespace(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("```python\nx = 41\n```\n\n```python\nprint(x + 1)\n```\n", encoding="utf-8")
    assert _runner().run(doc) == 0
    out = capsys.readouterr().out
    assert "42" in out and "2 blocks ran" in out


def test_an_unknown_mode_is_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("SIGNALPROP_TUTORIAL", "fast")
    assert _runner().main(["--check"]) == 2
    assert capsys.readouterr().err.strip() == (
        "The 'SIGNALPROP_TUTORIAL' setting must be one of ['full', 'ci']. Got 'fast' instead."
    )
