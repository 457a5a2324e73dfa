"""The scheduler and worker of signalprop's local Dask cluster: Dask's own, serving no HTTP.

Dask's scheduler and workers each start an HTTP server (the dashboard, metrics,
health checks) even when the dashboard is turned off: the scheduler on port 8787
(and "Port 8787 is already in use" when another cluster has it), each worker on a
port of its own. A local cluster that trains a study needs none of them, and a
port nobody asked for is one more way in. These classes start no HTTP server
unless a dashboard address is given (``signalprop study --cluster local:N
--dashboard``).

Imported only where a local cluster is started (it imports Dask); the worker
processes import it by name.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import distributed

__all__ = ["QuietScheduler", "QuietWorker"]


class QuietScheduler(distributed.Scheduler):
    """A Dask scheduler that serves HTTP only at a dashboard address it is given."""

    def start_http_server(
        self, routes: Any, dashboard_address: Any, default_port: int = 0, ssl_options: Any = None
    ) -> None:
        if dashboard_address is not None:
            super().start_http_server(  # type: ignore[no-untyped-call]
                routes, dashboard_address, default_port, ssl_options
            )


class QuietWorker(distributed.Worker):
    """A Dask worker that serves no HTTP: no dashboard, no metrics, no open port; and
    that leaves Ctrl-C to the study's driver.

    A terminal's Ctrl-C reaches every process of the study, each worker process
    included, where it would end Dask's event loop with a traceback. The driver
    answers it by closing the cluster, and the nannies stop their workers.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        super().__init__(*args, **kwargs)

    def start_http_server(
        self, routes: Any, dashboard_address: Any, default_port: int = 0, ssl_options: Any = None
    ) -> None:
        pass
