"""Check the conditions under which a SELU network normalizes itself.

Klambauer et al. (2017) prove that mean 0 / variance 1 is an attracting fixed
point of a SELU layer only when (a) the inputs are standardized, (b) every
hidden layer's weights have mean 0 and variance 1/fan_in (LeCun normal), (c)
the network is a plain sequence (no skip connections, no recurrence), (d) the
layers are dense, and (e) nothing breaks the fixed point: ordinary dropout
(alpha dropout is fine), ℓ1/ℓ2 or max-norm. Each condition is checked on the
model as it is — weights by their actual statistics, not by a name — and the
resulting per-layer statistics are measured with :func:`diagnose`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from signalprop._model import (
    EMBEDDINGS,
    WeightLayer,
    activation_kind,
    layer_scales,
    read_model,
    reads_keras,
    trace,
)
from signalprop._validation import invalid_parameter
from signalprop.diagnostics._diagnose import LossFn, _diagnose
from signalprop.diagnostics._report import Report

#: Layer types that turn token ids into the first signal, by the name diagnose records.
EMBEDDING_TYPES = {cls.__name__ for cls in EMBEDDINGS}

__all__ = ["Condition", "SelfNormalizationCheck", "check_self_normalizing"]

#: Standardized inputs: |mean| below this and |std − 1| below this (batch statistics).
INPUT_TOLERANCE = 0.1
#: LeCun normal: |var·fan_in − 1| below this many standard errors of the sample
#: variance, sqrt(κ−1 / n) with κ−1 = 2 (the largest, a plain normal's) ...
WEIGHT_STANDARD_ERRORS = 5.0
#: ... and never tighter than this relative tolerance.
WEIGHT_MIN_TOLERANCE = 0.05


@dataclass
class Condition:
    """One condition of self-normalization, met or violated, and where.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = sp.Sequential(
        ...     [sp.Dense(64, 'selu', kernel_initializer='lecun_normal') for _ in range(10)],
        ...     input_shape=(32,),
        ... )
        >>> condition = sp.check_self_normalizing(model, torch.randn(256, 32)).conditions[0]
        >>> condition.name, condition.met
        ('standardized_inputs', True)
    """

    name: str
    met: bool
    detail: str
    where: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        mark = "met     " if self.met else "VIOLATED"
        where = f" [{', '.join(self.where[:8])}{', …' if len(self.where) > 8 else ''}]"
        return f"{mark} {self.name}: {self.detail}{where if self.where else ''}"


@dataclass
class SelfNormalizationCheck:
    """The result of :func:`check_self_normalizing`.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = sp.Sequential(
        ...     [sp.Dense(64, 'selu', kernel_initializer='he_normal') for _ in range(10)],
        ...     input_shape=(32,),
        ... )
        >>> check = sp.check_self_normalizing(model, torch.randn(256, 32))
        >>> check.ok, [c.name for c in check.conditions if not c.met]
        (False, ['lecun_normal_init'])
    """

    conditions: list[Condition]
    report: Report | None = None

    @property
    def ok(self) -> bool:
        """Whether every condition is met."""
        return all(c.met for c in self.conditions)

    def condition(self, name: str) -> Condition:
        """The condition called ``name``."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(name)

    def __str__(self) -> str:
        verdict = "self-normalizing" if self.ok else "not self-normalizing"
        return "\n".join([f"{verdict}:", *(f"  {c}" for c in self.conditions)])


def _hidden_layers(model: nn.Module) -> list[WeightLayer]:
    """The weight layers in forward order, less the output layer (which needs neither SELU
    nor LeCun weights)."""
    return read_model(model).layers[:-1]


def _check_inputs(inputs: Tensor, report: Report) -> Condition:
    """Standardized inputs; for token ids (integers), the embedding's output they become."""
    what, where = "batch", []
    if inputs.is_floating_point():
        if inputs.numel() < 2:
            return Condition("standardized_inputs", False, "need a batch of at least 2 values")
        std_, mean_ = torch.std_mean(inputs.detach().double())
        mean, std = mean_.item(), std_.item()
    else:  # token ids are not a signal: the first one is an embedding's output
        first = next((r for r in report.layers if r.layer_type in EMBEDDING_TYPES), None)
        if first is None or first.pre_mean is None or first.pre_std is None:
            return Condition("standardized_inputs", False, "integer inputs that no embedding reads")
        what, where = f"token ids: embedding {first.name}'s output,", [first.name]
        mean, std = first.pre_mean, first.pre_std
    ok = abs(mean) < INPUT_TOLERANCE and abs(std - 1) < INPUT_TOLERANCE
    fix = (
        "standardize each feature with the training set's mean and std"
        if inputs.is_floating_point()
        else "initialize the embedding with std 1 (nn.init.normal_(weight, 0, 1))"
    )
    return Condition(
        "standardized_inputs",
        ok,
        f"{what} mean {mean:+.3f}, std {std:.3f} "
        f"(want |mean| < {INPUT_TOLERANCE:g}, |std − 1| < {INPUT_TOLERANCE:g})"
        + ("" if ok else f": {fix}"),
        where if not ok else [],
    )


