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
``distribution="orthogonal"`` draws (semi-)orthogonal weights with the same
variance, which at the edge of chaos gives tanh-like nets dynamical isometry
(Saxe et al. 2014; Pennington et al. 2017).

``mode="data"`` then rescales each layer, bottom to top, on a batch until its
pre-activations have mean ≈ 0 and the target std √q: LSUV (Mishkin & Matas,
2016) with mean correction through the bias. Layers that do not get there in
``max_iterations`` are reported, never hidden.

The result says, for each layer, the gradient factor χ = σ_w² E[φ_in′(√q_in z)²]
its initialization gives it and the phase that puts it in.

Example:
    >>> import torch, signalprop as sp
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 2))
    >>> result = sp.autoinit(model, criterion="critical")
    >>> [(layer.producer, layer.activation) for layer in result.layers]
    [('data', 'Tanh'), ('Tanh', 'linear')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from signalprop import _residual
from signalprop import init as _init
from signalprop import meanfield as _meanfield
from signalprop._model import (
    Activation,
    activation_kind,
    is_weight_layer,
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

#: Criteria for each layer's variance; see the module's notes.
CRITERIA = _meanfield.CRITERIA
#: The criterion and distribution used when none is given: the edge of chaos with
#: orthogonal weights. In the autoinit-100 study (100 hidden layers, book settings,
#: 3 seeds; docs/results/autoinit-100) it beat the textbook pairing by more than the
#: seeds' spread for all eight activations (tanh 0.868 vs 0.773, ReLU 0.767 vs 0.612,
#: GELU 0.766 and SiLU 0.775 vs chance), and the variance criterion for all eight.
DEFAULT_CRITERION = "critical"
DEFAULT_DISTRIBUTION = "orthogonal"
#: How weights are drawn, all with the same variance.
DISTRIBUTIONS = ("normal", "orthogonal", "truncated_normal", "uniform")
#: Modules with weights that autoinit leaves as they are, and why.
LEFT_ALONE = {
    nn.modules.batchnorm._NormBase: "normalization layer: its weight of 1 is already right",
    nn.LayerNorm: "normalization layer: its weight of 1 is already right",
    nn.GroupNorm: "normalization layer: its weight of 1 is already right",
}


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
            :class:`signalprop.meanfield.ChainLayer`.
        offset: The producer's mean its biases cancel (``b −= offset·W𝟙``;
            0: none), for activations whose mean is not zero.
        cumulative: Π χ of the layers above it: the mean squared gradient at
            its pre-activations over the logits'.
        note: Why the layer is not at χ = 1 with its target variance, when not.
        std_before, std_after: The weight's std before and after.
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
    """The summary of :func:`autoinit`."""

    mode: str
    layers: list[LayerInit]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, reason
    notes: list[str] = field(default_factory=list)
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
        lines += [f"left as it was: {n} ({t}): {why}" for n, t, why in self.skipped]
        lines += _residual.describe(self)
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _name(activation: Activation | None) -> str:
    if activation is None:
        return "linear"
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

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        captured.setdefault("z", args[0].detach())

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        captured.setdefault("z", output.detach())

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
    weight: Tensor = module.weight  # type: ignore[assignment]
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
    bias = getattr(module, "bias", None)
    if isinstance(bias, Tensor):
        if bias_var > 0:
            with torch.no_grad():
                bias.normal_(0.0, math.sqrt(bias_var), generator=generator)
        else:
            _init.zeros_(bias)
        if offset:
            with torch.no_grad():
                sums = weight.detach().flatten(1).sum(dim=1)
                bias.sub_(offset * sums.to(bias.dtype))


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
    for name, module in model.named_modules():
        if is_weight_layer(module):
            continue
        if isinstance(getattr(module, "weight", None), Tensor):
            reason = next(
                (why for kind, why in LEFT_ALONE.items() if isinstance(module, kind)),
                "a layer type autoinit does not know",
            )
            result.skipped.append((name, type(module).__name__, reason))
    if not view.layers:
        raise invalid_parameter(
            "model",
            caller,
            "a model with nn.Linear, nn.Conv* or Dense layers",
            type(model).__name__,
        )

    notes: dict[str, str] = {}
    pairs = [
        (
            None if layer.reads_data else _known(layer.producer),
            None if _is_output(layer.consumer) else layer.consumer,
        )
        for layer in view.layers
    ]
    has_bias = [isinstance(getattr(layer.module, "bias", None), Tensor) for layer in view.layers]
    centring = [
        producer is not None
        and bias
        and criterion == "critical"
        and _meanfield.cached_point(producer, criterion, bias_var).centred
        for (producer, _), bias in zip(pairs, has_bias, strict=True)
    ]
    data_second = [input_square.get(layer.module, 1.0) for layer in view.layers]
    if view.plain:
        plan = _meanfield.init_chain(
            pairs,
            criterion=criterion,
            bias_var=bias_var,
            input_var=data_second[0],
            centring=centring,
        ).layers
    else:  # each layer reads its producer at the producer's own target variance
        plan = [
            _meanfield.init_chain(
                [pair],
                criterion=criterion,
                bias_var=bias_var,
                input_var=second,
                chained=False,
                centring=[flag],
            ).layers[0]
            for pair, second, flag in zip(pairs, data_second, centring, strict=True)
        ]
    for layer, step, bias in zip(view.layers, plan, has_bias, strict=True):
        module = layer.module
        before = _std(module.weight)  # type: ignore[arg-type]
        _draw_(module, step.weight_var, step.bias_var, distribution, generator, step.offset)
        note = step.note
        if not bias and step.bias_var > 0:
            note = (note + "; " if note else "") + (
                f"no bias: σ_b² = {step.bias_var:.3g} could not be drawn"
            )
        result.layers.append(
            LayerInit(
                name=layer.name,
                layer_type=type(module).__name__,
                # A softmax output layer is named as such, not "linear": its logits are kept
                # at unit variance because softmax is not elementwise.
                activation=_name(layer.consumer),
                gain=math.sqrt(step.weight_var),
                std_before=before,
                std_after=_std(module.weight),  # type: ignore[arg-type]
                input_from="data" if layer.reads_data else "activation",
                producer="data" if layer.reads_data else _name(_known(layer.producer)),
                weight_var=step.weight_var,
                bias_var=step.bias_var,
                target_var=step.q,
                chi=step.chi if not layer.reads_data else None,
                phase=None if layer.reads_data else step.phase,
                offset=step.offset,
                cumulative=step.cumulative,
                note=note,
            )
        )
    for producer, flag in zip(pairs, centring, strict=True):
        if flag and producer[0] is not None:
            point = _meanfield.cached_point(producer[0], criterion, bias_var)
            notes.setdefault(_name(producer[0]), point.note)
    for _, consumer in pairs:
        if consumer is not None and _meanfield.cached_point(consumer, criterion, bias_var).fallback:
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
    relu_layers = [
        step for (_, consumer), step in zip(pairs, plan, strict=True) if _is_relu(consumer)
    ]
    if relu_layers and len(plan) >= DEEP_RELU:
        notes.setdefault(
            "dead_units",
            f"{len(relu_layers)} ReLU layer(s) in a {len(plan)}-layer stack: at χ = 1 the "
            "examples' pre-activations still become alike with depth (c → 1 as a power of "
            "depth), so diagnose will find ReLU units that are 0 on a whole batch "
            "(dead_units); no initialization avoids that: use leaky_relu, ELU or SELU, "
            "normalization, or residual connections",
        )
    result.notes += [f"{name}: {note}" for name, note in notes.items()]

    if mode == "data":
        assert args is not None
        was_training = {m: m.training for m in model.modules()}
        model.eval()
        try:
            for record, layer in zip(result.layers, view.layers, strict=True):
                _rescale(model, args, layer.module, record, tolerance, max_iterations)
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
    module: nn.Module,
    record: LayerInit,
    tolerance: float,
    max_iterations: int,
) -> None:
    """LSUV with mean correction for one layer: W ← W·t/s, b ← (b − m)·t/s, t the target std."""
    weight: Tensor = module.weight  # type: ignore[assignment]
    bias: Tensor | None = getattr(module, "bias", None)
    target = math.sqrt(record.target_var)

    def close(mean: float, std: float) -> bool:
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
