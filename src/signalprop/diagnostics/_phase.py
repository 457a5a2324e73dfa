"""The mean-field verdict: the phase a plain dense stack's weights put it in, and its depth limit.

For a plain stack of dense layers sharing one activation (read by
:func:`signalprop._model.read_model`), σ_w² is the hidden layers' mean of
``mean(W²) · fan_in`` and σ_b² their mean of ``mean(b²)``, read from the
weights as they are; :func:`signalprop.meanfield.analyze` then gives the
phase, χ₁, ξ_c and the trainable depth ≈ 6 ξ_c (Schoenholz et al. 2017),
which is set against the net's own depth. A net deeper than that gets a
finding of kind ``ordered`` or ``chaotic`` whose fix names the critical
initialization.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from signalprop import meanfield as _meanfield
from signalprop._model import (
    Activation,
    WeightLayer,
    activation_key,
    activation_kind,
    is_dense,
    read_model,
)
from signalprop.diagnostics._record import weight_scales
from signalprop.diagnostics._report import Finding

__all__ = ["MeanFieldVerdict", "finding", "verdict"]


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

    @property
    def trainable(self) -> bool:
        """Whether the net is no deeper than its predicted trainable depth."""
        return self.depth <= self.trainable_depth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the report."""
        limit = _number(self.trainable_depth)
        relation = "≥" if self.trainable else "<"
        return (
            f"mean field: {self.activation} with σ_w² = {self.weight_var:.3g}, "
            f"σ_b² = {self.bias_var:.3g}: {self.phase} (χ₁ = {self.chi_1:.3g}), "
            f"ξ_c = {_number(self.xi_c)}, trainable depth ≈ 6ξ_c = {limit} {relation} "
            f"{self.depth} layers"
        )


def _number(value: float) -> str:
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}" if value < 1e4 else f"{value:.1e}"


def _elementwise(activation: Activation | None) -> bool:
    return activation is not None and not isinstance(activation, nn.Softmax | nn.Identity)


_CRITICAL: dict[Any, _meanfield.InitPoint] = {}


def _critical_point(activation: Activation) -> _meanfield.InitPoint:
    """The activation's edge-of-chaos point, computed once per distinct activation."""
    key = activation_key(activation)
    if key not in _CRITICAL:
        _CRITICAL[key] = _meanfield.init_point(activation, "critical")
    return _CRITICAL[key]


def _read_variances(hidden: list[WeightLayer]) -> dict[str, tuple[float, float]]:
    scales = {layer.name: weight_scales(layer.module) for layer in hidden}
    return {name: (s["weight_scale_fan_in"], s["bias_var"]) for name, s in scales.items()}


def verdict(
    model: nn.Module, measured: dict[str, tuple[float, float]] | None = None
) -> MeanFieldVerdict | None:
    """The mean-field verdict of a plain dense stack; None for any other model.

    None when the model is not one chain of dense layers and elementwise
    activations, when its hidden layers use different activations, or when
    the activation's mean-field maps do not exist.

    Args:
        model: The model.
        measured: Layer name -> (σ_w², σ_b²) already read from the weights
            (diagnose's per-layer numbers); read here when missing.
    """
    view = read_model(model)
    if not view.plain or len(view.layers) < 3:
        return None
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
    if any(
        activation_key(side) != key  # type: ignore[arg-type]
        for layer in hidden
        for side in (layer.consumer, layer.producer)
    ):
        return None
    measured = measured or {}
    if not all(layer.name in measured for layer in hidden):
        measured = {**measured, **_read_variances(hidden)}
    weight_vars = [measured[layer.name][0] for layer in hidden]
    bias_vars = [measured[layer.name][1] for layer in hidden]
    weight_var = sum(weight_vars) / len(weight_vars)
    bias_var = sum(bias_vars) / len(bias_vars)
    if not (math.isfinite(weight_var) and math.isfinite(bias_var)) or weight_var <= 0:
        return None
    try:
        mf = _meanfield.analyze(activation, weight_var, bias_var)
        critical_weight_var = critical_bias_var = None
        if mf.trainable_depth < len(view.layers):  # the fix needs the critical point
            point = _critical_point(activation)
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
    )


def finding(result: MeanFieldVerdict, all_names: list[str]) -> Finding | None:
    """An ``ordered`` or ``chaotic`` finding when the net is deeper than it can train."""
    if result.trainable:
        return None
    kind = "chaotic" if result.chi_1 > 1 else "ordered"
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
