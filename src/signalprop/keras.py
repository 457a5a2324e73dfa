"""Keras 3 models on the PyTorch backend: diagnosed, checked and initialized as they are.

With ``KERAS_BACKEND=torch`` a Keras 3 model is a ``torch.nn.Module``, but its
layers are not torch modules and a ``Dense`` applies its activation inside its
``call``: there is nothing for signalprop's hooks to see. This module reads such
a model into its **twin**, the equivalent :class:`~signalprop.Sequential` with
the same weights (Keras keeps a kernel as ``(in, out)``, PyTorch as ``(out,
in)``: the twin's weight is the kernel transposed), and the tools work on the
twin, so their numbers are those of the same net written with signalprop:

* ``sp.diagnose`` and ``sp.check_self_normalizing`` — on the twin, whose layers
  carry the Keras layers' names (AlphaDropout is accepted, plain Dropout flagged);
* ``sp.autoinit`` — the new weights written back with ``kernel.assign``, so the
  model stays a Keras model that trains with ``model.fit`` and saves.

They take a Keras model as they are (:func:`signalprop._model.reads_keras`). A
model on another backend (TensorFlow, JAX), or a Keras 2 / ``tf.keras`` one,
gets one error saying how to switch. This is the only module that imports
Keras (the ``keras`` extra).

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

from signalprop._model import is_keras

__all__ = ["KerasTwin", "is_keras", "twin"]

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
        conv.weight.copy_(_from_keras(kernel))
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
            with torch.no_grad():
                dense.weight.copy_(_from_keras(kernel))
                if layer.bias is not None:
                    dense.bias.copy_(layer.bias.value.detach())  # type: ignore[union-attr]
            result.weighted.append((dense, layer))
            parts = [("", dense)]
        elif kind in ("Conv1D", "Conv2D"):
            parts = _conv(layer, where)
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
