"""A Monitor log holds one run: a used path is refused or replaced, never appended to;
read_log refuses a file with two runs; a full disk stops the log, not the training."""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path
from typing import IO, Any

import pytest
import torch
import torch.nn.functional as F

import signalprop as sp
from _data_dir import DATA, needs_data
from signalprop.monitor import read_log
from signalprop.study import expand
from signalprop.study._runner import execute

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def model_and_optimizer() -> tuple[sp.Sequential, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = sp.Sequential([sp.Dense(8, "tanh") for _ in range(2)] + [sp.Dense(3)], input_shape=(5,))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def train(monitor: sp.Monitor | None, model: Any, optimizer: Any, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(16, 5)), torch.randint(0, 3, (16,))).backward()
        optimizer.step()
        if monitor is not None:
            monitor.step()


def monitored(log: Path, steps: int, **options: Any) -> sp.Monitor:
    model, optimizer = model_and_optimizer()
    with sp.Monitor(model, every=1, log=log, **options) as monitor:
        train(monitor, model, optimizer, steps)
    return monitor


def headers(log: Path) -> int:
    return log.read_text().count('"kind": "header"')


# ------------------------------------------------------------------ a used path


def test_a_log_path_holding_a_killed_run_is_refused_and_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    monitored(log, 3)
    killed = log.read_text()[:-25]  # a killed run: its last line cut short
    log.write_text(killed)
    model, _ = model_and_optimizer()
    with pytest.raises(ValueError) as caught:
        sp.Monitor(model, log=log)
    message = str(caught.value)
    assert str(log) in message and "overwrite=True" in message and "another path" in message
    assert log.read_text() == killed  # not appended to, not truncated
    assert all(not m._forward_hooks for m in model.modules())  # nothing left hooked


def test_overwrite_replaces_the_log_and_an_empty_file_is_taken(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    monitored(log, 5)
    monitored(log, 2, overwrite=True)
    assert headers(log) == 1
    assert [r.step for r in read_log(log).records] == [1, 2]
    empty = tmp_path / "empty.jsonl"
    empty.touch()  # e.g. made by mkstemp: holds no run
    monitored(empty, 1)
    assert [r.step for r in read_log(empty).records] == [1]
    with pytest.raises(ValueError, match="'overwrite' parameter of Monitor"):
        sp.Monitor(model_and_optimizer()[0], log=tmp_path / "x.jsonl", overwrite="yes")  # type: ignore[arg-type]


@needs_data
def test_a_retried_study_run_replaces_its_monitor_log(tmp_path: Path) -> None:
    """A run retried (its worker died after the log was written, or mid-run) writes its
    log again: one header, the steps once each, as a first attempt's."""
    raw = {
        "defaults": {"epochs": 1, "validation": 100, "train_size": 200, "batch_size": 50},
        "runs": [{"activation": "tanh", "init": "matching", "depth": 2}],
    }
    config = expand(raw, "retry").runs[0]
    directory = tmp_path / "monitor"
    directory.mkdir()
    first = execute(config, data_dir=str(DATA), monitor=(str(directory), 2))
    log = tmp_path / first["monitor"]["log"]
    once = log.read_text()
    again = execute(config, data_dir=str(DATA), monitor=(str(directory), 2))
    assert again["monitor"]["log"] == first["monitor"]["log"]
    assert headers(log) == 1
    assert [r.step for r in read_log(log).records] == [1, 3]
    # A killed attempt's log (header, a record, a cut line) is replaced too.
    log.write_text(once[: once.index("\n", once.index('"kind": "record"')) + 1] + '{"kind": "rec')
    execute(config, data_dir=str(DATA), monitor=(str(directory), 2))
    assert headers(log) == 1 and [r.step for r in read_log(log).records] == [1, 3]


# ------------------------------------------------------------------ read_log


def test_read_log_refuses_a_file_holding_two_runs(tmp_path: Path) -> None:
    one = tmp_path / "one.jsonl"
    monitored(one, 2)
    lines = one.read_text().splitlines(keepends=True)
    # Two whole runs, one after the other (the old appending Monitor).
    two = tmp_path / "two.jsonl"
    two.write_text("".join(lines) + "".join(lines))
    with pytest.raises(ValueError, match=rf"{two.name}.*line {len(lines) + 1} is a second header"):
        read_log(two)
    # A killed run's cut line, the next run's header glued on.
    glued = tmp_path / "glued.jsonl"
    glued.write_text("".join(lines[:2]) + lines[2][:30] + "".join(lines))
    with pytest.raises(ValueError, match=rf"{glued.name}.*line 3 is a line cut short"):
        read_log(glued)
    # A killed run alone still reads: its records before the cut line count.
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(lines[:2]) + lines[2][:30])
    assert [r.step for r in read_log(killed).records] == [1]


# ------------------------------------------------------------------ a full disk


class FullDisk:
    """A log file on a disk that fills after ``room`` writes."""

    def __init__(self, real: IO[str], room: int) -> None:
        self.real, self.room, self.closed_ = real, room, False

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise FULL
        self.room -= 1
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()

    def close(self) -> None:
        self.real.close()


def test_a_full_disk_stops_the_log_with_one_warning_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "run.jsonl"
    real_open = Path.open

    def opening(path: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, *args, **kwargs)
        return FullDisk(handle, room=2) if path == log else handle

    monkeypatch.setattr(Path, "open", opening)
    model, optimizer = model_and_optimizer()
    with pytest.warns(RuntimeWarning) as caught:
        monitor = sp.Monitor(model, every=1, log=log, optimizer=optimizer)
        train(None, model, optimizer, 4)  # the optimizer drives the monitor
        monitor.close()  # its end line meets the full disk too: no second error
        monitor.close()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert str(log) in messages[0] and os.strerror(errno.ENOSPC) in messages[0]
    assert [r.step for r in monitor.history.records] == [1, 2, 3, 4]  # kept in memory
    assert monitor.history.steps == 4
    monkeypatch.undo()
    assert [r.step for r in read_log(log).records] == [1]  # header and one record fit


def test_a_full_disk_stops_tensorboard_with_one_warning(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    model, optimizer = model_and_optimizer()
    board = tmp_path / "tb"
    monitor = sp.Monitor(model, every=1, tensorboard=board, optimizer=optimizer)
    event_file = monitor._tensorboard.file
    # The disk fills after the file's first event: every scalar, histogram and text fails.
    event_file._file = FullDisk(event_file._file, room=0)  # type: ignore[arg-type]
    with pytest.warns(RuntimeWarning) as caught:
        train(None, model, optimizer, 3)
        monitor.close()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(board) in messages[0], messages
    assert os.strerror(errno.ENOSPC) in messages[0]
    assert len(monitor.history.records) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor.close()


def test_a_log_on_a_read_only_disk_closing_fails_quietly(tmp_path: Path) -> None:
    """The log's close (a flush) failing too is the same one warning, not a traceback."""
    log = tmp_path / "run.jsonl"
    model, optimizer = model_and_optimizer()
    monitor = sp.Monitor(model, every=1, log=log, optimizer=optimizer)
    train(None, model, optimizer, 1)

    class ReadOnly(FullDisk):
        def close(self) -> None:
            self.real.close()
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    assert monitor._log is not None
    monitor._log = ReadOnly(monitor._log, room=10)  # type: ignore[assignment]
    with pytest.warns(RuntimeWarning, match=os.strerror(errno.EROFS)) as caught:
        monitor.close()
    assert len(caught) == 1
    assert json.loads(log.read_text().splitlines()[-1])["kind"] == "end"
