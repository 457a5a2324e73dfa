"""Residual networks: the stream's mean field, its measurement, and autoinit's residual criterion.

A residual block adds a *branch* ``f(x)`` to its *stream* ``x``. With
independent weights the branch's output is uncorrelated with ``x``, so the
variances add: each block multiplies the stream's second moment ``q`` by
``1 + (what the branch adds)/q`` (Yang & Schoenholz 2017, "Mean field residual
networks: on the edge of chaos"; Hanin & Rolnick 2018, "How to start training:
the effect of initialization and architecture"). For the pre-activation ("full")
ReLU block ``x + α(W₂ relu(W₁x + b₁) + b₂)`` with zero biases that is
``q_{l+1} = q_l (1 + α² σ_v² σ_w² / 2)``: a product over the blocks, so PyTorch's
default initialization (σ² = 1/3 for both layers: ×(1 + 1/18) per block) makes a
256-block stream's RMS grow a thousandfold, and He's (σ² = 2 and the output
layer's 1/E[φ²] = 1 at q = 1: ×2 per block) by 2^{N/2}. The gradient at the
stream grows by the same kind of product going down.

This module gives:

* the mean field of residual stacks lives in :mod:`signalprop.meanfield`
  (:func:`~signalprop.meanfield.residual_stream`, exact recursions for any
  activation and pre-activation, post-activation and normalized branches;
  :func:`~signalprop.meanfield.relu_residual_growth`, the closed form for ReLU),
  re-exported here;
* :func:`predict_stream` and :func:`measure_stream`: the stream of a real model's
  residual blocks (found by :func:`signalprop._model.find_residual_branches`),
  predicted from its weights and measured on a batch;
* :func:`apply_residual_criterion`: autoinit's residual criterion.

diagnose's ``residual_growth`` finding is made from :func:`measure_stream` and
:func:`predict_stream` by :mod:`signalprop.diagnostics`.

Autoinit's residual criterion (``residual="scaled"``, the default) scales the
last layer of each of the N branches (or, for a branch ending in a
normalization such as ResNet's BN₂, that normalization's affine weight γ) so
that the branch adds ``q/N`` to the stream's second moment ``q``: the stream
grows to ``(1 + 1/N)^N ≤ e`` in variance (RMS ≤ √e ≈ 1.65) whatever the depth,
with every branch active from the first step (Hanin & Rolnick 2018: the sum of
the branches' scales must stay bounded; Fixup, Zhang et al. 2019, scales
branches by a power of the depth; De & Smith 2020 show normalized branches make
the stream grow linearly instead). ``residual="zero"`` zeroes those layers
instead (SkipInit/ReZero, Fixup's zero init, torchvision's ``zero_init_residual``):
the stream is the identity at initialization. Which is the default was chosen by
measurement (docs/results/residual): see :data:`DEFAULT_RESIDUAL`.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from signalprop import init as _init
from signalprop._model import (
    Activation,
    ResidualBranch,
    buffers_kept,
    find_residual_branches,
    is_norm,
    is_weight_layer,
)
from signalprop.meanfield import (
    BLOCKS,
    ResidualStream,
    relu_residual_growth,
    residual_stream,
    second_moments,
)

__all__ = [
    "BLOCKS",
    "DEFAULT_RESIDUAL",
    "RESIDUAL_CRITERIA",
    "BranchInit",
    "ResidualStream",
    "StreamPrediction",
    "apply_residual_criterion",
    "measure_stream",
    "predict_stream",
    "relu_residual_growth",
    "residual_stream",
]

#: autoinit's residual criteria: ``"scaled"`` (each of the N branches adds q/N),
#: ``"zero"`` (each branch's last layer, or its final normalization's γ, zero),
#: ``"none"`` (leave the branches as the per-layer criterion drew them).
RESIDUAL_CRITERIA = ("scaled", "zero", "none")
#: The residual criterion autoinit applies when it finds branches, chosen by measurement:
#: the ``residual`` study's MLP (width 64, Fashion-MNIST standardized, Adam lr 1e-3,
#: batch 128, seed 0) after autoinit with each criterion and 1 epoch. 64 blocks: "scaled"
#: 0.8618 validation accuracy (training loss 0.525), "zero" 0.8616 (0.503); 256 blocks:
#: "scaled" 0.8400 (0.855), "zero" 0.8388 (0.943). Equal at 64 blocks, "scaled" ahead on
#: the training loss at 256; it also trains every branch from the first step (a zeroed
#: last layer gives its branch's first layer no gradient until it moves) and leaves a
#: stream whose growth is a prediction to check (√e-ish), not the identity.
DEFAULT_RESIDUAL = "scaled"


# --------------------------------------------------------------------------- real models


def _weight_moments(module: nn.Module) -> tuple[float, float]:
    """σ_w² = mean(W²)·fan_in and σ_b² = mean(b²) of a weight layer as it is."""
    weight: Tensor = module.weight  # type: ignore[assignment]
    fan_in = _init.fans_for(module)[0]
    weight_var = float(weight.detach().double().pow(2).mean().item()) * fan_in
    bias = getattr(module, "bias", None)
    bias_var = float(bias.detach().double().pow(2).mean().item()) if isinstance(bias, Tensor) else 0
    return weight_var, bias_var


def _norm_moments(module: nn.Module) -> float:
    """The second moment a normalization's output has: mean(γ²) + mean(β²) (1 without affine)."""
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    second = (
        float(weight.detach().double().pow(2).mean().item()) if isinstance(weight, Tensor) else 1
    )
    if isinstance(bias, Tensor):
        second += float(bias.detach().double().pow(2).mean().item())
    return second


