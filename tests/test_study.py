"""Study specs, the resumable runner (also under kill -9), the report and the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _data_dir import DATA, needs_data
from _images import assert_png
from signalprop.cli import main
from signalprop.init import MATCHING
from signalprop.study import expand, load_spec, read_results, run_study, write_report

#: Tiny runs on the real data: 300 training images, 200 validation images, 2 hidden layers.
TINY = {
    "defaults": {"epochs": 1, "validation": 200, "train_size": 300, "batch_size": 50},
    "grid": {"activation": ["selu", "relu", "tanh"], "init": ["matching"], "depth": [2]},
}


# ------------------------------------------------------------------------- specs


def test_presets_expand_to_the_documented_runs() -> None:
    chapter = load_spec("chapter11")
    assert len(chapter.runs) == 4 * 3  # four rows, three seeds each
    assert [r.seed for r in chapter.runs[:3]] == [0, 1, 2]
    assert [r.hidden for r in chapter.runs[::3][:2]] == [(300, 100), (300, 100)]
    assert chapter.runs[6].hidden == (300,) + (100,) * 99 and chapter.runs[6].standardize
    assert [r.epochs for r in chapter.runs[::3]] == [10, 10, 5, 5]
    assert all(r.batch_size == 32 and r.lr == 1e-3 and r.optimizer == "sgd" for r in chapter.runs)
    assert chapter.runs[0].activation_args == {"alpha": 0.3}
    assert chapter.runs[6].reference == {
        "val_accuracy": 0.8218,
        "val_accuracy_per_epoch": [0.6858, 0.7384, 0.7834, 0.8066, 0.8218],
    }
    ranking = load_spec("ranking")
    # 8 activations x 2 inits x 2 depths x 3 seeds, less the logistic's and tanh's runs whose
    # matching initializer is glorot_uniform itself: they are run once.
    assert len(ranking.runs) == 8 * 2 * 2 * 3 - 2 * 2 * 3
    matching = [r for r in ranking.runs if r.init_choice == "matching"]
    assert all(r.init == MATCHING[r.activation] for r in matching)
    assert {r.depth for r in ranking.runs} == {20, 100}
    assert len({r.run_id for r in ranking.runs}) == len(ranking.runs)
    assert len(load_spec("quick").runs) == 5
    assert len(load_spec("he-vs-glorot").runs) == 6
    fixes = load_spec("autoinit").runs
    assert len(fixes) == 16 and {r.autoinit for r in fixes} == {None, "data"}
    assert {r.init for r in fixes} == {"pytorch_default"}


def test_run_ids_are_stable_and_ignore_labels() -> None:
    first = expand({"runs": [{"activation": "elu", "init": "he_normal", "depth": 3, "epochs": 1}]})
    labelled = expand(
        {
            "runs": [
                {
                    "activation": "elu",
                    "init": "he_normal",
                    "depth": 3,
                    "epochs": 1,
                    "label": "x",
                    "reference": {"val_accuracy": 0.5},
                }
            ]
        }
    )
    assert first.runs[0].run_id == labelled.runs[0].run_id
    other = expand({"runs": [{"activation": "elu", "init": "he_normal", "depth": 3, "epochs": 2}]})
    assert other.runs[0].run_id != first.runs[0].run_id


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must hold a JSON object"),
        ({"runs": [{"activation": "elu", "depth": 2, "epochs": 1}]}, "a run needs 'init'"),
        ({"runs": [{"activation": "elu", "init": "he_normal", "epochs": 1}]}, "exactly one of"),
        (
            {"runs": [{"activation": "elu2", "init": "he_normal", "depth": 1, "epochs": 1}]},
            "Did you mean 'elu'?",
        ),
        (
            {"runs": [{"activation": "elu", "init": "he_norml", "depth": 1, "epochs": 1}]},
            "Did you mean 'he_normal'?",
        ),
        (
            {"runs": [{"activation": "elu", "init": "he_normal", "depth": 1, "epochs": 0}]},
            "The 'epochs' parameter",
        ),
        (
            {
                "runs": [
                    {"activation": "elu", "init": "he_normal", "depth": 1, "epochs": 1, "colour": 3}
                ]
            },
            "unknown setting(s) ['colour']",
        ),
        (
            {
                "runs": [
                    {
                        "activation": "leaky_relu",
                        "activation_args": {"beta": 1},
                        "init": "he_normal",
                        "depth": 1,
                        "epochs": 1,
                    }
                ]
            },
            "activation 'leaky_relu'",
        ),
        ({"grid": {"activation": []}}, "non-empty lists"),
        ({"name": "x"}, "has no runs"),
        (
            {"runs": [{"activation": "elu", "init": "he_normal", "depth": 1, "epochs": 1}] * 2},
            "identical settings",
        ),
    ],
)
def test_malformed_specs_are_refused_with_the_reason(raw, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        expand(raw, "grid.json")


def test_grid_files_and_unknown_presets(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(TINY))
    assert len(load_spec(str(path)).runs) == 3
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_spec(str(broken))
    with pytest.raises(ValueError, match="cannot read"):
        load_spec(str(tmp_path / "absent.json"))
    with pytest.raises(ValueError, match=re.escape("The 'preset' parameter of study")):
        load_spec("chapter12")


# ------------------------------------------------------------------------ runner


@needs_data
def test_run_study_resumes_and_drops_a_cut_line(tmp_path: Path) -> None:
    spec = expand(TINY, "tiny")
    lines: list[str] = []
    results = run_study(spec, tmp_path, data_dir=str(DATA), echo=lines.append)
    assert len(results) == 3 and len(lines) == 4
    record = results[0]
    assert set(record) >= {
        "run_id",
        "config",
        "history",
        "layers",
        "findings",
        "wall_time",
        "versions",
        "finished_at",
    }
    assert len(record["layers"]["start"]["grad_pre_rms"]) == 3  # 2 hidden + output
    assert record["history"]["epoch"] == [1]
    # A kill in the middle of writing the last line leaves it cut short: simulate it.
    path = tmp_path / "results.jsonl"
    text = path.read_text()
    kept = text.splitlines(keepends=True)
    path.write_text("".join(kept[:2]) + kept[2][: len(kept[2]) // 2])
    assert len(read_results(tmp_path)) == 2
    lines.clear()
    again = run_study(spec, tmp_path, data_dir=str(DATA), echo=lines.append)
    assert "2 already in" in lines[0] and len(lines) == 2  # only the lost run ran again
    assert [r["run_id"] for r in again] == [r["run_id"] for r in results]
    assert all(line.endswith("\n") for line in path.read_text().splitlines(keepends=True))


@needs_data
def test_a_study_killed_with_sigkill_resumes_without_losing_finished_runs(tmp_path: Path) -> None:
    grid = {**TINY, "grid": {**TINY["grid"], "seed": [0, 1, 2, 3]}}  # 12 tiny runs
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "signalprop",
        "study",
        "--preset",
        str(path),
        "--out",
        str(out),
        "--data-dir",
        str(DATA),
        "--no-report",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    # Wait for two finished runs, however long a loaded machine takes; the kill must fall
    # after them. The study itself ending first would leave nothing to test.
    while not (results.exists() and results.read_text().count("\n") >= 2):
        assert process.poll() is None, "the study ended before two runs were recorded"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {r["run_id"]: r["finished_at"] for r in read_results(out)}
    assert 2 <= len(before) < 12
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    after = read_results(out)
    assert len(after) == 12 and len({r["run_id"] for r in after}) == 12
    for record in after:  # runs finished before the kill were kept, not run again
        if record["run_id"] in before:
            assert record["finished_at"] == before[record["run_id"]]


@needs_data
def test_report_has_tables_figures_and_the_reference_comparison(tmp_path: Path) -> None:
    raw = {
        "name": "mini",
        "description": "a tiny study",
        "defaults": TINY["defaults"],
        "runs": [
            {
                "label": "SELU row",
                "activation": "selu",
                "init": "lecun_normal",
                "depth": 2,
                "reference": {"val_accuracy": 0.8218, "val_accuracy_per_epoch": [0.6858]},
            },
        ],
        "grid": {
            "activation": ["relu", "tanh", "sigmoid"],
            "init": ["matching"],
            "depth": [1, 2],
            "seed": [0, 1],
        },
    }
    run_study(expand(raw, "mini"), tmp_path, data_dir=str(DATA), echo=lambda _: None)
    path = write_report(tmp_path)
    text = path.read_text()
    for heading in (
        "# Study: mini",
        "## Final validation accuracy",
        "## Against the published",
        "## Measured ranking",
        "## Learning curves",
        "## Final accuracy against depth",
        "## Gradients per layer",
        "## What diagnose saw",
    ):
        assert heading in text
    assert "| SELU row | 1 | 0.8218 |" in text
    for figure in ("learning_curves.png", "accuracy_vs_depth.png", "gradients.png"):
        assert_png(tmp_path / figure)


# --------------------------------------------------------------------------- CLI


def test_cli_user_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "bad.json"
    grid.write_text('{"runs": [{"activation": "selu"}]}')
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ["study", "--preset", "chapter12", "--out", str(tmp_path / "a")],
        ["study", "--preset", str(grid), "--out", str(tmp_path / "b")],
        ["study", "--preset", "quick", "--out", str(blocker / "sub")],
        [
            "study",
            "--preset",
            "quick",
            "--out",
            str(tmp_path / "c"),
            "--data-dir",
            str(tmp_path / "absent"),
        ],
        [
            "study",
            "--preset",
            "quick",
            "--out",
            str(tmp_path / "d"),
            "--data-dir",
            str(tmp_path),
            "--no-download",
        ],
        ["report", str(tmp_path / "nothing")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("signalprop: error: "), (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "d" / "results.jsonl").exists()  # nothing written for a failed start
    assert not (tmp_path / "d" / "spec.json").exists()


@needs_data
def test_cli_study_then_report(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SIGNALPROP_DATA", str(DATA))
    before = {entry.name: entry.stat().st_mtime_ns for entry in os.scandir(DATA)}
    grid = tmp_path / "tiny.json"
    grid.write_text(json.dumps(TINY))
    assert main(["study", "--preset", str(grid), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "[3/3]" in out and "report written to" in out
    assert main(["report", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").exists()
    # The data folder is only read: nothing added, removed or rewritten.
    assert {entry.name: entry.stat().st_mtime_ns for entry in os.scandir(DATA)} == before


# ---------------------------------------------------------------- monitored studies


@needs_data
def test_a_monitored_study_keeps_each_runs_history_and_reports_its_heatmaps(
    tmp_path: Path,
) -> None:
    """--monitor changes no number of a run: the monitor only reads."""
    spec = expand(TINY)
    plain = run_study(spec, tmp_path / "plain", data_dir=str(DATA), echo=lambda _: None)
    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(json.dumps(TINY))
    out = tmp_path / "watched"
    argv = ["study", "--preset", str(spec_file), "--out", str(out), "--data-dir", str(DATA)]
    assert main([*argv, "--monitor", "2"]) == 0
    watched = read_results(out)
    assert [r["run_id"] for r in watched] == [r["run_id"] for r in plain]
    for with_monitor, without in zip(watched, plain, strict=True):
        assert with_monitor["history"]["loss"] == without["history"]["loss"]
        assert without["monitor"] is None
        monitor = with_monitor["monitor"]
        assert monitor["every"] == 2 and monitor["log"] == f"monitor/{with_monitor['run_id']}.jsonl"
        from signalprop.monitor import read_log

        history = read_log(out / monitor["log"])
        assert [r.step for r in history.records] == [1, 3, 5]  # 300 images in batches of 50
        assert len(history.layers) == 3
        assert_png(out / f"monitor-{with_monitor['run_id']}.png")
    report = (out / "report.md").read_text()
    assert "## Training monitor" in report and report.count("![monitor heatmaps]") == 3


def test_study_monitor_flag_must_be_a_positive_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--preset", "quick", "--out", "x", "--monitor", "0"]) == 2
    assert "--monitor" in capsys.readouterr().err
