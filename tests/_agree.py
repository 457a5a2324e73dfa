"""A monitor's first record against what ``diagnose`` measured on the same batch."""

from __future__ import annotations

from typing import Any

import pytest

from signalprop.monitor import QUANTITIES


def assert_first_record_is_the_report(
    history: Any, report: Any, batch: int, rel: float, abs_tol: float = 1e-12
) -> None:
    """Same layers, and each of diagnose's quantities equal to ``rel`` (relative) or
    ``abs_tol`` (absolute: a mean that is zero but for round-off)."""
    assert [layer.name for layer in history.layers] == [layer.name for layer in report.layers]
    record = history.records[0]
    assert record.step == 1 and record.batch_size == batch
    for index, layer in enumerate(report.layers):
        for quantity in QUANTITIES[:8]:
            expected, got = getattr(layer, quantity), record.values[quantity][index]
            if expected is None:
                assert got is None, (quantity, layer.name)
            else:
                assert got == pytest.approx(expected, rel=rel, abs=abs_tol), (quantity, layer.name)