def _branch(steps: list[tuple[str, str, Any]], q: float) -> tuple[float, float]:
    """What a branch adds to a stream of second moment ``q``, and its Jacobian's gain
    (the factor on the mean squared gradient through the branch alone)."""
    m, gain = q, 1.0
    for kind, _, thing in steps:
        if kind == "layer":
            weight_var, bias_var = _weight_moments(thing)
            m, gain = weight_var * m + bias_var, gain * weight_var
        elif kind == "activation":
            second, derivative = second_moments(thing, max(m, 1e-12))
            m, gain = second, gain * derivative
        elif kind == "norm":
            out = _norm_moments(thing)
            gain *= out / m if m > 0 else 0.0
            m = out
        elif kind == "scale":
            factor = float(thing) ** 2
            m, gain = m * factor, gain * factor
    return m, gain


@dataclass
class StreamPrediction:
    """The mean field's stream through a model's residual blocks, from its weights.

    Attributes:
        q: The stream's second moment entering the first block, then after each.
        gradient_factors: Per block, the factor on the mean squared gradient going
            down through it.
    """

    q: list[float]
    gradient_factors: list[float]
    means: list[float] = field(default_factory=list)

    @property
    def growth(self) -> float:
        """RMS after the last block over RMS entering the first."""
        return math.sqrt(self.q[-1] / self.q[0]) if self.q[0] > 0 else math.nan


def _skip(branch: ResidualBranch, q: float) -> float:
    """The skip path's second moment: the stream's, or its projection's output's."""
    return _branch(branch.skip_steps, q)[0] if branch.skip_steps else q


#: Gauss–Hermite nodes for a post-activation sum that is not centred (the stream after
#: a ReLU has a mean): 160 nodes put E[relu(u)²] of N(μ, σ²) within 1e-4 of its value.
HERMITE_NODES = 160


def _shifted_moments(
    activation: str | Activation, mean: float, var: float
) -> tuple[float, float, float]:
    """``(E[φ(u)], E[φ(u)²], E[φ′(u)²])`` for u ~ N(mean, var), by Gauss–Hermite quadrature."""
    from signalprop.activations import get

    nodes, weights = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)
    weights = weights / weights.sum()
    u = torch.tensor(mean + math.sqrt(max(var, 0.0)) * nodes, dtype=torch.float64)
    u.requires_grad_(True)
    function = get(activation) if isinstance(activation, str) else activation
    values = function(u.clone())  # on a copy: an in-place activation (ReLU(inplace=True))
    (slopes,) = torch.autograd.grad(values.sum(), u)
    phi, slope = values.detach().numpy(), slopes.numpy()
    return (
        float(weights @ phi),
        float(weights @ phi**2),
        float(weights @ slope**2),
    )


def predict_stream(
    model: nn.Module,
    branches: list[ResidualBranch],
    input_var: float = 1.0,
    input_mean: float = 0.0,
) -> StreamPrediction:
    """The mean field's stream through ``branches`` (in order) with the model's weights as
    they are: each layer's σ_w² = mean(W²)·fan_in and σ_b² = mean(b²), each
    normalization's output second moment mean(γ²) + mean(β²), each activation's
    Gaussian integrals at its input's second moment. ``input_var`` and ``input_mean``:
    the stream's second moment and mean entering the first block.

    A post-activation block's sum ``u = x + f(x)`` is taken as Gaussian with the
    stream's mean and the sum's variance (moment matching: the stream after a ReLU
    is not centred, and a centred Gaussian would halve it at every block).
    """
    q, mean = float(input_var), float(input_mean)
    qs, factors, means = [q], [], [mean]
    for branch in branches:
        added, gain = _branch(branch.steps, q)
        stream = _skip(branch, q)
        stream_mean = mean if not branch.skip_steps else 0.0
        total = stream + added
        factor = 1.0 + gain
        if branch.post is not None:
            var = max(total - stream_mean**2, 0.0)
            mean, total, derivative = _shifted_moments(branch.post, stream_mean, var)
            factor *= derivative
        else:
            mean = stream_mean
        q = total
        qs.append(q)
        factors.append(factor)
        means.append(mean)
    return StreamPrediction(qs, factors, means)


