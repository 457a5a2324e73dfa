"""Initialize any PyTorch model for its activations, analytically or from data.

``autoinit(model)`` finds, for every ``nn.Linear``, ``nn.Conv*`` and
:class:`~signalprop.layers.Dense`, the activation that produced its input and
the one that consumes its output (its own for a Dense, the next module in an
``nn.Sequential``, or a function called in ``forward``, found by a torch.fx
trace: :mod:`signalprop._model`), and redraws its weights with variance
``σ_w² / fan_in`` and its biases from N(0, σ_b²) where:

* the *consumer* sets the target: the pre-activation variance ``q`` and the
  bias variance σ_b² the criterion gives it (:func:`signalprop.meanfield.init_point`);
* the *producer* sets what the layer reads: inputs of second moment
  ``E[φ_in(√q_in z)²]``, with ``q_in`` the producer's own target;
* so ``σ_w² = (q − σ_b²) / E[φ_in(√q_in z)²]``.

Criteria (``criterion=``):

* ``"critical"`` (the default, with orthogonal weights): the edge of chaos
  (χ₁ = 1 at a stable q*): He's variance for the ReLU family, σ_w² ≈ 1.761
  with σ_b² = 0.05 for tanh, SELU's own fixed point; where an activation has
  no critical point, the variance criterion, with a note (Schoenholz et al.
  2017; Pennington et al. 2017).
* ``"variance"``: every pre-activation of variance 1, biases 0:
  ``σ_w² = 1 / E[φ_in(z)²]`` (He et al. 2015, for any activation).

A layer whose output feeds no activation (the output layer, a normalization)
gets ``q = 1`` and zero biases; one that reads the model's input gets
``E[x²]`` measured on ``inputs`` (1 without inputs: standardized data).

Normalization (Ioffe & Szegedy 2015; Ba et al. 2016): a layer whose output goes
through a BatchNorm, LayerNorm, GroupNorm, RMSNorm or InstanceNorm before its
activation (:attr:`signalprop._model.WeightLayer.norm`) does not set that
activation's input: the norm does, at variance γ² + β². No σ_w² is solved for
it. Such a layer instead gets an output of mean 0 and variance 1: biases
``b = −m·W𝟙`` cancel its producer's mean m = E[φ_in] and
``σ_w² = 1 / E[(φ_in − m)²]`` (without biases, ``1 / E[φ_in²]``: He's 2 for
ReLU). Why this criterion: mean 0 and variance 1 are the running statistics a
fresh BatchNorm starts from, so the net evaluated (``model.eval()``) before
any training step sees what training mode sees; a LayerNorm, which normalizes
across units, does not take each unit's share of the mean (a constant) for
signal, which for the logistic would make the gradient factor through layer and
norm E[φ′²]/E[φ²] ≈ 0.15 instead of ≈ 1; and the χ reported,
``σ_w² E[φ_in′²]``, is then also the gradient factor through the layer and its
norm in training mode (the norm divides by the std it reads, 1). The norm
itself gets γ = 1 and β = 0 (its activation reads N(0, 1), the standard the
variances assume) and fresh running statistics, and is listed in
``result.norms``. A layer that reads an activation fed by a norm reads it at
q = γ² + β² = 1. Such a layer's phase reads ``"normalized"`` and its note says so.

A layer (outside a plain chain) whose activation is not continued by a stack
(no layer reading its output feeds another activation: a squeeze-excite gate
multiplied into the signal, a transformer MLP's one GELU whose projection goes
to the residual sum) gets the variance criterion, pre-activations of variance 1
(no σ_b² of 4 for GELU): the edge of chaos is a property of a stack of that
activation, and there is none. The layers reading it read it at variance 1.

Parameters shared between modules are found: a layer whose weight is another
module's (GPT-2's ``lm_head.weight`` *is* ``transformer.wte.weight``) is left as
it is when that module is not a layer autoinit initializes (an embedding keeps
its own initialization and the tie holds), and is initialized once, as the
first of them, when all are; ``result.skipped`` says which. A module called
more than once in ``forward`` is one layer, initialized once.

``distribution="orthogonal"`` draws (semi-)orthogonal weights with the same
variance, which at the edge of chaos gives tanh-like nets dynamical isometry
(Saxe et al. 2014; Pennington et al. 2017).

``mode="data"`` then rescales each layer, bottom to top, on a batch until its
pre-activations have mean ≈ 0 and the target std √q: LSUV (Mishkin & Matas,
2016) with mean correction through the bias. Layers that do not get there in
``max_iterations`` are reported, never hidden.

The result says, for each layer, the gradient factor χ = σ_w² E[φ_in′(√q_in z)²]
its initialization gives it and the phase that puts it in.

Examples:
    >>> import torch, signalprop as sp
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 2))
    >>> result = sp.autoinit(model, criterion="critical")
    >>> [(layer.producer, layer.activation) for layer in result.layers]
    [('data', 'Tanh'), ('Tanh', 'linear')]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from signalprop import _residual
from signalprop import init as _init
from signalprop import meanfield as _meanfield
from signalprop._model import (
    Activation,
    WeightLayer,
    activation_key,
    activation_kind,
    is_norm,
    is_weight_layer,
    layer_bias,
    layer_weight,
    out_in_weight,
    read_model,
    reads_keras,
)
from signalprop._validation import (
    check_batch,
    check_int,
    check_option,
    check_real,
    invalid_parameter,
)

__all__ = [
    "CRITERIA",
    "DEFAULT_CRITERION",
    "DEFAULT_DISTRIBUTION",
    "DISTRIBUTIONS",
    "AutoInitResult",
    "LayerInit",
    "autoinit",
]

CRITERIA = _meanfield.CRITERIA
"""Criteria for each layer's variance; see the module's notes.

