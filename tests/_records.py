"""Study result records made by hand, for report tests with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from signalprop.study._runner import RESULTS, SPEC


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


def write_study(directory: Path, spec: Any, records: list[dict[str, Any]]) -> None:
    """``spec.json`` and ``results.jsonl`` as the runner leaves them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SPEC).write_text(json.dumps(spec.to_dict()))
    (directory / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
