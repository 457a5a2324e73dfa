"""Detectors: from per-layer numbers to localized, actionable findings.

Each detector reads :class:`LayerStats` records only, never the model, and
returns :class:`Finding` records whose ``fix`` names signalprop's remedies.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from signalprop.diagnostics._report import Finding, LayerStats, Thresholds
from signalprop.init import MATCHING, PRESETS

SATURATING_NAMES = {"sigmoid": "logistic", "tanh": "tanh"}
NON_SATURATING_FIX = "or switch to ELU/SELU with he_normal/lecun_normal"


def layer_range(names: list[str], all_names: list[str]) -> str:
    """``"layers 3–40 (38 layers)"`` for a consecutive run, ``"layer 3"``, else a list."""
    if not names:
        return "no layer"
    if len(names) == 1:
        return f"layer {names[0]}"
    positions = [all_names.index(n) for n in names]
    if positions == list(range(positions[0], positions[0] + len(positions))):
        return f"layers {names[0]}–{names[-1]} ({len(names)} layers)"
    shown = ", ".join(names[:6])
    return "layers " + shown + (f", … ({len(names)} layers)" if len(names) > 6 else "")


#: Weights within this factor of the matching initializer's variance count as "at scale".
SCALE_TOLERANCE = 1.25
#: The remedy when the weights are not the cause: the activation or the depth is.
REMEDIES = {
    "sigmoid": ", the logistic itself is the problem: switch to ELU/SELU with "
    "he_normal/lecun_normal",
    "tanh": ", tanh itself is the problem: switch to ELU/SELU with he_normal/lecun_normal",
    "relu": ": use leaky_relu/elu/selu, fewer layers, or skip connections",
}
DEFAULT_REMEDY = ": add normalization or skip connections"


@dataclass(frozen=True)
class _Weights:
    """The weights of some layers against their activation's initializer.

    Attributes:
        activation: The layers' most common activation.
        what: "logistic with weights 3.4× too large (…)", for messages.
        advice: Re-initialize when the weights are off scale (``reinit``),
            otherwise what to change instead.
        reinit: Whether ``advice`` is to re-initialize.
        relation: Median weight variance over the initializer's (None: unknown).
        init_name: The activation's matching initializer (None: none known).
    """

    activation: str
    what: str
    advice: str
    reinit: bool
    relation: float | None
    init_name: str | None = None

    def not_the_cause(self) -> str:
        """Advice for when the weights' size cannot explain the finding."""
        return "the weights are not the cause" + REMEDIES.get(self.activation, DEFAULT_REMEDY)


#: Activations for which no initialization puts a deep stack at the edge of chaos
#: (no critical point, centred or not, that survives training: signalprop.meanfield).
NO_CRITICAL_POINT = {"softplus"}


def _weights(rows: list[LayerStats]) -> _Weights:
    activation = statistics.mode([r.activation or "linear" for r in rows])
    shown = SATURATING_NAMES.get(activation, activation)
    if activation in NO_CRITICAL_POINT:
        advice = (
            f"no initialization makes a deep {shown} stack trainable (it has no critical "
            "point): use ELU, SELU or tanh, normalization, or residual connections"
        )
        return _Weights(activation, shown, advice, False, None)
    init_name = MATCHING.get(activation)
    weighted = [r for r in rows if r.has_weight and r.activation == activation]
    if init_name is None or not weighted:
        advice = "re-initialize with a variance-preserving initializer (signalprop.init)"
        return _Weights(activation, shown, advice, True, None)
    scale, mode, _, _ = PRESETS[init_name]
    attr = "weight_scale_fan_avg" if mode == "fan_avg" else "weight_scale_fan_in"
    measured = statistics.median(getattr(r, attr) for r in weighted)
    relation = float(measured) / scale
    advice = f"re-initialize with {init_name} (variance {scale:g}/{mode})"
    reinit = True
    if relation > SCALE_TOLERANCE:
        state = f"weights {relation:.3g}× too large (var·{mode} ≈ {measured:.3g}, want {scale:g})"
    elif relation < 1 / SCALE_TOLERANCE:
        state = (
            f"weights {1 / relation:.3g}× too small (var·{mode} ≈ {measured:.3g}, want {scale:g})"
        )
    else:
        state = f"weights at {init_name}'s scale (var·{mode} ≈ {measured:.3g})"
        advice = "the initialization is already right" + REMEDIES.get(activation, DEFAULT_REMEDY)
        reinit = False
    variance = statistics.median(r.weight_var or 0.0 for r in weighted)
    if 0.5 < variance < 2 and relation > 3:  # the pre-2010 habit of N(0, 1) weights
        state = f"N(0, 1)-like weights (var ≈ {variance:.2g}, {relation:.3g}× {init_name}'s)"
    return _Weights(activation, f"{shown} with {state}", advice, reinit, relation, init_name)