def _check_weights(hidden: list[WeightLayer]) -> Condition:
    bad: list[str] = []
    worst = ""
    for layer in hidden:
        name, module = layer.name, layer.module
        weight = getattr(module, "weight").detach().double()  # noqa: B009
        scales = layer_scales(module)
        n = weight.numel()
        tolerance = max(WEIGHT_MIN_TOLERANCE, WEIGHT_STANDARD_ERRORS * math.sqrt(2.0 / n))
        mean_limit = 5 * math.sqrt(scales["weight_var"] / n)
        mean = weight.mean().item()
        scale = scales["weight_scale_fan_in"]
        if abs(scale - 1) > tolerance or abs(mean) > mean_limit:
            bad.append(name)
            worst = worst or f"layer {name}: var·fan_in = {scale:.3g}, mean {mean:+.2g}"
    detail = (
        f"all {len(hidden)} hidden layers have mean 0 and var·fan_in ≈ 1"
        if not bad
        else f"{len(bad)} of {len(hidden)} hidden layers are not LeCun normal ({worst}): "
        "re-initialize them with lecun_normal"
    )
    return Condition("lecun_normal_init", not bad, detail, bad)


def _branching(model: nn.Module) -> tuple[bool | None, list[str]]:
    """Whether the traced graph branches (skip connections); None if it cannot be traced."""
    graph = trace(model)
    if graph is None:
        return None, []
    branches = []
    for node in graph.nodes:
        if node.op in ("get_attr", "output"):
            continue
        users = [u for u in node.users if u.op != "output"]
        tensor_inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if len(users) > 1 or len(tensor_inputs) > 1:
            branches.append(str(node.target) if node.op == "call_module" else node.name)
    return bool(branches), branches


def _check_sequential(model: nn.Module) -> Condition:
    recurrent = [n or "(model)" for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    if recurrent:
        return Condition("sequential", False, "recurrent layers found", recurrent)
    branches, where = _branching(model)
    if branches is None:
        return Condition(
            "sequential", False, "could not trace the model with torch.fx to rule out skips"
        )
    if branches:
        return Condition(
            "sequential", False, "the computation graph branches (skip connections)", where
        )
    return Condition("sequential", True, "a plain chain of layers (traced with torch.fx)")


def _check_dense(model: nn.Module) -> Condition:
    conv = [
        n or "(model)" for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)
    ]
    if conv:
        return Condition(
            "dense", False, "convolutional layers: often works, but is not guaranteed", conv
        )
    return Condition("dense", True, "every weight layer is dense")


def _check_dropout(model: nn.Module) -> Condition:
    ordinary = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
    found = [n or "(model)" for n, m in model.named_modules() if isinstance(m, ordinary)]
    if found:
        return Condition(
            "no_ordinary_dropout",
            False,
            "ordinary dropout breaks the fixed point: use nn.AlphaDropout",
            found,
        )
    return Condition(
        "no_ordinary_dropout",
        True,
        "no ordinary dropout (ℓ1/ℓ2 and max-norm in the optimizer are not visible here)",
    )


def _check_activations(hidden: list[WeightLayer]) -> Condition:
    """Each hidden layer's output feeds SELU (a module, a Dense's own, or ``torch.selu``)."""
    other = [
        layer.name
        for layer in hidden
        if not (isinstance(layer.consumer, nn.Module) and activation_kind(layer.consumer) == "selu")
    ]
    if other:
        return Condition("selu_activations", False, "hidden layers without SELU", other)
    return Condition("selu_activations", True, f"all {len(hidden)} hidden layers use SELU")


@reads_keras()
def check_self_normalizing(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    loss_fn: LossFn | None = None,
) -> SelfNormalizationCheck:
    """Report each condition of SELU self-normalization as met or violated, with where.

    Conditions: ``standardized_inputs``, ``selu_activations``,
    ``lecun_normal_init`` (from the weights' statistics), ``sequential`` (no
    skip connections or recurrence, from a torch.fx trace), ``dense``,
    ``no_ordinary_dropout``. The per-layer statistics measured on ``inputs``
    are in ``result.report``, as :func:`~signalprop.diagnose` measures them.

    Args:
        model: Any ``nn.Module``.
        inputs: A batch.
        targets: Labels for the loss whose gradient ``result.report``
            measures (as in :func:`~signalprop.diagnose`); without them, its
            surrogate loss.
        loss_fn: ``loss_fn(output, targets) -> scalar``, as in
            :func:`~signalprop.diagnose`: needed (with ``targets``) when the
            model's output is not a Tensor, e.g. a dict, a tuple or a Hugging
            Face ``ModelOutput``:
            ``loss_fn=lambda out, y: F.cross_entropy(out["logits"], y)``.

    Examples:
        >>> import torch, signalprop as sp
        >>> model = sp.Sequential([sp.Dense(50, "selu", kernel_initializer="lecun_normal")
        ...                        for _ in range(10)] + [sp.Dense(10)], input_shape=(50,))
        >>> sp.check_self_normalizing(model, torch.randn(500, 50)).ok
        True
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "check_self_normalizing", "an nn.Module", model)
    if not isinstance(inputs, Tensor):
        raise invalid_parameter(
            "inputs", "check_self_normalizing", "a Tensor", type(inputs).__name__
        )
    report = _diagnose(
        model, inputs, targets, loss_fn, thresholds=None, seed=0, caller="check_self_normalizing"
    )
    hidden = _hidden_layers(model)
    conditions = [
        _check_inputs(inputs, report),
        _check_activations(hidden),
        _check_weights(hidden),
        _check_sequential(model),
        _check_dense(model),
        _check_dropout(model),
    ]
    return SelfNormalizationCheck(conditions, report)