#: _interpreted's modules, per model and graph (the graph is trace's, kept while the
#: model is the same): diagnose measures the stream on every call.
_INTERPRETED: weakref.WeakKeyDictionary[nn.Module, tuple[torch.fx.Graph, torch.fx.GraphModule]] = (
    weakref.WeakKeyDictionary()
)


def _interpreted(model: nn.Module) -> torch.fx.GraphModule | None:
    from signalprop._model import trace

    graph = trace(model)
    if graph is None:
        return None
    cached = _INTERPRETED.get(model)
    if cached is not None and cached[0] is graph:
        return cached[1]
    module = torch.fx.GraphModule(model, graph)
    _INTERPRETED[model] = (graph, module)
    return module


def measure_stream(
    model: nn.Module,
    inputs: tuple[Tensor, ...],
    branches: list[ResidualBranch],
    means: list[float] | None = None,
) -> list[float]:
    """The stream's RMS entering the first block and after each block, on ``inputs``
    (and its mean appended to ``means``, when given).

    One forward pass (no gradients) of the model's traced graph, which shares the
    model's modules, recording the graph values at the blocks' sums (or their
    post-activations). The caller sets the mode (train/eval) and keeps buffers.
    """
    graph_module = _interpreted(model)
    if graph_module is None or not branches:
        return []
    wanted = [branches[0].source.name] + [b.output.name for b in branches]
    values: dict[str, float] = {}
    averages: dict[str, float] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            if n.name in wanted and isinstance(out, Tensor):
                values[n.name] = float(out.detach().double().pow(2).mean().sqrt().item())
                averages[n.name] = float(out.detach().double().mean().item())
            return out

    with torch.no_grad():
        Recorder(graph_module).run(*inputs)
    if means is not None:
        means.extend(averages.get(name, math.nan) for name in wanted)
    return [values.get(name, math.nan) for name in wanted]


def stream_at_init(
    model: nn.Module, args: tuple[Tensor, ...], branches: list[ResidualBranch]
) -> tuple[list[float], list[float]]:
    """The stream's RMS and mean (:func:`measure_stream`) as training sees it: in training
    mode (normalizations on the batch's statistics), with the model's mode, buffers and
    the global random state put back afterwards."""
    was_training = {m: m.training for m in model.modules()}
    means: list[float] = []
    try:
        with torch.random.fork_rng(devices=[]), buffers_kept(model):
            model.train()
            measured = measure_stream(model, args, branches, means)
    finally:
        for module, training in was_training.items():
            module.training = training
    return measured, means


# --------------------------------------------------------------------------- autoinit


@dataclass
class BranchInit:
    """What autoinit's residual criterion did to one residual branch.

    Attributes:
        block: The block (the common prefix of its layers' names).
        layers: The branch's weight layers, bottom to top.
        target: The layer or normalization it set (the branch's last).
        action: ``"zero"``, ``"scaled"`` or ``"none"``.
        scale: The factor applied to the target's weight (0 for zero).
        stream_var: The stream's second moment entering the block (mean field).
        added_var: What the branch adds to it after the criterion.
        note: Anything else (the first layer re-read at the stream's variance).
    """

    block: str
    layers: list[str]
    target: str
    action: str
    scale: float
    stream_var: float
    added_var: float
    note: str = ""


@dataclass
class ResidualInit:
    """What :func:`apply_residual_criterion` did: per branch, and the stream's prediction."""

    criterion: str
    branches: list[BranchInit] = field(default_factory=list)
    predicted_growth: float | None = None
    note: str = ""


def _block_name(layers: list[str]) -> str:
    parts = [name.split(".") for name in layers]
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return ".".join(common) or layers[0]


def _names(model: nn.Module) -> dict[nn.Module, str]:
    return {module: name for name, module in model.named_modules()}