def weights_of(rows: list[LayerStats]) -> _Weights:
    """What the weights of ``rows`` are against their activation's initializer: the
    sentence the detectors' messages use, their advice, and the median ratio."""
    return _weights(rows)


def _gradient_flow(
    layers: list[LayerStats], thresholds: Thresholds, all_names: list[str]
) -> list[Finding]:
    weighted = [r for r in layers if r.has_weight and r.grad_pre_rms is not None]
    if len(weighted) < 3:
        return []
    reference_row = weighted[-2]  # the highest hidden layer; the output layer's scale differs
    reference = reference_row.grad_pre_rms or 0.0
    bottom = weighted[0]
    hidden_names = [r.name for r in weighted[:-1]]
    if all(not r.grad_pre_rms for r in weighted[:-1]):
        top = weighted[-1]
        cause = (
            "the output layer receives no gradient either"
            if not top.grad_pre_rms
            else f"only the output layer {top.name} does"
        )
        return [
            Finding(
                kind="vanishing_gradients",
                layers=hidden_names,
                severity="error",
                message=(
                    f"no gradient at all reaches {layer_range(hidden_names, all_names)}; "
                    f"{cause} (a saturated softmax or dead units upstream cut it)"
                ),
                fix=_weights(weighted[:-1]).advice
                + ", and check the output layer's logits for extreme values",
            )
        ]
    if not reference or not math.isfinite(reference):
        return []
    ratio = (bottom.grad_pre_rms or 0.0) / reference
    findings = []
    hidden = weighted[:-1]
    if ratio < thresholds.vanishing:
        flagged = [r for r in hidden if (r.grad_pre_rms or 0.0) / reference < thresholds.vanishing]
        weights = _weights(hidden)
        what, advice, reinit = weights.what, weights.advice, weights.reinit
        saturated = any((r.saturated or 0.0) > thresholds.saturation for r in hidden)
        if weights.relation is not None and weights.relation > SCALE_TOLERANCE and not saturated:
            # Larger weights make gradients larger, not smaller: the activation is the cause.
            advice, reinit = weights.not_the_cause(), False
        saturating = any(r.activation in SATURATING_NAMES for r in hidden)
        fix = f"{advice}, {NON_SATURATING_FIX}" if saturating and reinit else advice
        findings.append(
            Finding(
                kind="vanishing_gradients",
                layers=[r.name for r in flagged],
                severity="error" if ratio < thresholds.vanishing**2 else "warning",
                message=(
                    f"gradients vanish toward the input: at layer {bottom.name} the gradient is "
                    f"{ratio:.2e} of layer {reference_row.name}'s; "
                    f"{layer_range([r.name for r in flagged], all_names)}: less than "
                    f"{thresholds.vanishing:g} of it ({what})"
                ),
                fix=fix,
            )
        )
    elif ratio > thresholds.exploding:
        flagged = [r for r in hidden if (r.grad_pre_rms or 0.0) / reference > thresholds.exploding]
        weights = _weights(hidden)
        what, advice = weights.what, weights.advice
        if weights.relation is not None and weights.relation < 1 / SCALE_TOLERANCE:
            advice = weights.not_the_cause()  # smaller weights cannot make gradients explode
        findings.append(
            Finding(
                kind="exploding_gradients",
                layers=[r.name for r in flagged],
                severity="error" if ratio > thresholds.exploding**2 else "warning",
                message=(
                    f"gradients explode toward the input: at layer {bottom.name} the gradient is "
                    f"{ratio:.2e} × layer {reference_row.name}'s; "
                    f"{layer_range([r.name for r in flagged], all_names)}: more than "
                    f"{thresholds.exploding:g} × it ({what})"
                ),
                fix=f"{advice}; clip gradients (torch.nn.utils.clip_grad_norm_) if it persists",
            )
        )
    return findings


