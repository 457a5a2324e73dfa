"""``diagnose``: one forward and one backward pass, measured layer by layer."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signalprop._model import (
    EMBEDDINGS,
    activation_kind,
    buffers_kept,
    find_residual_branches,
    hidden_modules,
    is_norm,
    is_weight_layer,
    layer_bias,
    layer_fans,
    layer_weight,
    out_in_weight,
    read_model,
    reads_keras,
    unread,
)
from signalprop._recorder import Recorder, Row
from signalprop._residual import measure_stream, predict_stream
from signalprop._stats import (
    bias_splits,
    mean_std,
    mean_std_of_sums,
    norm_of,
    norms_of,
    packed_weight_scales,
    read_back,
)
from signalprop._validation import check_batch, check_int, invalid_parameter
from signalprop.diagnostics._findings import find
from signalprop.diagnostics._phase import finding as phase_finding
from signalprop.diagnostics._phase import normalized_note, verdict
from signalprop.diagnostics._report import KINDS, Finding, LayerStats, Report, Thresholds

__all__ = ["diagnose"]


LossFn = Callable[[Tensor, Tensor], Tensor]


def _value(tensor: Tensor | None) -> float | None:
    return None if tensor is None else float(tensor.item())


def _default_loss(output: Tensor, targets: Tensor, softmax_output: bool) -> Tensor:
    """Cross-entropy for class labels (on log-probabilities after a softmax), else MSE."""
    if not targets.is_floating_point():
        if softmax_output:
            tiny = torch.finfo(output.dtype).tiny
            return F.nll_loss(torch.log(output.clamp_min(tiny)), targets)
        return F.cross_entropy(output, targets)
    return F.mse_loss(output, targets)


def surrogate_loss(output: Tensor, seed: int) -> Tensor:
    """The loss backpropagated when no targets are given.

    ``L = Σ (output ⊙ g) / batch`` with ``g ~ N(0, 1)`` drawn from its own
    generator seeded with ``seed`` (the global RNG is not touched): every
    output receives a gradient of variance ``1 / batch²``, as a mean-reduced
    loss whose per-example gradient has unit variance would send. It measures
    how the network transmits a generic error signal, independent of labels.

    Examples:
        >>> import torch, signalprop as sp
        >>> from signalprop.diagnostics import surrogate_loss
        >>> surrogate_loss(torch.ones(4, 3), seed=0).shape   # a scalar
        torch.Size([])
    """
    generator = torch.Generator(device=output.device).manual_seed(seed)
    g = torch.randn(output.shape, generator=generator, device=output.device, dtype=output.dtype)
    batch = output.shape[0] if output.dim() > 0 else 1
    return (output * g).sum() / batch


def _layer_stats(
    rows: list[Row], weight_grads: dict[int, Tensor | None]
) -> tuple[list[LayerStats], dict[str, tuple[float, float]]]:
    """Every row's numbers, and its layer's bias split by name (for the verdict).

    The hooks' 0-d tensors are read back to the host at once, and the weights'
    norms and bias splits are taken in packed passes over all layers: a 100-layer
    net would otherwise spend more on a thousand small reductions' dispatch than
    on their arithmetic.
    """
    scalars: list[Tensor] = []

    def slot(tensor: Tensor) -> int:
        scalars.append(tensor)
        return len(scalars) - 1

    plans = []
    for row in rows:
        moments = {k: (slot(m[0]), slot(m[1]), m[2]) for k, m in row.moments.items()}
        grads = {k: (slot(g[0]), g[1]) for k, g in row.grads.items()}
        stats = {k: slot(v) for k, v in row.stats.items()}
        plans.append((moments, grads, stats))
    weighted = [
        (index, row.module, weight)
        for index, row in enumerate(rows)
        if row.module is not None and (weight := layer_weight(row.module)) is not None
    ]
    modules = [module for _, module, _ in weighted]
    scales = packed_weight_scales(
        [weight for _, _, weight in weighted],
        [layer_bias(m) for m in modules],
        [layer_fans(m) for m in modules],
    )
    split_of = bias_splits([out_in_weight(m) for m in modules], [layer_bias(m) for m in modules])
    grads_of = {
        index: grad
        for index, _, weight in weighted
        if (grad := weight_grads.get(id(weight))) is not None
    }
    dense = [i for i, g in grads_of.items() if not g.is_sparse]
    grad_norms = dict(zip(dense, norms_of([grads_of[i] for i in dense]), strict=True))
    grad_slots = {
        i: (slot(grad_norms[i]) if i in grad_norms else slot(norm_of(g)[0]), g.numel())
        for i, g in grads_of.items()
    }
    values = read_back(scalars)

    layers: list[LayerStats] = []
    for row, (moments, grads, stats) in zip(rows, plans, strict=True):

        def number(key: str, stats: dict[str, int] = stats) -> float | None:
            return values[stats[key]] if key in stats else None

        layer = LayerStats(
            name=row.name,
            layer_type=row.layer_type,
            activation=row.activation,
            saturated=number("saturated"),
            dead=number("dead"),
            similarity=number("similarity"),
        )
        for key in ("pre", "act"):
            if key in moments:
                total, norm, n = moments[key]
                mean, std, finite = mean_std_of_sums(values[total], values[norm] ** 2, n)
                setattr(layer, f"{key}_mean", mean)
                setattr(layer, f"{key}_std", std)
                layer.finite = layer.finite and finite
        if "pre" in grads:
            layer.grad_pre_rms = values[grads["pre"][0]] / math.sqrt(max(1, grads["pre"][1]))
        out = grads.get("out", grads.get("pre"))
        if out is not None:
            layer.grad_out_rms = values[out[0]] / math.sqrt(max(1, out[1]))
        layers.append(layer)
    splits: dict[str, tuple[float, float]] = {}
    for (index, _, _), scale, split in zip(weighted, scales, split_of, strict=True):
        layer = layers[index]
        for key, value in scale.items():
            setattr(layer, key, value)
        splits[layer.name] = split
        layer.input_offset = split[0]
        if index in grad_slots:
            where, n = grad_slots[index]
            layer.grad_weight_rms = values[where] / math.sqrt(max(1, n))
    return layers, splits


def residual_finding(
    model: nn.Module, args: tuple[Tensor, ...], threshold: float
) -> Finding | None:
    """diagnose's ``residual_growth`` finding (or None): the stream's RMS, measured on
    ``args`` in the model's current mode, grows by more than ``threshold`` from the first
    block's input to the last block's output."""
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
    return Finding(
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


def _not_measured(model: nn.Module) -> list[str]:
    """A note per module holding a weight that diagnose does not measure: those the
    reader refuses (with the reason) and layers of a type it does not know."""
    notes = [f"not measured: {name} ({kind}), {reason}" for name, kind, reason in unread(model)]
    hidden = hidden_modules(model)
    for name, module in model.named_modules():
        if (
            module in hidden
            or not isinstance(getattr(module, "weight", None), Tensor)
            or is_weight_layer(module)
            or is_norm(module)
            or isinstance(module, EMBEDDINGS)
            or activation_kind(module) is not None  # PReLU's slope
        ):
            continue
        notes.append(
            f"not measured: {name or '(model)'} ({type(module).__name__}), a layer with a "
            "weight whose layout signalprop does not know"
        )
    return notes


@reads_keras()
def diagnose(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    targets: Tensor | None = None,
    loss_fn: LossFn | None = None,
    *,
    thresholds: Thresholds | None = None,
    seed: int = 0,
) -> Report:
    """Measure where a network's signal and gradient vanish, explode, saturate or die.

    Runs one forward and one backward pass of ``model`` on ``inputs`` with
    hooks on every weight layer (``nn.Linear``, ``nn.Conv*``,
    :class:`~signalprop.layers.Dense`, Hugging Face's ``Conv1D``,
    ``nn.MultiheadAttention``, embeddings) and activation module (any
    parameter-free elementwise module: Hugging Face's ``GELUActivation`` too),
    and returns per layer the pre-activation and activation mean/std, the fraction of
    saturated activations (logistic, tanh) and of dead units (ReLU), the
    gradient RMS w.r.t. the pre-activations, the activations and the weight,
    and the weight's scale against its fans; then findings with verdicts and
    fixes (see :class:`Thresholds`).

    A normalization between a layer and its activation (Linear → BatchNorm →
    ReLU) is looked through: one row for the layer, whose pre-activation is what
    the activation reads (the norm's output). Modules holding a weight that are
    not measured (``nn.Bilinear``, LoRA adapters, recurrent layers, layers of an
    unknown layout) are named in ``report.notes``.

    The model's parameters, their ``.grad``, its buffers (e.g. BatchNorm
    statistics), its training mode and the global RNG state are left as they
    were; hooks are removed even when the forward pass raises. The model runs
    in whatever mode it is in: call ``model.eval()`` first to diagnose
    inference behaviour.

    Args:
        model: Any ``nn.Module``.
        inputs: A batch (or a tuple of positional inputs). Use at least 16
            examples for dead units to be judged.
        targets: Labels (integer classes: cross-entropy, or negative
            log-likelihood after a softmax output; floats: MSE). Without
            targets a surrogate loss is backpropagated: see
            :func:`surrogate_loss`.
        loss_fn: ``loss_fn(output, targets) -> scalar`` to use instead.
        thresholds: When a measurement becomes a finding.
        seed: Seed of the surrogate loss's random gradient.

    Returns:
        A :class:`Report`; ``report.healthy`` is true when there are no findings.

    Examples:
        >>> import torch, signalprop as sp
        >>> model = sp.Sequential([sp.Dense(100, "selu", kernel_initializer="lecun_normal")
        ...                        for _ in range(20)], input_shape=(100,))
        >>> sp.diagnose(model, torch.randn(256, 100)).healthy
        True
    """
    return _diagnose(
        model, inputs, targets, loss_fn, thresholds=thresholds, seed=seed, caller="diagnose"
    )


def _loss_fn_example(output: object) -> str:
    """A ``loss_fn`` for a model whose output is ``output`` (not a Tensor), as an example
    in the error that asks for one: ``out[0]`` of a tuple or list, ``out['logits']`` of a
    dict or Hugging Face ``ModelOutput`` (its first key when it has no ``'logits'``),
    ``out.logits`` of an object that has it (a base model's ``'last_hidden_state'`` when it
    has no logits)."""
    if isinstance(output, Mapping):
        keys = [k for k in output if isinstance(k, str)]
        preferred = [k for k in ("logits", "last_hidden_state") if k in keys]
        picked = (preferred or keys or ["logits"])[0]
        logits = f"out[{picked!r}]"
    elif isinstance(output, tuple | list):
        logits = "out[0]"
    elif hasattr(output, "logits"):
        logits = "out.logits"
    else:
        logits = f"<the logits in out, a {type(output).__name__}>"
    return f"e.g. loss_fn=lambda out, y: F.cross_entropy({logits}, y)"


def _diagnose(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    targets: Tensor | None,
    loss_fn: LossFn | None,
    *,
    thresholds: Thresholds | None,
    seed: int,
    caller: str,
) -> Report:
    """:func:`diagnose`, its errors naming ``caller``."""
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", caller, "an nn.Module", type(model).__name__)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if not args or not all(isinstance(a, Tensor) for a in args):
        raise invalid_parameter("inputs", caller, "a Tensor or a tuple of Tensors", inputs)
    check_batch(args, param="inputs", caller=caller)
    if targets is not None and not isinstance(targets, Tensor):
        raise invalid_parameter("targets", caller, "a Tensor or None", type(targets).__name__)
    if loss_fn is not None and not callable(loss_fn):
        raise invalid_parameter("loss_fn", caller, "a callable or None", loss_fn)
    if loss_fn is not None and targets is None:
        raise invalid_parameter("targets", caller, "given when loss_fn is given", None)
    thresholds = thresholds if thresholds is not None else Thresholds()
    if not isinstance(thresholds, Thresholds):
        raise invalid_parameter("thresholds", caller, "a Thresholds", thresholds)
    seed = check_int(seed, param="seed", caller=caller, low=0)

    recorder = Recorder(model, thresholds.saturation_margin)
    notes = _not_measured(model)
    loss_value: float | None = None
    weight_grads: dict[int, Tensor | None] = {}
    # The global RNG (dropout, RReLU) and the buffers are put back as they were.
    with (
        torch.random.fork_rng(),
        buffers_kept(model),
        recorder.installed(),
        torch.enable_grad(),
    ):
        output = model(*args)
        if not isinstance(output, Tensor) and loss_fn is None:
            raise invalid_parameter(
                "model",
                caller,
                "a model returning a Tensor, or targets and a loss_fn that reads its output",
                type(output).__name__,
                hint=_loss_fn_example(output),
            )
        if targets is None:
            loss = surrogate_loss(output, seed)
        elif loss_fn is not None:
            loss = loss_fn(output, targets)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise invalid_parameter(
                    "loss_fn", caller, "a function returning a scalar Tensor", type(loss).__name__
                )
        else:
            softmax_output = bool(recorder.rows) and recorder.rows[-1].activation == "softmax"
            loss = _default_loss(output, targets, softmax_output)
        loss_value = float(loss.detach().item())
        weights = recorder.weight_parameters()
        wrt: list[Tensor] = weights + [a for a in args if a.requires_grad]
        if loss.requires_grad and wrt:
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
            weight_grads = {id(w): g for w, g in zip(weights, grads, strict=False)}
        else:
            notes.append("no parameter requires a gradient: gradient statistics skipped")

    layers, splits = _layer_stats(recorder.rows, weight_grads)
    normalized = {layer.module for layer in read_model(model).layers if layer.norm is not None}
    for row, layer in zip(recorder.rows, layers, strict=True):
        layer.normalized = row.module is not None and row.module in normalized
    input_mean = input_std = None
    if recorder.input_moments is not None:
        input_mean, input_std, _ = mean_std(recorder.input_moments)
    findings, more_notes = find(layers, thresholds, int(args[0].shape[0]) if args[0].dim() else 1)
    more_notes += [note for note in (normalized_note(model),) if note]
    meanfield = verdict(
        model,
        {
            r.name: (r.weight_scale_fan_in, r.bias_var)
            for r in layers
            if r.weight_scale_fan_in is not None and r.bias_var is not None
        },
        splits,
    )
    # Like the other detectors, the phase is not judged once values are not finite.
    if meanfield is not None and not any(f.kind == "non_finite" for f in findings):
        extra = phase_finding(meanfield, [r.name for r in layers if r.has_weight])
        if extra is not None:
            findings.append(extra)
            findings.sort(key=lambda f: KINDS.index(f.kind))
    if not any(f.kind == "non_finite" for f in findings):
        # The residual stream is a sum, which no hook sees: one more forward pass of the
        # traced graph measures it (signalprop._residual), buffers and RNG put back.
        with torch.random.fork_rng(), buffers_kept(model):
            growth = residual_finding(model, args, thresholds.residual_growth)
        if growth is not None:
            findings.append(growth)
            findings.sort(key=lambda f: KINDS.index(f.kind))
    return Report(
        layers=layers,
        findings=findings,
        loss=loss_value,
        surrogate=targets is None,
        batch_size=int(args[0].shape[0]) if args[0].dim() else 1,
        input_mean=input_mean,
        input_std=input_std,
        thresholds=thresholds,
        notes=notes + more_notes,
        meanfield=meanfield,
    )