Examples:
    >>> from signalprop.autoinit import CRITERIA
    >>> CRITERIA
    ('critical', 'variance')
"""
DEFAULT_CRITERION = "critical"
"""The criterion and distribution used when none is given: the edge of chaos with
orthogonal weights. In the autoinit-100 study (100 hidden layers, book settings,
3 seeds; docs/results/autoinit-100) it beat the variance criterion for all eight
activations and the textbook pairing for all eight, by more than the seeds' spread
for six (tanh 0.866 vs 0.785, the logistic 0.850, GELU 0.792 and SiLU 0.769 vs
chance; SELU and ReLU by less than the textbook runs' spread).

Examples:
    >>> from signalprop.autoinit import DEFAULT_CRITERION
    >>> DEFAULT_CRITERION
    'critical'
"""
DEFAULT_DISTRIBUTION = "orthogonal"
"""The distribution used when none is given: orthogonal weights (see `DEFAULT_CRITERION`).

Examples:
    >>> from signalprop.autoinit import DEFAULT_DISTRIBUTION
    >>> DEFAULT_DISTRIBUTION
    'orthogonal'
"""
DISTRIBUTIONS = ("normal", "orthogonal", "truncated_normal", "uniform")
"""How weights are drawn, all with the same variance.

Examples:
    >>> from signalprop.autoinit import DISTRIBUTIONS
    >>> DISTRIBUTIONS
    ('normal', 'orthogonal', 'truncated_normal', 'uniform')
"""
#: Why autoinit leaves a normalization layer as it is: one that does not sit between a
#: weight layer and its activation (a transformer's pre-norm LayerNorm) starts at γ = 1,
#: β = 0 from its own constructor. Those between a layer and its activation are set.
NORM_LEFT_ALONE = "normalization layer: its weight of 1 is already right"
#: The pre-activation variance a normalization gives its activation: γ² + β² with γ = 1,
#: β = 0 as autoinit sets them (the norm's output is standardized).
NORMALIZED_Q = 1.0


@dataclass
class LayerInit:
    """What autoinit did to one layer.

    Attributes:
        name, layer_type: The layer.
        activation: The activation consuming its output (``"linear"``: none).
        producer: The activation whose output it reads (``"data"``: the
            model's input; ``"linear"``: none known).
        gain: √σ_w², the weights' std times √fan_in.
        weight_var, bias_var: σ_w² and σ_b² drawn.
        target_var: The pre-activation variance aimed at (q).
        chi: σ_w² E[φ_in′(√q_in z)²], the factor by which the mean squared
            gradient grows through this layer (None when it reads the data).
        phase: What χ makes of this one layer, in words true of any stack:
            ``"critical"`` (χ ≈ 1), ``"expanding"`` (χ > 1), ``"contracting"``,
            or ``"output"`` (None when it reads the data); see
            :class:`signalprop.meanfield.ChainLayer`. ``"normalized"``: a norm
            between it and its activation sets the pre-activation's scale.
        offset: The producer's mean its biases cancel (``b −= offset·W𝟙``;
            0: none), for activations whose mean is not zero.
        cumulative: Π χ of the layers above it: the mean squared gradient at
            its pre-activations over the logits'.
        note: Why the layer is not at χ = 1 with its target variance, when not.
        std_before, std_after: The weight's std before and after.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ... )
        >>> first = sp.autoinit(model).layers[0]
        >>> first.name, first.activation, round(first.weight_var, 3)
        ('0', 'Tanh', 0.52)
    """

    name: str
    layer_type: str
    activation: str
    gain: float
    std_before: float
    std_after: float
    input_from: str = "activation"  # "data" for a layer reading the model's input
    producer: str = "linear"
    weight_var: float = 1.0
    bias_var: float = 0.0
    target_var: float = 1.0
    chi: float | None = None
    phase: str | None = None
    iterations: int = 0
    output_mean: float | None = None
    output_std: float | None = None
    converged: bool | None = None
    offset: float = 0.0
    cumulative: float | None = None
    note: str = ""


@dataclass
class AutoInitResult:
    """The summary of :func:`autoinit`.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ... )
        >>> result = sp.autoinit(model)
        >>> result.criterion, len(result.layers)
        ('critical', 2)
    """

    mode: str
    layers: list[LayerInit]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, reason
    notes: list[str] = field(default_factory=list)
    #: Normalization layers autoinit set (name, type, what): those between a layer and
    #: its activation.
    norms: list[tuple[str, str, str]] = field(default_factory=list)
    criterion: str = DEFAULT_CRITERION
    distribution: str = DEFAULT_DISTRIBUTION
    #: The residual criterion applied (see :mod:`signalprop._residual`; None: no
    #: residual branch found), what it did per branch, and the stream's RMS growth the
    #: mean field predicts after it.
    residual: str | None = None
    branches: list[_residual.BranchInit] = field(default_factory=list)
    stream_growth: float | None = None

    @property
    def not_converged(self) -> list[str]:
        """Layers that data mode could not bring to mean 0 and the target std."""
        return [layer.name for layer in self.layers if layer.converged is False]

    def __str__(self) -> str:
        lines = [
            f"autoinit ({self.criterion}, {self.mode}, {self.distribution}): "
            f"{len(self.layers)} layers initialized"
            + (f", {len(self.skipped)} left as they were" if self.skipped else ""),
            f"{'layer':>12}  {'type':>8}  {'reads':>10}  {'feeds':>10}  {'σ_w²':>7}  "
            f"{'σ_b²':>5}  {'offset':>6}  {'q':>6}  {'χ':>6}  {'Π χ above':>9}  {'phase':>11}  "
            f"{'std before':>10}  {'std after':>9}"
            + ("  iters  out mean  out std" if self.mode == "data" else ""),
        ]
        for layer in self.layers:
            chi = "-" if layer.chi is None else f"{layer.chi:6.3f}"
            line = (
                f"{layer.name:>12}  {layer.layer_type:>8}  {layer.producer:>10}  "
                f"{layer.activation:>10}  {layer.weight_var:7.4g}  {layer.bias_var:5.3g}  "
                f"{layer.offset:6.3g}  {layer.target_var:6.3g}  {chi:>6}  "
                f"{'-' if layer.cumulative is None else f'{layer.cumulative:9.4g}':>9}  "
                f"{layer.phase or 'input':>11}  {layer.std_before:10.4g}  {layer.std_after:9.4g}"
            )
            if self.mode == "data":
                line += (
                    f"  {layer.iterations:5d}  {layer.output_mean or 0:+8.3f}  "
                    f"{layer.output_std or 0:7.3f}" + ("" if layer.converged else "  NOT CONVERGED")
                )
            lines.append(line + (f"  ({layer.note})" if layer.note else ""))
        lines += [f"normalization: {n} ({t}): {what}" for n, t, what in self.norms]
        lines += [f"left as it was: {n} ({t}): {why}" for n, t, why in self.skipped]
        lines += _residual.describe(self)
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _name(activation: Activation | str | None) -> str:
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    if isinstance(activation, nn.Module):
        return type(activation).__name__
    return str(getattr(activation, "__name__", repr(activation)))


#: Weight layers from which a stack with ReLU layers is deep enough for dead units at init.
DEEP_RELU = 20


def _is_relu(activation: Activation | None) -> bool:
    """Plain ReLU (the units that can die): ``nn.ReLU``, ``F.relu``, ``"relu"``."""
    if activation is None:
        return False
    if isinstance(activation, nn.Module):
        return activation_kind(activation) == "relu"
    return activation in ("relu", torch.relu, torch.nn.functional.relu)


def _known(activation: Activation | None) -> Activation:
    """A producer the mean-field maps take: unknown or not elementwise reads as linear."""
    return "linear" if _is_output(activation) else activation  # type: ignore[return-value]


def _is_output(activation: Activation | None) -> bool:
    """No elementwise activation follows: the layer's output is kept at variance 1."""
    return activation is None or isinstance(activation, nn.Softmax | nn.Identity)