def _signal(
    hidden: list[LayerStats], thresholds: Thresholds, all_names: list[str]
) -> list[Finding]:
    """The forward signal's RMS, highest hidden layer against the lowest."""
    rows = [r for r in hidden if r.act_std is not None and r.act_mean is not None]
    if len(rows) < 2:
        return []

    def size(r: LayerStats) -> float:
        return math.hypot(r.act_mean or 0.0, r.act_std or 0.0)

    bottom, top = size(rows[0]), size(rows[-1])
    if bottom <= 0:
        return []
    ratio = top / bottom
    if thresholds.signal**-1 <= ratio <= thresholds.signal:
        return []
    exploding = ratio > thresholds.signal
    flagged = [
        r
        for r in rows
        if (size(r) / bottom > thresholds.signal**0.5) == exploding
        and (size(r) / bottom < thresholds.signal**-0.5 or exploding)
    ]
    weights = _weights(rows)
    what, advice = weights.what, weights.advice
    verb = "grows" if exploding else "shrinks"
    return [
        Finding(
            kind="exploding_signal" if exploding else "vanishing_signal",
            layers=[r.name for r in flagged] or [rows[-1].name],
            severity="error",
            message=(
                f"the forward signal {verb} with depth: the activations' RMS is {ratio:.2e} × "
                f"from layer {rows[0].name} to layer {rows[-1].name} ({what})"
            ),
            fix=advice,
        )
    ]


def _saturation(
    hidden: list[LayerStats], thresholds: Thresholds, all_names: list[str]
) -> list[Finding]:
    flagged = [r for r in hidden if r.saturated is not None and r.saturated > thresholds.saturation]
    if not flagged:
        return []
    worst = max(r.saturated or 0.0 for r in flagged)
    weights = _weights(flagged)
    what, advice = weights.what, weights.advice
    return [
        Finding(
            kind="saturation",
            layers=[r.name for r in flagged],
            severity="error" if worst > 0.5 else "warning",
            message=(
                f"{layer_range([r.name for r in flagged], all_names)}: {what} saturate "
                f"(up to {worst:.0%} of activations within "
                f"{thresholds.saturation_margin:g} of the range's ends)"
            ),
            fix=f"{advice}, {NON_SATURATING_FIX}" if weights.reinit else advice,
        )
    ]


