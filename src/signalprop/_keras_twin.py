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

import numpy as np
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


def _from_keras(kernel: Tensor, depthwise: bool = False) -> Tensor:
    """A Keras kernel ``(*k, in, out)`` in PyTorch's layout ``(out, in, *k)`` (a view).

    A depthwise kernel ``(*k, in, multiplier)`` is PyTorch's grouped weight
    ``(in · multiplier, 1, *k)``: output channel ``c · multiplier + m`` is input
    channel ``c``'s ``m``-th filter, in both libraries.
    """
    if depthwise:
        kernel = kernel.reshape(*kernel.shape[:-2], 1, kernel.shape[-2] * kernel.shape[-1])
    d = kernel.dim()
    return kernel.permute(d - 1, d - 2, *range(d - 2))


def _to_keras(weight: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A PyTorch weight ``(out, in, *k)`` in Keras's layout ``(*k, in, out)``, as ``shape``
    (the Keras kernel's: a depthwise kernel's last two axes are split back)."""
    return weight.permute(*range(2, weight.dim()), 1, 0).reshape(shape).contiguous()


def _take_weights(module: nn.Module, layer: Any, share: bool, depthwise: bool = False) -> None:
    """The Keras layer's kernel and bias in ``module``, in the kernel's dtype: copies, or
    views of the same memory (``share``; Keras's optimizers update their variables in place)."""
    kernel = layer.kernel.value.detach()
    bias = None if layer.bias is None else layer.bias.value.detach()
    module.to(kernel.dtype)  # a float64 Keras model has a float64 twin
    if share:
        module.weight = nn.Parameter(_from_keras(kernel, depthwise), requires_grad=False)
        if bias is not None:
            module.bias = nn.Parameter(bias, requires_grad=False)
        return
    with torch.no_grad():
        getattr(module, "weight").copy_(_from_keras(kernel, depthwise))  # noqa: B009
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

    Examples:
        ```python
        import os
        os.environ['KERAS_BACKEND'] = 'torch'   # before Keras is imported
        import keras, torch, signalprop as sp

        model = keras.Sequential([
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation='selu', kernel_initializer='lecun_normal'),
            keras.layers.Dense(10, activation='softmax'),
        ])
        twin = sp.keras.twin(model)
        twin.model     # a signalprop Sequential with the same weights
        twin.names     # its layers' names -> the Keras layers' names
        ```
    """

    model: nn.Module
    names: dict[str, str]
    weighted: list[tuple[nn.Module, Any]] = field(default_factory=list)
    prelu: list[tuple[nn.Module, Any]] = field(default_factory=list)

    def tensors(self, value: Any) -> Any:
        """A batch as the twin reads it: NumPy arrays made tensors, floating-point ones
        in the twin's dtype and on its device (as Keras casts its inputs to the model's),
        integer labels int64; tuples item by item. Anything else is left for the tool
        to check."""
        if type(value) is tuple:
            return tuple(self.tensors(item) for item in value)
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            value = torch.tensor(value)  # a copy: Keras users' arrays are often read-only
            if not value.is_floating_point() and value.dtype != torch.bool:
                value = value.long()
        parameter = next(self.model.parameters(), None)
        if isinstance(value, Tensor) and value.is_floating_point() and parameter is not None:
            value = value.to(dtype=parameter.dtype, device=parameter.device)
        return value

    def write_back(self) -> None:
        """Copy the twin's weights into the Keras layers with ``Variable.assign``."""
        with torch.no_grad():
            for module, layer in self.weighted:
                weight, bias = getattr(module, "weight"), getattr(module, "bias")  # noqa: B009
                layer.kernel.assign(_to_keras(weight.detach(), tuple(layer.kernel.shape)))
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
    """Keras's channels-last layout to PyTorch's channels-first: ``(N, …, C) -> (N, C, …)``.

    A permute changes the layout, not the scale: the model reader looks through it
    (:data:`signalprop._model.SHAPE_METHODS`).
    """

    _signalprop_transparent = True  # the signal's scale passes through unchanged

    def forward(self, x: Tensor) -> Tensor:
        return x.movedim(-1, 1)


class ChannelsLast(nn.Module):
    """Back to channels last, as Keras's next layer (a Flatten, say) expects."""

    _signalprop_transparent = True

    def forward(self, x: Tensor) -> Tensor:
        return x.movedim(1, -1)


#: Keras's convolutions read, by class name -> number of spatial dimensions.
CONVOLUTIONS = {
    "Conv1D": 1,
    "Conv2D": 2,
    "Conv3D": 3,
    "DepthwiseConv1D": 1,
    "DepthwiseConv2D": 2,
}
#: PyTorch's convolution for each number of spatial dimensions.
TORCH_CONVOLUTIONS: dict[int, type[nn.Conv1d | nn.Conv2d | nn.Conv3d]] = {
    1: nn.Conv1d,
    2: nn.Conv2d,
    3: nn.Conv3d,
}
#: Keras layers refused by name, with why: a twin of one weight layer cannot stand for them.
REFUSED = {
    "SeparableConv1D": "its depthwise and pointwise kernels are two weight layers in one",
    "SeparableConv2D": "its depthwise and pointwise kernels are two weight layers in one",
    "Conv1DTranspose": "a transposed convolution is not a convolution's twin",
    "Conv2DTranspose": "a transposed convolution is not a convolution's twin",
    "Conv3DTranspose": "a transposed convolution is not a convolution's twin",
}
#: Keras activations that are not elementwise: they act along the last (channels) axis.
ALONG_CHANNELS = ("softmax", "log_softmax")


def is_depthwise(layer: Any) -> bool:
    """Whether a Keras layer's kernel is depthwise ``(*k, in, multiplier)``."""
    return type(layer).__name__.startswith("Depthwise")


def _conv(layer: Any, where: str, share: bool) -> nn.Module:
    """A Keras convolution's ``nn.ConvNd`` (channels first), with the layer's weights."""
    config = layer.get_config()
    depthwise = is_depthwise(layer)
    if config.get("data_format", "channels_last") != "channels_last":
        raise ValueError(f"{where}: only channels_last convolutions are read")
    strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    padding = config["padding"]
    if padding == "same" and any(s != 1 for s in strides):
        raise ValueError(f"{where}: padding 'same' with strides {strides} has no PyTorch twin")
    if padding not in ("same", "valid"):
        raise ValueError(f"{where}: padding {padding!r} is not read")
    kernel = layer.kernel.value.detach()  # (*kernel_size, in / groups, out), or depthwise
    spatial = kernel.dim() - 2
    if depthwise:  # (*k, in, multiplier): one group per input channel
        groups = int(kernel.shape[-2])
        channels_in, channels_out = groups, groups * int(kernel.shape[-1])
    else:
        groups = int(getattr(layer, "groups", 1))
        channels_in, channels_out = groups * int(kernel.shape[-2]), int(kernel.shape[-1])
    conv = TORCH_CONVOLUTIONS[spatial](
        channels_in,
        channels_out,
        tuple(kernel.shape[:spatial]),
        stride=strides,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=layer.bias is not None,
    )
    _take_weights(conv, layer, share, depthwise)
    return conv


#: The layers signalprop reads, for the error that names one it does not.
READ = (
    "Dense, Conv1D, Conv2D, Conv3D, DepthwiseConv1D, DepthwiseConv2D, Activation, ReLU, "
    "LeakyReLU, PReLU, ELU, Softmax, Flatten, Dropout, AlphaDropout and InputLayer"
)


def _built(model: Any, example: Any, caller: str) -> None:
    """Build an unbuilt Keras model from ``example`` (a batch), or refuse in one line."""
    unbuilt = not getattr(model, "built", True) or any(
        not getattr(layer, "built", True) for layer in model.layers
    )
    if not unbuilt:
        return
    first = example[0] if isinstance(example, tuple) and example else example
    shape = getattr(first, "shape", None)
    if shape is None or len(shape) < 2:
        from signalprop._validation import invalid_parameter

        raise invalid_parameter(
            "model",
            caller,
            "a built Keras model (its layers' weights made)",
            f"an unbuilt {type(model).__name__} {model.name!r}",
            hint=(
                "Build it with the shape of one batch, first dimension None, e.g. "
                "model.build((None, 784)), or pass a batch as inputs and it is built from it."
            ),
        )
    model.build((None, *(int(n) for n in shape[1:])))


def twin(
    model: Any, *, share: bool = False, example: Any = None, caller: str = "signalprop.keras.twin"
) -> KerasTwin:
    """Read a Keras 3 model on the torch backend into its equivalent signalprop model.

    The twin runs in the Keras kernels' dtype (float64 for a model built under
    ``keras.config.set_floatx("float64")``). Between convolutions, and from a
    convolution through the activation layers after it, the twin's signal stays
    channels first: it goes back to Keras's channels-last layout only before a
    layer that needs it (``Flatten``, ``Dense``, ``Softmax``, ``PReLU``) and at the
    output, so a convolution's activation, its own or the next layer, is the
    convolution's consumer for every tool.

    Args:
        model: A Keras 3 model on the torch backend.
        share: The twin's weights are views of the Keras variables' memory (frozen,
            and they follow every update of the Keras model) instead of copies.
        example: A batch (array or tensor, or a tuple whose first item is one):
            an unbuilt model (a ``keras.Sequential`` without an input shape) is
            built with its shape, as Keras builds it on its first call.
        caller: The tool named in errors.

    Raises:
        ValueError: Another backend, Keras 2, an unbuilt model without ``example``,
            a branching model or an unknown layer (named, with the layers that are read).

    Examples:
        ```python
        import os
        os.environ['KERAS_BACKEND'] = 'torch'   # before Keras is imported
        import keras, torch, signalprop as sp

        model = keras.Sequential([
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation='selu', kernel_initializer='lecun_normal'),
            keras.layers.Dense(10, activation='softmax'),
        ])
        twin = sp.keras.twin(model)
        twin.model(torch.randn(4, 28, 28))   # the same outputs as model(...)
        ```
    """
    _check_backend(model)
    _built(model, example, caller)
    from signalprop import activations
    from signalprop.layers import Dense

    modules: list[nn.Module] = []
    module_names: list[str] = []
    names: dict[str, str] = {}
    result = KerasTwin(model=nn.Identity(), names=names)
    channels_first = False  # the twin's signal is channels first (after a convolution)
    previous = ""  # the twin name of the last layer read, and its Keras layer's
    previous_layer = ""

    def add(name: str, keras_name: str, module: nn.Module) -> None:
        names[name] = keras_name
        module_names.append(name)
        modules.append(module)

    for layer in _chain(model):
        kind = type(layer).__name__
        where = f"layer {layer.name!r} ({kind})"
        parts: list[tuple[str, nn.Module]]  # (name suffix, module); "" is the layer itself
        base = layer.name.replace(".", "_") or f"layer_{len(modules)}"
        elementwise = True  # the layer reads any layout: the signal stays channels first
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
            parts, elementwise = [("", dense)], False
        elif kind in CONVOLUTIONS:
            conv = _conv(layer, where, share)
            result.weighted.append((conv, layer))
            if not channels_first:
                add(base + "_channels_first", layer.name, ChannelsFirst())
                channels_first = True
            parts = [("", conv)]
            act = _activation(layer.activation, where)
            if getattr(layer.activation, "__name__", None) in ALONG_CHANNELS:
                add(base, layer.name, conv)  # softmax over the channels: back to channels last
                parts = [("_channels_last", ChannelsLast()), ("_activation", act)]
                channels_first = False
            elif not isinstance(act, nn.Identity):  # "linear": the next layer reads the conv
                parts.append(("_activation", act))
        elif kind == "Activation":
            parts = [("", _activation(layer.activation, where))]
            elementwise = getattr(layer.activation, "__name__", None) not in ALONG_CHANNELS
        elif kind == "ReLU" and not layer.negative_slope and layer.max_value is None:
            parts = [("", activations.get("relu"))]
        elif kind == "LeakyReLU":
            parts = [("", activations.get(nn.LeakyReLU(float(layer.negative_slope))))]
        elif kind == "ELU":
            parts = [("", activations.get(nn.ELU(float(layer.alpha))))]
        elif kind == "PReLU":
            alpha = layer.alpha.value.detach().reshape(-1)
            prelu = nn.PReLU(num_parameters=alpha.numel()).to(alpha.dtype)
            if share:
                prelu.weight = nn.Parameter(alpha, requires_grad=False)
            else:
                with torch.no_grad():
                    prelu.weight.copy_(alpha)
            result.prelu.append((prelu, layer))
            parts, elementwise = [("", prelu)], False  # its slopes are per channel-last unit
        elif kind == "Softmax":
            parts, elementwise = [("", activations.get("softmax"))], False
        elif kind == "Flatten":
            parts, elementwise = [("", nn.Flatten())], False  # Keras flattens channels last
        elif kind == "Dropout":
            parts = [("", nn.Dropout(float(layer.rate)))]
        elif kind == "AlphaDropout":
            parts = [("", nn.AlphaDropout(float(layer.rate)))]
        elif kind in REFUSED:
            raise ValueError(f"{where} is not read: {REFUSED[kind]} (signalprop reads {READ})")
        else:
            raise ValueError(f"{where}: signalprop reads {READ} layers of a Keras model")
        if channels_first and not elementwise:
            add(previous + "_channels_last", previous_layer, ChannelsLast())
            channels_first = False
        for suffix, part in parts:
            add(base + suffix, layer.name, part)
        previous, previous_layer = base, layer.name
    if channels_first:  # the model's output, in Keras's layout
        add(previous + "_channels_last", previous_layer, ChannelsLast())
    if not modules:
        raise ValueError("the Keras model has no layers signalprop reads")
    # The twin's modules carry the Keras layers' names: every report speaks of them.
    sequential = nn.Sequential(OrderedDict(zip(module_names, modules, strict=True)))
    sequential.train(bool(getattr(model, "training", True)))
    result.model = sequential
    return result


# ---------------------------------------------------------------- the training monitor


register_keras_reader(twin)
