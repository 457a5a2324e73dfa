"""TensorBoard event files for a Monitor: the only module that imports TensorBoard.

Tags, in forward order of the layers (``NNN`` is the layer's position, from 000):

* ``<quantity>/NNN_<layer>``: one scalar per layer and quantity of
  :data:`~signalprop.monitor.QUANTITIES` at every monitored step;
* ``weights/NNN_<layer>`` and ``activations/NNN_<layer>``: histograms at every
  ``histograms_every``-th monitored step;
* ``signalprop/non_finite`` and ``signalprop/findings``: text, when a NaN or
  Inf appears and when the monitor is closed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from signalprop.monitor._history import QUANTITIES, NonFiniteEvent, Record

__all__ = ["TensorBoardLog", "tag"]


def tag(group: str, index: int, name: str) -> str:
    """A TensorBoard tag for one layer: ``"grad_pre_rms/003_features.3"``."""
    return f"{group}/{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


class TensorBoardLog:
    """Writes a Monitor's records as TensorBoard scalars, histograms and text."""

    def __init__(self, directory: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # tensorboard is an optional extra
            raise ImportError(
                "TensorBoard output needs the tensorboard package: "
                "pip install 'signalprop[tensorboard]'"
            ) from error
        self.writer: Any = SummaryWriter(log_dir=str(directory))

    def record(self, names: list[str], record: Record) -> None:
        add = self.writer.add_scalar
        for quantity in QUANTITIES:
            for index, value in enumerate(record.values[quantity]):
                if value is not None:
                    add(tag(quantity, index, names[index]), value, record.step)

    def histograms(
        self, step: int, group: str, tensors: dict[int, Tensor], names: list[str]
    ) -> None:
        for index, tensor in sorted(tensors.items()):
            values = tensor.detach().float()
            if values.numel() and bool(values.isfinite().all()):
                self.writer.add_histogram(tag(group, index, names[index]), values, step)

    def event(self, event: NonFiniteEvent) -> None:
        self.writer.add_text("signalprop/non_finite", event.message, event.step)
        self.writer.flush()

    def close(self, step: int, summary: str) -> None:
        self.writer.add_text("signalprop/findings", "    " + summary.replace("\n", "\n    "), step)
        self.writer.close()
