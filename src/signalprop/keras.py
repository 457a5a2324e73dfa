"""Keras 3 models on the PyTorch backend: diagnosed, checked and initialized as they are.

With ``KERAS_BACKEND=torch`` a Keras 3 model is a ``torch.nn.Module``, but its
layers are not torch modules and a ``Dense`` applies its activation inside its
``call``: there is nothing for signalprop's hooks to see. This module reads such
a model into its **twin**, the equivalent :class:`~signalprop.Sequential` with
the same weights (Keras keeps a kernel as ``(in, out)``, PyTorch as ``(out,
in)``: the twin's weight is the kernel transposed), and the tools work on the
twin, so their numbers are those of the same net written with signalprop:

* :func:`diagnose` — ``sp.diagnose`` with the rows named after the Keras layers;
* :func:`check_self_normalizing` — LeCun normal read from the kernels, AlphaDropout
  accepted and plain Dropout flagged;
* :func:`autoinit` — the new weights written back with ``kernel.assign``, so the
  model stays a Keras model that trains with ``model.fit`` and saves.

``sp.diagnose``, ``sp.check_self_normalizing`` and ``sp.autoinit`` call these
when handed a Keras model. A model on another backend (TensorFlow, JAX), or a
Keras 2 / ``tf.keras`` one, gets one error saying how to switch. This is the
only module that imports Keras (the ``keras`` extra).

Read: ``Sequential`` models and functional models that are one chain, of
``Dense`` and ``Conv1D``/``Conv2D`` (with their ``activation=``; a convolution
becomes ``ChannelsFirst, nn.ConvNd, activation, ChannelsLast`` with the kernel
``(*k, in, out)`` permuted to ``(out, in, *k)``), ``Activation``, ``ReLU``,
``LeakyReLU``, ``PReLU``, ``ELU``, ``Softmax``, ``Flatten``, ``Dropout``,
``AlphaDropout`` and ``InputLayer``. Any other layer is named in a ``ValueError``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.diagnostics._diagnose import _is_keras

__all__ = ["KerasTwin", "autoinit", "check_self_normalizing", "diagnose", "is_keras", "twin"]

#: Keras's names of activations where signalprop's differ.
ACTIVATIONS = {"linear": None, "swish": "silu", "hard_sigmoid": None}
#: The error for a model that is not on the torch backend.
SWITCH = (
    "signalprop reads Keras 3 models on the PyTorch backend only: set KERAS_BACKEND=torch "
    "before Keras is imported (e.g. `export KERAS_BACKEND=torch`), then build the model again"
)


def is_keras(model: Any) -> bool:
    """Whether ``model`` is a Keras model (any version, any backend), without importing Keras."""
    return _is_keras(model)


@dataclass
class KerasTwin:
    """A Keras model's equivalent signalprop model.

    Attributes:
        model: The :class:`~signalprop.Sequential` with the Keras weights.
        names: Twin module name -> Keras layer name (the same but for dots).
        dense: ``(twin Dense, Keras Dense)`` pairs, input to output.
        notes: What the reading dropped (an InputLayer) or changed.
    """

    model: nn.Module
    names: dict[str, str]
    dense: list[tuple[nn.Module, Any]] = field(default_factory=list)
    prelu: list[tuple[nn.Module, Any]] = field(default_factory=list)
    conv: list[tuple[nn.Module, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def write_back(self) -> None:
        """Copy the twin's weights into the Keras layers with ``Variable.assign``."""
        with torch.no_grad():
            for module, layer in self.dense:
                weight, bias = getattr(module, "weight"), getattr(module, "bias")  # noqa: B009
                assert isinstance(weight, Tensor)
                layer.kernel.assign(weight.detach().t().contiguous())
                if layer.bias is not None and isinstance(bias, Tensor):
                    layer.bias.assign(bias.detach().clone())
            for module, layer in self.conv:
                weight = getattr(module, "weight")  # noqa: B009
                bias = getattr(module, "bias")  # noqa: B009
                spatial = weight.dim() - 2
                layer.kernel.assign(
                    weight.detach().permute(*range(2, spatial + 2), 1, 0).contiguous()
                )
                if layer.bias is not None and isinstance(bias, Tensor):
                    layer.bias.assign(bias.detach().clone())
            for module, layer in self.prelu:
                slope = getattr(module, "weight")  # noqa: B009
                assert isinstance(slope, Tensor)
                layer.alpha.assign(slope.detach().reshape(layer.alpha.shape).clone())


