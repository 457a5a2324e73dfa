"""One writer per study folder: a second driver is refused, naming the first; a killed
driver's lock is taken over; nothing is written by the driver refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _data_dir import DATA, needs_data
from signalprop.cli import main
from signalprop.study import StudyLockedError, expand, run_study
from signalprop.study._lock import LOCK, writer_lock

HOLD = (
    "import sys, time\n"
    "from signalprop.study._lock import writer_lock\n"
    "with writer_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


def _holder(folder: Path) -> subprocess.Popen[str]:
    """Another process (another driver) holding ``folder``'s lock."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _end(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    assert process.stdout is not None
    process.stdout.close()


@needs_data
def test_a_second_driver_is_refused_naming_the_first(tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    out.mkdir()
    holder = _holder(out)
    try:
        command = ["study", "--preset", "quick", "--out", str(out), "--data-dir", str(DATA)]
        assert main([*command, "--no-report"]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1
        assert f"pid {holder.pid} on {socket.gethostname()}" in error
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing else written
    finally:
        _end(holder)


def test_a_killed_driver_s_lock_is_taken_over(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    with pytest.raises(StudyLockedError, match=f"pid {holder.pid} "):
        run_study(
            expand(
                {
                    "grid": {
                        "activation": ["relu"],
                        "init": ["he_normal"],
                        "depth": [1],
                        "epochs": [1],
                    }
                }
            ),
            tmp_path,
            echo=lambda _: None,
        )
    os.kill(holder.pid, signal.SIGKILL)  # no clean-up: its lock file stays behind
    _end(holder)
    assert f"pid {holder.pid} " in (tmp_path / LOCK).read_text()
    with writer_lock(tmp_path):
        assert (tmp_path / LOCK).read_text().startswith(f"pid {os.getpid()} ")
        with pytest.raises(StudyLockedError), writer_lock(tmp_path):
            pass  # even from the same process: one writer
    assert not (tmp_path / LOCK).exists()  # removed at the end
