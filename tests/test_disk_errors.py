"""A full or read-only disk: one line naming the path and what to do, never a traceback,
and never a half-written spec that a resume would trust."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from _data_dir import DATA, needs_data
from _records import record, write_study
from signalprop.cli import main
from signalprop.study import _runner as runner
from signalprop.study import expand

GRID = {
    "defaults": {"epochs": 1, "validation": 200, "train_size": 300, "batch_size": 50},
    "grid": {"activation": ["selu", "relu"], "init": ["matching"], "depth": [2]},
}


def _full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "/full/results.jsonl")


@needs_data
def test_a_full_disk_during_a_study_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    monkeypatch.setattr(
        runner,
        "execute",
        lambda config, *a, **k: {
            "run_id": config.run_id,
            "config": config.to_dict(),
            "history": {},
        },
    )
    monkeypatch.setattr(runner, "_summary", lambda record: "ok")
    monkeypatch.setattr(runner, "_append", _full)
    out = str(tmp_path / "out")
    status = main(
        ["study", "--preset", str(grid), "--out", out, "--data-dir", str(DATA), "--no-report"]
    )
    assert status == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "signalprop: error: /full/results.jsonl: No space left on device; free some space "
        "(or choose another folder) and run the same command again: everything already "
        "written is kept"
    ]


def test_a_read_only_report_folder_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    spec = expand({**GRID, "name": "ro"})
    write_study(tmp_path, spec, [record(run, 0.8) for run in spec.runs])

    def read_only(self: Path, *args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["report", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"signalprop: error: {tmp_path}")
    assert line.endswith(
        "Read-only file system; the file system is read-only: choose a writable folder"
    )


def test_a_spec_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"name": "before"}\n')
    real_replace = runner.os.replace

    def full_before_rename(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner.os, "replace", full_before_rename)
    with pytest.raises(OSError, match="No space"):
        runner.write_atomic(path, '{"name": "after"}\n')
    assert path.read_text() == '{"name": "before"}\n'  # the old spec, whole
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]  # no temporary left
    monkeypatch.setattr(runner.os, "replace", real_replace)
    runner.write_atomic(path, '{"name": "after"}\n')
    assert path.read_text() == '{"name": "after"}\n'
