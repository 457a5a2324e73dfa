"""Failures never look like success: a grid that cannot run is refused before anything
trains, a study whose every run failed exits 1 and its report lists the errors, and
``fit`` says in one line when and why it stopped early."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import signalprop as sp
from _data_dir import DATA, needs_data
from _records import record, write_study
from signalprop.cli import main
from signalprop.study import _runner, expand, write_report
from signalprop.study._spec import RunConfig
from signalprop.train import fit

BASE = {"activation": "relu", "init": "he_normal", "depth": 1, "epochs": 1}


@pytest.mark.parametrize(
    ("settings", "param", "value"),
    [
        # 60,000 validation images leave none of the 60,000 to train on.
        ({"validation": 60000}, "validation", "60000"),
        # 5,000 validation images (the default) leave 55,000: one more is not there.
        ({"train_size": 55001}, "train_size", "55001"),
        # 59,990 validation images leave 10 training images: no batch of 32.
        ({"validation": 59990, "batch_size": 32}, "batch_size", "32"),
        ({"train_size": 100, "batch_size": 101}, "batch_size", "101"),
        # fit refuses momentum with Adam: every such run would fail when it starts.
        ({"optimizer": "adam", "momentum": 0.9}, "momentum", "0.9"),
    ],
)
def test_a_grid_that_cannot_run_is_refused_naming_the_run_and_value(
    settings: dict[str, Any], param: str, value: str
):
    grid = {"grid": {k: [v] for k, v in {**BASE, **settings}.items()}}
    with pytest.raises(ValueError) as caught:
        expand(grid, "grid.json")
    message = str(caught.value)
    assert "\n" not in message
    assert f"'{param}' parameter of grid.json: grid {{" in message  # the run, by its settings
    assert f"Got {value} instead" in message


def test_the_largest_grid_that_can_run_passes():
    """The limits are the data's, not stricter: one training image, one batch of all."""
    spec = expand({"runs": [{**BASE, "validation": 59999, "batch_size": 1}]})
    assert spec.runs[0].validation == 59999
    spec = expand({"runs": [{**BASE, "train_size": 55000, "batch_size": 55000}]})
    assert spec.runs[0].train_size == 55000


def test_the_command_refuses_a_grid_that_cannot_run_before_creating_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"runs": [BASE], "defaults": {"validation": 60000}}))
    out = tmp_path / "out"
    assert main(["study", "--preset", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'validation'" in err and "60000" in err
    assert not out.exists()


def _failing_study(directory: Path, ok: int) -> list[RunConfig]:
    spec = expand({"defaults": BASE, "grid": {"seed": [0, 1, 2]}}, "failing")
    records = [
        record(run, 0.8) if i < ok else _runner.failed(run, RuntimeError(f"boom {run.seed}"))
        for i, run in enumerate(spec.runs)
    ]
    write_study(directory, spec, records)
    return spec.runs


def test_a_report_of_a_study_whose_every_run_failed_lists_the_errors(tmp_path: Path):
    _failing_study(tmp_path, ok=0)
    text = write_report(tmp_path).read_text()
    assert "0 of 3 runs finished, 3 failed" in text
    assert "## Runs that failed" in text
    for seed in range(3):
        assert f"seed {seed}: RuntimeError: boom {seed}" in text


def test_a_report_with_some_runs_failed_lists_them_beside_the_results(tmp_path: Path):
    _failing_study(tmp_path, ok=2)
    text = write_report(tmp_path).read_text()
    assert "2 of 3 runs finished, 1 failed" in text
    assert "## Final validation accuracy" in text
    assert "seed 2: RuntimeError: boom 2" in text
    assert "boom 0" not in text and "boom 1" not in text


def test_report_of_results_without_any_run_still_refuses(tmp_path: Path):
    spec = expand({"runs": [BASE]})
    write_study(tmp_path, spec, [])
    with pytest.raises(ValueError, match="no finished runs"):
        write_report(tmp_path)


def _study(tmp_path: Path) -> tuple[Path, list[str]]:
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"runs": [{**BASE, "train_size": 64}], "seeds": [0, 1]}))
    out = tmp_path / "out"
    return out, ["study", "--preset", str(grid), "--out", str(out), "--data-dir", str(DATA)]


@needs_data
@pytest.mark.parametrize("fails", [{0, 1}, {1}])
def test_a_study_whose_every_run_failed_exits_1_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fails: set[int],
):
    """Every run failed: status 1, one line, the report lists the errors; one of two
    failed: status 0, one line saying how many."""

    def execute(config: RunConfig, *args: Any) -> dict[str, Any]:
        if config.seed in fails:
            raise RuntimeError(f"boom {config.seed}")
        return record(config, 0.8)

    monkeypatch.setattr(_runner, "execute", execute)  # the runs train in this process
    out, argv = _study(tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    report = (out / "report.md").read_text()
    for seed in fails:
        assert f"seed {seed}: RuntimeError: boom {seed}" in report
    if fails == {0, 1}:
        assert status == 1
        assert "every run failed (2), e.g. RuntimeError: boom" in err
    else:
        assert status == 0
        assert "1 of 2 runs failed" in err


def _nan_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    x[0, 0] = float("nan")  # one NaN pixel: the batch that holds it has a NaN loss
    return x, y


def _model() -> torch.nn.Module:
    return sp.Sequential([sp.Dense(8, "relu"), sp.Dense(3)], input_shape=(4,))


def test_fit_says_in_one_line_when_and_why_it_stopped(capsys: pytest.CaptureFixture[str]):
    history = fit(_model(), _nan_batch(), None, epochs=3, batch_size=40, seed=0)
    assert history.stopped is not None and history.stopped["step"] == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "stopped" in line]
    assert lines == [
        "stopped early at epoch 1/3, step 1/1: the loss was nan (non-finite), no step taken "
        "on it; history.stopped holds a diagnosis of the batch"
    ]


def test_fit_says_when_a_callback_stopped_it(capsys: pytest.CaptureFixture[str]):
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    fit(_model(), (x, y), None, epochs=3, batch_size=40, callbacks=[lambda e, _: e == 2])
    lines = [line for line in capsys.readouterr().err.splitlines() if "stopped" in line]
    assert lines == ["stopped early after epoch 2/3: a callback asked to stop"]


def test_fit_without_progress_prints_nothing_when_it_stops(capsys: pytest.CaptureFixture[str]):
    history = fit(_model(), _nan_batch(), None, epochs=3, batch_size=40, progress=False)
    assert history.stopped is not None
    assert capsys.readouterr().err == ""
