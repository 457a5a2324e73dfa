"""Stopping a training run from another thread, between two of its steps.

A study's run on a Dask worker runs in one of the worker's threads, which Dask
cannot interrupt: cancelling its future only tells the worker that nobody wants
the result any more. The thread that watches for that (see
:func:`signalprop.study._dask.run_cancellable`) sets an event; :func:`check`,
called by :func:`signalprop.train.fit` before each step, then raises
:class:`RunCancelledError` in the training thread, which unwinds and frees the worker
at once instead of training on for nobody.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["RunCancelledError", "cancel_on", "check"]

_local = threading.local()


class RunCancelledError(Exception):
    """The run was cancelled by whoever started it (a study's driver that stopped)."""


@contextlib.contextmanager
def cancel_on(event: threading.Event) -> Iterator[None]:
    """Within this block, :func:`check` in this thread raises once ``event`` is set."""
    previous = getattr(_local, "event", None)
    _local.event = event
    try:
        yield
    finally:
        _local.event = previous


def check() -> None:
    """Raise :class:`RunCancelledError` if this thread's run was cancelled."""
    event = getattr(_local, "event", None)
    if event is not None and event.is_set():
        raise RunCancelledError("the run was cancelled: its study's driver no longer wants it")