def apply_residual_criterion(
    model: nn.Module,
    criterion: str,
    targets: dict[str, tuple[float, float]],
    input_var: float = 1.0,
    input_mean: float = 0.0,
) -> ResidualInit:
    """Autoinit's residual criterion on ``model``'s branches (after the per-layer pass).

    Args:
        model: The model, its layers already drawn by autoinit.
        criterion: ``"scaled"``, ``"zero"`` or ``"none"`` (see :data:`RESIDUAL_CRITERIA`).
        targets: Per weight layer name, the pre-activation variance q and σ_b² autoinit
            aimed at: a branch's first layer reading the stream directly (no
            normalization after it) is rescaled so that it reaches q at the stream's
            variance the mean field predicts, not at the variance autoinit assumed
            (the per-layer pass cannot know that a sum feeds it).
        input_var, input_mean: The stream's second moment and mean entering the first
            block.
    """
    branches, note = find_residual_branches(model)
    result = ResidualInit(criterion=criterion, note=note or "")
    if not branches or criterion == "none":
        if branches:
            result.predicted_growth = predict_stream(model, branches, input_var, input_mean).growth
        return result
    names = _names(model)
    count = len(branches)
    q, mean = float(input_var), float(input_mean)
    for branch in branches:
        extra = ""
        first_kind = [kind for kind, _, _ in branch.steps]
        first = branch.steps[0][2] if first_kind and first_kind[0] == "layer" else None
        first_name = names.get(first) if first is not None else None
        normalized_first = len(first_kind) > 1 and first_kind[1] == "norm"
        if (
            isinstance(first, nn.Module)
            and first_name in targets
            and not normalized_first
            and q > 0
        ):
            target_q, bias_var = targets[first_name]
            weight_var, _ = _weight_moments(first)
            wanted = max(target_q - bias_var, 0.0) / q
            if weight_var > 0 and wanted > 0:
                with torch.no_grad():
                    first.weight.mul_(math.sqrt(wanted / weight_var))  # type: ignore[operator]
                extra = f"{first_name} re-read at the stream's q = {q:.3g}: σ_w² = {wanted:.4g}"
        stream = _skip(branch, q)
        target_module = branch.norm if branch.norm is not None else branch.last
        target_name = names.get(target_module, "?")
        if criterion == "zero":
            with torch.no_grad():
                target_module.weight.zero_()  # type: ignore[operator]
                bias = getattr(target_module, "bias", None)
                if isinstance(bias, Tensor):
                    bias.zero_()
            scale = 0.0
        else:
            added, _ = _branch(branch.steps, q)
            wanted_added = stream / count
            scale = math.sqrt(wanted_added / added) if added > 0 else 1.0
            with torch.no_grad():
                target_module.weight.mul_(scale)  # type: ignore[operator]
                bias = getattr(target_module, "bias", None)
                if isinstance(bias, Tensor):
                    bias.mul_(scale)
        added_after, _ = _branch(branch.steps, q)
        result.branches.append(
            BranchInit(
                block=_block_name(branch.layers),
                layers=list(branch.layers),
                target=target_name,
                action=criterion,
                scale=scale,
                stream_var=q,
                added_var=added_after,
                note=extra,
            )
        )
        step = predict_stream(model, [branch], q, mean)
        q, mean = step.q[-1], step.means[-1]
    result.predicted_growth = predict_stream(model, branches, input_var, input_mean).growth
    return result


# --------------------------------------------------------------------------- diagnose


def after_autoinit(
    model: nn.Module, args: tuple[Tensor, ...] | None, result: Any, criterion: str
) -> None:
    """autoinit's residual post-pass: apply ``criterion`` to the model's branches and
    record it in ``result`` (an :class:`~signalprop.autoinit.AutoInitResult`)."""
    branches, unread = find_residual_branches(model)
    if not branches:
        if (  # measured instead: see read_sums
            unread is not None
            and args is not None
            and _after_autoinit_measured(model, args, result, criterion)
        ):
            return
        if unread is not None and criterion != "none":  # say what was not done, and why
            result.notes.append(
                f"residual: {unread}, so no branch was scaled; if the model adds branches to "
                "a stream (transformer blocks), the stream's variance grows with each one"
                + (
                    "; pass a batch (inputs) and autoinit finds them in the autograd graph "
                    "and scales them by measurement"
                    if args is None
                    else ""
                )
            )
        return
    input_var, input_mean = 1.0, 0.0
    if args is not None:  # the stream entering the first block, as autoinit drew it
        measured, means = stream_at_init(model, args, branches[:1])
        if measured and math.isfinite(measured[0]) and measured[0] > 0:
            input_var, input_mean = measured[0] ** 2, means[0]
    targets = {layer.name: (layer.target_var, layer.bias_var) for layer in result.layers}
    done = apply_residual_criterion(model, criterion, targets, input_var, input_mean)
    _record(result, done)
    result.stream_growth = done.predicted_growth
    if criterion == "none":
        result.notes.append(
            f"residual: {len(branches)} residual branch(es) left as drawn (residual='none'): "
            f"the mean field predicts the stream's RMS to grow {done.predicted_growth:.3g}×"
        )
    else:
        what = (
            "each branch's last layer (or closing normalization's γ) zeroed: the blocks start "
            "as the identity"
            if criterion == "zero"
            else "each branch's last layer (or closing normalization's γ) scaled so that it "
            f"adds 1/{len(branches)} of the stream's variance"
        )
        result.notes.append(
            f"residual ({criterion}): {len(branches)} residual branch(es): {what}; the mean "
            f"field predicts the stream's RMS to grow {done.predicted_growth:.3g}× over them"
        )


