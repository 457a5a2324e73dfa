"""``signalprop reproduce``: recorded runs trained again repeat bit for bit, a changed
number in any epoch is found, and the study's folder is only read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from _data_dir import DATA, needs_data
from signalprop.cli import main
from signalprop.study import expand, run_study
from signalprop.study._reproduce import differences, spread
from signalprop.study._runner import RESULTS


def test_spread_takes_the_first_the_last_and_evenly_between():
    assert spread(12, 2) == [0, 11]
    assert spread(12, 4) == [0, 4, 7, 11]
    assert spread(10, 3) == [0, 5, 9]
    assert spread(12, 1) == [0]
    assert spread(3, 5) == [0, 1, 2]
    for count in range(1, 40):
        for runs in range(1, count + 1):
            chosen = spread(count, runs)
            # runs distinct indices in order, from the first to the last
            assert chosen == sorted(set(chosen)) and len(chosen) == runs, (count, runs)
            assert chosen[0] == 0 and (runs == 1 or chosen[-1] == count - 1)


def _record(loss: list[float], **layers: list[float | None]) -> dict:
    return {
        "history": {"loss": loss, "accuracy": [], "val_loss": [], "val_accuracy": [], "steps": 3},
        "layers": {"start": {"name": ["a"], **layers}, "end": {}},
    }


def test_differences_per_quantity():
    found = differences(_record([1.0, 2.0], act_std=[1.0]), _record([1.0, 2.5], act_std=[1.25]))
    assert found["loss"] == 0.5 and found["layers at init"] == 0.25
    assert found["val_loss"] == 0 and found["steps"] == 0
    # NaN agrees with NaN and None with None; a number against either, or another number
    # of epochs, cannot be compared.
    assert differences(_record([math.nan]), _record([math.nan]))["loss"] == 0
    assert differences(_record([1.0], dead=[None]), _record([1.0], dead=[None]))["loss"] == 0
    assert differences(_record([math.nan]), _record([1.0]))["loss"] == math.inf
    assert (
        differences(_record([1.0], dead=[None]), _record([1.0], dead=[0.0]))["layers at init"]
        == math.inf
    )
    assert differences(_record([1.0]), _record([1.0, 1.0]))["loss"] == math.inf


def _tiny_study(directory: Path) -> None:
    spec = expand(
        {
            "name": "tiny",
            "defaults": {
                "init": "matching",
                "depth": 2,
                "epochs": 2,
                "train_size": 320,
                "validation": 200,
            },
            "grid": {"activation": ["selu", "relu"]},
            "seeds": [0, 1],
        }
    )
    run_study(spec, directory, data_dir=str(DATA), echo=lambda line: None)


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@needs_data
def test_a_study_reproduces_bit_for_bit_and_a_changed_epoch_is_found(tmp_path: Path, capsys):
    study = tmp_path / "study"
    _tiny_study(study)
    before = _snapshot(study)
    assert main(["reproduce", str(study), "--runs", "2", "--data-dir", str(DATA)]) == 0
    out = capsys.readouterr().out
    assert (
        "reproducing 2 of the 4 finished runs" in out and "(runs 1, 4 in the grid's order)" in out
    )
    assert "largest absolute difference per quantity: loss 0, accuracy 0, val_loss 0" in out
    assert "agree: tolerance 0 (bit for bit)" in out
    assert _snapshot(study) == before  # read only: nothing written, nothing touched

    # The last run in the grid's order (ReLU, seed 1), its first epoch's validation loss
    # changed by 1e-7: found, named, and the command fails.
    lines = (study / RESULTS).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    last = next(
        r for r in records if r["config"]["activation"] == "relu" and r["config"]["seed"] == 1
    )
    last["history"]["val_loss"][0] += 1e-7
    (study / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["reproduce", str(study), "--runs", "2", "--data-dir", str(DATA)]) == 1
    captured = capsys.readouterr()
    assert "val_loss 1e-07" in captured.out and "loss 0, accuracy 0" in captured.out
    assert "differ: tolerance 0" in captured.out
    assert captured.err.strip().endswith("the runs differ from the record by more than 0")
    # Within a tolerance that covers it, the same comparison agrees.
    tolerant = ["--tolerance", "1e-6", "--data-dir", str(DATA)]
    assert main(["reproduce", str(study), "--runs", "2", *tolerant]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "{missing}"], "holds no results.jsonl"),
        (["reproduce", "{study}", "--runs", "0"], "'--runs' parameter"),
        (["reproduce", "{study}", "--tolerance", "-1"], "'--tolerance' parameter"),
        (["reproduce", "{study}", "--data-dir", "{missing}"], "--data-dir"),
        (["reproduce", "{failed}"], "no finished runs in results.jsonl to reproduce"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys, argv, message):
    study, failed = tmp_path / "study", tmp_path / "failed"
    for directory in (study, failed):
        directory.mkdir()
    (study / RESULTS).write_text("")
    (failed / RESULTS).write_text(
        json.dumps({"run_id": "x", "config": {}, "history": None, "error": "E: boom"}) + "\n"
    )
    paths = {"missing": tmp_path / "missing", "study": study, "failed": failed}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err


def test_study_runs_train_on_a_path_that_repeats():
    from signalprop.study import build_model
    from signalprop.study._runner import training_path

    spec = expand(
        {
            "name": "paths",
            "defaults": {"epochs": 1},
            "runs": [
                {"activation": "selu", "init": "lecun_normal", "depth": 3},
                {"activation": "selu", "init": "lecun_normal", "depth": 3, "optimizer": "adam"},
                {"activation": "relu", "init": "pytorch_default", "model": "residual_mlp",
                 "blocks": 2, "width": 8},
            ],
        }
    )  # fmt: skip
    # Never "auto": its switch to the compiled step rests on timings, and the compiled
    # step rounds otherwise, so a rerun could not repeat the record.
    paths = [training_path(run, build_model(run)) for run in spec.runs]
    assert paths == ["fast", "autograd", "autograd"]