def _dead_units(
    hidden: list[LayerStats], thresholds: Thresholds, all_names: list[str]
) -> list[Finding]:
    flagged = [r for r in hidden if r.dead is not None and r.dead > thresholds.dead]
    if not flagged:
        return []
    worst = max(r.dead or 0.0 for r in flagged)
    negative = [
        r.name
        for r in flagged
        if r.pre_mean is not None and r.pre_std is not None and r.pre_mean < -2 * r.pre_std
    ]
    alike = [r for r in flagged if r.similarity is not None and r.similarity > 0.5]
    weights = _weights(flagged)
    if weights.reinit or weights.init_name is None:
        fix = "use he_normal with zero biases, or leaky_relu/elu/selu, whose units cannot die"
    else:  # the weights are at he_normal's scale already: naming it again helps no one
        fix = (
            f"the weights are at {weights.init_name}'s scale already: check the biases, or use "
            "leaky_relu/elu/selu, whose units cannot die"
        )
    if negative:
        shown = ", ".join(negative[:6])
        fix = f"the pre-activations of {shown} are mostly negative: check their biases; {fix}"
    elif alike:
        similarity = max(r.similarity or 0.0 for r in alike)
        fix = (
            f"the examples' pre-activations have become alike (similarity up to "
            f"{similarity:.2f}, 1 = identical): deep plain ReLU stacks lose the differences "
            f"between inputs with depth; use ELU/SELU, fewer layers, or skip connections"
        )
    return [
        Finding(
            kind="dead_units",
            layers=[r.name for r in flagged],
            severity="error" if worst > 0.5 else "warning",
            message=(
                f"{layer_range([r.name for r in flagged], all_names)}: up to "
                f"{worst:.0%} of ReLU units never output a positive value on this batch"
            ),
            fix=fix,
        )
    ]


def _mean_shift(
    hidden: list[LayerStats], thresholds: Thresholds, all_names: list[str], layers: list[LayerStats]
) -> list[Finding]:
    """Activations whose mean shifts the next layer's input, unless that layer's biases
    cancel it (its pre-activations are then centred: autoinit's centring) or a
    normalization after it takes the shift out (a post-activation residual stream in a
    BatchNorm ResNet: relu(x + f(x)) has a mean, which the next block's norm removes)."""
    following: dict[str, LayerStats] = {}  # each row's next weight layer, in forward order
    upcoming: LayerStats | None = None
    for row in reversed(layers):
        if upcoming is not None:
            following[row.name] = upcoming
        if row.has_weight:
            upcoming = row

    def cancelled(r: LayerStats) -> bool:
        after = following.get(r.name)
        if after is not None and after.normalized:
            return True
        if after is None or after.input_offset is None or r.act_mean is None:
            return False
        return abs(after.input_offset - r.act_mean) <= 0.25 * abs(r.act_mean)

    flagged = [
        r
        for r in hidden
        if r.act_mean is not None
        and r.act_std is not None
        and r.activation not in ("softmax", None)
        and abs(r.act_mean) > thresholds.mean_shift * max(r.act_std, 1e-12)
        and not cancelled(r)
    ]
    if not flagged:
        return []
    activation = statistics.mode([r.activation or "linear" for r in flagged])
    shown = SATURATING_NAMES.get(activation, activation)
    means = [r.act_mean or 0.0 for r in flagged]
    return [
        Finding(
            kind="mean_shift",
            layers=[r.name for r in flagged],
            severity="warning",
            message=(
                f"{layer_range([r.name for r in flagged], all_names)}: {shown} outputs "
                f"have mean {statistics.median(means):+.3g}, more than "
                f"{thresholds.mean_shift:g} std from 0, which shifts every next layer's input"
            ),
            fix="use an activation with mean ≈ 0 (tanh, ELU, SELU), or normalize between layers",
        )
    ]


#: A layer whose weights are this many times off its activation's initializer, among
#: layers of that activation that are at scale, is reported as off scale.
OFF_SCALE = 2.0


