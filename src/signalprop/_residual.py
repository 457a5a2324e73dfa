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

* the mean field of residual stacks: :func:`residual_stream` (exact recursions
  on signalprop's Gaussian integrals for any activation, pre-activation,
  post-activation and normalized branches) and :func:`relu_residual_growth` (the
  closed form for ReLU); re-exported by :mod:`signalprop.meanfield`;
* :func:`predict_stream` and :func:`measure_stream`: the stream of a real model's
  residual blocks (found by :func:`signalprop._model.find_residual_branches`),
  predicted from its weights and measured on a batch;
* :func:`apply_residual_criterion`: autoinit's residual criterion;
* :func:`residual_finding`: diagnose's ``residual_growth`` finding.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from signalprop import init as _init
from signalprop._model import (
    Activation,
    ResidualBranch,
    find_residual_branches,
)
from signalprop._validation import check_int, check_option, check_real

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
    "residual_finding",
    "residual_stream",
]

#: Block kinds of :func:`residual_stream`: ``"pre"`` (``x + α·branch``, the
#: pre-activation or "full" residual block), ``"post"`` (``φ(x + α·branch)``, the
#: original ResNet's), ``"normalized"`` (``x + α·γ·Norm(branch)``: the branch adds a
#: fixed variance).
BLOCKS = ("pre", "post", "normalized")
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


# --------------------------------------------------------------------------- mean field


@dataclass
class ResidualStream:
    """The mean field of a residual stack, block by block.

    Attributes:
        q: The stream's second moment per unit at the input of block 1, …, N and
            after block N (N + 1 values).
        gradient: The mean squared gradient at the same places, over its value
            after block N (so ``gradient[-1] == 1`` and ``gradient[0]`` is the
            growth of the gradient from the top of the stack to its bottom).
        block: ``"pre"``, ``"post"`` or ``"normalized"``.
    """

    q: np.ndarray
    gradient: np.ndarray
    block: str

    @property
    def growth(self) -> float:
        """The stream's RMS after the last block over its RMS entering the first."""
        return float(math.sqrt(self.q[-1] / self.q[0]))

    @property
    def gradient_growth(self) -> float:
        """The gradient's RMS at the bottom of the stack over its RMS at the top."""
        return float(math.sqrt(self.gradient[0]))


def residual_stream(
    blocks: int,
    activation: str | Activation = "relu",
    *,
    weight_var: float = 2.0,
    branch_weight_var: float | None = None,
    bias_var: float = 0.0,
    alpha: float = 1.0,
    block: str = "pre",
    norm_var: float = 1.0,
    input_var: float = 1.0,
) -> ResidualStream:
    """The stream's second moment and the gradient through ``blocks`` residual blocks.

    Each block's branch is ``W₂ φ(W₁ x + b₁) + b₂`` with weights of variance
    ``weight_var/fan_in`` (W₁: σ_w²) and ``branch_weight_var/fan_in`` (W₂: σ_v²,
    default σ_w²), biases of variance ``bias_var``, scaled by ``alpha``. With
    ``h = σ_w² q + σ_b²`` the branch's pre-activation variance:

    * ``"pre"``: ``q ← q + α²(σ_v² E[φ(√h z)²] + σ_b²)``; the mean squared
      gradient grows going down by ``1 + α² σ_v² σ_w² E[φ′(√h z)²]`` per block.
    * ``"post"``: the sum ``s = q + α²(…)`` goes through φ: ``q ← E[φ(√s z)²]``,
      the gradient factor times ``E[φ′(√s z)²]`` (the sum taken as Gaussian: a
      mean-field approximation, as the stream after a ReLU is not centred).
    * ``"normalized"``: the branch ends in a normalization of affine weight γ
      (``norm_var`` = γ²): ``q ← q + α² γ²``, linear growth (De & Smith 2020),
      and the gradient factor ``1 + α² γ² σ_v² σ_w² E[φ′²] / (σ_v² E[φ²] + σ_b²)``,
      which tends to 1 as the stream grows.

    Gaussian integrals are signalprop's (:func:`signalprop.meanfield.second_moments`).

    Example:
        >>> stream = residual_stream(64, "relu", weight_var=1 / 3)  # PyTorch's default
        >>> round(stream.growth, 3)
        5.642
        >>> round(stream.growth ** 2, 3) == round((1 + 1 / 18) ** 64, 3)
        True
    """
    from signalprop.meanfield import second_moments

    caller = "meanfield.residual_stream"
    blocks = check_int(blocks, param="blocks", caller=caller, low=1)
    check_option(block, BLOCKS, param="block", caller=caller)
    weight_var = check_real(weight_var, param="weight_var", caller=caller, low=0)
    branch_var = (
        weight_var
        if branch_weight_var is None
        else check_real(branch_weight_var, param="branch_weight_var", caller=caller, low=0)
    )
    bias_var = check_real(bias_var, param="bias_var", caller=caller, low=0)
    alpha = check_real(alpha, param="alpha", caller=caller)
    norm_var = check_real(norm_var, param="norm_var", caller=caller, low=0)
    q = check_real(input_var, param="input_var", caller=caller, low=0, low_inclusive=False)
    qs, factors = [q], []
    for _ in range(blocks):
        h = weight_var * q + bias_var
        second, derivative = second_moments(activation, h)
        branch = branch_var * second + bias_var
        jacobian = branch_var * weight_var * derivative
        if block == "pre":
            factors.append(1 + alpha**2 * jacobian)
            q = q + alpha**2 * branch
        elif block == "normalized":
            factors.append(1 + alpha**2 * norm_var * jacobian / branch if branch > 0 else 1.0)
            q = q + alpha**2 * norm_var
        else:
            total = q + alpha**2 * branch
            post_second, post_derivative = second_moments(activation, total)
            factors.append(post_derivative * (1 + alpha**2 * jacobian))
            q = post_second
        qs.append(q)
    gradient = np.cumprod(np.array(factors[::-1] or [1.0]))[::-1]
    return ResidualStream(np.array(qs), np.append(gradient, 1.0), block)


