"""The resumable study runner: every finished run is kept, whatever happens next.

Results go to ``DIR/results.jsonl``, one JSON line per finished run, written
only by the parent process, flushed and fsync'ed before the next run is
reported. On start, a line cut short by a kill (even ``kill -9`` in the middle
of a write) is dropped, and the runs already in the file are skipped: a study
stopped at any moment resumes with nothing finished lost. A run that did not
finish (interrupted, crashed) writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._provenance import versions
from signalprop._validation import check_int, external_stacklevel, invalid_parameter
from signalprop.data import TRAIN_IMAGES
from signalprop.layers import Dense, Flatten, Sequential
from signalprop.study._lock import writer_lock
from signalprop.study._spec import RunConfig, StudySpec
from signalprop.train import fit

__all__ = ["RESULTS", "build_model", "execute", "read_results", "run_study"]

RESULTS = "results.jsonl"
SPEC = "spec.json"
#: Per-layer quantities kept from the diagnose snapshots at the start and end.
LAYER_KEYS = (
    "name",
    "act_mean",
    "act_std",
    "saturated",
    "dead",
    "grad_pre_rms",
    "grad_weight_rms",
    "weight_scale_fan_in",
)
DIAGNOSE_BATCH = 256
AUTOINIT_BATCH = 1024

_DATA_CACHE: dict[tuple[str | None, int, bool], Any] = {}


def build_model(config: RunConfig) -> nn.Module:
    """The run's network: Flatten, the hidden Dense layers, a 10-way softmax Dense; or,
    for ``model`` ``"residual_mlp"`` / ``"resnet"``, :class:`signalprop.examples.ResidualMLP`
    / :class:`signalprop.examples.SmallResNet` with PyTorch's default initialization.

    Hidden layer i has the activation :meth:`RunConfig.hidden_activations` gives it
    (a cycle's entries in turn) and the initializer
    :meth:`RunConfig.hidden_initializers` gives it (with a cycle's ``"matching"``,
    its own activation's).

    Examples:
        >>> from signalprop.study import build_model, load_spec
        >>> model = build_model(load_spec('chapter11').runs[0])
        >>> sum(p.numel() for p in model.parameters())
        266610
    """
    if config.model != "mlp":
        from signalprop.examples import ResidualMLP, SmallResNet

        assert config.blocks is not None
        if config.model == "resnet":
            return SmallResNet(config.blocks, width=config.hidden[0])
        return ResidualMLP(config.blocks, width=config.hidden[0])
    layers: list[nn.Module] = [Flatten()]
    initializers: dict[str, Any] = {}
    for name, args in config.hidden_initializers():
        key = json.dumps([name, args], sort_keys=True)
        if key not in initializers:  # one object per distinct initializer, as before cycles
            initializers[key] = _init.create(name, **args)
    biases: Any = (
        "zeros"
        if config.bias_var == 0
        else _init.RandomNormal(mean=0.0, stddev=math.sqrt(config.bias_var))
    )
    for width, (name, args), (init_name, init_args) in zip(
        config.hidden, config.hidden_activations(), config.hidden_initializers(), strict=True
    ):
        activation = _activations.create(name, **args)
        initializer = initializers[json.dumps([init_name, init_args], sort_keys=True)]
        layers.append(
            Dense(width, activation, kernel_initializer=initializer, bias_initializer=biases)
        )
    layers.append(Dense(10, "softmax"))
    return Sequential(layers, input_shape=(28, 28))


def _data(config: RunConfig, data_dir: str | None) -> Any:
    from signalprop.data import load_fashion_mnist

    key = (data_dir, config.validation, config.standardize)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set at a time in memory
        _DATA_CACHE[key] = load_fashion_mnist(
            data_dir, validation=config.validation, standardize=config.standardize
        )
    return _DATA_CACHE[key]


def worker() -> str:
    """Which process ran a run: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def failed(config: RunConfig, error: BaseException) -> dict[str, Any]:
    """The record of a run that raised (or whose worker died more often than retried):
    a result like any other, so the study goes on and a rerun does not retry it."""
    return {
        "run_id": config.run_id,
        "config": config.to_dict(),
        "error": f"{type(error).__name__}: {error}".splitlines()[0][:500],
        "history": None,
        "wall_time": 0.0,
        "versions": versions(),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _layers(snapshot: dict[str, Any] | None) -> dict[str, list[Any]]:
    """Column-wise per-layer quantities of a diagnose snapshot."""
    if snapshot is None:
        return {}
    rows = snapshot["layers"]
    return {key: [row.get(key) for row in rows] for key in LAYER_KEYS}


def _findings(snapshot: dict[str, Any] | None) -> list[dict[str, Any]]:
    if snapshot is None:
        return []
    return [
        {k: f[k] for k in ("kind", "severity", "layers", "message")} for f in snapshot["findings"]
    ]


#: Where a monitored study keeps each run's Monitor log: ``DIR/monitor/<run_id>.jsonl``.
MONITOR_DIR = "monitor"


def execute(
    config: RunConfig,
    data_dir: str | None = None,
    threads: int = 1,
    monitor: tuple[str, int] | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Train one run and return its result record.

    The run trains on :func:`training_path`'s path, which a rerun of the same
    configuration on the same machine repeats bit for bit, or on ``path`` (one of
    :func:`signalprop.fit`'s) when given: a rerun of a record that names another.

    With ``monitor=(directory, every)``, a :class:`~signalprop.Monitor` watches
    the training and writes its log to ``directory/<run_id>.jsonl`` (the only
    file written here; a log left by an interrupted attempt is replaced).

    Examples:
        ```python
        from signalprop.study import execute, load_spec

        record = execute(load_spec('quick').runs[0], data_dir='../shared/data/fashion-mnist')
        record['history']['val_accuracy']   # per epoch; the record is one line of results.jsonl
        ```
    """
    torch.set_num_threads(threads)
    data = _data(config, data_dir)
    x_train, y_train = data.x_train, data.y_train
    if config.train_size is not None:
        x_train, y_train = x_train[: config.train_size], y_train[: config.train_size]
    valid = (data.x_valid, data.y_valid) if config.validation else None
    start = time.perf_counter()
    autoinit_result = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config)
        if config.autoinit is not None:
            from signalprop.autoinit import autoinit

            # The string form predates criteria: it meant the variance criterion with
            # truncated normal weights, whatever autoinit's defaults are now.
            options = (
                {
                    "mode": config.autoinit,
                    "criterion": "variance",
                    "distribution": "truncated_normal",
                }
                if isinstance(config.autoinit, str)
                else dict(config.autoinit)
            )
            autoinit_result = autoinit(model, x_train[:AUTOINIT_BATCH], **options)
    residual = residual_record(model, x_train[:DIAGNOSE_BATCH], autoinit_result)
    watcher = None
    if monitor is not None:
        from signalprop.monitor import Monitor

        log = Path(monitor[0]) / f"{config.run_id}.jsonl"
        watcher = Monitor(model, every=monitor[1], log=log, overwrite=True)
    try:
        history = fit(
            model,
            (x_train, y_train),
            valid,
            epochs=config.epochs,
            batch_size=config.batch_size,
            optimizer=config.optimizer,
            lr=config.lr,
            momentum=config.momentum,
            seed=config.seed,
            progress=False,
            diagnose_at=(0, config.epochs),
            diagnose_batch=DIAGNOSE_BATCH,
            monitor=watcher,
            path=training_path(config, model) if path is None else path,
        )
    finally:
        if watcher is not None:
            watcher.close()
    wall = time.perf_counter() - start
    record = history.to_dict()
    snapshots = record.pop("diagnostics")
    return {
        "run_id": config.run_id,
        "config": config.to_dict(),
        "history": record,
        "layers": {
            "start": _layers(snapshots.get("0")),
            "end": _layers(snapshots.get(str(config.epochs))),
        },
        "findings": {
            "start": _findings(snapshots.get("0")),
            "end": _findings(snapshots.get(str(config.epochs))),
        },
        "autoinit": None
        if autoinit_result is None
        else {
            "mode": autoinit_result.mode,
            "criterion": autoinit_result.criterion,
            "distribution": autoinit_result.distribution,
            "not_converged": autoinit_result.not_converged,
            "gains": [layer.gain for layer in autoinit_result.layers],
            "bias_vars": [layer.bias_var for layer in autoinit_result.layers],
            "offsets": [layer.offset for layer in autoinit_result.layers],
            "phases": [layer.phase for layer in autoinit_result.layers],
            "notes": autoinit_result.notes,
            "residual": autoinit_result.residual,
            "stream_growth": autoinit_result.stream_growth,
            "branches": [
                {"block": b.block, "target": b.target, "action": b.action, "scale": b.scale}
                for b in autoinit_result.branches
            ],
        },
        "residual": residual,
        "monitor": None
        if watcher is None
        else {
            "log": f"{MONITOR_DIR}/{config.run_id}.jsonl",
            "every": watcher.every,
            "events": [event.to_dict() for event in watcher.events],
            "findings": [finding.to_dict() for finding in watcher.findings()],
        },
        "wall_time": wall,
        "threads": threads,
        "worker": worker(),
        "versions": versions(),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def training_path(config: RunConfig, model: nn.Module) -> str:
    """The path a study run trains on: fit's eager fast path (``"fast"``) where the model
    and optimizer qualify (:func:`signalprop._fastpath.plan`: plain dense stacks and
    SGD), autograd otherwise; never ``"auto"``.

    ``fit(path="auto")`` chooses between the eager and the compiled fast step from
    timings taken during the run and from what the compile cache holds, and the two
    steps round float32 differently. A deep net amplifies that: the 100-layer SELU
    net of chapter11 (seed 1) reached 0.29 validation accuracy after 300 steps on the
    eager step and 0.49 on the compiled one. A study's record would then depend on
    the machine's load when it ran, and no rerun could check it. The eager step
    repeats exactly, and so does autograd on a given number of threads.
    """
    from signalprop._fastpath import plan

    if config.optimizer != "sgd" or isinstance(plan(model), str):
        return "autograd"
    return "fast"


def residual_record(model: nn.Module, inputs: torch.Tensor, autoinit_result: Any) -> Any:
    """For a model with residual blocks: the stream's RMS growth at initialization (after
    the last block over entering the first, in training mode, on ``inputs``), measured
    and predicted by the mean field from the weights (:mod:`signalprop._residual`);
    None for a model without residual blocks."""
    from signalprop._model import find_residual_branches
    from signalprop._residual import predict_stream, stream_at_init

    branches, _ = find_residual_branches(model)
    if not branches:
        return None
    measured, means = stream_at_init(model, (inputs,), branches)
    predicted = predict_stream(model, branches, measured[0] ** 2, means[0])
    growth = measured[-1] / measured[0] if measured[0] > 0 else math.nan
    return {
        "blocks": len(branches),
        "measured_growth": growth,
        "predicted_growth": predicted.growth,
        "gradient_growth_predicted": math.sqrt(math.prod(predicted.gradient_factors)),
        "stream_rms": measured,
        "criterion": None if autoinit_result is None else autoinit_result.residual,
    }


#: Accuracy a diverged run is counted at: a network with NaN weights guesses one of the
#: 10 balanced classes.
CHANCE = 0.1


def final_accuracy(record: dict[str, Any]) -> float:
    """A run's last validation accuracy; NaN when it stopped on a non-finite loss."""
    history = record["history"]
    if history.get("stopped") and history["stopped"].get("reason") == "non-finite loss":
        return math.nan
    values = history["val_accuracy"]
    return float(values[-1]) if values else math.nan


def _repair(path: Path) -> None:
    """Drop a last line cut short by a kill, so the next append starts clean."""
    if not path.exists():
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _missing_fields(record: dict[str, Any]) -> list[str]:
    """What a record lacks of what every finished run writes (:func:`execute`,
    :func:`failed`): a string run id, its configuration, and a history or an error."""
    missing = [] if isinstance(record.get("run_id"), str) else ["a run_id"]
    if not isinstance(record.get("config"), dict):
        missing.append("'config'")
    history = record.get("history")
    if not isinstance(history, dict) and not (history is None and "error" in record):
        missing.append("'history' (or 'error')")
    return missing


def read_results(directory: str | Path) -> list[dict[str, Any]]:
    """Every complete result line of ``DIR/results.jsonl``.

    A last line cut short by a kill is skipped quietly (the runner drops it
    before appending); any other line that is not a record, or a record without
    the fields a finished run writes (its run is then trained again), is skipped
    with a warning that names its line number.

    Examples:
        ```python
        from signalprop.study import read_results

        runs = read_results('docs/results/chapter11')
        [(r['config']['activation'], r['history']['val_accuracy'][-1]) for r in runs]
        ```
    """
    path = Path(directory) / RESULTS
    if not path.exists():
        return []
    results = []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        missing = _missing_fields(record) if isinstance(record, dict) else None
        if isinstance(record, dict) and "run_id" in record and missing:
            # Valid JSON, but not what a finished run writes: not counted as done, so
            # the run is trained again, and the report never reads a half record.
            warnings.warn(
                f"{path}:{number}: a result record without {', '.join(missing)}, skipped: "
                f"run {record['run_id']!r} will be run again",
                stacklevel=external_stacklevel(),
            )
        elif isinstance(record, dict) and "run_id" in record:
            results.append(record)
        elif line.strip() and not (number == len(lines) and not text.endswith("\n")):
            # A last line without its newline was cut short by a kill: the runner repairs
            # it. Anything else is damage, and is said, naming the line.
            warnings.warn(
                f"{path}:{number}: not a result record, skipped ({line[:40]!r})",
                stacklevel=external_stacklevel(),
            )
    return results


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a temporary file beside it,
    flushed to disk, then renamed over it. A full disk leaves the old file (or none),
    never a half-written one that a resume would trust."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _append(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, allow_nan=True) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _summary(record: dict[str, Any]) -> str:
    if record.get("error"):
        return f"failed: {record['error']}"
    history = record["history"]
    accuracy = history["val_accuracy"][-1] if history["val_accuracy"] else float("nan")
    stopped = f", stopped: {history['stopped']['reason']}" if history["stopped"] else ""
    return f"val accuracy {accuracy:.4f}{stopped} ({record['wall_time']:.0f} s)"


def run_study(
    spec: StudySpec,
    out_dir: str | Path,
    *,
    jobs: int = 1,
    data_dir: str | None = None,
    threads: int = 1,
    download: bool = True,
    echo: Callable[[str], None] = print,
    monitor: int | None = None,
    executor: Executor | None = None,
    slots: int | None = None,
) -> list[dict[str, Any]]:
    """Run every run of ``spec`` not already in ``out_dir``; return all results.

    The driver (this process) is the only writer of ``results.jsonl``, and holds the
    folder's lock while it runs (:func:`~signalprop.study._lock.writer_lock`: a second
    driver on the same folder gets :class:`~signalprop.study.StudyLockedError`). Each run
    is a pure function of its configuration and the data (:func:`execute`), and
    its record is appended as it arrives. A run that raises is recorded as
    failed (``record["error"]``) and the others go on; a rerun skips it.

    Args:
        spec: The study.
        out_dir: Where ``results.jsonl`` and ``spec.json`` live.
        jobs: Runs trained at once, each in its own local process (when no
            ``executor`` is given).
        data_dir: Fashion-MNIST directory (default: ``SIGNALPROP_DATA`` or the cache),
            as seen by the processes that train.
        threads: PyTorch threads per run.
        download: Whether missing data files may be downloaded.
        echo: Where progress lines go.
        monitor: Watch every run with a :class:`~signalprop.Monitor` recording every
            ``monitor`` steps; the logs go to ``out_dir/monitor/<run_id>.jsonl`` and
            the report shows their heatmaps. None: no monitor.
        executor: Any ``concurrent.futures.Executor`` to train the runs on, e.g. a
            Dask cluster's ``client.get_executor()``; it is not shut down here.
        slots: Runs handed to ``executor`` at a time (default: all of them).

    Examples:
        ```python
        from signalprop.study import load_spec, run_study, write_report

        run_study(load_spec('quick'), 'runs/quick', jobs=2)   # minutes; resumes where it stopped
        write_report('runs/quick')
        ```
    """
    jobs = check_int(jobs, param="jobs", caller="run_study", low=1)
    if monitor is not None:
        monitor = check_int(monitor, param="monitor", caller="run_study", low=1)
    threads = check_int(threads, param="threads", caller="run_study", low=1)
    if executor is not None and not isinstance(executor, Executor):
        raise invalid_parameter(
            "executor", "run_study", "a concurrent.futures.Executor or None", executor
        )
    if slots is not None:
        slots = check_int(slots, param="slots", caller="run_study", low=1)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with writer_lock(directory):  # one driver per folder: StudyLockedError for a second
        return _run_locked(
            spec, directory, jobs, data_dir, threads, download, echo, monitor, executor, slots
        )


def _run_locked(
    spec: StudySpec,
    directory: Path,
    jobs: int,
    data_dir: str | None,
    threads: int,
    download: bool,
    echo: Callable[[str], None],
    monitor: int | None,
    executor: Executor | None,
    slots: int | None,
) -> list[dict[str, Any]]:
    """:func:`run_study`'s work, under the folder's writer lock."""
    results_path = directory / RESULTS
    _repair(results_path)
    done = {r["run_id"] for r in read_results(directory)}
    todo = [run for run in spec.runs if run.run_id not in done]
    total = len(spec.runs)
    where = f"{jobs} job(s)" if executor is None else type(executor).__name__
    echo(
        f"study {spec.name}: {total} runs, {total - len(todo)} already in {results_path}, "
        f"{len(todo)} to run ({where}, {threads} thread(s) each)"
    )
    if todo and executor is None:
        from signalprop.data import load_fashion_mnist

        # Fail fast, before any run starts or anything is written. (On a cluster, the
        # workers read the data: their errors are the runs' errors.)
        load_fashion_mnist(data_dir, validation=0, download=download)
    write_atomic(directory / SPEC, json.dumps(spec.to_dict(), indent=1) + "\n")
    watch = None
    if monitor is not None:
        (directory / MONITOR_DIR).mkdir(exist_ok=True)
        watch = (str(directory / MONITOR_DIR), monitor)
    parallel = jobs if executor is None else slots or len(todo)
    progress = _StudyProgress(spec.name, total, total - len(todo), todo, echo, parallel)

    def report(config: RunConfig, record: dict[str, Any], running: int) -> None:
        _append(results_path, record)
        progress.finished(config, record, running)

    try:
        if executor is None and jobs == 1:
            for config in todo:
                try:
                    record = execute(config, data_dir, threads, watch)
                except FileNotFoundError:
                    raise  # the data, not the run: nothing is recorded
                except Exception as error:  # a failing configuration is a result
                    record = failed(config, error)
                report(config, record, 0)
        elif executor is None:
            context = get_context("spawn")  # no fork of a process with live OpenMP threads
            quiet_resource_tracker()
            with ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=context,
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                _drive(pool, todo, (data_dir, threads, watch), jobs, report)
        elif todo:
            arguments = (data_dir, threads, watch)
            _drive(executor, todo, arguments, slots or len(todo), report)
    finally:
        progress.close()
    sys.stdout.flush()
    return read_results(directory)


class _StudyProgress:
    """One bar over the whole grid (on a terminal), and one line per finished run with
    the runs still running and an estimate of the time left (:class:`TimeLeft`: each
    run size timed by its own finished runs, sizes not yet run scaled by
    :func:`expected_cost`)."""

    def __init__(
        self,
        name: str,
        total: int,
        done: int,
        todo: list[RunConfig],
        echo: Callable[[str], None],
        parallel: int = 1,
    ) -> None:
        from signalprop._progress import Progress, TimeLeft

        self.total, self.done, self.echo = total, done, echo
        self.time_left = TimeLeft(
            {run.run_id: (run_size(run), expected_cost(run)) for run in todo}, parallel
        )
        # A bar on a terminal only: elsewhere the lines below say it all.
        drawn = bool(todo) and echo is print and sys.stderr.isatty()
        self.bar = Progress(len(todo), f"study {name}", enabled=drawn)

    def finished(self, config: RunConfig, record: dict[str, Any], running: int) -> None:
        self.done += 1
        timed = record.get("error") is None and record.get("wall_time")
        self.time_left.finished(config.run_id, float(timed) if timed else None)
        left = self.time_left.left()
        estimate = ""
        if left is not None:
            seconds, untimed = left
            estimate = f"; {running} running, ~{_duration(seconds)} left"
            if untimed:
                estimate += f" ({untimed} run size(s) not timed yet: scaled by expected cost)"
        self.bar.set_postfix(running=running)
        self.bar.update(1)
        self.echo(
            f"[{self.done}/{self.total}] {config.label or config.name}: {_summary(record)}"
            f"{estimate}"
        )

    def close(self) -> None:
        self.bar.close()


#: A training step's work besides its layers (the batch, the loss, the optimizer call,
#: a share of each epoch's evaluation), in layers' worth: with it, steps × (layers + 12)
#: put each committed study's mean run time per size within 10 % of one common scale
#: (chapter11's 2 and 100 hidden layers, 20 s and 76 s; ranking's 20 and 100;
#: trainable-depth's 10 to 200; runs on the fast path).
STEP_OVERHEAD_LAYERS = 12


def run_size(run: RunConfig) -> tuple[Any, ...]:
    """What makes runs take the same time: the model's shape and the training's length."""
    return (run.model, run.hidden, run.blocks, run.epochs, run.batch_size, run.train_size,
            run.validation)  # fmt: skip


def expected_cost(run: RunConfig) -> float:
    """A run's expected time in arbitrary units: steps × (weight layers + the step's
    overhead, :data:`STEP_OVERHEAD_LAYERS`)."""
    images = TRAIN_IMAGES - run.validation
    if run.train_size is not None:
        images = min(images, run.train_size)
    steps = run.epochs * math.ceil(images / run.batch_size)
    blocks = run.blocks or 0
    layers = {
        "residual_mlp": 2 * blocks + 2,  # two per block, the input and output layers
        "resnet": 4 * blocks + 3,  # two convolutions per block and stage, stem, projection, head
    }.get(run.model, len(run.hidden) + 1)
    return float(steps * (layers + STEP_OVERHEAD_LAYERS))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker for this process now, without warnings.

    The tracker is a process of its own that outlives a driver killed outright
    (SIGKILL) and frees the semaphores of its worker processes' queues; it then says
    "There appear to be N leaked semaphore objects to clean up" on the study's
    stderr: its job done, as noise after a kill the user meant. Its warnings are
    turned off in it alone (the ``-W`` option it is started with); a tracker already
    running is left as it is.
    """
    from multiprocessing import resource_tracker

    saved = list(sys.warnoptions)
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions[:] = saved


def _leave(signum: int, frame: object) -> None:
    # Once: a terminal's Ctrl-C reaches the worker and the driver, which then stops its
    # workers with SIGINT too; a second one must not cut the worker's unwinding short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(1)


def exit_with_parent(parent: int, every: float = 0.5) -> None:
    """In a worker process: end it as soon as ``parent`` (the study's driver) is gone.

    A driver killed outright (SIGKILL, a closed terminal) cannot stop its
    workers; without this they would train their runs to the end for nobody.
    A thread checks every ``every`` seconds whether the worker's parent is
    still ``parent``.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    # Stopped by its driver (or a terminal's Ctrl-C): leave quietly, unwinding so that
    # what the run holds is released, without a KeyboardInterrupt traceback per worker.
    signal.signal(signal.SIGINT, _leave)

    threading.Thread(target=watch, name="signalprop-parent-watch", daemon=True).start()


def _drive(
    pool: Executor,
    todo: list[RunConfig],
    arguments: tuple[Any, ...],
    slots: int,
    report: Callable[[RunConfig, dict[str, Any], int], None],
) -> None:
    """Keep ``slots`` runs submitted to ``pool``; report each as it finishes.

    A run whose future raises is reported as failed: an error of its own, or, on a
    Dask cluster, a worker that died under it more often than the scheduler retries
    (a worker that dies once has its run started again elsewhere by the scheduler).
    """
    pending: dict[Future[dict[str, Any]], RunConfig] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < slots:
                config = queue.pop(0)
                pending[pool.submit(execute, config, *arguments)] = config
            completed, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in completed:
                config = pending.pop(future)
                try:
                    record = future.result()
                except (BrokenProcessPool, FileNotFoundError):
                    # The local pool is gone with every run in it, or a worker cannot read
                    # the data: no run's fault, so nothing is recorded; a rerun resumes.
                    raise
                except Exception as error:
                    record = failed(config, error)
                # Running from now on: those pending, and the next ones about to start.
                report(config, record, min(slots, len(pending) + len(queue)))
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or failed: keep what finished meanwhile, cancel
        # the rest, and stop the local workers now rather than when their runs end.
        for future, config in list(pending.items()):
            if future.done() and not future.cancelled() and future.exception() is None:
                report(config, future.result(), 0)
            else:
                future.cancel()
        if isinstance(pool, ProcessPoolExecutor):
            _stop_workers(pool)
        raise


#: Seconds a worker is given to stop after SIGINT (then SIGTERM).
STOP_GRACE = 5.0


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End a local pool's workers at once: a run they are training is cancelled (it is
    not recorded, and the same command trains it again)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    # SIGINT first: the worker unwinds as on Ctrl-C and releases what it holds (a
    # terminated worker leaves its semaphores to multiprocessing's "leaked" warning).
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGINT)
    for worker in workers:
        worker.join(timeout=STOP_GRACE)
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=STOP_GRACE)
