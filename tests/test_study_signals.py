"""SIGINT and SIGTERM to a study's driver alone (``--jobs 2``): the runs already finished
are written, the running one is stopped within seconds, one line says how to resume, and
the status is 130 or 143. Real processes, real training on the real data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _data_dir import DATA, needs_data

#: One run of a second or two, and one that trains for minutes: the driver is signalled
#: while the long one runs.
GRID = {
    "name": "signals",
    "defaults": {"init": "matching", "batch_size": 50, "validation": 200},
    "runs": [
        {"activation": "relu", "depth": 1, "epochs": 1, "train_size": 300},
        {"activation": "tanh", "depth": 30, "epochs": 20},
    ],
}
#: Seconds the driver may take to stop: far below the long run's minutes.
STOP_WITHIN = 20


@needs_data
@pytest.mark.parametrize(
    ("signum", "status", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signalled_driver_keeps_what_finished_and_stops_now(
    tmp_path: Path, signum: int, status: int, word: str
) -> None:
    grid, out = tmp_path / "grid.json", tmp_path / "out"
    grid.write_text(json.dumps(GRID))
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signalprop",
            "study",
            "--preset",
            str(grid),
            "--out",
            str(out),
            "--jobs",
            "2",
            "--no-report",
        ],
        env={**os.environ, "SIGNALPROP_DATA": str(DATA)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = out / "results.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (results.exists() and results.read_text().count("\n") >= 1):
            assert driver.poll() is None and time.monotonic() < deadline, "no short run"
            time.sleep(0.2)
        driver.send_signal(signum)
        sent = time.monotonic()
        _, err = driver.communicate(timeout=3 * STOP_WITHIN)
        took = time.monotonic() - sent
    finally:  # whatever failed, no driver (nor its workers) outlives the test
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == status
    assert took < STOP_WITHIN, f"stopped {took:.0f} s after the signal"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and word in lines[0] and "resumes" in lines[0], err
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["config"]["activation"] for r in records] == ["relu"]
    assert not (out / ".signalprop.lock").exists()
