"""A study result record made by hand, for report tests with known answers."""

from __future__ import annotations

from typing import Any


def record(config: Any, accuracy: float) -> dict[str, Any]:
    """The record the runner would write for ``config`` ending at ``accuracy``."""
    return {
        "run_id": config.run_id,
        "config": config.to_dict(),
        "history": {"val_accuracy": [accuracy], "stopped": None},
        "layers": {"start": {}, "end": {}},
        "findings": {"start": [], "end": []},
        "autoinit": None,
        "wall_time": 1.0,
        "threads": 1,
        "versions": {},
    }
