"""Report sections for the criticality studies: a trainable-depth scan and initializations compared.

Both sections appear only for studies of their shape, so any study report can
call them:

* a *depth scan*: one activation, weights drawn with ``variance_scaling``
  (fan_in) over several σ_w², one σ_b², several depths — the experiment of
  Schoenholz et al. (2017). The accuracy over (σ_w², depth) is set against
  mean-field theory's trainable depth 6 ξ_c, and the boundaries are compared
  column by column;
* *initializations compared*: one depth, several activations, each under
  several initializations (its textbook pairing, autoinit criteria). A table
  of mean ± std per activation × initialization, with the phase each puts the
  hidden layers in.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from signalprop import meanfield as _meanfield
from signalprop.study._runner import CHANCE, final_accuracy
from signalprop.study._spec import activation_key, describe_autoinit

__all__ = ["depth_scan_section", "initializations_section"]

#: Accuracy thresholds reported besides the primary one, to show how the agreement depends on it.
SENSITIVITY = (0.2, 0.3, 0.4, 0.5, 0.6)
#: The order activations are listed in (the chapter's rule of thumb, best first).
ORDER = (
    "selu", "elu", "leaky_relu", "rrelu", "prelu", "relu", "gelu", "silu", "mish", "softplus",
    "tanh", "sigmoid",
)  # fmt: skip


def _activation_key(config: dict[str, Any]) -> str:
    """A row of the tables: the activation's name, or a cycle's label."""
    return activation_key(config["activation"])


def _shown(value: float) -> str:
    if math.isinf(value):
        return "∞"
    if math.isnan(value):
        return "—"
    return f"{value:.3g}" if value < 1e4 else f"{value:.1e}"


# ------------------------------------------------------------------ depth scan


def _is_depth_scan(configs: list[dict[str, Any]]) -> bool:
    if not configs:
        return False
    if len({_activation_key(c) for c in configs}) != 1 or {c["init"] for c in configs} != {
        "variance_scaling"
    }:
        return False
    if any(c.get("init_args", {}).get("mode", "fan_in") != "fan_in" for c in configs):
        return False
    if any(c.get("autoinit") is not None for c in configs):
        return False
    scales = {c["init_args"].get("scale") for c in configs}
    depths = {len(c["hidden"]) for c in configs}
    return (
        len(scales) > 1 and len(depths) > 1 and len({c.get("bias_var", 0.0) for c in configs}) == 1
    )


def _boundary(trained: np.ndarray, depths: list[int]) -> int | None:
    """The deepest depth reached from the shallowest before the first failure (None: none)."""
    last = None
    for ok, depth in zip(trained, depths, strict=True):
        if not ok:
            break
        last = depth
    return last


def _index(depth: int | None, depths: list[int]) -> int:
    return -1 if depth is None else depths.index(depth)


def _predicted(limit: float, depths: list[int]) -> int | None:
    inside = [d for d in depths if d <= limit]
    return inside[-1] if inside else None


def _agreement(
    accuracy: np.ndarray, depths: list[int], limits: list[float], threshold: float
) -> tuple[list[int | None], list[int | None], list[bool]]:
    with np.errstate(invalid="ignore"):
        trained = np.nan_to_num(accuracy, nan=0.0) >= threshold
    measured = [_boundary(trained[:, j], depths) for j in range(accuracy.shape[1])]
    predicted = [_predicted(limit, depths) for limit in limits]
    agree = [
        abs(_index(m, depths) - _index(p, depths)) <= 1
        for m, p in zip(measured, predicted, strict=True)
    ]
    return measured, predicted, agree


def depth_scan_section(results: list[dict[str, Any]], directory: Path) -> list[str]:
    """Accuracy over (σ_w², depth) against 6 ξ_c; empty unless the study is a depth scan."""
    configs = [r["config"] for r in results]
    if not _is_depth_scan(configs):
        return []
    activation = configs[0]["activation"]
    args = configs[0].get("activation_args", {})
    bias_var = float(configs[0].get("bias_var", 0.0))
    scales = sorted({float(c["init_args"]["scale"]) for c in configs})
    depths = sorted({len(c["hidden"]) for c in configs})
    cells: dict[tuple[int, float], list[float]] = defaultdict(list)
    for record in results:
        config = record["config"]
        cells[(len(config["hidden"]), float(config["init_args"]["scale"]))].append(
            final_accuracy(record)
        )
    accuracy = np.full((len(depths), len(scales)), np.nan)
    for (depth, scale), values in cells.items():
        finite = [v for v in values if math.isfinite(v)]
        accuracy[depths.index(depth), scales.index(scale)] = (
            statistics.fmean(finite) if finite else CHANCE
        )
    analyses = [_meanfield.analyze(activation, s, bias_var, **args) for s in scales]
    limits = [mf.trainable_depth for mf in analyses]
    best = float(np.nanmax(accuracy))
    threshold = CHANCE + (best - CHANCE) / 2
    measured, predicted, agree = _agreement(accuracy, depths, limits, threshold)
    critical = _meanfield.critical_weight_var(activation, bias_var, **args)

    from signalprop.plots import plot_trainable_depth

    fine = np.linspace(scales[0], scales[-1], 400)
    curve = np.array(
        [_meanfield.analyze(activation, s, bias_var, **args).trainable_depth for s in fine]
    )
    shown = np.where(np.isfinite(curve), np.minimum(curve, depths[-1] * 10), depths[-1] * 10)
    figure = plot_trainable_depth(
        accuracy,
        scales,
        depths,
        {"6ξ_c (mean-field prediction)": (fine, shown)},
        measured=measured,
        critical=critical,
    )
    figure.savefig(directory / "trainable_depth.png", dpi=100)

    lines = [
        "## Trainable depth: measured against mean-field theory",
        "",
        f"{activation} nets with σ_b² = {bias_var:g} over σ_w² ∈ {{{', '.join(map(_g, scales))}}} "
        f"and depth ∈ {{{', '.join(map(str, depths))}}}. Mean-field theory predicts "
        "that a net trains while its depth is below about 6 ξ_c (Schoenholz et al. 2017); "
        f"ξ_c diverges on the critical line (σ_w² = {_shown(critical or math.nan)} here).",
        "",
        "![accuracy over σ_w² and depth, with 6ξ_c](trainable_depth.png)",
        "",
        f"A run counts as trained when its final validation accuracy is at least halfway from "
        f"chance ({CHANCE:g}) to the study's best ({best:.4f}): {threshold:.4f}, a rule fixed "
        "before the results were seen. The measured boundary of a σ_w² column is the deepest "
        "depth reached from the shallowest before the first run that did not train; the "
        "predicted one is the deepest grid depth below 6 ξ_c. They agree when they are at "
        "most one grid step apart.",
        "",
        "| σ_w² | phase | χ₁ | c* | ξ_c | 6ξ_c | predicted boundary | measured boundary | agree |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scale, mf, p, m, ok in zip(scales, analyses, predicted, measured, agree, strict=True):
        lines.append(
            f"| {scale:g} | {mf.phase} | {mf.chi_1:.3f} | {mf.c_star:.3f} | {_shown(mf.xi_c)} "
            f"| {_shown(mf.trainable_depth)} | {p if p is not None else 'none'} "
            f"| {m if m is not None else 'none'} | {'yes' if ok else 'no'} |"
        )
    fraction = sum(agree) / len(agree)
    lines += [
        "",
        f"**Agreement: {sum(agree)} of {len(agree)} σ_w² columns ({fraction:.0%}) within one "
        "grid step.**",
        "",
        "The same comparison at other accuracy thresholds: "
        + "; ".join(
            f"{t:g}: {sum(_agreement(accuracy, depths, limits, t)[2])}/{len(agree)}"
            for t in SENSITIVITY
        )
        + ".",
        "",
        "Final validation accuracy (mean over seeds; a diverged run counts at chance):",
        "",
        "| depth | " + " | ".join(f"σ_w² {s:g}" for s in scales) + " |",
        "|---|" + "---|" * len(scales),
    ]
    for i, depth in enumerate(depths):
        row = " | ".join(_shown_accuracy(accuracy[i, j]) for j in range(len(scales)))
        lines.append(f"| {depth} | {row} |")
    return [*lines, ""]


def _g(value: float) -> str:
    return f"{value:g}"


def _shown_accuracy(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


# ------------------------------------------------------------ initializations


def _column(config: dict[str, Any]) -> str:
    """The initialization a run was trained from, as a column of the table."""
    auto = config.get("autoinit")
    if auto is None:
        return (
            "textbook"
            if config.get("init_choice") == "matching"
            else f"as drawn ({config['init']})"
        )
    if isinstance(auto, str):
        return f"autoinit variance ({auto})"
    return f"autoinit {describe_autoinit(auto)}"  # {}: "autoinit defaults"


def _baseline(columns: list[str]) -> str:
    """What the autoinit columns are compared with: the textbook pairing, else the init as drawn."""
    return next((c for c in columns if not c.startswith("autoinit")), columns[0])


def _phase_of(record: dict[str, Any]) -> tuple[str, float, bool] | None:
    """The phase and χ₁ the run's hidden layers start in, from the weights diagnose saw.

    None when there is no single answer: a cycle of activations has no one phase of
    its own activation (the caller says "mixed").
    """
    config = record["config"]
    if not isinstance(config["activation"], str):
        return None
    scales = record.get("layers", {}).get("start", {}).get("weight_scale_fan_in") or []
    hidden = [s for s in scales[2:-1] if s is not None]  # past the Flatten and the first layer
    if not hidden:
        return None
    weight_var = statistics.fmean(hidden)
    auto = record.get("autoinit") or {}
    bias_vars = [b for b in (auto.get("bias_vars") or [])[1:-1] if b is not None]
    bias_var = statistics.fmean(bias_vars) if bias_vars else float(config.get("bias_var", 0.0))
    # Biases that cancel the activation's mean (autoinit's centring of the logistic): the
    # centred activation's phase. Records before "offsets" was kept say so in their notes.
    centred = any(auto.get("offsets") or []) or any(
        "centred (its mean" in note for note in auto.get("notes") or []
    )
    try:
        mf = _meanfield.analyze(
            config["activation"],
            weight_var,
            bias_var,
            centred=centred,
            **config.get("activation_args", {}),
        )
    except ValueError:
        return None
    return mf.phase, mf.chi_1, mf.q_stable


def initializations_section(
    results: list[dict[str, Any]], goals: dict[str, Any] | None = None
) -> list[str]:
    """Mean ± std per activation × initialization; empty unless the study compares them.

    With ``goals`` (the specification's, see :mod:`signalprop.study._spec`), each
    autoinit column gets a column saying, row by row, whether its goal is met.
    """
    configs = [r["config"] for r in results]
    if not configs or len({len(c["hidden"]) for c in configs}) != 1:
        return []
    # Textbook first, then autoinit's criteria from the plain variance to the critical one.
    columns = sorted(
        {_column(c) for c in configs},
        key=lambda c: (c.startswith("autoinit"), "critical" in c, c),
    )
    if len(columns) < 2 or not any(c.get("autoinit") is not None for c in configs):
        return []
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        config = record["config"]
        cells[(_activation_key(config), _column(config))].append(record)
    cycles = {_activation_key(c) for c in configs if not isinstance(c["activation"], str)}
    activations = sorted(
        {_activation_key(c) for c in configs},
        key=lambda a: (a in cycles, ORDER.index(a) if a in ORDER else len(ORDER), a),
    )
    depth = len(configs[0]["hidden"])
    autoinit_columns = [c for c in columns if c.startswith("autoinit")]
    goal_columns = (
        [f"goal ({c})" if len(autoinit_columns) > 1 else "goal" for c in autoinit_columns]
        if goals
        else []
    )
    lines = [
        f"## Initializations compared ({depth} hidden layers)",
        "",
        "Final validation accuracy, mean ± std over seeds (a diverged run counts at chance, "
        "and is marked †), with the phase the initialization puts the hidden layers in and "
        "χ₁, read from the weights at the start by mean-field theory."
        + (
            " Textbook: the activation's own initializer (Glorot for the logistic and tanh, "
            "He for the ReLU family and GELU/SiLU, LeCun for SELU), zero biases."
            if "textbook" in columns
            else " As drawn: the initializer named, before autoinit."
        ),
        "",
        *_defaults_ran_as(results),
        *_goals_stated(goals, columns),
        "| activation | " + " | ".join(columns + goal_columns) + " |",
        "|---|" + "---|" * (len(columns) + len(goal_columns)),
    ]
    summary: dict[tuple[str, str], tuple[float, float, int]] = {}
    met = {True: 0, False: 0}
    for activation in activations:
        row = []
        for column in columns:
            records = cells.get((activation, column), [])
            if not records:
                row.append("—")
                continue
            finals = [final_accuracy(r) for r in records]
            scores = [v if math.isfinite(v) else CHANCE for v in finals]
            mean = statistics.fmean(scores)
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            summary[(activation, column)] = (mean, std, len(scores))
            diverged = sum(not math.isfinite(v) for v in finals)
            phase = _phase_of(records[0])
            text = (f"{mean:.4f} ± {std:.4f}" if len(scores) > 1 else f"{mean:.4f} (1 seed)") + (
                " †" * diverged
            )
            if activation in cycles:
                text += "<br>mixed"
            elif phase is not None:
                text += f"<br>{phase[0]}, χ₁ {phase[1]:.2f}" + ("" if phase[2] else ", q* unstable")
            row.append(text)
        if goals:
            for column in autoinit_columns:
                verdict = _goal_met(summary, activation, column, _baseline(columns), goals)
                row.append(verdict)
                if verdict != "—":
                    met[verdict == "met"] += 1
        lines.append(f"| {activation} | " + " | ".join(row) + " |")
    if goals:
        lines += ["", f"**Goals met: {met[True]} of {met[True] + met[False]} cells.**"]
    lines += ["", *_goals(summary, activations, columns), ""]
    return lines


def _defaults_ran_as(results: list[dict[str, Any]]) -> list[str]:
    """What autoinit's defaults were when the ``{}`` runs trained, from their records."""
    ran = sorted(
        {
            describe_autoinit(
                {k: r["autoinit"].get(k) for k in ("mode", "criterion", "distribution")}
            )
            for r in results
            if r["config"].get("autoinit") == {} and r.get("autoinit")
        }
    )
    if not ran:
        return []
    return [
        f"Autoinit defaults: called with no arguments but the model and a batch; it ran as "
        f"{' / '.join(ran)} (criterion, then what differs from truncated normal, analytic).",
        "",
    ]


def _goals_stated(goals: dict[str, Any] | None, columns: list[str]) -> list[str]:
    if not goals:
        return []
    parts = []
    if "accuracy" in goals:
        parts.append(f"a final accuracy of at least {goals['accuracy']:.2f}")
    for name, threshold in sorted(goals.get("accuracy_of", {}).items()):
        parts.append(f"{threshold:.2f} for {name}")
    if goals.get("not_below_baseline"):
        baseline = _baseline(columns)
        shown = "the textbook pairing" if baseline == "textbook" else f"the init {baseline}"
        parts.append(f"not below {shown} by more than the seeds' spread (the larger std)")
    return [
        f"Goal of each autoinit cell (mean over seeds, a diverged run at chance): "
        f"{'; '.join(parts)}.",
        "",
    ]


def _goal_met(
    summary: dict[tuple[str, str], tuple[float, float, int]],
    activation: str,
    column: str,
    baseline: str,
    goals: dict[str, Any],
) -> str:
    """``"met"``, ``"not met: why"``, or ``"—"`` when the cell has no runs yet."""
    ours = summary.get((activation, column))
    if ours is None:
        return "—"
    misses = []
    threshold = goals.get("accuracy_of", {}).get(activation, goals.get("accuracy"))
    if threshold is not None and ours[0] < threshold:
        misses.append(f"{ours[0]:.4f} < {threshold:.2f}")
    base = summary.get((activation, baseline))
    if goals.get("not_below_baseline"):
        if base is None:
            misses.append(f"no {baseline} run to compare with")
        else:
            spread = max(ours[1], base[1])
            if ours[0] - base[0] < -spread:
                misses.append(f"{ours[0] - base[0]:+.4f} vs {baseline}, spread {spread:.4f}")
    return "met" if not misses else "not met: " + "; ".join(misses)


def _goals(
    summary: dict[tuple[str, str], tuple[float, float, int]],
    activations: list[str],
    columns: list[str],
) -> list[str]:
    """Each autoinit criterion against the baseline (textbook pairing), activation by activation."""
    baseline = _baseline(columns)
    shown = "the textbook pairing" if baseline == "textbook" else f"the init {baseline}"
    lines = [f"### Each autoinit criterion against {shown}", ""]
    for column in columns:
        if not column.startswith("autoinit"):
            continue
        worse, better, same, neither = [], [], [], []
        for activation in activations:
            ours = summary.get((activation, column))
            base = summary.get((activation, baseline))
            if ours is None or base is None:
                continue
            spread = max(ours[1], base[1])  # the larger of the two seeds' std
            difference = ours[0] - base[0]
            entry = f"{activation} ({difference:+.4f}, spread {spread:.4f})"
            if max(ours[0], base[0]) < CHANCE + 0.02:  # a constant class vs a diverged run
                neither.append(activation)
            elif min(ours[2], base[2]) < 2:  # one seed: no spread to judge against
                same.append(f"{activation} ({difference:+.4f}, one seed: not judged)")
            elif difference < -spread:
                worse.append(entry)
            elif difference > spread:
                better.append(entry)
            else:
                same.append(entry)
        lines.append(
            f"- **{column}**: better than {shown} by more than the seeds' spread "
            f"for {', '.join(better) or 'none'}; within the spread for "
            f"{', '.join(same) or 'none'}; worse for {', '.join(worse) or 'none'}"
            + (f"; at chance under both: {', '.join(neither)}." if neither else ".")
        )
    return lines
