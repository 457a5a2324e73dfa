"""Studies on a Dask cluster: same records as one process, no run lost or doubled when a
worker is killed, failing runs recorded, an unreachable scheduler refused in one line."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from _data_dir import DATA, needs_data
from signalprop.cli import main
from signalprop.study import _runner as runner
from signalprop.study import cluster, expand, read_results, run_study

distributed = pytest.importorskip("distributed")


#: Four tiny runs on the real data (300 training images, 2 hidden layers).
GRID = {
    "defaults": {"epochs": 1, "validation": 200, "train_size": 300, "batch_size": 50},
    "grid": {"activation": ["selu", "relu", "tanh", "elu"], "init": ["matching"], "depth": [2]},
}
#: Records differ between executors only in these: when, how long, and who.
VARYING = ("wall_time", "finished_at", "worker")


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    record = {k: v for k, v in record.items() if k not in VARYING}
    record["history"] = {k: v for k, v in record["history"].items() if k != "epoch_time"}
    return record


@pytest.fixture(scope="module")
def local_cluster() -> Any:
    """signalprop's own local cluster (``--cluster local:2``): its Dask client."""
    with cluster(workers=2) as live:
        assert live.slots == 2
        yield live.client


def quiet(_: str) -> None:
    pass


@needs_data
def test_a_cluster_gives_the_records_of_one_process(tmp_path: Path, local_cluster: Any) -> None:
    spec = expand(GRID)
    alone = run_study(spec, tmp_path / "alone", data_dir=str(DATA), echo=quiet)
    executor = local_cluster.get_executor(pure=False)
    spread = run_study(
        spec, tmp_path / "spread", data_dir=str(DATA), echo=quiet, executor=executor, slots=2
    )
    by_id = {r["run_id"]: comparable(r) for r in alone}
    assert len(spread) == len(alone)
    for record in spread:  # in the order they finished
        assert comparable(record) == by_id[record["run_id"]]
    workers = {r["worker"] for r in spread}
    assert len(workers) == 2 and all(w.count(":") == 1 for w in workers)  # host:pid


@needs_data
def test_a_worker_killed_mid_run_loses_no_run_and_records_none_twice(
    tmp_path: Path, local_cluster: Any
) -> None:
    """SIGKILL one worker while runs are training: the scheduler starts its run again on
    a worker that lives (its nanny restarts the dead one), and the driver, the only
    writer, appends each record once."""
    grid = {**GRID, "defaults": {**GRID["defaults"], "epochs": 10, "train_size": 3000}}
    spec = expand(grid)
    killed: list[int] = []

    def kill_one_worker_once_runs_start() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w, tasks in local_cluster.processing().items() if tasks]
            if busy:
                pids = local_cluster.run(os.getpid, workers=[busy[0]])
                time.sleep(0.5)  # mid-run: data loaded, training started
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker_once_runs_start)
    killer.start()
    executor = local_cluster.get_executor(pure=False)
    results = run_study(spec, tmp_path, data_dir=str(DATA), echo=quiet, executor=executor, slots=2)
    killer.join()
    assert killed, "no worker was killed: the test did not test anything"
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["run_id"] for r in lines) == sorted(run.run_id for run in spec.runs)
    assert not any(r.get("error") for r in results)
    assert all(r["worker"].split(":")[1] != str(killed[0]) for r in results)