def _check_backend(model: Any) -> None:
    if not is_keras(model):
        raise ValueError("not a Keras model")
    import keras

    module = type(model).__module__
    if not module.startswith("keras.") or not isinstance(model, nn.Module):
        raise ValueError(f"{type(model).__name__} is a Keras 2 / tf.keras model: {SWITCH}")
    if keras.backend.backend() != "torch":
        raise ValueError(
            f"the model runs on Keras's {keras.backend.backend()!r} backend "
            f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'unset')}): {SWITCH}"
        )


def _chain(model: Any) -> list[Any]:
    """The model's layers in order, if they form one chain."""
    layers = list(model.layers)
    if type(model).__name__ == "Sequential":
        return layers
    for layer in layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) > 1:
            raise ValueError(f"layer {layer.name!r} is called more than once: not one chain")
        parents = {id(parent.operation) for node in nodes for parent in node.parent_nodes}
        if len(parents) > 1:
            raise ValueError(
                f"layer {layer.name!r} has {len(parents)} inputs: signalprop reads Keras "
                "models that are one chain of layers"
            )
    return layers


def _activation(function: Any, where: str) -> nn.Module:
    from signalprop import activations

    name = getattr(function, "__name__", None)
    if name is None:
        raise ValueError(f"{where}: activation {function!r} is not a Keras activation function")
    name = ACTIVATIONS.get(name, name) if name in ACTIVATIONS else name
    if name is None:
        return activations.get(None)
    if name == "leaky_relu":
        return activations.get(nn.LeakyReLU(0.2))  # keras.activations.leaky_relu's slope
    try:
        return activations.get(name)
    except ValueError:
        raise ValueError(f"{where}: activation {name!r} has no signalprop equivalent") from None


class ChannelsFirst(nn.Module):
    """Keras's channels-last layout to PyTorch's channels-first: ``(N, …, C) -> (N, C, …)``."""

    _signalprop_transparent = True  # the signal's scale passes through unchanged

    def forward(self, x: Tensor) -> Tensor:
        return x.movedim(-1, 1)


class ChannelsLast(nn.Module):
    """Back to channels last, as Keras's next layer (a Flatten, say) expects."""

    _signalprop_transparent = True

    def forward(self, x: Tensor) -> Tensor:
        return x.movedim(1, -1)


def _conv(layer: Any, where: str) -> list[tuple[str, nn.Module]]:
    """A Keras Conv1D/Conv2D as ``ChannelsFirst, nn.ConvNd, activation, ChannelsLast``, the
    convolution under the layer's own name (suffix ``""``)."""
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last" or layer.groups != 1:
        raise ValueError(f"{where}: only channels_last convolutions without groups are read")
    strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    padding = config["padding"]
    if padding == "same" and any(s != 1 for s in strides):
        raise ValueError(f"{where}: padding 'same' with strides {strides} has no PyTorch twin")
    if padding not in ("same", "valid"):
        raise ValueError(f"{where}: padding {padding!r} is not read")
    kernel = layer.kernel.value.detach()  # (*kernel_size, in, out)
    spatial = kernel.dim() - 2
    conv_class = nn.Conv1d if spatial == 1 else nn.Conv2d
    conv = conv_class(
        int(kernel.shape[-2]),
        int(kernel.shape[-1]),
        tuple(kernel.shape[:spatial]),
        stride=strides,
        padding=padding,
        dilation=dilation,
        bias=layer.bias is not None,
    )
    with torch.no_grad():
        conv.weight.copy_(kernel.permute(spatial + 1, spatial, *range(spatial)))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias.value.detach())  # type: ignore[union-attr]
    return [
        ("_channels_first", ChannelsFirst()),
        ("", conv),
        ("_activation", _activation(layer.activation, where)),
        ("_channels_last", ChannelsLast()),
    ]