def _after_autoinit_measured(
    model: nn.Module, args: tuple[Tensor, ...], result: Any, criterion: str
) -> bool:
    """after_autoinit for a model torch.fx cannot trace (:func:`measured_criterion`): False
    when no residual sum was found in the autograd graph either."""
    try:
        done, left, (before, after) = measured_criterion(model, args, criterion)
    except (RuntimeError, TypeError, ValueError):  # the forward pass with gradients failed
        return False
    count = len(done.branches) if criterion != "none" else None
    if not done.branches and not left and not math.isfinite(before):
        return False
    if left:
        result.notes.append(
            f"residual: {len(left)} sum(s) x + f(x) found in the autograd graph are post-norm "
            f"blocks, Norm(x + f(x)) with x a normalization's output ({left[0].key[0]}, …): "
            "the stream is renormalized at every block and cannot grow with the depth, so "
            "these branches were left as drawn"
        )
    if math.isfinite(before):
        result.residual = criterion
        result.stream_growth = after
        if criterion == "none":
            result.notes.append(
                "residual: torch.fx could not trace the model; the autograd graph of one "
                "forward pass on the batch has residual branches, left as drawn "
                "(residual='none'): the stream's RMS grows "
                f"{before:.3g}× over them, measured"
            )
        else:
            what = "zeroed" if criterion == "zero" else f"scaled so that it adds 1/{count} of "
            what += "" if criterion == "zero" else "the stream's mean square, measured"
            result.notes.append(
                f"residual ({criterion}): torch.fx could not trace the model, so its {count} "
                "residual branch(es) were found in the autograd graph of one forward pass on "
                "the batch (each branch's "
                f"last layer a weight layer, its input the stream): each last layer {what}, "
                f"bottom to top; the stream's RMS grows {after:.3g}× over them (it grew "
                f"{before:.3g}× before)"
            )
    _record(result, done)
    return True


def _record(result: Any, done: ResidualInit) -> None:
    """Put what the residual criterion did into autoinit's ``result``: the branches, and
    each target layer's own note."""
    result.residual = done.criterion
    result.branches = done.branches
    by_name = {layer.name: layer for layer in result.layers}
    for branch in done.branches:  # the layer's own row says it too
        layer = by_name.get(branch.target)
        if layer is not None:
            what = (
                "zeroed (residual criterion)"
                if branch.action == "zero"
                else f"×{branch.scale:.3g} after drawing (residual criterion: its branch adds "
                f"1/{len(done.branches)} of the stream's variance)"
            )
            layer.note = (layer.note + "; " if layer.note else "") + what
    # A closing normalization whose γ the criterion set is no longer "left as it was":
    # its line is the branch's (see describe).
    touched = {branch.target for branch in done.branches}
    result.skipped = [entry for entry in result.skipped if entry[0] not in touched]
    # A closing norm autoinit set to γ = 1 (result.norms) then got the criterion's γ.
    closing = {b.target: b for b in done.branches if b.action != "none"}
    result.norms = [
        (
            name,
            kind,
            what.replace(
                "γ = 1",
                f"γ = {closing[name].scale:.4g} (residual criterion, {closing[name].action})",
            )
            if name in closing
            else what,
        )
        for name, kind, what in result.norms
    ]


def describe(result: Any) -> list[str]:
    """Lines for :class:`~signalprop.autoinit.AutoInitResult`'s text: one per branch."""
    return [
        f"residual branch {b.block}: {b.target} "
        + ("zeroed" if b.action == "zero" else f"×{b.scale:.4g}")
        + f" (stream q {b.stream_var:.3g}, branch adds {b.added_var:.3g})"
        + (f"; {b.note}" if b.note else "")
        for b in getattr(result, "branches", [])
    ]


