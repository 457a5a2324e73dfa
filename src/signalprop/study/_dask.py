"""Studies on a Dask cluster: the only module that imports Dask (the ``dask`` extra).

:func:`cluster` connects to a running scheduler (``--scheduler tcp://HOST:8786``)
or starts a ``distributed.LocalCluster`` of single-threaded worker processes
(``--cluster local:N``), and yields the ``concurrent.futures.Executor`` that
:func:`~signalprop.study.run_study` takes. The scheduler starts the run of a
worker that dies on another worker; a run that kills its worker more often
than ``distributed.scheduler.allowed-failures`` (3) comes back as an error and
is recorded as failed.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

__all__ = ["Cluster", "cluster", "local_workers"]

#: How long connecting to a scheduler may take before it counts as unreachable.
CONNECT_TIMEOUT = "10s"


@dataclass
class Cluster:
    """A connected cluster: its executor, how many runs it trains at once, and what it is."""

    executor: Executor
    slots: int
    description: str
    client: Any


def local_workers(text: str) -> int:
    """``"local:4"`` -> 4; raises ``ValueError`` for anything else."""
    match = re.fullmatch(r"local:(\d+)", text.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"--cluster must be local:N with N >= 1 worker processes, not {text!r}")
    return int(match.group(1))


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "studies on a Dask cluster need Dask: pip install 'signalprop[dask]'"
        ) from None
    return distributed


@contextlib.contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None) -> Iterator[Cluster]:
    """Connect to ``scheduler``, or start a local cluster of ``workers`` processes.

    Raises:
        ConnectionError: The scheduler cannot be reached (one line, with the address).
        ImportError: Dask is not installed.
    """
    distributed = _distributed()
    import dask

    # For the workers the nannies start, and restart.
    with dask.config.set(WORKER_SETTINGS), _connected(distributed, scheduler, workers) as live:
        yield live


#: Settings for the workers of a local cluster, each measured on training runs:
#: * Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off
#:   glibc's adaptive mmap threshold: every tensor of 128 KB or more is then a fresh mmap
#:   and its page faults (runs trained 15 % slower: 18.8 s against 16.4 s, two runs);
#: * a worker samples its tasks' Python stacks every 10 ms for its profiler, taking the
#:   GIL from a training loop that runs Python between kernels (9 % slower: 37.7 s
#:   against 34.7 s, four runs).
WORKER_SETTINGS = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}


@contextlib.contextmanager
def _connected(distributed: Any, scheduler: str | None, workers: int | None) -> Iterator[Cluster]:
    local = None
    if scheduler is None:
        if workers is None:
            raise ValueError("give a scheduler address or a number of local workers")
        local = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = distributed.Client(local)
        description = f"a local Dask cluster of {workers} worker process(es)"
    else:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConnectionError(
                f"--scheduler {scheduler}: no Dask scheduler answers there ({reason})"
            ) from None
        description = f"the Dask cluster at {scheduler}"
    try:
        slots = max(1, sum(client.nthreads().values()))
        yield Cluster(client.get_executor(pure=False), slots, description, client)
    finally:
        client.close()
        if local is not None:
            local.close()
