"""Initialize any PyTorch model for its activations, analytically or from data.

``autoinit(model)`` finds, for every ``nn.Linear``, ``nn.Conv*`` and
:class:`~signalprop.layers.Dense`, the activation that consumes its output —
its own (Dense), the next module (``nn.Sequential``), or a function called in
``forward`` (found by a torch.fx trace) — and redraws its weights with
variance ``gain² / fan_in`` for that activation's computed forward gain
(:func:`signalprop.gain`), biases at 0: the pairing of Keras's
``Dense(units, activation, kernel_initializer=...)``. A layer whose output
feeds no activation (the output layer, or a normalization) gets gain 1.

The first layer reads the data, not an activation, so its variance is
``1 / (fan_in · E[x²])`` with the inputs' second moment (measured on
``inputs`` when given, else 1 for standardized data): a gain above 1 there
would only inflate the first pre-activations (tanh's 1.59 saturates a fifth
of its first layer).

``mode="data"`` then rescales each layer, bottom to top, on a batch until its
output (the pre-activation) has mean ≈ 0 and std ≈ 1: LSUV (Mishkin & Matas,
2016) with mean correction through the bias. Layers that do not get there in
``max_iterations`` are reported, never hidden.

Example:
    >>> import torch, signalprop as sp
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(10, 10), nn.GELU(), nn.Linear(10, 2))
    >>> result = sp.autoinit(model)
    >>> [layer.activation for layer in result.layers]
    ['GELU', 'linear']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, check_option, check_real, invalid_parameter
from signalprop.diagnostics._record import activation_kind, is_weight_layer, trace
from signalprop.gains import gain

__all__ = ["AutoInitResult", "LayerInit", "autoinit"]

#: Modules a signal passes through unchanged in scale: look past them for the activation.
TRANSPARENT = (nn.Dropout, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten)
#: Tensor methods that are activations: ``x.relu()``.
METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "relu_": "relu"}
#: Modules with weights that autoinit leaves as they are, and why.
LEFT_ALONE = {
    nn.modules.batchnorm._NormBase: "normalization layer: its weight of 1 is already right",
    nn.LayerNorm: "normalization layer: its weight of 1 is already right",
    nn.GroupNorm: "normalization layer: its weight of 1 is already right",
}


@dataclass
class LayerInit:
    """What autoinit did to one layer."""

    name: str
    layer_type: str
    activation: str
    gain: float
    std_before: float
    std_after: float
    input_from: str = "activation"  # "data" for the first layer
    iterations: int = 0
    output_mean: float | None = None
    output_std: float | None = None
    converged: bool | None = None


@dataclass
class AutoInitResult:
    """The summary of :func:`autoinit`."""

    mode: str
    layers: list[LayerInit]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, reason
    notes: list[str] = field(default_factory=list)

    @property
    def not_converged(self) -> list[str]:
        """Layers that data mode could not bring to mean 0 / std 1."""
        return [layer.name for layer in self.layers if layer.converged is False]

    def __str__(self) -> str:
        lines = [
            f"autoinit ({self.mode}): {len(self.layers)} layers initialized"
            + (f", {len(self.skipped)} left as they were" if self.skipped else ""),
            f"{'layer':>12}  {'type':>8}  {'activation':>12}  {'gain':>6}  "
            f"{'std before':>10}  {'std after':>9}"
            + ("  iters  out mean  out std" if self.mode == "data" else ""),
        ]
        for layer in self.layers:
            line = (
                f"{layer.name:>12}  {layer.layer_type:>8}  {layer.activation:>12}  "
                f"{layer.gain:6.3f}  {layer.std_before:10.4g}  {layer.std_after:9.4g}"
            )
            if self.mode == "data":
                line += (
                    f"  {layer.iterations:5d}  {layer.output_mean or 0:+8.3f}  "
                    f"{layer.output_std or 0:7.3f}" + ("" if layer.converged else "  NOT CONVERGED")
                )
            lines.append(line)
        lines += [f"left as it was: {n} ({t}): {why}" for n, t, why in self.skipped]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


Consumer = nn.Module | Callable[[Tensor], Tensor] | None


def _consumer_name(consumer: Consumer) -> str:
    if consumer is None:
        return "linear"
    if isinstance(consumer, nn.Module):
        return type(consumer).__name__
    return getattr(consumer, "__name__", repr(consumer))


def _traced_consumers(model: nn.Module) -> dict[str, Consumer] | None:
    """Weight layer name -> the activation applied to its output, from a torch.fx trace."""
    graph = trace(model)
    if graph is None:
        return None
    found: dict[str, Consumer] = {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        module = model.get_submodule(str(node.target))
        if not is_weight_layer(module) or getattr(module, "_signalprop_dense", False):
            continue
        user = node
        consumer: Consumer = None
        while len(user.users) == 1:
            (user,) = user.users
            if user.op == "call_module":
                candidate = model.get_submodule(str(user.target))
                if isinstance(candidate, TRANSPARENT):
                    continue
                if activation_kind(candidate) is not None:
                    consumer = candidate
            elif user.op == "call_function" and callable(user.target):
                module_for = _activations.get(user.target)
                if not isinstance(module_for, _activations.Lambda):
                    consumer = module_for
                elif user.target in (torch.flatten, torch.reshape):
                    continue
            elif user.op == "call_method" and user.target in METHODS:
                consumer = _activations.get(METHODS[str(user.target)])
            break
        found[str(node.target)] = consumer
    return found


def _ordered_consumers(model: nn.Module) -> dict[str, Consumer]:
    """Fallback: the next leaf module in registration order, if it is an activation."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    found: dict[str, Consumer] = {}
    for index, (name, module) in enumerate(leaves):
        if not is_weight_layer(module):
            continue
        consumer: Consumer = None
        for _, following in leaves[index + 1 :]:
            if isinstance(following, TRANSPARENT):
                continue
            if activation_kind(following) is not None:
                consumer = following
            break
        found[name] = consumer
    return found


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