def _std(tensor: Tensor) -> float:
    return float(tensor.detach().double().std().item()) if tensor.numel() > 1 else 0.0


def _layer_outputs(model: nn.Module, inputs: tuple[Tensor, ...], layer: nn.Module) -> Tensor:
    """The pre-activation of ``layer`` on ``inputs`` (one forward pass, no gradients)."""
    captured: dict[str, Tensor] = {}
    dense = getattr(layer, "_signalprop_dense", False)
    target = layer.activation if dense else layer
    assert isinstance(target, nn.Module)

    # Copies: an in-place activation (nn.ReLU(inplace=True)) next overwrites the tensor.
    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        if "z" not in captured:
            captured["z"] = args[0].detach().clone()

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, tuple):  # nn.MultiheadAttention: (output, weights)
            output = output[0]
        if "z" not in captured:
            captured["z"] = output.detach().clone()

    handle = (
        target.register_forward_pre_hook(pre_hook) if dense else target.register_forward_hook(hook)
    )
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        handle.remove()
    if "z" not in captured:
        raise invalid_parameter(
            "model", "autoinit", "a model whose layers all run on the inputs", type(layer).__name__
        )
    return captured["z"]


def _draw_(
    module: nn.Module,
    weight_var: float,
    bias_var: float,
    distribution: str,
    generator: torch.Generator | None,
    offset: float = 0.0,
) -> None:
    """Weights of variance weight_var / fan_in by ``distribution``; biases N(0, bias_var),
    minus ``offset`` times each unit's sum of weights (which cancels an input mean ``offset``)."""
    weight: Tensor = layer_weight(module)  # type: ignore[assignment]
    fans = _init.fans_for(module)
    if distribution == "orthogonal":
        # A (semi-)orthogonal matrix's entries have mean square 1 / max(rows, columns).
        rows = weight.shape[0]
        columns = weight.numel() // max(rows, 1)
        scale = math.sqrt(weight_var / fans[0] * max(rows, columns))
        _init.orthogonal_(weight, gain=scale, generator=generator)
    else:
        _init.VarianceScaling(scale=weight_var, mode="fan_in", distribution=distribution)(
            weight, generator=generator, fans=fans
        )
    bias = layer_bias(module)
    if isinstance(bias, Tensor):
        if bias_var > 0:
            with torch.no_grad():
                bias.normal_(0.0, math.sqrt(bias_var), generator=generator)
        else:
            _init.zeros_(bias)
        matrix = out_in_weight(module)  # (out, in, *k): Conv1D's (in, out) transposed
        if offset and matrix is not None:
            with torch.no_grad():
                sums = matrix.detach().flatten(1).sum(dim=1)
                bias.sub_(offset * sums.to(bias.dtype))


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """Per parameter (by id): the modules holding it as their own, with its name in each."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules():
        for attr, parameter in module.named_parameters(recurse=False):
            owners.setdefault(id(parameter), []).append(
                (f"{name}.{attr}" if name else attr, module)
            )
    return owners


def _untied(
    model: nn.Module, layers: list[WeightLayer]
) -> tuple[list[WeightLayer], list[tuple[str, str, str]]]:
    """The layers to draw, and the tied ones left as they are (name, type, why).

    A layer with a parameter that another module also holds is left as it is when
    that module is not one of ``layers`` (an embedding tied to an output layer: the
    embedding keeps its initialization), and when one of ``layers`` before it, drawn
    already, holds it (drawn once). The first of tied layers is drawn.
    """
    owners = _owners(model)
    members = {layer.module for layer in layers}
    drawn: dict[nn.Module, str] = {}
    keep: list[WeightLayer] = []
    tied: list[tuple[str, str, str]] = []
    for layer in layers:
        shared = [
            (attr, other_name, other)
            for attr, parameter in layer.module.named_parameters(recurse=False)
            for other_name, other in owners.get(id(parameter), [])
            if other is not layer.module
        ]
        if not shared:
            keep.append(layer)
            drawn[layer.module] = layer.name
            continue
        ties = ", ".join(f"{layer.name}.{attr} is {other}" for attr, other, _ in shared)
        outside = [(name, m) for _, name, m in shared if m not in members]
        before = [drawn[m] for _, _, m in shared if m in drawn]
        if outside:
            holder = outside[0][0].rsplit(".", 1)[0] or "(model)"
            kind = type(outside[0][1]).__name__
            why = (
                f"tied ({ties}): left as it is, so {holder} ({kind}) keeps its "
                "initialization and the tie holds"
            )
        elif before:
            why = f"tied ({ties}): initialized once, as {before[0]}"
        else:
            keep.append(layer)
            drawn[layer.module] = layer.name
            continue
        tied.append((layer.name, type(layer.module).__name__, why))
    return keep, tied


def _reads_unit_variance(
    layers: list[WeightLayer], unit: list[bool]
) -> Callable[[Activation | None], bool]:
    """Whether an activation's input has variance 1 by a layer's plan: it is the consumer of
    layers whose ``unit`` flag is set (a norm with γ = 1, β = 0 before it, or the variance
    criterion) and of no other.

    Known by identity for a module; for a function (read as a new module at each call),
    or a module also fed otherwise, by its key when every consumer with that key is
    flagged.
    """
    flagged = [
        layer.consumer
        for layer, f in zip(layers, unit, strict=True)
        if f and layer.consumer is not None
    ]
    other = [
        layer.consumer
        for layer, f in zip(layers, unit, strict=True)
        if not f and layer.consumer is not None
    ]
    flagged_ids, other_ids = {id(a) for a in flagged}, {id(a) for a in other}
    flagged_keys = {activation_key(a) for a in flagged}
    other_keys = {activation_key(a) for a in other}

    def reads(producer: Activation | None) -> bool:
        if producer is None or id(producer) in other_ids:
            return False
        if id(producer) in flagged_ids:
            return True
        key = activation_key(producer)
        return key in flagged_keys and key not in other_keys

    return reads


def _in_stack(activation: Activation, layers: list[WeightLayer]) -> bool:
    """Whether a layer that reads ``activation``'s output (the same module, or an equal one)
    feeds an activation itself, with no norm between: a stack the edge of chaos is about."""
    key = activation_key(activation)
    return any(
        (
            layer.producer is activation
            or (layer.producer is not None and activation_key(layer.producer) == key)
        )
        and layer.norm is None
        and not _is_output(layer.consumer)
        for layer in layers
    )


def _standardize_(norm: nn.Module) -> str:
    """γ = 1, β = 0 and fresh running statistics for a norm; what was set, in words."""
    done = []
    with torch.no_grad():
        weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
        if isinstance(weight, Tensor):
            weight.fill_(1.0)
            done.append("γ = 1")
        if isinstance(bias, Tensor):
            bias.zero_()
            done.append("β = 0")
    reset = getattr(norm, "reset_running_stats", None)
    if callable(reset) and getattr(norm, "track_running_stats", False):
        reset()
        done.append("running statistics reset (mean 0, variance 1)")
    return ", ".join(done) or "no parameters"


@reads_keras(write_back=True)
def autoinit(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...] | None = None,
    mode: str = "analytic",
    *,
    criterion: str = DEFAULT_CRITERION,
    distribution: str = DEFAULT_DISTRIBUTION,
    bias_var: float | None = None,
    tolerance: float = 0.05,
    max_iterations: int = 10,
    generator: torch.Generator | None = None,
    residual: str = _residual.DEFAULT_RESIDUAL,
) -> AutoInitResult:
    """Re-initialize every Linear/Conv/Dense of ``model`` for the activations around it.

    Args:
        model: Any ``nn.Module``; changed in place.
        inputs: A batch, required for ``mode="data"`` (and used to check it
            fits, and to measure the second moment of the data).
        mode: ``"analytic"`` (the criterion's variances) or ``"data"``
            (analytic, then LSUV with mean correction on ``inputs``).
        criterion: ``"critical"`` (the edge of chaos) or ``"variance"``
            (pre-activations of variance 1); see the module's notes.
        distribution: ``"truncated_normal"``, ``"normal"``, ``"uniform"`` or
            ``"orthogonal"``; the variance is the same.
        bias_var: σ_b² for the critical criterion (default: each activation's
            :func:`signalprop.meanfield.default_bias_var`).
        tolerance: Data mode stops for a layer when |mean| and |std/target − 1|
            of its output are below this.
        max_iterations: Rescaling rounds per layer in data mode.
        generator: Random generator for the new weights and biases.
        residual: The residual criterion, for models with residual blocks
            (``x + f(x)``, found in the torch.fx graph): ``"scaled"`` (each of
            the N branches' last layer, or closing normalization's γ, scaled so
            that the branch adds 1/N of the stream's variance: the stream grows
            at most e-fold in variance), ``"zero"`` (those zeroed: SkipInit,
            Fixup, ``zero_init_residual``) or ``"none"``; see
            :mod:`signalprop._residual`. The result lists what it did per branch.

    Returns:
        An :class:`AutoInitResult`: per layer, the activations on either side,
        σ_w², σ_b², the target variance, χ and the phase, the weight std before
        and after, and in data mode the iterations and whether it converged;
        layers left alone and why.

    Raises:
        ValueError: For an unknown mode, criterion or distribution, missing or
            ill-shaped inputs, or a model without a layer autoinit knows.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ... )
        >>> result = sp.autoinit(model)   # tanh at the edge of chaos
        >>> round(result.layers[0].weight_var, 3), round(result.layers[0].bias_var, 3)
        (0.52, 0.05)
    """
    caller = "autoinit"
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", caller, "an nn.Module", type(model).__name__)
    check_option(mode, ("analytic", "data"), param="mode", caller=caller)
    check_option(criterion, CRITERIA, param="criterion", caller=caller)
    check_option(distribution, DISTRIBUTIONS, param="distribution", caller=caller)
    if bias_var is not None:
        bias_var = check_real(bias_var, param="bias_var", caller=caller, low=0)
    tolerance = check_real(tolerance, param="tolerance", caller=caller, low=0, low_inclusive=False)
    max_iterations = check_int(max_iterations, param="max_iterations", caller=caller, low=1)
    check_option(residual, _residual.RESIDUAL_CRITERIA, param="residual", caller=caller)
    args: tuple[Tensor, ...] | None = None
    if inputs is not None:
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        if not all(isinstance(a, Tensor) for a in args):
            raise invalid_parameter("inputs", caller, "a Tensor or a tuple of Tensors", inputs)
        check_batch(args, param="inputs", caller=caller)
    if mode == "data" and args is None:
        raise invalid_parameter("inputs", caller, "a batch when mode='data'", None)
    input_square: dict[nn.Module, float] = {}
    if args is not None:

        def remember(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if module not in input_square and inputs and isinstance(inputs[0], Tensor):
                input_square[module] = float(inputs[0].detach().double().pow(2).mean().item())

        handles = [
            m.register_forward_pre_hook(remember) for m in model.modules() if is_weight_layer(m)
        ]
        try:
            with torch.no_grad():
                model(*args)  # also materializes lazily sized layers
        except (RuntimeError, ValueError, TypeError) as error:
            shapes = [tuple(a.shape) for a in args]
            message = str(error).splitlines()[0]
            raise invalid_parameter(
                "inputs", caller, "inputs the model accepts", shapes, hint=message
            ) from None
        finally:
            for handle in handles:
                handle.remove()

    view = read_model(model)
    result = AutoInitResult(
        mode=mode, layers=[], criterion=criterion, distribution=distribution, notes=view.notes
    )
    if not view.layers:
        raise invalid_parameter(
            "model",
            caller,
            "a model with nn.Linear, nn.Conv* or Dense layers",
            type(model).__name__,
        )
    names = {module: name for name, module in model.named_modules()}
    layers, tied = _untied(model, view.layers)
    set_norms = {layer.norm for layer in layers if layer.norm is not None}
    for name, module in model.named_modules():
        if is_weight_layer(module) or module in set_norms:
            continue
        if isinstance(getattr(module, "weight", None), Tensor):
            reason = NORM_LEFT_ALONE if is_norm(module) else "a layer type autoinit does not know"
            result.skipped.append((name, type(module).__name__, reason))
    result.skipped += tied

    notes: dict[str, str] = {}
    normalized = [layer.norm is not None for layer in layers]
    pairs = [
        (
            None if layer.reads_data else _known(layer.producer),
            None if _is_output(layer.consumer) or normed else layer.consumer,
        )
        for layer, normed in zip(layers, normalized, strict=True)
    ]
    has_bias = [layer_bias(layer.module) is not None for layer in layers]
    centring = [
        producer is not None
        and bias
        and (
            # A normalized layer's biases always cancel its producer's mean: see the notes.
            normed
            or (
                criterion == "critical"
                and _meanfield.cached_point(producer, criterion, bias_var).centred
            )
        )
        for (producer, _), bias, normed in zip(pairs, has_bias, normalized, strict=True)
    ]
    data_second = [input_square.get(layer.module, 1.0) for layer in layers]
    chained = view.plain and len(layers) == len(view.layers)
    # An activation no stack continues (a squeeze-excite gate, a transformer MLP's one GELU)
    # gets the variance criterion: its pre-activations of variance 1.
    gates = [
        not chained and not normed and consumer is not None and not _in_stack(consumer, layers)
        for (_, consumer), normed in zip(pairs, normalized, strict=True)
    ]
    # Variance 1 at the activation's input: a norm's (NORMALIZED_Q), or the variance point's.
    unit = [normed or gate for normed, gate in zip(normalized, gates, strict=True)]
    reads_unit = _reads_unit_variance(layers, unit)
    producer_vars = [
        NORMALIZED_Q if not layer.reads_data and reads_unit(layer.producer) else None
        for layer in layers
    ]
    if chained:
        plan = _meanfield.init_chain(
            pairs,
            criterion=criterion,
            bias_var=bias_var,
            input_var=data_second[0],
            centring=centring,
        ).layers
    else:  # each layer reads its producer at the producer's own (or its norm's) variance
        plan = [
            _meanfield.init_chain(
                [pair],
                criterion="variance" if gate else criterion,
                bias_var=bias_var,
                input_var=second,
                chained=False,
                centring=[flag],
                producer_vars=[fixed],
            ).layers[0]
            for pair, second, flag, fixed, gate in zip(
                pairs, data_second, centring, producer_vars, gates, strict=True
            )
        ]
    for layer, step, bias, gate in zip(layers, plan, has_bias, gates, strict=True):
        module = layer.module
        before = _std(layer_weight(module))  # type: ignore[arg-type]
        _draw_(module, step.weight_var, step.bias_var, distribution, generator, step.offset)
        parts = [step.note] if step.note else []
        if not bias and step.bias_var > 0:
            parts.append(f"no bias: σ_b² = {step.bias_var:.3g} could not be drawn")
        if layer.norm is not None:
            fed = "its output's" if layer.consumer is None else f"{_name(layer.consumer)}'s input"
            parts.append(
                f"{names.get(layer.norm, '?')} ({type(layer.norm).__name__}), not σ_w², sets "
                f"{fed} scale: σ_w² gives the norm inputs of mean 0 and variance 1"
                + ("" if step.offset or layer.reads_data else " (no bias: mean not cancelled)")
            )
        elif gate:
            parts.append(
                f"no layer reading {_name(layer.consumer)}'s output feeds an activation (a gate, "
                "one hidden layer): no stack to put at the edge of chaos, so the variance "
                "criterion (pre-activation variance 1)"
            )
        if layer.calls > 1:
            parts.append(f"called {layer.calls} times in forward: initialized once")
        result.layers.append(
            LayerInit(
                name=layer.name,
                layer_type=type(module).__name__,
                # A softmax output layer is named as such, not "linear": its logits are kept
                # at unit variance because softmax is not elementwise.
                activation=_name(layer.consumer),
                gain=math.sqrt(step.weight_var),
                std_before=before,
                std_after=_std(layer_weight(module)),  # type: ignore[arg-type]
                input_from="data" if layer.reads_data else "activation",
                producer="data" if layer.reads_data else _name(_known(layer.producer)),
                weight_var=step.weight_var,
                bias_var=step.bias_var,
                target_var=step.q,
                chi=step.chi if not layer.reads_data else None,
                phase="normalized"
                if layer.norm is not None
                else None
                if layer.reads_data
                else step.phase,
                offset=step.offset,
                cumulative=step.cumulative,
                note="; ".join(parts),
            )
        )
    for norm in dict.fromkeys(layer.norm for layer in layers if layer.norm is not None):
        result.norms.append((names.get(norm, "?"), type(norm).__name__, _standardize_(norm)))
    for producer, flag, normed in zip(pairs, centring, normalized, strict=True):
        if flag and not normed and producer[0] is not None:
            point = _meanfield.cached_point(producer[0], criterion, bias_var)
            notes.setdefault(_name(producer[0]), point.note)
    for (_, consumer), gate in zip(pairs, gates, strict=True):
        if (
            consumer is not None
            and not gate
            and _meanfield.cached_point(consumer, criterion, bias_var).fallback
        ):
            notes.setdefault(
                f"{_name(consumer)} (ordered)",
                "no initialization puts a deep stack of it at the edge of chaos, so diagnose "
                "will find it ordered, with vanishing_gradients (and mean_shift where its mean "
                "is not zero): use ELU, SELU or tanh, normalization, or residual connections",
            )
    kinds = {_name(consumer) for _, consumer in pairs if consumer is not None}
    for _, consumer in pairs:
        if consumer is not None and len(kinds) == 1:  # the homogeneous point's own note
            point = _meanfield.cached_point(consumer, criterion, bias_var)
            if point.note and not point.centred:
                notes.setdefault(_name(consumer), point.note)
    # Normalized layers' units are re-centred on every batch: they do not die together.
    relu_layers = [consumer for _, consumer in pairs if _is_relu(consumer)]
    depth = normalized.count(False)
    if relu_layers and depth >= DEEP_RELU:
        notes.setdefault(
            "dead_units",
            f"{len(relu_layers)} ReLU layer(s) in a {depth}-layer stack: at χ = 1 the "
            "examples' pre-activations still become alike with depth (c → 1 as a power of "
            "depth), so diagnose will find ReLU units that are 0 on a whole batch "
            "(dead_units); no initialization avoids that: use leaky_relu, ELU or SELU, "
            "normalization, or residual connections",
        )
    if tied:
        notes.setdefault(
            "tied",
            f"{len(tied)} layer(s) share their weight with another module and were not "
            "drawn again (see 'left as it was'): the tie holds and the other module's "
            "initialization is kept",
        )
    result.notes += [f"{name}: {note}" for name, note in notes.items()]

    if mode == "data":
        assert args is not None
        was_training = {m: m.training for m in model.modules()}
        model.eval()
        try:
            for record, layer in zip(result.layers, layers, strict=True):
                _rescale(model, args, layer, record, tolerance, max_iterations)
        finally:
            for m, training in was_training.items():
                m.training = training
        if result.not_converged:
            result.notes.append(
                f"{len(result.not_converged)} layer(s) did not reach mean 0 and their target std "
                f"within {max_iterations} iterations: {', '.join(result.not_converged[:8])}"
            )
    _residual.after_autoinit(model, args, result, residual)
    return result


def _rescale(
    model: nn.Module,
    args: tuple[Tensor, ...],
    layer: WeightLayer,
    record: LayerInit,
    tolerance: float,
    max_iterations: int,
) -> None:
    """LSUV with mean correction for one layer: W ← W·t/s, b ← (b − m)·t/s, t the target std.

    A normalized layer without biases is judged on its std alone: its norm removes the mean.
    """
    module = layer.module
    weight: Tensor = layer_weight(module)  # type: ignore[assignment]
    bias: Tensor | None = layer_bias(module)
    target = math.sqrt(record.target_var)

    mean_free = bias is None and layer.norm is not None

    def close(mean: float, std: float) -> bool:
        mean = 0.0 if mean_free else mean
        return abs(mean) < tolerance * target and abs(std / target - 1) < tolerance

    for iteration in range(1, max_iterations + 1):
        z = _layer_outputs(model, args, module).double()
        mean, std = z.mean().item(), z.std().item()
        record.iterations, record.output_mean, record.output_std = iteration - 1, mean, std
        if close(mean if bias is not None else 0.0, std):
            record.converged = close(mean, std)
            break
        if not math.isfinite(std) or std == 0:
            record.converged = False
            return
        with torch.no_grad():
            weight.mul_(target / std)
            if bias is not None:
                bias.sub_(mean).mul_(target / std)
    else:
        z = _layer_outputs(model, args, module).double()
        record.iterations = max_iterations
        record.output_mean, record.output_std = z.mean().item(), z.std().item()
        record.converged = close(record.output_mean, record.output_std)
    record.std_after = _std(weight)