def relu_residual_growth(
    blocks: int, weight_var: float = 2.0, branch_weight_var: float | None = None, alpha: float = 1.0
) -> float:
    """The closed form for ReLU pre-activation blocks without biases: the stream's
    variance grows by ``(1 + α² σ_v² σ_w² / 2)^N`` (and the mean squared gradient by
    the same factor, since E[relu′²] = E[relu²]/q = 1/2). Returns the RMS growth,
    its square root.

    Example:
        >>> round(relu_residual_growth(64, 1 / 3), 3)  # PyTorch's default, 64 blocks
        5.642
    """
    caller = "meanfield.relu_residual_growth"
    blocks = check_int(blocks, param="blocks", caller=caller, low=1)
    weight_var = check_real(weight_var, param="weight_var", caller=caller, low=0)
    branch = weight_var if branch_weight_var is None else branch_weight_var
    branch = check_real(branch, param="branch_weight_var", caller=caller, low=0)
    return float((1 + alpha**2 * branch * weight_var / 2) ** (blocks / 2))


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
    from signalprop.meanfield import second_moments

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


def _interpreted(model: nn.Module) -> torch.fx.GraphModule | None:
    from signalprop._model import trace

    graph = trace(model)
    return None if graph is None else torch.fx.GraphModule(model, graph)


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
    from signalprop.diagnostics._diagnose import _buffers_kept

    was_training = {m: m.training for m in model.modules()}
    means: list[float] = []
    try:
        with torch.random.fork_rng(devices=[]), _buffers_kept(model):
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


def residual_finding(model: nn.Module, args: tuple[Tensor, ...], threshold: float) -> Any:
    """diagnose's ``residual_growth`` finding (or None): the stream's RMS, measured on
    ``args`` in the model's current mode, grows by more than ``threshold`` from the first
    block's input to the last block's output."""
    from signalprop.diagnostics._report import Finding

    branches, _ = find_residual_branches(model)
    if len(branches) < 2:
        return None
    means: list[float] = []
    try:
        measured = measure_stream(model, args, branches, means)
    except Exception:  # the traced graph did not run as the model does: nothing judged
        return None
    if len(measured) < 2 or not all(math.isfinite(v) for v in measured) or measured[0] <= 0:
        return None
    growth = measured[-1] / measured[0]
    predicted = predict_stream(model, branches, measured[0] ** 2, means[0]).growth
    if growth <= threshold:
        return None
    per_block = growth ** (1 / len(branches))
    finding = Finding(
        kind="residual_growth",
        layers=[b.layers[-1] for b in branches],
        severity="warning",
        message=(
            f"the residual stream's RMS grows {growth:.3g}× over {len(branches)} residual "
            f"blocks (×{per_block:.3g} per block; the mean field predicts {predicted:.3g}× from "
            "the weights): each branch adds variance in proportion to the stream instead of "
            "a share of it, so the last blocks' branches and the gradient scale with the depth"
        ),
        fix=(
            "sp.autoinit(model) applies its residual criterion: each branch's last layer (or "
            "its closing normalization's weight γ) scaled so that the N branches together "
            "at most e-fold the stream's variance (residual='zero' zeroes them instead)"
        ),
    )
    return finding


def after_autoinit(
    model: nn.Module, args: tuple[Tensor, ...] | None, result: Any, criterion: str
) -> None:
    """autoinit's residual post-pass: apply ``criterion`` to the model's branches and
    record it in ``result`` (an :class:`~signalprop.autoinit.AutoInitResult`)."""
    branches, unread = find_residual_branches(model)
    if not branches:
        if unread is not None and criterion != "none":  # say what was not done, and why
            result.notes.append(
                f"residual: {unread}, so no branch was scaled; if the model adds branches to "
                "a stream (transformer blocks), the stream's variance grows with each one"
            )
        return
    input_var, input_mean = 1.0, 0.0
    if args is not None:  # the stream entering the first block, as autoinit drew it
        measured, means = stream_at_init(model, args, branches[:1])
        if measured and math.isfinite(measured[0]) and measured[0] > 0:
            input_var, input_mean = measured[0] ** 2, means[0]
    targets = {layer.name: (layer.target_var, layer.bias_var) for layer in result.layers}
    done = apply_residual_criterion(model, criterion, targets, input_var, input_mean)
    result.residual = criterion
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


def describe(result: Any) -> list[str]:
    """Lines for :class:`~signalprop.autoinit.AutoInitResult`'s text: one per branch."""
    return [
        f"residual branch {b.block}: {b.target} "
        + ("zeroed" if b.action == "zero" else f"×{b.scale:.4g}")
        + f" (stream q {b.stream_var:.3g}, branch adds {b.added_var:.3g})"
        + (f"; {b.note}" if b.note else "")
        for b in getattr(result, "branches", [])
    ]
