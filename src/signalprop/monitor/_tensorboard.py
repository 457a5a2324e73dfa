"""TensorBoard event files for a Monitor: the only module that imports TensorBoard.

Tags, in forward order of the layers (``NNN`` is the layer's number, from 001 as signalprop
numbers layers everywhere; ``<layer>`` its name in the model):

* ``<quantity>/NNN_<layer>``: one scalar per layer and quantity of
  :data:`~signalprop.monitor.QUANTITIES` at every monitored step (all of a
  record's scalars travel in one event);
* ``weights/NNN_<layer>`` and ``activations/NNN_<layer>``: histograms at every
  ``histograms_every``-th monitored step, each of :data:`BUCKETS` equal buckets from
  the tensor's least to its greatest value, as TensorBoard's own
  ``tf.summary.histogram`` draws them (``SummaryWriter.add_histogram``'s default,
  1,549 buckets growing by 10 % from 1e-12, costs a sort and kept ~560 buckets a
  layer, which TensorBoard resamples to 30 to draw);
* ``signalprop/non_finite`` and ``signalprop/findings``: text, when a NaN or
  Inf appears and when the monitor is closed.

The events are made and written by a thread of their own, fed through a
bounded queue (a training step waits only when it is full): a record's
thousand scalars and its histograms cost the training loop a copy of the
tensors drawn, not their protocol buffers. The queue is emptied into the
files when the monitor is closed, and at the interpreter's exit when it is not
(a training loop that raised): nothing is lost.

The event file is written here (:class:`EventFile`), in TensorBoard's record
format, with the CRC-32C checksums of ``google-crc32c``: TensorBoard's own
writer computes them in pure Python, a byte at a time (200 ms for one set of a
100-layer net's histograms, against 1 ms), and that thread holds the
interpreter lock the training loop needs.
"""

from __future__ import annotations

import atexit
import itertools
import os
import queue
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from signalprop.monitor._history import QUANTITIES, NonFiniteEvent, Record

__all__ = ["TensorBoardLog", "tag"]

#: Jobs waiting for the writer thread before a training step waits for it.
QUEUE_SIZE = 32


def tag(group: str, row: int, name: str) -> str:
    """A TensorBoard tag for the layer in ``row`` (from 0) of the history: its number,
    counted from 1 as signalprop numbers layers everywhere, then its name in the model.

    Example:
        >>> tag("grad_pre_rms", 0, "features.0")
        'grad_pre_rms/001_features.0'
    """
    return f"{group}/{row + 1:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


#: Buckets of a histogram (TensorBoard's own default for ``tf.summary.histogram``).
BUCKETS = 30


class TensorBoardLog:
    """Writes a Monitor's records as TensorBoard scalars, histograms and text.

    Every method only queues its job; an error of the writer thread (``OSError``
    on a full disk) is raised by the next call, after which nothing more is
    written.
    """

    def __init__(self, directory: str | Path) -> None:
        try:
            from tensorboard.compat.proto.summary_pb2 import Summary
            from torch.utils.tensorboard import summary
        except ImportError as error:  # tensorboard is an optional extra
            raise ImportError(
                "TensorBoard output needs the tensorboard package: "
                "pip install 'signalprop[tensorboard]'"
            ) from error
        self.file = EventFile(directory)
        self._summary: Any = Summary
        self._make_histogram: Callable[..., Any] = summary.make_histogram
        self._text_summary: Callable[..., Any] = summary.text
        self._tags: dict[str, list[str]] = {}
        self._names: list[str] = []
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
            self.file.flush()
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
            self.file.close()
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
            self.file.add(self._summary(value=values), record.step)

    def _write_histograms(self, step: int, copies: list[tuple[str, Tensor]]) -> None:
        """One event holding every layer's histogram (``add_histogram(bins=BUCKETS)``'s
        numbers: counted and summed in float64)."""
        value = self._summary.Value
        values = [
            value(tag=name, histo=self._make_histogram(tensor.double().numpy(), BUCKETS))
            for name, tensor in copies
            if tensor.numel() and bool(tensor.isfinite().all())
        ]
        if values:
            self.file.add(self._summary(value=values), step)

    def _write_text(self, name: str, text: str, step: int) -> None:
        self.file.add(self._text_summary(name, text), step)
        self.file.flush()


_FILES = itertools.count()  # a process's event files, for unique names


class EventFile:
    """A TensorBoard event file, written as TensorBoard's writer writes one: the
    file named ``events.out.tfevents.<time>.<host>.<pid>.<n>``, a first event
    giving the format's version, then one event per :meth:`add`, each a record of
    its length, the length's masked CRC-32C, the event and the event's masked
    CRC-32C (all little-endian).

    Not thread-safe: the Monitor's writer thread is its one user.
    """

    def __init__(self, directory: str | Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._event: Any = Event
        self._crc = _masked_crc32c()
        host, pid, number = socket.gethostname(), os.getpid(), next(_FILES)
        name = f"events.out.tfevents.{int(time.time()):010d}.{host}.{pid}.{number}"
        self.path = Path(directory) / name
        self._file = open(self.path, "wb")  # noqa: SIM115 -- closed by close()
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add(self, summary: Any, step: int) -> None:
        """Append one event holding ``summary`` (a ``Summary`` protocol buffer)."""
        self._write(self._event(wall_time=time.time(), step=step, summary=summary))

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        crc = self._crc
        self._file.write(
            header + struct.pack("<I", crc(header)) + data + struct.pack("<I", crc(data))
        )

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _masked_crc32c() -> Callable[[bytes], int]:
    """The record format's checksum: CRC-32C, rotated right by 15 bits plus a constant.

    ``google-crc32c`` (in the ``tensorboard`` extra) computes it in C; without it,
    TensorBoard's own pure-Python one is used, the same numbers, 200 times slower.
    """
    try:
        from google_crc32c import value
    except ImportError:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        return masked_crc32c  # type: ignore[no-any-return]

    def masked(data: bytes) -> int:
        crc = int(value(data))
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    return masked