def _off_scale(hidden: list[LayerStats], all_names: list[str]) -> list[Finding]:
    """Layers whose weights are far from their activation's initializer while most of the
    layers with that activation are at it: one layer initialized otherwise (a
    ``random_normal`` among ``lecun_normal`` layers), which a self-normalizing or
    otherwise forgiving net hides from the signal and gradient detectors."""
    findings = []
    # Layers are compared with those that read and feed the same activations: the first
    # layer reads the data, and in a mixed stack each pair has its own scale (autoinit
    # sets σ_w² from the activation a layer reads as well as the one it feeds).
    by_pair: dict[tuple[str | None, str], list[LayerStats]] = {}
    producer: str | None = None
    for row in hidden:
        if row.has_weight and row.activation in MATCHING and not row.normalized:
            by_pair.setdefault((producer, row.activation), []).append(row)
        if row.has_weight:
            producer = row.activation
    for (_, activation), rows in by_pair.items():
        init_name = MATCHING[activation]
        scale, mode, _, _ = PRESETS[init_name]
        attr = "weight_scale_fan_avg" if mode == "fan_avg" else "weight_scale_fan_in"
        ratios = [(r, (getattr(r, attr) or 0.0) / scale) for r in rows]
        at_scale = [r for r, ratio in ratios if 1 / SCALE_TOLERANCE <= ratio <= SCALE_TOLERANCE]
        off = [(r, ratio) for r, ratio in ratios if ratio > OFF_SCALE or ratio < 1 / OFF_SCALE]
        if not off or len(at_scale) < len(rows) / 2:
            continue  # most layers are off: the whole-net detectors speak for them
        shown = SATURATING_NAMES.get(activation, activation)
        details = ", ".join(
            f"{r.name} ({ratio:.3g}×: var·{mode} {getattr(r, attr):.3g})" for r, ratio in off[:6]
        )
        findings.append(
            Finding(
                kind="off_scale",
                layers=[r.name for r, _ in off],
                severity="warning",
                message=(
                    f"{layer_range([r.name for r, _ in off], all_names)}: weights off the scale "
                    f"of {init_name} (var·{mode} = {scale:g}) that {len(at_scale)} other "
                    f"{shown} layers have: {details}"
                ),
                fix=f"re-initialize {'it' if len(off) == 1 else 'them'} with {init_name}",
            )
        )
    return findings


def _non_finite(layers: list[LayerStats], all_names: list[str]) -> list[Finding]:
    forward = [r for r in layers if not r.finite]
    backward = [r for r in layers if not r.gradient_finite]
    if not forward and not backward:
        return []
    if forward:
        first = forward[0]
        message = f"NaN or Inf first appears in the forward pass at layer {first.name}"
        names = [r.name for r in forward]
    else:
        first = backward[-1]  # gradients flow top-down: the highest is the first
        message = (
            f"the forward pass is finite, but NaN or Inf first appears in the gradients "
            f"at layer {first.name}"
        )
        names = [r.name for r in backward]
    return [
        Finding(
            kind="non_finite",
            layers=names,
            severity="error",
            message=message,
            fix=(
                "check the inputs for NaN/Inf and standardize them; re-initialize with the "
                "activation's matching initializer; lower the learning rate or clip gradients"
            ),
        )
    ]


def find(
    layers: list[LayerStats], thresholds: Thresholds, batch_size: int
) -> tuple[list[Finding], list[str]]:
    """Run every detector; return the findings and notes on what was not judged."""
    all_names = [r.name for r in layers]
    notes: list[str] = []
    non_finite = _non_finite(layers, all_names)
    if non_finite:
        notes.append("other detectors skipped: their statistics are not finite")
        return non_finite, notes
    weighted = [r for r in layers if r.has_weight]
    output_name = weighted[-1].name if weighted else None
    hidden = [r for r in layers if r.name != output_name]
    findings = _gradient_flow(layers, thresholds, all_names)
    if len([r for r in layers if r.has_weight and r.grad_pre_rms is not None]) < 3:
        notes.append("gradient flow not judged: fewer than 3 weight layers received gradients")
    findings += _signal(hidden, thresholds, all_names)
    findings += _saturation(hidden, thresholds, all_names)
    if batch_size >= thresholds.min_batch_for_dead:
        findings += _dead_units(hidden, thresholds, all_names)
    elif any(r.dead is not None for r in hidden):
        notes.append(f"dead units not judged: batch {batch_size} < {thresholds.min_batch_for_dead}")
    findings += _mean_shift(hidden, thresholds, all_names, layers)
    findings += _off_scale(hidden, all_names)
    if not any(r.activation for r in layers) and layers:
        notes.append(
            "no activation module seen: activations called as functions inside forward are "
            "not measured"
        )
    return findings, notes
