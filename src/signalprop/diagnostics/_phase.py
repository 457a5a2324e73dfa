"""The mean-field verdict: the phase a plain dense stack's weights put it in, and its depth limit.

For a plain stack of dense layers sharing one activation (read by
:func:`signalprop._model.read_model`), σ_w² is the hidden layers' mean of
``mean(W²) · fan_in`` and σ_b² their mean of ``mean(b²)``, read from the
weights as they are; :func:`signalprop.meanfield.analyze` then gives the
phase, χ₁, ξ_c and the trainable depth ≈ 6 ξ_c (Schoenholz et al. 2017),
which is set against the net's own depth. A net deeper than that gets a
finding of kind ``ordered`` or ``chaotic`` whose fix names the critical
initialization.

Biases are split into the part that cancels the layer's input mean,
``−m·W𝟙`` (autoinit's centring of the logistic and softplus), and the rest,
whose mean square is σ_b²: a stack whose biases cancel the mean is analyzed
as the centred activation. A stack whose hidden activations differ is
analyzed as a chain (:func:`signalprop.meanfield.chain`): per layer the
gradient factor at the variance that arrives, and the verdict from the
product of the factors, Σ ln χ against ±6 (the bound 6ξ_c puts on a
homogeneous stack).

A layer followed by a normalization (BatchNorm, LayerNorm, …; its ``norm``)
does not set its activation's input scale: the norm does. Its σ_w² is not
read as a pre-activation variance, so a model with such layers gets no
verdict, and :func:`normalized_note` says so in diagnose's notes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from signalprop import meanfield as _meanfield
from signalprop._model import (
    Activation,
    WeightLayer,
    activation_key,
    activation_kind,
    is_dense,
    layer_bias_split,
    layer_scales,
    read_model,
)
from signalprop.diagnostics._report import Finding

__all__ = [
    "MeanFieldVerdict",
    "bias_splits",
    "finding",
    "normalized_note",
    "phase_applies",
    "phase_finding",
    "verdict",
]


@dataclass(frozen=True)
class MeanFieldVerdict:
    """What mean-field theory says of a plain dense stack, read from its weights.

    Attributes:
        activation: The hidden layers' activation.
        weight_var: σ_w²: the hidden layers' mean of ``mean(W²) · fan_in``.
        bias_var: σ_b²: their mean of ``mean(b²)``.
        depth: The net's weight layers.
        phase: ``"ordered"``, ``"critical"`` or ``"chaotic"``.
        chi_1: Mean squared gradient growth per layer (and the correlation
            map's slope at c = 1).
        q_star, c_star: The variance and correlation fixed points.
        xi_c: The correlation depth scale.
        trainable_depth: 6 ξ_c.
        critical_weight_var, critical_bias_var: Where
            :func:`signalprop.meanfield.init_point` puts the edge of chaos for
            this activation, when the net is deeper than it can train (``None``
            otherwise, or when there is no critical point).

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> init = sp.init.VarianceScaling(2.54)   # σ_w² = 2.54, σ_b² = 0
        >>> model = sp.Sequential(
        ...     [sp.Dense(32, 'tanh', kernel_initializer=init) for _ in range(30)],
        ...     input_shape=(32,),
        ... )
        >>> verdict = sp.diagnose(model, torch.randn(128, 32)).meanfield
        >>> verdict.phase, verdict.depth, round(verdict.chi_1, 1)
        ('chaotic', 30, 1.2)
    """

    activation: str
    weight_var: float
    bias_var: float
    depth: int
    phase: str
    chi_1: float
    q_star: float
    c_star: float
    xi_c: float
    trainable_depth: float
    critical_weight_var: float | None
    critical_bias_var: float | None
    centred: bool = False
    chain: _meanfield.Chain | None = field(default=None, compare=False)
    plan_trainable: bool | None = None

    @property
    def mixed(self) -> bool:
        """Whether the hidden activations differ from layer to layer (a chain)."""
        return self.chain is not None

    @property
    def trainable(self) -> bool:
        """Whether the net is no deeper than its predicted trainable depth."""
        if self.chain is not None:
            return self.chain.trainable
        return self.depth <= self.trainable_depth

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("chain", None)
        return data

    def summary(self) -> str:
        """One line for the report."""
        if self.chain is not None:
            return (
                f"mean field: a chain of {self.activation}: {self.chain.summary()}; "
                f"{'within' if self.trainable else 'beyond'} the e⁶ a trainable net allows"
            )
        limit = _number(self.trainable_depth)
        relation = "≥" if self.trainable else "<"
        phase = self.phase
        if phase != "critical" and self.trainable:
            # True at this depth: within 6ξ_c the net behaves as at the edge of chaos.
            phase = f"near-critical for {self.depth} layers ({self.phase} beyond ≈ 6ξ_c)"
        centred = ", centred by its biases" if self.centred else ""
        return (
            f"mean field: {self.activation}{centred} with σ_w² = {self.weight_var:.3g}, "
            f"σ_b² = {self.bias_var:.3g}: {phase} (χ₁ = {self.chi_1:.3g}), "
            f"ξ_c = {_number(self.xi_c)}, trainable depth ≈ 6ξ_c = {limit} {relation} "
            f"{self.depth} layers"
        )


def _number(value: float) -> str:
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}" if value < 1e4 else f"{value:.1e}"


def _elementwise(activation: Activation | None) -> bool:
    return activation is not None and not isinstance(activation, nn.Softmax | nn.Identity)


def _read_variances(hidden: list[WeightLayer]) -> dict[str, tuple[float, float]]:
    scales = {layer.name: layer_scales(layer.module) for layer in hidden}
    return {name: (s["weight_scale_fan_in"], s["bias_var"]) for name, s in scales.items()}


def verdict(
    model: nn.Module,
    measured: dict[str, tuple[float, float]] | None = None,
    splits: dict[str, tuple[float, float]] | None = None,
) -> MeanFieldVerdict | None:
    """The mean-field verdict of a plain dense stack; None for any other model.

    None when the model is not one chain of dense layers and elementwise
    activations, when its hidden layers use different activations, or when
    the activation's mean-field maps do not exist.

    Args:
        model: The model.
        measured: Layer name -> (σ_w², σ_b²) already read from the weights
            (diagnose's per-layer numbers); read here when missing.
        splits: Layer name -> :func:`~signalprop._model.layer_bias_split` (the
            input mean the biases cancel, and σ_b² of the rest) already read; read
            here when missing.
    """
    view = read_model(model)
    if not view.plain or len(view.layers) < 3:
        return None
    if any(layer.norm is not None for layer in view.layers):
        return None  # the norms, not σ_w², set the pre-activations: normalized_note
    if not all(
        isinstance(layer.module, nn.Linear) or is_dense(layer.module) for layer in view.layers
    ):
        return None
    hidden = [
        layer
        for layer in view.layers
        if not layer.reads_data and _elementwise(layer.consumer) and _elementwise(layer.producer)
    ]
    if not hidden:
        return None
    activation = hidden[0].consumer
    assert activation is not None
    key = activation_key(activation)
    measured = measured or {}
    if not all(layer.name in measured for layer in hidden):
        measured = {**measured, **_read_variances(hidden)}
    known = splits or {}
    splits = {
        layer.name: known[layer.name] if layer.name in known else layer_bias_split(layer.module)
        for layer in view.layers
    }
    if any(
        activation_key(side) != key for layer in hidden for side in (layer.consumer, layer.producer)
    ):
        return _chain_verdict(view.layers, measured, splits)
    weight_vars = [measured[layer.name][0] for layer in hidden]
    offsets = [splits[layer.name][0] for layer in hidden]
    bias_vars = [splits[layer.name][1] for layer in hidden]
    weight_var = sum(weight_vars) / len(weight_vars)
    bias_var = sum(bias_vars) / len(bias_vars)
    if not (math.isfinite(weight_var) and math.isfinite(bias_var)) or weight_var <= 0:
        return None
    try:
        # Biases that cancel about the activation's own mean: the centred activation.
        offset = sorted(offsets)[len(offsets) // 2]
        centred = False
        if offset:
            mf = _meanfield.analyze(activation, weight_var, bias_var, centred=True)
            mean = _meanfield.activation_mean(activation, min(mf.q_star, 1e8))
            centred = abs(offset - mean) <= 0.25 * abs(mean)
        if not centred:
            bias_var = sum(measured[layer.name][1] for layer in hidden) / len(hidden)
            mf = _meanfield.analyze(activation, weight_var, bias_var)
        critical_weight_var = critical_bias_var = None
        if mf.trainable_depth < len(view.layers):  # the fix needs the critical point
            point = _meanfield.cached_point(activation, "critical")
            if not point.fallback:
                critical_weight_var, critical_bias_var = point.weight_var, point.bias_var
    except ValueError:  # an activation without mean-field maps (softmax-like, non-finite)
        return None
    name = activation_kind(activation) if isinstance(activation, nn.Module) else None
    return MeanFieldVerdict(
        activation=name if name and name != "other" else mf.activation,
        weight_var=weight_var,
        bias_var=bias_var,
        depth=len(view.layers),
        phase=mf.phase,
        chi_1=mf.chi_1,
        q_star=mf.q_star,
        c_star=mf.c_star,
        xi_c=mf.xi_c,
        trainable_depth=mf.trainable_depth,
        critical_weight_var=critical_weight_var,
        critical_bias_var=critical_bias_var,
        centred=centred,
    )


def normalized_note(model: nn.Module) -> str | None:
    """Why the mean-field verdict leaves out the layers a normalization follows, if any."""
    layers = [layer for layer in read_model(model).layers if layer.norm is not None]
    if not layers:
        return None
    names = ", ".join(layer.name for layer in layers[:6]) + (", …" if len(layers) > 6 else "")
    kinds = ", ".join(sorted({type(layer.norm).__name__ for layer in layers}))
    return (
        f"mean field: {len(layers)} layer(s) ({names}) feed a normalization ({kinds}), which "
        "sets their activations' input scale: their σ_w² is not read as the pre-activation "
        "variance, and no ordered/chaotic verdict is drawn from them"
    )


def _chain_verdict(
    layers: list[WeightLayer],
    measured: dict[str, tuple[float, float]],
    splits: dict[str, tuple[float, float]],
) -> MeanFieldVerdict | None:
    """The verdict of a plain chain whose hidden activations differ."""
    specs = []
    for layer in layers:
        if layer.name in measured:
            weight_var = measured[layer.name][0]
        else:
            weight_var = layer_scales(layer.module)["weight_scale_fan_in"]
        producer = None if layer.reads_data else layer.producer
        consumer = layer.consumer if _elementwise(layer.consumer) else None
        offset, bias_var = splits[layer.name]
        if producer is None and not layer.reads_data:
            return None
        specs.append((producer, consumer, weight_var, bias_var, offset))
    try:
        chain = _meanfield.chain(specs)
        # What autoinit would make of it: the fix names autoinit only where that helps.
        plan = _meanfield.init_chain([(p, c) for p, c, *_ in specs])
    except ValueError:
        return None
    names: list[str] = []
    for layer in layers:
        if _elementwise(layer.consumer):
            name = _display(layer.consumer)  # type: ignore[arg-type]
            if name not in names:
                names.append(name)
    hidden = [layer for layer in chain.layers if layer.chi is not None and layer.feeds != "output"]
    log_chi = math.log(chain.chi_mean) if chain.chi_mean > 0 else -math.inf
    scale = 1.0 / abs(log_chi) if log_chi else math.inf
    return MeanFieldVerdict(
        activation=", ".join(names),
        weight_var=sum(layer.weight_var for layer in hidden) / max(len(hidden), 1),
        bias_var=sum(layer.bias_var for layer in hidden) / max(len(hidden), 1),
        depth=len(layers),
        phase=chain.phase,
        chi_1=chain.chi_mean,
        q_star=chain.layers[-2].q if len(chain.layers) > 1 else math.nan,
        c_star=math.nan,
        xi_c=scale,
        trainable_depth=_meanfield.CHAIN_LOG_LIMIT * scale,
        critical_weight_var=None,
        critical_bias_var=None,
        chain=chain,
        plan_trainable=plan.trainable,
    )


def _display(activation: Activation) -> str:
    if isinstance(activation, nn.Module):
        kind = activation_kind(activation)
        return kind if kind and kind != "other" else type(activation).__name__
    return str(getattr(activation, "__name__", activation))


def finding(result: MeanFieldVerdict, all_names: list[str]) -> Finding | None:
    """An ``ordered`` or ``chaotic`` finding when the net is deeper than it can train."""
    if result.trainable:
        return None
    kind = "chaotic" if result.chi_1 > 1 else "ordered"
    if result.chain is not None:
        chain = result.chain
        worst = sorted(
            (layer for layer in chain.layers if layer.chi is not None and layer.feeds != "output"),
            key=lambda layer: abs(math.log(layer.chi)) if layer.chi else math.inf,
            reverse=True,
        )[:3]
        shown = ", ".join(f"{w.reads} → {w.feeds} χ = {w.chi:.3g}" for w in worst)
        return Finding(
            kind=kind,
            layers=list(all_names),
            severity="error",
            message=(
                f"a chain of {result.depth} layers ({result.activation}): {chain.summary()}, "
                f"beyond the e⁶ ≈ 403× a trainable net allows; the layers furthest from χ = 1: "
                f"{shown}"
            ),
            fix=(
                "initialize each layer for the activation it reads and the one it feeds: "
                "sp.autoinit(model) puts every layer of a chain at χ = 1 "
                "(sp.meanfield.init_chain shows the plan)"
                if result.plan_trainable
                else "no initialization puts every layer of this chain at χ = 1 (see "
                "sp.meanfield.init_chain's notes): replace the activations without a critical "
                "point (softplus) by ELU, SELU or tanh, or add normalization or residual "
                "connections"
            ),
        )
    if kind == "chaotic":
        effect = (
            f"gradients grow ≈{result.chi_1:.3g}× per layer toward the input and inputs "
            f"decorrelate (c* = {result.c_star:.2g})"
        )
    else:
        effect = (
            f"gradients shrink ≈{result.chi_1:.3g}× per layer toward the input and all inputs "
            "end up alike (c* = 1)"
        )
    message = (
        f"{result.depth} {result.activation} layers with σ_w² = {result.weight_var:.3g}, "
        f"σ_b² = {result.bias_var:.3g} are in the {kind} phase: {effect}; the correlation "
        f"depth scale is ξ_c = {_number(result.xi_c)}, and nets deeper than ≈ 6ξ_c = "
        f"{_number(result.trainable_depth)} layers are not expected to train "
        "(Schoenholz et al. 2017)"
    )
    if result.critical_weight_var is not None and result.critical_bias_var is not None:
        fix = (
            f"initialize at the edge of chaos: sp.autoinit(model, criterion='critical') puts "
            f"{result.activation} at σ_w² = {result.critical_weight_var:.4g}, "
            f"σ_b² = {result.critical_bias_var:.3g} (χ₁ = 1); add distribution='orthogonal' "
            "for tanh-like activations"
        )
    else:
        fix = (
            f"{result.activation} has no critical point: use fewer than "
            f"{_number(result.trainable_depth)} layers, another activation (SELU, ELU, "
            "tanh), normalization or skip connections"
        )
    return Finding(
        kind=kind,
        layers=list(all_names),
        # 6ξ_c is an empirical boundary, not a cliff: within 1.5× of it, a warning.
        severity="warning" if result.depth <= 1.5 * result.trainable_depth else "error",
        message=message,
        fix=fix,
    )


def phase_finding(
    model: nn.Module,
    measured: dict[str, tuple[float, float]],
    names: list[str],
    splits: dict[str, tuple[float, float]] | None = None,
) -> Finding | None:
    """``diagnose``'s ``ordered``/``chaotic`` finding for ``model`` with the weight
    layers' ``measured`` (σ_w², σ_b²) and bias ``splits`` (see :func:`verdict`), its
    layers ``names``; None when the model gets no verdict or is within its trainable
    depth."""
    result = verdict(model, measured, splits)
    return None if result is None else finding(result, names)


def bias_splits(model: nn.Module) -> dict[str, tuple[float, float]]:
    """:func:`verdict`'s ``splits`` of ``model`` as its weights are now."""
    return {layer.name: layer_bias_split(layer.module) for layer in read_model(model).layers}


def phase_applies(model: nn.Module) -> bool:
    """Whether :func:`verdict` speaks of ``model`` (a plain dense stack it can read)."""
    return verdict(model) is not None