# --------------------------------------------------------------------------- untraceable models


#: Autograd nodes a branch's output may pass between its last weight layer and the sum
#: (see :func:`read_sums`): shape changes, copies, dropout and products with a constant or
#: a parameter (ReZero's α, LayerScale's γ). Each is linear in the layer's output, so
#: scaling the layer scales what reaches the sum by the same factor.
PASSING_NODES = (
    "ViewBackward",
    "UnsafeViewBackward",
    "ReshapeAliasBackward",
    "TransposeBackward",
    "PermuteBackward",
    "CloneBackward",
    "NativeDropoutBackward",
    "SqueezeBackward",
    "UnsqueezeBackward",
    "ToCopyBackward",
    "MulBackward",
    "DivBackward",
)
#: Autograd nodes of normalizations called as functions (a normalization module is
#: recognized by :func:`signalprop._model.is_norm` and a forward hook).
NORM_NODES = (
    "NativeLayerNormBackward",
    "NativeGroupNormBackward",
    "NativeBatchNormBackward",
    "CudnnBatchNormBackward",
    "FusedRmsNormBackward",
)
#: Functions a forward pass adds two tensors with (their inputs are measured).
_ADDS = frozenset(
    {
        torch.add,
        Tensor.add,
        Tensor.add_,
        Tensor.__add__,
        Tensor.__radd__,
        Tensor.__iadd__,
    }
)
#: At most this many autograd nodes are visited below one branch (a guard for huge graphs).
MAX_BRANCH_NODES = 200_000


@dataclass
class ResidualSum:
    """One sum ``stream + branch`` found in the autograd graph, measured on a batch.

    Attributes:
        key: The branch's last weight layer's name and which call of it (a module
            called twice, as in ALBERT's shared layers, is two sums).
        last: That layer.
        layers: The weight layers of the branch (between the stream and the sum),
            bottom to top.
        order: The forward-pass call index of the last layer (bottom to top).
        stream: The stream's mean square entering the sum.
        added: The branch's mean square at the sum.
        total: The sum's mean square.
        renormalized: Whether the stream is renormalized at every block (a post-norm
            block ``Norm(x + f(x))`` whose ``x`` is a normalization's output).
    """

    key: tuple[str, int]
    last: nn.Module
    layers: list[str]
    order: int
    stream: float
    added: float
    total: float
    renormalized: bool


def _name_of(node: Any) -> str:
    return type(node).__name__


def _graph_inputs(node: Any) -> list[Any]:
    """A node's inputs that are computed (not None, not a leaf parameter's accumulator)."""
    return [
        nxt
        for nxt, _ in getattr(node, "next_functions", ())
        if nxt is not None and _name_of(nxt) != "AccumulateGrad"
    ]


def _passes(node: Any) -> Any:
    """The one computed input of a passing node (:data:`PASSING_NODES`), else None."""
    if not _name_of(node).startswith(PASSING_NODES):
        return None
    inputs = _graph_inputs(node)
    if len(inputs) != 1:
        return None
    if _name_of(node).startswith("DivBackward"):  # linear in the numerator only
        first = node.next_functions[0][0]
        return inputs[0] if first is inputs[0] else None
    return inputs[0]


def _chain(node: Any) -> list[Any]:
    """``node`` and the nodes below it through passing nodes."""
    chain = [node]
    while (below := _passes(chain[-1])) is not None:
        chain.append(below)
    return chain


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    return []


def _mean_square(tensor: Tensor) -> float:
    return float(tensor.detach().double().pow(2).mean().item())