def autoinit(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...] | None = None,
    mode: str = "analytic",
    *,
    tolerance: float = 0.05,
    max_iterations: int = 10,
    generator: torch.Generator | None = None,
) -> AutoInitResult:
    """Re-initialize every Linear/Conv/Dense of ``model`` for the activation that follows it.

    Args:
        model: Any ``nn.Module``; changed in place.
        inputs: A batch, required for ``mode="data"`` (and used to check it fits).
        mode: ``"analytic"`` (variance ``gain² / fan_in``) or ``"data"``
            (analytic, then LSUV with mean correction on ``inputs``).
        tolerance: Data mode stops for a layer when |mean| and |std − 1| of its
            output are below this.
        max_iterations: Rescaling rounds per layer in data mode.
        generator: Random generator for the new weights.

    Returns:
        An :class:`AutoInitResult`: per layer, the activation found, the gain,
        the weight std before and after, and in data mode the iterations and
        whether it converged; layers left alone and why.

    Raises:
        ValueError: For an unknown mode, missing or ill-shaped inputs, or a
            model without a layer autoinit knows.
    """
    caller = "autoinit"
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", caller, "an nn.Module", type(model).__name__)
    check_option(mode, ("analytic", "data"), param="mode", caller=caller)
    tolerance = check_real(tolerance, param="tolerance", caller=caller, low=0, low_inclusive=False)
    max_iterations = check_int(max_iterations, param="max_iterations", caller=caller, low=1)
    args: tuple[Tensor, ...] | None = None
    if inputs is not None:
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        if not all(isinstance(a, Tensor) for a in args):
            raise invalid_parameter("inputs", caller, "a Tensor or a tuple of Tensors", inputs)
    if mode == "data" and args is None:
        raise invalid_parameter("inputs", caller, "a batch when mode='data'", None)
    order: list[nn.Module] = []
    first_input_square: float | None = None
    if args is not None:

        def remember(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            nonlocal first_input_square
            if not order and inputs and isinstance(inputs[0], Tensor):
                first_input_square = float(inputs[0].detach().double().pow(2).mean().item())
            order.append(module)

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

    result = AutoInitResult(mode=mode, layers=[])
    traced = _traced_consumers(model)
    consumers = traced if traced is not None else _ordered_consumers(model)
    if traced is None:
        result.notes.append("torch.fx could not trace the model: activations found by module order")
    for name, module in model.named_modules():
        if is_weight_layer(module):
            continue
        if isinstance(getattr(module, "weight", None), Tensor):
            reason = next(
                (why for kind, why in LEFT_ALONE.items() if isinstance(module, kind)),
                "a layer type autoinit does not know",
            )
            result.skipped.append((name, type(module).__name__, reason))

    layers = [(n, m) for n, m in model.named_modules() if is_weight_layer(m)]
    if not layers:
        raise invalid_parameter(
            "model",
            caller,
            "a model with nn.Linear, nn.Conv* or Dense layers",
            type(model).__name__,
        )
    first = order[0] if order else layers[0][1]
    for name, module in layers:
        consumer = (
            module.activation
            if getattr(module, "_signalprop_dense", False)
            else consumers.get(name)
        )
        if isinstance(consumer, nn.Softmax):
            consumer = None  # an output layer: keep the logits' variance at 1
        if module is first:
            # Its input is the data, not an activation: variance 1 / (fan_in · E[x²]).
            layer_gain = 1.0 / math.sqrt(first_input_square or 1.0)
        else:
            layer_gain = (
                1.0 if consumer is None or isinstance(consumer, nn.Identity) else gain(consumer)
            )
        weight = module.weight
        before = _std(weight)
        _init.VarianceScaling(scale=layer_gain**2, mode="fan_in")(
            weight, generator=generator, fans=_init.fans_for(module)
        )
        if getattr(module, "bias", None) is not None:
            _init.zeros_(module.bias)
        result.layers.append(
            LayerInit(
                name=name or "(model)",
                layer_type=type(module).__name__,
                activation=_consumer_name(consumer) if consumer is not None else "linear",
                input_from="data" if module is first else "activation",
                gain=layer_gain,
                std_before=before,
                std_after=_std(weight),
            )
        )

    if mode == "data":
        assert args is not None
        was_training = {m: m.training for m in model.modules()}
        model.eval()
        try:
            for record, (_, module) in zip(result.layers, layers, strict=True):
                _rescale(model, args, module, record, tolerance, max_iterations)
        finally:
            for m, training in was_training.items():
                m.training = training
        if result.not_converged:
            result.notes.append(
                f"{len(result.not_converged)} layer(s) did not reach mean 0 / std 1 within "
                f"{max_iterations} iterations: {', '.join(result.not_converged[:8])}"
            )
    return result


def _rescale(
    model: nn.Module,
    args: tuple[Tensor, ...],
    module: nn.Module,
    record: LayerInit,
    tolerance: float,
    max_iterations: int,
) -> None:
    """LSUV with mean correction for one layer: W ← W/s, b ← (b − m)/s."""
    weight: Tensor = module.weight  # type: ignore[assignment]
    bias: Tensor | None = getattr(module, "bias", None)
    for iteration in range(1, max_iterations + 1):
        z = _layer_outputs(model, args, module).double()
        mean, std = z.mean().item(), z.std().item()
        record.iterations, record.output_mean, record.output_std = iteration - 1, mean, std
        centred = abs(mean) < tolerance or bias is None
        if abs(std - 1) < tolerance and centred:
            record.converged = abs(mean) < tolerance
            break
        if not math.isfinite(std) or std == 0:
            record.converged = False
            return
        with torch.no_grad():
            weight.div_(std)
            if bias is not None:
                bias.sub_(mean).div_(std)
    else:
        z = _layer_outputs(model, args, module).double()
        record.iterations = max_iterations
        record.output_mean, record.output_std = z.mean().item(), z.std().item()
        record.converged = (
            abs(record.output_mean) < tolerance and abs(record.output_std - 1) < tolerance
        )
    record.std_after = _std(weight)
