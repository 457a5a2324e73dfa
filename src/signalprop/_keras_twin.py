"""The Keras twin: a Keras 3 model (PyTorch backend) read into an ``nn.Sequential``.

It sits above the model reader (:mod:`signalprop._model`) and registers
:func:`twin` with it on import, so that diagnose, autoinit and the
self-normalization check take a Keras model as it is without the model
reader importing anything above itself. Keras is never imported here: a
Keras model's own objects are read.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from signalprop._model import (
    is_keras,
    register_keras_reader,
)

__all__ = ["KerasTwin", "twin"]

#: Keras's names of activations where signalprop's differ ("linear": the identity).
ACTIVATIONS = {"linear": None, "swish": "silu"}
#: The error for a model that is not on the torch backend.
SWITCH = (
    "signalprop reads Keras 3 models on the PyTorch backend only: set KERAS_BACKEND=torch "
    "before Keras is imported (e.g. `export KERAS_BACKEND=torch`), then build the model again"
)


def _from_keras(kernel: Tensor) -> Tensor:
    """A Keras kernel ``(*k, in, out)`` in PyTorch's layout ``(out, in, *k)``."""
    d = kernel.dim()
    return kernel.permute(d - 1, d - 2, *range(d - 2))


def _to_keras(weight: Tensor) -> Tensor:
    """A PyTorch weight ``(out, in, *k)`` in Keras's layout ``(*k, in, out)``."""
    return weight.permute(*range(2, weight.dim()), 1, 0).contiguous()


def _take_weights(module: nn.Module, layer: Any, share: bool) -> None:
    """The Keras layer's kernel and bias in ``module``: copies, or views of the same
    memory (``share``; Keras's optimizers update their variables in place)."""
    kernel = layer.kernel.value.detach()
    bias = None if layer.bias is None else layer.bias.value.detach()
    if share:
        module.weight = nn.Parameter(_from_keras(kernel), requires_grad=False)
        if bias is not None:
            module.bias = nn.Parameter(bias, requires_grad=False)
        return
    with torch.no_grad():
        getattr(module, "weight").copy_(_from_keras(kernel))  # noqa: B009
        if bias is not None:
            getattr(module, "bias").copy_(bias)  # noqa: B009


@dataclass
class KerasTwin:
    """A Keras model's equivalent signalprop model.

    Attributes:
        model: An ``nn.Sequential`` with the Keras weights, its modules named
            after the Keras layers (dots made underscores).
        names: Twin module name -> Keras layer name.
        weighted: ``(twin Dense or ConvNd, Keras layer)`` pairs, input to output.
        prelu: ``(twin PReLU, Keras PReLU)`` pairs.
    """

    model: nn.Module
    names: dict[str, str]
    weighted: list[tuple[nn.Module, Any]] = field(default_factory=list)
    prelu: list[tuple[nn.Module, Any]] = field(default_factory=list)

    def write_back(self) -> None:
        """Copy the twin's weights into the Keras layers with ``Variable.assign``."""
        with torch.no_grad():
            for module, layer in self.weighted:
                weight, bias = getattr(module, "weight"), getattr(module, "bias")  # noqa: B009
                layer.kernel.assign(_to_keras(weight.detach()))
                if layer.bias is not None and isinstance(bias, Tensor):
                    layer.bias.assign(bias.detach().clone())
            for module, layer in self.prelu:
                slope = getattr(module, "weight")  # noqa: B009
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
    name = ACTIVATIONS.get(name, name)
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


def _conv(layer: Any, where: str, share: bool) -> list[tuple[str, nn.Module]]:
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
    _take_weights(conv, layer, share)
    return [
        ("_channels_first", ChannelsFirst()),
        ("", conv),
        ("_activation", _activation(layer.activation, where)),
        ("_channels_last", ChannelsLast()),
    ]


def twin(model: Any, *, share: bool = False) -> KerasTwin:
    """Read a Keras 3 model on the torch backend into its equivalent signalprop model.

    Args:
        model: A Keras 3 model on the torch backend.
        share: The twin's weights are views of the Keras variables' memory (frozen,
            and they follow every update of the Keras model) instead of copies.

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
        parts: list[tuple[str, nn.Module]]  # (name suffix, module); "" is the layer itself
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
            _take_weights(dense, layer, share)
            result.weighted.append((dense, layer))
            parts = [("", dense)]
        elif kind in ("Conv1D", "Conv2D"):
            parts = _conv(layer, where, share)
            result.weighted.append((parts[1][1], layer))
        elif kind == "Activation":
            parts = [("", _activation(layer.activation, where))]
        elif kind == "ReLU" and not layer.negative_slope and layer.max_value is None:
            parts = [("", activations.get("relu"))]
        elif kind == "LeakyReLU":
            parts = [("", activations.get(nn.LeakyReLU(float(layer.negative_slope))))]
        elif kind == "ELU":
            parts = [("", activations.get(nn.ELU(float(layer.alpha))))]
        elif kind == "PReLU":
            alpha = layer.alpha.value.detach().reshape(-1)
            prelu = nn.PReLU(num_parameters=alpha.numel())
            if share:
                prelu.weight = nn.Parameter(alpha, requires_grad=False)
            else:
                with torch.no_grad():
                    prelu.weight.copy_(alpha)
            result.prelu.append((prelu, layer))
            parts = [("", prelu)]
        elif kind == "Softmax":
            parts = [("", activations.get("softmax"))]
        elif kind == "Flatten":
            parts = [("", nn.Flatten())]
        elif kind == "Dropout":
            parts = [("", nn.Dropout(float(layer.rate)))]
        elif kind == "AlphaDropout":
            parts = [("", nn.AlphaDropout(float(layer.rate)))]
        else:
            raise ValueError(
                f"{where}: signalprop reads Dense, Conv1D, Conv2D, Activation, ReLU, "
                "LeakyReLU, PReLU, ELU, Softmax, Flatten, Dropout, AlphaDropout and "
                "InputLayer layers of a Keras model"
            )
        base = layer.name.replace(".", "_") or f"layer_{len(modules)}"
        for suffix, part in parts:
            names[base + suffix] = layer.name
            module_names.append(base + suffix)
            modules.append(part)
    if not modules:
        raise ValueError("the Keras model has no layers signalprop reads")
    # The twin's modules carry the Keras layers' names: every report speaks of them.
    sequential = nn.Sequential(OrderedDict(zip(module_names, modules, strict=True)))
    sequential.train(bool(getattr(model, "training", True)))
    result.model = sequential
    return result


# ---------------------------------------------------------------- the training monitor


register_keras_reader(twin)
