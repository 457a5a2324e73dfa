"""The command line through ``main(argv)``: output, report files, and user errors as one
line on stderr with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _images import assert_png
from signalprop.cli import main
from signalprop.examples import EXAMPLES


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "agg")


def test_propagate_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["propagate", "--activation", "selu", "--init", "lecun_normal", "--depth", "50"]) == 0
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("SELU() + LecunNormal(): 50 layers of 100 units, batch 500")
    assert lines[1].split() == ["layer", "mean", "std", "grad", "std"]
    rows = [line.split() for line in lines[2:-1]]
    assert [int(r[0]) for r in rows] == [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert all(0.75 < float(r[2]) < 1.25 for r in rows)  # SELU's fixed point
    # The last line says what the gradient column means and how fast it grows:
    # (grad std at layer 1 / at layer 50)^(1/49), read from the table itself.
    rate = (float(rows[0][3]) / float(rows[-1][3])) ** (1 / 49)
    note = lines[-1]
    assert note.startswith("grad std: the backward signal's std, ≈ 1 at the top layer")
    shown = float(note.split("changes ×")[1].split(" ")[0])
    assert abs(shown - rate) < 0.01  # the table's 3 significant digits
    assert "With SELU() + LecunNormal(), from layer 1 to layer 50" in note
    # Progress goes to stderr (lines, as stderr is not a terminal here), never to stdout.
    assert err.splitlines() == [f"propagate: 50 layers: {k}/50" for k in range(5, 50, 5)]


def test_propagate_report_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "new" / "dir"  # created on demand
    argv = ["propagate", "--depth", "20", "--width", "30", "--batch", "40", "--report"]
    assert main([*argv, str(directory)]) == 0
    markdown = (directory / "propagate.md").read_text()
    assert markdown.startswith("# propagate: SELU() + LecunNormal()")
    assert "![per-layer statistics](propagate.png)" in markdown
    data = json.loads((directory / "propagate.json").read_text())
    assert (data["depth"], data["width"], data["batch"]) == (20, 30, 40)
    assert len(data["forward_std"]) == 20
    assert_png(directory / "propagate.png")
    assert "propagate.md" in capsys.readouterr().out


def test_plot_activations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "activations", "--out", str(tmp_path)]) == 0
    assert_png(tmp_path / "activations.png")
    assert "activations.png" in capsys.readouterr().out


def test_diagnose_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(EXAMPLES)
    for line, example in zip(lines, EXAMPLES.values(), strict=True):
        assert example.description in line


def test_diagnose_preset_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["diagnose", "--preset", "chapter-selu", "--batch", "64", "--report", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("chapter-selu: ")
    assert "healthy: no findings" in out
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# diagnose: chapter-selu")
    assert "## Findings" in markdown and "## Layers" in markdown
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["batch_size"] == 64
    assert data["findings"] == []
    assert len(data["layers"]) == 101  # 100 SELU layers and the softmax output
    assert_png(tmp_path / "layers.png")


def test_diagnose_a_sick_preset_lists_its_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--preset", "logistic-normal", "--batch", "64"]) == 0
    out = capsys.readouterr().out
    assert "saturation" in out
    assert "healthy: no findings" not in out


def a_regular_file(tmp_path: Path) -> str:
    path = tmp_path / "file.txt"
    path.write_text("not a directory")
    return str(path / "sub")


ERRORS = [
    ("unknown preset", ["diagnose", "--preset", "chapter-sleu"], ["Did you mean 'chapter-selu'?"]),
    ("unknown activation", ["propagate", "--activation", "seluu", "--depth", "3"], ["'seluu'"]),
    ("unknown init", ["propagate", "--init", "lecun_normall", "--depth", "3"], ["'lecun_normall'"]),
    ("depth 0", ["propagate", "--depth", "0"], ["'depth'", ">= 1"]),
    ("depth not a number", ["propagate", "--depth", "ten"], ["--depth", "'ten'"]),
    ("missing preset", ["diagnose"], ["--preset", "--list"]),
    ("unknown command", ["frobnicate"], ["frobnicate"]),
    ("no command", [], ["command"]),
    ("unknown plot", ["plot", "histograms", "--out", "x"], ["histograms"]),
    ("unwritable --out", ["plot", "activations", "--out", "FILE"], ["--out", "not a writable"]),
    ("unwritable --report", ["propagate", "--depth", "3", "--report", "FILE"], ["--report"]),
]


@pytest.mark.parametrize(("argv", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_user_errors_are_one_line_and_status_2(
    argv: list[str],
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a_regular_file(tmp_path) if a == "FILE" else a for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("signalprop: error: ")
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)


def test_unknown_preset_lists_the_valid_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--preset", "chapter-sleu"]) == 2
    err = capsys.readouterr().err
    for name in EXAMPLES:
        assert repr(name) in err


def test_python_dash_m_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signalprop", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("propagate", "plot", "diagnose"):
        assert command in done.stdout


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["propagate", "--depth", "5", "--width", "20", "--batch", "30", "--report"], "propagate"),
        (["diagnose", "--preset", "tanh-tiny", "--batch", "32", "--report"], "report"),
        (["autoinit", "--preset", "tanh-tiny", "--batch", "32", "--report"], "autoinit"),
        (["phase", "--activation", "tanh", "--resolution", "8", "--out"], "phase"),
    ],
)
def test_every_markdown_report_says_which_signalprop_wrote_it(
    tmp_path: Path, argv: list[str], name: str
) -> None:
    """A committed page can be traced to the code that made it, as study reports can."""
    from signalprop import __version__
    from signalprop._provenance import UNKNOWN_COMMIT, source_commit

    assert main([*argv, str(tmp_path)]) == 0
    last = (tmp_path / f"{name}.md").read_text().rstrip().splitlines()[-1]
    assert last.startswith(f"Made by signalprop {__version__}, commit ")
    commit = source_commit()
    shown = commit if commit == UNKNOWN_COMMIT else commit.removesuffix("-dirty")[:12]
    assert shown in last
    assert "Versions: torch " in last


@pytest.mark.parametrize("mode", ["analytic", "data"])
def test_autoinit_command_repeats_itself(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The seed covers autoinit's new weights too: the same command prints (and reports)
    the same numbers however often it runs, whatever the global random state."""
    import torch

    argv = ["autoinit", "--preset", "tanh-tiny", "--mode", mode, "--batch", "32"]
    outputs = []
    for state in (1, 2):
        torch.manual_seed(state)
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert main([*argv, "--seed", "1"]) == 0
    assert capsys.readouterr().out != outputs[0]