class _AddRecorder(torch.overrides.TorchFunctionMode):
    """Records, for each addition of two tensors, its inputs' mean squares by their
    autograd node (taken before the call: an in-place add changes its first input)."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[Any, list[tuple[Any, float]]] = {}
        self.outputs: dict[Any, float] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        operands = [a for a in args[:2] if isinstance(a, Tensor)] if func in _ADDS else []
        before = [(a.grad_fn, _mean_square(a)) for a in operands if a.grad_fn is not None]
        out = func(*args, **(kwargs or {}))
        if len(before) == 2 and isinstance(out, Tensor) and out.grad_fn is not None:
            self.inputs.setdefault(out.grad_fn, before)
            self.outputs.setdefault(out.grad_fn, _mean_square(out))
        return out


def _one_pass(
    model: nn.Module, args: tuple[Tensor, ...]
) -> tuple[list[Tensor], _AddRecorder, dict[Any, tuple[str, int, int]], set[Any], set[Any]]:
    """One forward pass with gradients on: the outputs, the additions' measurements, each
    weight layer's output node (name, call, call order), normalizations' output and
    input nodes."""
    names = {module: name for name, module in model.named_modules()}
    layer_out: dict[Any, tuple[str, int, int]] = {}
    norm_out: set[Any] = set()
    norm_in: set[Any] = set()
    calls: dict[str, int] = {}

    def on_layer(module: nn.Module, inputs: Any, output: Any) -> None:
        name = names[module]
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, Tensor) and out.grad_fn is not None:
            layer_out[out.grad_fn] = (name, calls.get(name, 0), len(layer_out))
        calls[name] = calls.get(name, 0) + 1

    def on_norm_input(module: nn.Module, inputs: Any) -> None:
        if inputs and isinstance(inputs[0], Tensor) and inputs[0].grad_fn is not None:
            norm_in.add(inputs[0].grad_fn)

    def on_norm(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor) and output.grad_fn is not None:
            norm_out.add(output.grad_fn)

    handles = []
    for module in model.modules():
        if is_weight_layer(module):
            handles.append(module.register_forward_hook(on_layer))
        elif is_norm(module):
            handles.append(module.register_forward_pre_hook(on_norm_input))
            handles.append(module.register_forward_hook(on_norm))
    recorder = _AddRecorder()
    try:
        with torch.enable_grad(), recorder:
            outputs = _tensors(model(*args))
    finally:
        for handle in handles:
            handle.remove()
    return outputs, recorder, layer_out, norm_out, norm_in


def _below(start: Any, stop: set[Any], layer_out: dict[Any, Any]) -> tuple[bool, list[Any]]:
    """Whether the graph below ``start`` reaches a node of ``stop`` (not descending past
    it), and the weight layers' output nodes met on the way."""
    seen, stack, found, layers = {start}, [start], False, []
    while stack and len(seen) < MAX_BRANCH_NODES:
        node = stack.pop()
        if node in stop:
            found = True
            continue
        if node in layer_out:
            layers.append(node)
        for nxt, _ in getattr(node, "next_functions", ()):
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return found, layers


def read_sums(model: nn.Module, args: tuple[Tensor, ...]) -> list[ResidualSum]:
    """The residual sums of ``model``'s forward pass on ``args``, found in its autograd
    graph (for models torch.fx cannot trace, such as Hugging Face's), bottom to top.

    The rule: an addition of two computed tensors (``AddBackward0``) is a residual sum
    when one input, the *branch*, comes from a weight layer's output
    (:func:`signalprop._model.is_weight_layer`; Hugging Face's ``Conv1D`` included)
    through passing nodes only (:data:`PASSING_NODES`: views, dropout, products with a
    constant or parameter), and the graph below that layer reaches the other input, the
    *stream* (or the node it is a view of): the branch reads the stream it is added to.
    A sum of two layers reading different things, a bias or mask added to scores, and
    embeddings added together are not residual sums.

    A sum is *renormalized* (a post-norm block, ``Norm(x + f(x))`` as in BERT) when its
    stream is a normalization's output, the sum goes into a normalization, and the sum
    is not the stream of another residual sum: the stream is then renormalized at every
    block and cannot grow with the depth.

    One forward pass with gradients recorded but never computed (no ``backward``); the
    caller sets the mode. Each input's and the sum's mean square are measured on the batch.
    """
    outputs, recorder, layer_out, norm_out, norm_in = _one_pass(model, args)
    modules = dict(model.named_modules())
    found: list[tuple[Any, Any, ResidualSum]] = []
    seen: set[Any] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen.update(stack)
    while stack:
        node = stack.pop()
        for nxt, _ in getattr(node, "next_functions", ()):
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
        if _name_of(node) != "AddBackward0" or node not in recorder.inputs:
            continue
        inputs = [nxt for nxt, _ in node.next_functions]
        if len(inputs) != 2 or any(i is None for i in inputs):
            continue
        for side in (0, 1):
            chain = _chain(inputs[side])
            last = next((n for n in chain if n in layer_out), None)
            if last is None:
                continue
            stream_chain = _chain(inputs[1 - side])
            reaches, below = _below(last, set(stream_chain), layer_out)
            if not reaches:
                continue
            measured = dict(recorder.inputs[node])
            name, call, order = layer_out[last]
            layers = sorted(below, key=lambda n: layer_out[n][2])
            branch = ResidualSum(
                key=(name, call),
                last=modules[name],
                layers=[layer_out[n][0] for n in layers],
                order=order,
                stream=measured.get(inputs[1 - side], math.nan),
                added=measured.get(inputs[side], math.nan),
                total=recorder.outputs.get(node, math.nan),
                renormalized=False,
            )
            normed_stream = any(
                n in norm_out or _name_of(n).startswith(NORM_NODES) for n in stream_chain
            )
            found.append((node, stream_chain, branch))
            branch.renormalized = normed_stream
            break
    streams = {n for _, chain, _ in found for n in chain}
    for node, _, branch in found:
        if branch.renormalized:  # its stream is a norm's output: is the sum renormalized?
            into_norm = node in norm_in or any(
                node in {nxt for nxt, _ in getattr(n, "next_functions", ())}
                for n in seen
                if _name_of(n).startswith(NORM_NODES)
            )
            branch.renormalized = into_norm and node not in streams
    return sorted((branch for _, _, branch in found), key=lambda b: b.order)


