"""Studies on a Dask cluster: the only modules that import Dask (the ``dask`` extra).

:func:`cluster` connects to a running scheduler (``--scheduler tcp://HOST:8786``,
or ``tls://HOST:8786`` with certificates) or starts a local cluster of
single-threaded worker processes (``--cluster local:N``), and yields the
``concurrent.futures.Executor`` that :func:`~signalprop.study.run_study` takes.
The scheduler starts the run of a worker that dies on another worker; a run
that kills its worker more often than ``distributed.scheduler.allowed-failures``
(3) comes back as an error and is recorded as failed.

Dask runs the code its clients send: whoever reaches a scheduler's port runs
code as the user who started the workers. The local cluster therefore listens on
127.0.0.1 only, speaks TLS with certificates made for it alone (another user of
this machine who reaches the port cannot connect), and opens no HTTP port unless
a dashboard is asked for.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signalprop import _cancel

__all__ = [
    "Cluster",
    "check_cluster",
    "cluster",
    "run_cancellable",
    "security_from_file",
    "tls_security",
]

#: How long connecting to a scheduler may take before it counts as unreachable.
CONNECT_TIMEOUT = "10s"
#: Where ``--dashboard`` serves the local cluster's dashboard (loopback only; Dask
#: takes another free port when this one is in use).
DASHBOARD_ADDRESS = "127.0.0.1:8787"
#: The only interface the local cluster's scheduler, nannies and workers listen on.
LOOPBACK = "127.0.0.1"


@dataclass
class Cluster:
    """A connected cluster: its executor, how many runs it trains at once, what it is,
    its Dask client, and the dashboard's address (None: no dashboard served).

    Examples:
        ```python
        from signalprop.study import cluster

        with cluster('tls://10.0.0.5:8786', security=security) as dask:
            print(dask.description, dask.slots, dask.dashboard)
        ```
    """

    executor: Executor
    slots: int
    description: str
    client: Any
    dashboard: str | None = None


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "studies on a Dask cluster need Dask: pip install 'signalprop[dask]'"
        ) from None
    return distributed


def _readable(path: str | os.PathLike[str], what: str) -> str:
    if not Path(path).is_file() or not os.access(path, os.R_OK):
        raise ValueError(f"{what} {str(path)!r} is not a readable file")
    return str(path)


def tls_security(ca_file: str, cert: str, key: str | None = None) -> Any:
    """A ``distributed.Security`` for a client of a TLS scheduler: the certificate
    authority that signed the scheduler's certificate, and this client's certificate
    and key (Dask's TLS is mutual: the scheduler checks the client's certificate too).
    ``key`` may be left out when it is appended to ``cert``.

    Raises:
        ValueError: A file is missing or unreadable (named, with the flag it came from).

    Examples:
        ```python
        from signalprop.study import cluster, tls_security

        security = tls_security('ca.pem', 'client.pem', 'client-key.pem')
        with cluster('tls://10.0.0.5:8786', security=security) as dask:
            ...
        ```
    """
    return _distributed().Security(
        require_encryption=True,
        tls_ca_file=_readable(ca_file, "--tls-ca-file"),
        tls_client_cert=_readable(cert, "--tls-cert"),
        tls_client_key=None if key is None else _readable(key, "--tls-key"),
    )


def security_from_file(path: str | os.PathLike[str]) -> Any:
    """The ``distributed.Security`` that a Dask configuration file describes (the YAML
    that ``dask scheduler`` and ``dask worker`` read from ``~/.config/dask``), e.g.::

        distributed:
          comm:
            require-encryption: true
            tls:
              ca-file: /etc/dask/ca.pem
              client: {cert: /etc/dask/client.pem, key: /etc/dask/client-key.pem}

    Raises:
        ValueError: The file cannot be read, is not Dask configuration, or names no
            client certificate and certificate authority.

    Examples:
        ```python
        from signalprop.study import cluster, security_from_file

        security = security_from_file('dask.yaml')   # Dask's own configuration format
        with cluster('tls://10.0.0.5:8786', security=security) as dask:
            ...
        ```
    """
    _distributed()
    import dask.config
    import yaml

    _readable(path, "--security")
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"--security {str(path)!r} is not YAML ({reason})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"--security {str(path)!r} holds no Dask configuration")
    with dask.config.set(dask.config.merge(dask.config.config, loaded)):
        security = _distributed().Security()
    if not (security.tls_ca_file and security.tls_client_cert):
        raise ValueError(
            f"--security {str(path)!r} names no TLS certificates (it needs "
            "distributed.comm.tls.ca-file and distributed.comm.tls.client.cert)"
        )
    return security


@contextlib.contextmanager
def cluster(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    security: Any = None,
    dashboard: bool = False,
) -> Iterator[Cluster]:
    """Connect to ``scheduler``, or start a local cluster of ``workers`` processes.

    Args:
        scheduler: A running scheduler's address: ``tcp://HOST:PORT``, or
            ``tls://HOST:PORT`` with ``security``.
        workers: Start a local cluster of this many single-threaded worker processes
            instead (on 127.0.0.1, over TLS with certificates made for it).
        security: A ``distributed.Security`` for a ``tls://`` scheduler, e.g. from
            :func:`tls_security` or :func:`security_from_file`.
        dashboard: Serve the local cluster's dashboard on 127.0.0.1:8787 (or the
            next free port; ``Cluster.dashboard`` says where). Without it the local
            cluster opens no HTTP port at all.

    Raises:
        ValueError: A combination that cannot work (``tls://`` without ``security``,
            ``security`` for a ``tcp://`` address, ``dashboard`` for a remote cluster).
        ConnectionError: The scheduler cannot be reached, or refused the connection
            (one line, with the address).
        ImportError: Dask is not installed.

    Examples:
        ```python
        from signalprop.study import cluster, load_spec, run_study

        with cluster(workers=2) as dask:   # two local workers, over TLS, on 127.0.0.1
            run_study(load_spec('quick'), 'runs/quick', executor=dask.executor, slots=dask.slots)
        ```
    """
    check_cluster(scheduler, workers, security, dashboard)
    distributed = _distributed()
    import dask

    # For the workers the nannies start, and restart.
    with (
        dask.config.set(WORKER_SETTINGS),
        _connected(distributed, scheduler, workers, security, dashboard) as live,
    ):
        yield live


def check_cluster(
    scheduler: str | None, workers: int | None, security: Any, dashboard: bool
) -> None:
    """Refuse a combination of :func:`cluster`'s arguments that cannot work (``ValueError``).

    Examples:
        >>> from signalprop.study import check_cluster
        >>> check_cluster(None, 2, None, False)   # a local cluster of 2 workers: fine
        >>> check_cluster('tcp://10.0.0.5:8786', 2, None, False)
        Traceback (most recent call last):
            ...
        ValueError: give a scheduler address or a number of local workers, not both
    """
    if (scheduler is None) == (workers is None):
        raise ValueError("give a scheduler address or a number of local workers, not both")
    if scheduler is None:
        if security is not None:
            raise ValueError("a local cluster makes its own certificates: give no security")
        return
    if dashboard:
        raise ValueError(f"--dashboard is for a local cluster; {scheduler} serves its own")
    tls = scheduler.startswith("tls://")
    if tls and security is None:
        raise ValueError(
            f"--scheduler {scheduler}: TLS needs certificates: give --tls-ca-file, "
            "--tls-cert and --tls-key, or --security FILE"
        )
    if not tls and security is not None:
        raise ValueError(
            f"--scheduler {scheduler}: certificates were given for a connection that "
            "would not use them; a TLS scheduler's address starts with tls://"
        )


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


def _local_cluster(distributed: Any, workers: int, dashboard: bool) -> Any:
    """A cluster of ``workers`` nannies, each with one single-threaded worker process,
    all on 127.0.0.1, speaking TLS with a certificate made for this cluster alone."""
    from signalprop.study._dask_nodes import QuietScheduler, QuietWorker
    from signalprop.study._runner import quiet_resource_tracker

    quiet_resource_tracker()  # the nannies' queues: no "leaked semaphore" after a kill
    security = distributed.Security.temporary()  # in memory; handed to the workers
    common = {"host": LOOPBACK, "protocol": "tls://", "security": security}
    scheduler = {
        "cls": QuietScheduler,
        "options": {
            **common,
            "port": 0,
            "dashboard": dashboard,
            "dashboard_address": DASHBOARD_ADDRESS if dashboard else None,
        },
    }
    worker = {
        "cls": distributed.Nanny,
        "options": {
            **common,
            "nthreads": 1,
            "worker_class": QuietWorker,
            "dashboard": False,
            "memory_limit": distributed.system.MEMORY_LIMIT // workers,
            "silence_logs": logging.CRITICAL,  # a failing run is recorded, not logged
        },
    }
    return distributed.SpecCluster(
        scheduler=scheduler,
        workers=dict.fromkeys(range(workers), worker),
        worker=worker,
        security=security,
        silence_logs=logging.ERROR,
        name="signalprop",
    )


#: Seconds between a run's looks at whether its future is still wanted.
WATCH_EVERY = 0.5


def run_cancellable(function: Callable[..., Any], *args: Any) -> Any:
    """In a Dask worker: ``function(*args)``, stopped within a step once its future is
    cancelled, or its client (the study's driver) is gone.

    Dask cannot interrupt a task's thread; the driver's ``future.cancel()`` only marks
    the task cancelled on its worker. A thread here looks every ``WATCH_EVERY`` seconds,
    and then has :func:`signalprop.train.fit` raise before its next step
    (:mod:`signalprop._cancel`), which frees the worker for the next study.
    """
    distributed = _distributed()
    worker = distributed.get_worker()
    key = worker.get_current_task()
    stop, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(WATCH_EVERY):
            task = worker.state.tasks.get(key)
            if task is None or task.state == "cancelled":
                stop.set()
                return

    threading.Thread(target=watch, name="signalprop-cancel-watch", daemon=True).start()
    try:
        with _cancel.cancel_on(stop):
            return function(*args)
    finally:
        done.set()


class DaskExecutor(Executor):
    """A Dask client's executor whose tasks stop when their futures are cancelled."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._executor.submit(run_cancellable, functools.partial(fn, **kwargs), *args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextlib.contextmanager
def _connected(
    distributed: Any, scheduler: str | None, workers: int | None, security: Any, dashboard: bool
) -> Iterator[Cluster]:
    local = None
    address = None
    if workers is not None:
        local = _local_cluster(distributed, workers, dashboard)
        client = distributed.Client(local, security=local.security)
        description = f"a local Dask cluster of {workers} worker process(es)"
        address = client.dashboard_link if dashboard else None
    else:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, security=security)
        except (OSError, TimeoutError, ssl.SSLError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if security is not None and "SSL" in reason:
                raise ConnectionError(
                    f"--scheduler {scheduler}: the TLS handshake failed ({reason}): is this "
                    "client's certificate signed by the authority the scheduler trusts, and "
                    "the scheduler's by --tls-ca-file?"
                ) from None
            raise ConnectionError(
                f"--scheduler {scheduler}: no Dask scheduler answers there ({reason})"
            ) from None
        description = f"the Dask cluster at {scheduler}"
    try:
        slots = max(1, sum(client.nthreads().values()))
        executor = DaskExecutor(client.get_executor(pure=False))
        yield Cluster(executor, slots, description, client, address)
    finally:
        client.close()
        if local is not None:
            local.close()
