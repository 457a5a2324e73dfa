"""TensorBoard event files for a Monitor: the only module that imports TensorBoard.

Tags, in forward order of the layers (``NNN`` is the layer's position, from 000):

* ``<quantity>/NNN_<layer>``: one scalar per layer and quantity of
  :data:`~signalprop.monitor.QUANTITIES` at every monitored step (all of a
  record's scalars travel in one event);
* ``weights/NNN_<layer>`` and ``activations/NNN_<layer>``: histograms at every
  ``histograms_every``-th monitored step;
* ``signalprop/non_finite`` and ``signalprop/findings``: text, when a NaN or
  Inf appears and when the monitor is closed.

The events are made and written by a thread of their own, fed through a
bounded queue (a training step waits only when it is full): a record's
thousand scalars and its histograms cost the training loop a copy of the
tensors drawn, not their protocol buffers. The queue is emptied into the
files when the monitor is closed, and at the interpreter's exit when it is not
(a training loop that raised): nothing is lost.
"""

from __future__ import annotations

import atexit
import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from signalprop.monitor._history import QUANTITIES, NonFiniteEvent, Record

__all__ = ["TensorBoardLog", "tag"]

#: Jobs waiting for the writer thread before a training step waits for it.
QUEUE_SIZE = 32


def tag(group: str, index: int, name: str) -> str:
    """A TensorBoard tag for one layer: ``"grad_pre_rms/003_features.3"``."""
    return f"{group}/{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def histogram(values: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """The arguments of ``SummaryWriter.add_histogram_raw`` for ``values`` (float64,
    finite) in the bins between ``edges``: the numbers ``add_histogram`` writes.

    Counted as ``np.histogram`` counts them (the sorted values searched for each
    edge: bin ``i`` holds ``edges[i] <= v < edges[i + 1]``, the last bin also
    ``v == edges[-1]``), without its checks and copies, which cost more than the
    counting on a layer's tensor. As ``add_histogram`` does, only the bins from
    the first to the last one holding a value are kept, with an empty bin before
    them for the lowest limit.
    """
    ordered = np.sort(values)
    below = np.searchsorted(ordered, edges[:-1], side="left")
    counts = np.diff(np.append(below, np.searchsorted(ordered, edges[-1:], side="right")))
    filled = np.flatnonzero(counts)
    start, end = (int(filled[0]), int(filled[-1]) + 1) if len(filled) else (0, 0)
    counts = counts[start - 1 : end] if start > 0 else np.concatenate([[0], counts[:end]])
    return {
        "min": values.min(),
        "max": values.max(),
        "num": len(values),
        "sum": values.sum(),
        "sum_squares": values.dot(values),
        "bucket_limits": edges[start : end + 1].tolist(),
        "bucket_counts": counts.tolist(),
    }


class TensorBoardLog:
    """Writes a Monitor's records as TensorBoard scalars, histograms and text.

    Every method only queues its job; an error of the writer thread (``OSError``
    on a full disk) is raised by the next call, after which nothing more is
    written.
    """

    def __init__(self, directory: str | Path) -> None:
        try:
            from tensorboard.compat.proto.summary_pb2 import Summary
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # tensorboard is an optional extra
            raise ImportError(
                "TensorBoard output needs the tensorboard package: "
                "pip install 'signalprop[tensorboard]'"
            ) from error
        self.writer: Any = SummaryWriter(log_dir=str(directory))
        self._summary: Any = Summary
        self._tags: dict[str, list[str]] = {}
        self._names: list[str] = []
        self._edges: np.ndarray | None = None  # of the bins, add_histogram's "tensorflow"
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(QUEUE_SIZE)
        self._error: Exception | None = None  # of the writer thread, not yet raised
        self._stopped = False  # after an error: jobs are dropped
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="signalprop-tensorboard")
        self._thread.daemon = True  # a loop that raised still exits; atexit empties the queue
        self._thread.start()
        atexit.register(self._at_exit)

    # ------------------------------------------------------------ the training thread
    def record(self, names: list[str], record: Record) -> None:
        """Queue one record's scalars: one event holding a scalar per layer and quantity."""
        if names != self._names:
            self._names = list(names)
            self._tags = {q: [tag(q, i, n) for i, n in enumerate(names)] for q in QUANTITIES}
        tags = self._tags
        self._put(lambda: self._write_scalars(tags, record))

    def histograms(
        self, step: int, group: str, tensors: dict[int, Tensor], names: list[str]
    ) -> None:
        """Queue histograms of ``tensors`` (copied now: the weights change in place)."""
        copies = [
            (tag(group, index, names[index]), tensor.detach().float().cpu().clone())
            for index, tensor in sorted(tensors.items())
        ]
        self._put(lambda: self._write_histograms(step, copies))

    def event(self, event: NonFiniteEvent) -> None:
        """Queue a non-finite event's text, written and flushed at once."""
        self._put(lambda: self._write_text("signalprop/non_finite", event.message, event.step))

    def close(self, step: int, summary: str) -> None:
        """Queue the findings' text, write everything queued, and close the files."""
        text = "    " + summary.replace("\n", "\n    ")
        self._put(lambda: self._write_text("signalprop/findings", text, step))
        self._finish()
        self._raise()

    def abort(self) -> None:
        """Stop writing (after an error): what is queued is dropped, the files closed."""
        self._stopped = True
        self._finish()
        self._error = None

    # ------------------------------------------------------------ the queue
    def _put(self, job: Callable[[], None]) -> None:
        self._raise()
        if not self._closed:
            self._jobs.put(job)

    def _raise(self) -> None:
        """Raise, once, what went wrong in the writer thread."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def flush(self) -> None:
        """Wait until everything queued so far is in the files."""
        self._jobs.join()
        if not self._closed and not self._stopped:
            self.writer.flush()
        self._raise()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if not self._stopped:
                    try:
                        job()
                    except Exception as error:  # raised on the training thread by the next call
                        self._stopped = True
                        self._error = error
            finally:
                self._jobs.task_done()

    def _finish(self) -> None:
        """Write what is queued and close the files (once)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        self._jobs.put(None)
        self._thread.join()
        try:
            self.writer.close()
        except OSError as error:
            if not self._stopped:
                self._stopped = True
                self._error = error

    def _at_exit(self) -> None:
        """At the interpreter's exit, a monitor never closed still writes its queue."""
        self._finish()

    # ------------------------------------------------------------ the writer thread
    def _write_scalars(self, tags: dict[str, list[str]], record: Record) -> None:
        value = self._summary.Value
        values = [
            value(tag=name, simple_value=number)
            for quantity in QUANTITIES
            for name, number in zip(tags[quantity], record.values[quantity], strict=True)
            if number is not None
        ]
        if values:
            self.writer.file_writer.add_summary(self._summary(value=values), record.step)

    def _write_histograms(self, step: int, copies: list[tuple[str, Tensor]]) -> None:
        if self._edges is None:
            self._edges = np.asarray(self.writer.default_bins, dtype=np.float64)
        for name, values in copies:
            if values.numel() and bool(values.isfinite().all()):
                numbers = histogram(values.numpy().reshape(-1).astype(np.float64), self._edges)
                self.writer.add_histogram_raw(name, global_step=step, **numbers)

    def _write_text(self, name: str, text: str, step: int) -> None:
        self.writer.add_text(name, text, step)
        self.writer.flush()