def twin(model: Any) -> KerasTwin:
    """Read a Keras 3 model on the torch backend into its equivalent signalprop model.

    Raises:
        ValueError: Another backend, Keras 2, a branching model or an unknown layer
            (named, with the layers that are read).
    """
    _check_backend(model)
    from signalprop import activations
    from signalprop.layers import Dense

    modules: list[nn.Module] = []
    module_names: list[str] = []
    names: dict[str, str] = {}
    result = KerasTwin(model=nn.Identity(), names=names)
    for layer in _chain(model):
        kind = type(layer).__name__
        where = f"layer {layer.name!r} ({kind})"
        if kind == "InputLayer":
            continue
        if kind == "Dense":
            kernel = layer.kernel.value.detach()
            dense = Dense(
                int(kernel.shape[1]),
                _activation(layer.activation, where),
                use_bias=layer.bias is not None,
                input_dim=int(kernel.shape[0]),
            )
            with torch.no_grad():
                dense.weight.copy_(kernel.t())
                if layer.bias is not None:
                    dense.bias.copy_(layer.bias.value.detach())  # type: ignore[union-attr]
            result.dense.append((dense, layer))
            module: nn.Module = dense
        elif kind in ("Conv1D", "Conv2D"):
            base = layer.name.replace(".", "_")
            parts = _conv(layer, where)
            for suffix, part in parts[:-1]:  # ChannelsFirst, the convolution, its activation
                names[base + suffix] = layer.name
                modules.append(part)
                module_names.append(base + suffix)
            result.conv.append((parts[1][1], layer))
            module = parts[-1][1]  # ChannelsLast, added below under its own name
            layer_name = f"{base}_channels_last"
            names[layer_name] = layer.name
            modules.append(module)
            module_names.append(layer_name)
            continue
        elif kind == "Activation":
            module = _activation(layer.activation, where)
        elif kind == "ReLU" and not layer.negative_slope and layer.max_value is None:
            module = activations.get("relu")
        elif kind == "LeakyReLU":
            module = activations.get(nn.LeakyReLU(float(layer.negative_slope)))
        elif kind == "ELU":
            module = activations.get(nn.ELU(float(layer.alpha)))
        elif kind == "PReLU":
            alpha = layer.alpha.value.detach().reshape(-1)
            module = nn.PReLU(num_parameters=alpha.numel())
            with torch.no_grad():
                module.weight.copy_(alpha)
            result.prelu.append((module, layer))
        elif kind == "Softmax":
            module = activations.get("softmax")
        elif kind == "Flatten":
            module = nn.Flatten()
        elif kind == "Dropout":
            module = nn.Dropout(float(layer.rate))
        elif kind == "AlphaDropout":
            module = nn.AlphaDropout(float(layer.rate))
        else:
            raise ValueError(
                f"{where}: signalprop reads Dense, Conv1D, Conv2D, Activation, ReLU, LeakyReLU, "
                "PReLU, ELU, "
                "Softmax, Flatten, Dropout, AlphaDropout and InputLayer layers of a Keras model"
            )
        name = layer.name.replace(".", "_") or f"layer_{len(modules)}"
        names[name] = layer.name
        modules.append(module)
        module_names.append(name)
    if not modules:
        raise ValueError("the Keras model has no layers signalprop reads")
    # The twin's modules carry the Keras layers' names: every report speaks of them.
    sequential = nn.Sequential(OrderedDict(zip(module_names, modules, strict=True)))
    sequential.train(bool(getattr(model, "training", True)))
    result.model = sequential
    return result


def diagnose(
    model: Any, inputs: Any, targets: Any = None, loss_fn: Any = None, **options: Any
) -> Any:
    """``sp.diagnose`` on a Keras model: measured on its twin, whose layers have its names."""
    from signalprop.diagnostics import diagnose as diagnose_torch

    read = twin(model)
    report = diagnose_torch(read.model, inputs, targets, loss_fn, **options)
    report.notes.extend(read.notes)
    return report


def check_self_normalizing(model: Any, inputs: Any) -> Any:
    """``sp.check_self_normalizing`` on a Keras model's twin."""
    from signalprop.diagnostics import check_self_normalizing as check_torch

    return check_torch(twin(model).model, inputs)


def autoinit(model: Any, *args: Any, **options: Any) -> Any:
    """``sp.autoinit`` on a Keras model: chosen on its twin, written back with ``assign``."""
    from signalprop.autoinit import autoinit as autoinit_torch

    read = twin(model)
    result = autoinit_torch(read.model, *args, **options)
    read.write_back()
    return result