def _scale_layer(module: nn.Module, factor: float) -> None:
    """Multiply the layer's output by ``factor``: its weight and bias (an
    ``nn.MultiheadAttention``'s output projection's)."""
    target = module.out_proj if isinstance(module, nn.MultiheadAttention) else module
    with torch.no_grad():
        for tensor in (getattr(target, "weight", None), getattr(target, "bias", None)):
            if isinstance(tensor, Tensor):
                tensor.mul_(factor)


def measured_criterion(
    model: nn.Module, args: tuple[Tensor, ...], criterion: str
) -> tuple[ResidualInit, list[ResidualSum], tuple[float, float]]:
    """Autoinit's residual criterion for a model torch.fx cannot trace, measured on ``args``.

    The residual sums are found in the autograd graph (:func:`read_sums`); the N sums that
    are not renormalized (post-norm blocks are left alone) are taken bottom to top, and
    each branch's last weight layer (weight and bias) is scaled so that, measured on the
    batch, the branch adds ``1/N`` of the stream's mean square at its sum (``"scaled"``;
    each measurement after the lower branches are scaled, so the stream grows to about
    ``(1 + 1/N)^N ≤ e`` in mean square), zeroed (``"zero"``), or left (``"none"``).
    Attention branches (softmax, products of signals) are outside the residual mean field,
    hence the measurement.

    Measured in eval mode (no dropout, normalizations on their running statistics), with
    gradients recorded but never computed; the model's modes, buffers, the parameters'
    ``requires_grad`` and the global random state are put back. Returns what was done, the
    renormalized sums left alone, and the stream's RMS growth before and after (NaN when
    no sum was found).
    """
    result = ResidualInit(criterion=criterion)
    was_training = {m: m.training for m in model.modules()}
    frozen = [p for p in model.parameters() if not p.requires_grad]
    growth = (math.nan, math.nan)
    left: list[ResidualSum] = []

    def stream(sums: list[ResidualSum]) -> list[ResidualSum]:
        return [s for s in sums if not s.renormalized]

    def rms_growth(sums: list[ResidualSum]) -> float:
        if not sums or not sums[0].stream > 0:
            return math.nan
        return math.sqrt(sums[-1].total / sums[0].stream)

    try:
        with torch.random.fork_rng(devices=[]), buffers_kept(model):
            model.eval()
            for parameter in frozen:  # the graph needs one: none gets a gradient
                parameter.requires_grad_(True)
            sums = read_sums(model, args)
            left = [s for s in sums if s.renormalized]
            branches = stream(sums)
            before = rms_growth(branches)
            count, done = len(branches), set()
            keys = [b.key for b in branches] if criterion != "none" else []
            for index, key in enumerate(keys):
                if index:  # measured again: the lower branches have changed the stream
                    branches = stream(read_sums(model, args))
                here = next((b for b in branches if b.key == key), None)
                if here is None or here.last in done:  # shared module: set once
                    continue
                scale = 0.0
                if criterion == "scaled":
                    scale = math.sqrt(here.stream / count / here.added) if here.added > 0 else 1.0
                _scale_layer(here.last, scale)
                done.add(here.last)
                layers = here.layers or [here.key[0]]
                result.branches.append(
                    BranchInit(
                        block=_block_name(layers),
                        layers=layers,
                        target=here.key[0],
                        action=criterion,
                        scale=scale,
                        stream_var=here.stream,
                        added_var=here.added * scale**2,
                        note="measured on the batch (branch found in the autograd graph)",
                    )
                )
            after = rms_growth(stream(read_sums(model, args))) if criterion != "none" else before
            growth = (before, after)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
        for module, training in was_training.items():
            module.training = training
    result.predicted_growth = growth[1]
    return result, left, growth
