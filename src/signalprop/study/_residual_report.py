"""The report's section for residual models: accuracy and the stream's growth per depth.

For each model kind, number of blocks and initialization (PyTorch's default,
or autoinit with its residual criterion), over seeds: the final validation
accuracy, and the residual stream's RMS growth at initialization (after the
last block over entering the first) as measured on a batch and as the mean
field predicts it from the weights (:mod:`signalprop._residual`), with their
ratio. With the specification's goals (``accuracy_of_blocks``,
``growth_tolerance``), each autoinit row says whether it meets them.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from signalprop.study._runner import final_accuracy
from signalprop.study._spec import describe_autoinit

__all__ = ["is_residual", "residual_section"]


def is_residual(results: list[dict[str, Any]]) -> bool:
    """Whether the study's runs are residual models (their own section)."""
    return any(r["config"].get("model", "mlp") != "mlp" for r in results)


def _init(config: dict[str, Any]) -> str:
    if config.get("autoinit") is None:
        return str(config["init"])
    return f"autoinit ({describe_autoinit(config['autoinit'])})"


def _geometric(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in finite)) if finite else math.nan


def _cell(value: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}g}"


def residual_section(results: list[dict[str, Any]], goals: dict[str, Any] | None) -> list[str]:
    """Markdown: one row per model × blocks × initialization."""
    cells: dict[tuple[str, int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        config = record["config"]
        key = (config.get("model", "mlp"), config.get("blocks") or 0, config["hidden"][0])
        cells[(*key, _init(config))].append(record)
    thresholds = {int(k): v for k, v in ((goals or {}).get("accuracy_of_blocks") or {}).items()}
    tolerance = (goals or {}).get("growth_tolerance")
    lines = [
        "## Residual networks: accuracy and the stream's growth",
        "",
        "Growth: the residual stream's RMS after the last block over its RMS entering the "
        "first, at initialization (training mode, on the 256 examples of the diagnose "
        "snapshot): *measured*, and *predicted* by the mean field from the weights as drawn "
        "(signalprop._residual.predict_stream). Geometric means over seeds; the ratio column "
        "gives each seed's measured / predicted.",
        "",
        "| model | blocks | width | initialization | seeds | final val. accuracy (mean ± std) "
        "| growth measured | growth predicted | measured / predicted | residual criterion "
        + ("| goal " if thresholds or tolerance is not None else "")
        + "|",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if thresholds or tolerance else ""),
    ]
    for (model, blocks, width, init), records in sorted(
        cells.items(), key=lambda item: (item[0][0], item[0][1], item[0][3] != "pytorch_default")
    ):
        records.sort(key=lambda r: r["config"]["seed"])
        finals = [final_accuracy(r) for r in records]
        finite = [v for v in finals if math.isfinite(v)]
        mean = statistics.fmean(finite) if finite else math.nan
        std = statistics.stdev(finite) if len(finite) > 1 else 0.0
        streams = [r.get("residual") or {} for r in records]
        measured = [s.get("measured_growth", math.nan) for s in streams]
        predicted = [s.get("predicted_growth", math.nan) for s in streams]
        ratios = [m / p if p and math.isfinite(m) and math.isfinite(p) else math.nan
                  for m, p in zip(measured, predicted, strict=True)]  # fmt: skip
        criterion = next((s.get("criterion") for s in streams if s.get("criterion")), None)
        row = (
            f"| {model} | {blocks} | {width} | {init} | {len(records)} | "
            f"{_cell(mean, 4)} ± {_cell(std, 2)} | {_cell(_geometric(measured))} | "
            f"{_cell(_geometric(predicted))} | "
            + ", ".join(_cell(r, 3) for r in ratios)
            + f" | {criterion or '—'} |"
        )
        if thresholds or tolerance is not None:
            verdicts = []
            if records[0]["config"].get("autoinit") is not None:
                threshold = thresholds.get(blocks)
                if threshold is not None and model == "residual_mlp":
                    ok = math.isfinite(mean) and mean >= threshold
                    verdicts.append(f"accuracy ≥ {threshold:.2f}: {'met' if ok else 'NOT met'}")
            if tolerance is not None and any(math.isfinite(r) for r in ratios):
                ok = all(math.isfinite(r) and abs(r - 1) <= tolerance for r in ratios)
                verdicts.append(f"growth within {tolerance:.0%}: {'met' if ok else 'NOT met'}")
            row += f" {'; '.join(verdicts) or '—'} |"
        lines.append(row)
    lines.append("")
    return lines
