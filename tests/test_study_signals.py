"""SIGINT and SIGTERM to a study's driver alone, or Ctrl-C to its whole process group as a
terminal sends it (``--jobs 2`` and ``--cluster local:2``): the runs already finished are
written, the running one is stopped with its worker (not trained to its end), one line says
how to resume, no traceback or warning from Dask or multiprocessing, and the status is 130
or 143. Real processes, real training on the real data."""

from __future__ import annotations

import contextlib
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
#: Seconds the test waits for the driver to stop before it fails (a hang guard: the long
#: run trains for minutes, and a driver that waits for it is caught by the workers check).
HANG = 120
psutil = pytest.importorskip("psutil")  # Dask's dependency: the worker processes


@needs_data
@pytest.mark.parametrize(
    ("where", "signum", "status", "word", "group"),
    [
        (["--jobs", "2"], signal.SIGINT, 130, "interrupted", False),
        (["--jobs", "2"], signal.SIGINT, 130, "interrupted", True),  # Ctrl-C in a terminal
        (["--cluster", "local:2"], signal.SIGINT, 130, "interrupted", True),
        # SIGTERM is SIGINT's path in the driver (a KeyboardInterrupt of its own class).
        (["--cluster", "local:2"], signal.SIGTERM, 143, "terminated", False),
    ],
)
def test_a_signalled_driver_keeps_what_finished_and_stops_now(
    tmp_path: Path, signum: int, status: int, word: str, group: bool, where: list[str]
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
            *where,
            "--no-report",
        ],
        env={**os.environ, "SIGNALPROP_DATA": str(DATA)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    results = out / "results.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (results.exists() and results.read_text().count("\n") >= 1):
            assert driver.poll() is None and time.monotonic() < deadline, "no short run"
            time.sleep(0.2)
        workers = psutil.Process(driver.pid).children(recursive=True)
        if group:
            os.killpg(driver.pid, signum)
        else:
            driver.send_signal(signum)
        _, err = driver.communicate(timeout=HANG)
        # The long run's worker is stopped with the driver, not left to train for nobody.
        _, alive = psutil.wait_procs(workers, timeout=10)
    finally:  # whatever failed, no driver (nor its workers) outlives the test
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.communicate()
    assert driver.returncode == status
    assert not alive, f"{len(alive)} worker process(es) still running after the driver left"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and word in lines[0] and "resumes" in lines[0], err
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["config"]["activation"] for r in records] == ["relu"]
    assert not (out / ".signalprop.lock").exists()


@needs_data
@pytest.mark.parametrize("where", [["--jobs", "2"], ["--cluster", "local:2"]])
def test_a_killed_driver_leaves_no_worker_and_no_noise(tmp_path: Path, where: list[str]) -> None:
    """SIGKILL: the driver cannot clean up. Its workers notice and leave, multiprocessing's
    resource tracker frees their semaphores without a "leaked semaphore" warning, and
    nothing but the finished run is on disk (the same command resumes)."""
    grid, out = tmp_path / "grid.json", tmp_path / "out"
    grid.write_text(json.dumps(GRID))
    driver = subprocess.Popen(
        [sys.executable, "-m", "signalprop", "study", "--preset", str(grid), "--out", str(out),
         *where, "--no-report"],
        env={**os.environ, "SIGNALPROP_DATA": str(DATA)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    results = out / "results.jsonl"
    try:
        deadline = time.monotonic() + HANG
        while not (results.exists() and results.read_text().count("\n") >= 1):
            assert driver.poll() is None and time.monotonic() < deadline, "no short run"
            time.sleep(0.2)
        workers = psutil.Process(driver.pid).children(recursive=True)
        driver.kill()
        # Returns once every process holding the driver's stderr (the workers, the
        # resource tracker) has exited.
        _, err = driver.communicate(timeout=HANG)
        _, alive = psutil.wait_procs(workers, timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    assert not alive and err == "", err
    lines = results.read_text().splitlines()
    assert [json.loads(line)["config"]["activation"] for line in lines] == ["relu"]