def test_a_run_that_raises_is_recorded_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any Executor will do (here threads); a failing configuration is a result."""
    spec = expand(GRID)
    bad = spec.runs[1].run_id
    done: list[str] = []

    def execute(config: Any, *args: Any) -> dict[str, Any]:
        if config.run_id == bad:
            raise RuntimeError("this configuration cannot train")
        done.append(config.run_id)
        return {"run_id": config.run_id, "config": config.to_dict(), "history": {}}

    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(runner, "_summary", lambda record: record.get("error") or "ok")
    with ThreadPoolExecutor(2) as pool:
        results = run_study(spec, tmp_path, echo=quiet, executor=pool)
    assert len(results) == 4 and len(done) == 3
    (failure,) = [r for r in results if r.get("error")]
    assert failure["run_id"] == bad
    assert failure["error"] == "RuntimeError: this configuration cannot train"
    # A rerun does not retry it: a failing configuration is a result, not a crash.
    with ThreadPoolExecutor(2) as pool:
        run_study(spec, tmp_path, echo=quiet, executor=pool)
    assert len(done) == 3


def test_an_unreachable_scheduler_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from signalprop.study import _dask

    monkeypatch.setattr(_dask, "CONNECT_TIMEOUT", "1s")
    argv = ["study", "--preset", "quick", "--out", str(tmp_path / "x")]
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--scheduler tcp://127.0.0.1:9: no Dask scheduler answers there" in err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--cluster", "local:0"], "local:N with N >= 1"),
        (["--cluster", "remote"], "local:N with N >= 1"),
        (["--cluster", "local:2", "--scheduler", "tcp://h:8786"], "not both"),
        (["--cluster", "local:2", "--jobs", "2"], "--jobs is the local process pool's size"),
    ],
)
def test_cluster_flags_are_checked(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["study", "--preset", "quick", "--out", str(tmp_path), *flags]) == 2
    assert words in capsys.readouterr().err


def test_a_worker_without_the_data_stops_the_study_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing data is the worker's, not the run's: no run is recorded as failed for it."""

    def execute(config: Any, *args: Any) -> dict[str, Any]:
        raise FileNotFoundError("Fashion-MNIST files are missing from /nowhere")

    monkeypatch.setattr(runner, "execute", execute)
    with ThreadPoolExecutor(2) as pool, pytest.raises(FileNotFoundError, match="missing"):
        run_study(expand(GRID), tmp_path, echo=quiet, executor=pool)
    assert not (tmp_path / "results.jsonl").exists() or not (tmp_path / "results.jsonl").read_text()


@needs_data
def test_a_cancelled_run_stops_on_its_worker(tmp_path: Path) -> None:
    """Dask cannot interrupt a running task: signalprop's executor stops the run between
    two steps once its future is cancelled (the driver stopped), freeing the worker for
    the next study instead of training on for nobody (a remote cluster is not closed)."""
    hours = {**GRID["defaults"], "epochs": 10_000, "train_size": 3000}  # 600,000 steps
    long_run = expand({**GRID, "defaults": hours}).runs[0]
    with cluster(workers=1) as live:
        future = live.executor.submit(runner.execute, long_run, str(DATA), 1, None, {})

        def executing(dask_worker: Any) -> int:
            return len(dask_worker.state.executing)

        (worker,) = live.client.scheduler_info()["workers"]
        wait_until(lambda: live.client.run(executing)[worker] == 1, "the run never started")
        future.cancel()
        # The run would train for an hour; cancelled, the worker is idle at its next step.
        wait_until(lambda: live.client.run(executing)[worker] == 0, "the run trained on")


def wait_until(condition: Any, failure: str, guard: float = 60) -> None:
    """Poll ``condition``; fail with ``failure`` after ``guard`` seconds (a hang guard)."""
    deadline = time.monotonic() + guard
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


@needs_data
def test_a_local_cluster_study_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`signalprop study --cluster local:2` end to end: two runs at a time, on two workers
    (the records' equality with one process's is the test above, on the same cluster)."""
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    argv = ["study", "--preset", str(grid), "--data-dir", str(DATA), "--no-report"]
    assert main([*argv, "--out", str(tmp_path), "--cluster", "local:2"]) == 0
    assert "a local Dask cluster of 2 worker process(es) (2 run(s) at a time)" in (
        capsys.readouterr().out
    )
    records = read_results(tmp_path)
    assert len(records) == 4 and not any(r.get("error") for r in records)
    assert len({r["worker"] for r in records}) == 2
