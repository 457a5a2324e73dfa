"""Layers in Keras words, as plain PyTorch modules.

``Dense(units, activation, kernel_initializer, bias_initializer)`` is a linear
layer with its activation and its initializers named as in Keras (and the
same defaults: Glorot uniform weights, zero biases); ``Sequential`` takes a
list of layers and, given ``input_shape``, infers every input size at once.
The activation modules of :mod:`signalprop.activations` are importable from
here too (``sp.layers.LeakyReLU(alpha=0.2)``, ``sp.layers.PReLU()``).

Examples:
    The chapter's 100-layer self-normalizing net:

    >>> import signalprop as sp
    >>> model = sp.Sequential(
    ...     [sp.layers.Flatten(), sp.Dense(300, "selu", kernel_initializer="lecun_normal")]
    ...     + [sp.Dense(100, "selu", kernel_initializer="lecun_normal") for _ in range(99)]
    ...     + [sp.Dense(10, "softmax")],
    ...     input_shape=(28, 28),
    ... )
    >>> model[1]
    Dense(units=300, input_dim=784, activation=SELU(), kernel_initializer=LecunNormal())
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, invalid_parameter
from signalprop.activations import (
    ELU,
    GELU,
    SELU,
    Identity,
    LeakyReLU,
    Mish,
    PReLU,
    ReLU,
    RReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Swish,
    Tanh,
)

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "Activation",
    "Dense",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Mish",
    "PReLU",
    "RReLU",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Swish",
    "Tanh",
]

ActivationLike = str | nn.Module | Callable[[Tensor], Tensor] | None
InitializerLike = str | _init.Initializer | Callable[..., Any]


class Dense(LazyModuleMixin, nn.Module):
    """Fully connected layer ``activation(x Wᵀ + b)``, in Keras words.

    Parameters are ``weight`` of shape ``(units, input_dim)`` (PyTorch's
    layout, as ``nn.Linear``, so state dicts are interchangeable) and ``bias``
    of shape ``(units,)``. When ``input_dim`` is not given, it is read from the
    last dimension of the first input and the weights are drawn then.

    Args:
        units: Number of output units, ≥ 1.
        activation: Activation name, module or callable (see
            :func:`signalprop.activations.get`); ``None`` is linear.
        kernel_initializer: Name, object or callable for the weight (see
            :func:`signalprop.init.get`). Default ``"glorot_uniform"`` as in Keras.
        bias_initializer: Same for the bias. Default ``"zeros"``.
        use_bias: Whether the layer has a bias.
        input_dim: Size of the input's last dimension, or ``None`` to infer it.
        device: Where to allocate the parameters.
        dtype: The parameters' dtype.

    Shape: ``(*, input_dim)`` -> ``(*, units)``.

    Examples:
        >>> Dense(100, activation="selu", kernel_initializer="lecun_normal", input_dim=300)
        Dense(units=100, input_dim=300, activation=SELU(), kernel_initializer=LecunNormal())
    """

    #: Read by :func:`signalprop.init.fans_for`: the weight is ``(out, in)``.
    _signalprop_dense = True

    weight: nn.Parameter | UninitializedParameter
    bias: nn.Parameter | UninitializedParameter | None

    def __init__(
        self,
        units: int,
        activation: ActivationLike = None,
        kernel_initializer: InitializerLike = "glorot_uniform",
        bias_initializer: InitializerLike = "zeros",
        use_bias: bool = True,
        input_dim: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.units = check_int(units, param="units", caller="Dense", low=1)
        if input_dim is not None:
            input_dim = check_int(input_dim, param="input_dim", caller="Dense", low=1)
        if not isinstance(use_bias, bool):
            raise invalid_parameter("use_bias", "Dense", "a bool", use_bias)
        self.activation = _activations.get(activation)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.in_features = input_dim or 0
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        if input_dim is None:
            self.weight = UninitializedParameter(**factory)
        else:
            self.weight = nn.Parameter(torch.empty(self.units, input_dim, **factory))
        if not use_bias:
            self.register_parameter("bias", None)
        elif input_dim is None:
            self.bias = UninitializedParameter(**factory)
        else:
            self.bias = nn.Parameter(torch.empty(self.units, **factory))
        self.reset_parameters()

    @property
    def out_features(self) -> int:
        """``units``, under ``nn.Linear``'s name."""
        return self.units

    @property
    def use_bias(self) -> bool:
        return self.bias is not None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the weight and bias again with the layer's initializers."""
        if self.has_uninitialized_params():
            return
        fans = (self.in_features, self.units)
        self.kernel_initializer(self.weight, generator=generator, fans=fans)
        if self.bias is not None:
            self.bias_initializer(self.bias, generator=generator)

    def initialize_parameters(self, input: Tensor) -> None:
        """Materialize the parameters from the first input's last dimension."""
        if self.has_uninitialized_params():
            with torch.no_grad():
                self.in_features = int(input.shape[-1])
                self.weight.materialize((self.units, self.in_features))  # type: ignore[union-attr]
                if self.bias is not None:
                    self.bias.materialize((self.units,))  # type: ignore[union-attr]
                self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(F.linear(x, self.weight, self.bias))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        parts = [f"units={self.units}", f"input_dim={self.in_features or None}"]
        parts.append(f"activation={self.activation!r}")
        parts.append(f"kernel_initializer={self.kernel_initializer!r}")
        if self.bias is None:
            parts.append("use_bias=False")
        elif self.bias_initializer != _init.Zeros():
            parts.append(f"bias_initializer={self.bias_initializer!r}")
        return f"Dense({', '.join(parts)})"


class Flatten(nn.Flatten):
    """Flattens every dimension but the first (the batch), as Keras's ``Flatten``.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.layers.Flatten()(torch.zeros(32, 28, 28)).shape
        torch.Size([32, 784])
    """

    def __init__(self) -> None:
        super().__init__(start_dim=1, end_dim=-1)


def Activation(activation: ActivationLike) -> nn.Module:
    """Keras's ``Activation`` layer: the activation module for a name or callable.

    Examples:
        >>> Activation("elu")
        ELU(alpha=1)
    """
    return _activations.get(activation)


class Sequential(nn.Sequential):
    """A plain stack of layers, built from a list as in Keras.

    Args:
        layers: The modules, applied in order (or an ``OrderedDict`` of them by
            name, as ``nn.Sequential`` takes: a slice ``model[1:]`` is one).
        input_shape: The shape of one example without the batch dimension,
            e.g. ``(28, 28)``. When given, lazily sized layers are built at
            once by one forward pass of zeros (in eval mode, without
            gradients); otherwise at the first real call.

    Examples:
        >>> Sequential([Dense(10, "relu")], input_shape=(5,))[0].weight.shape
        torch.Size([10, 5])
    """

    def __init__(
        self,
        layers: Iterable[nn.Module] | OrderedDict[str, nn.Module] | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if isinstance(layers, OrderedDict):
            named = list(layers.items())
        else:
            named = [(str(i), m) for i, m in enumerate(layers if layers is not None else [])]
        for index, (name, layer) in enumerate(named):
            if not isinstance(layer, nn.Module):
                where = (
                    f"layers[{name!r}]" if isinstance(layers, OrderedDict) else f"layers[{index}]"
                )
                raise invalid_parameter(where, "Sequential", "an nn.Module", layer)
        super().__init__(OrderedDict(named))
        self.input_shape: tuple[int, ...] | None = None
        if input_shape is not None:
            shape = tuple(input_shape)
            for size in shape:
                check_int(size, param="input_shape", caller="Sequential", low=1)
            self.input_shape = shape
            self.build()

    def add(self, layer: nn.Module) -> Sequential:
        """Append a layer (Keras's ``add``), building it if the input shape is known."""
        if not isinstance(layer, nn.Module):
            raise invalid_parameter("layer", "Sequential.add", "an nn.Module", layer)
        self.append(layer)
        if self.input_shape is not None:
            self.build()
        return self

    def build(self) -> None:
        """Materialize lazily sized layers by one dry run on zeros of ``input_shape``."""
        if self.input_shape is None or not any(
            isinstance(p, UninitializedParameter) for p in self.parameters()
        ):
            return
        parameter = next(iter(self.parameters()))
        modes = {module: module.training for module in self.modules()}
        self.eval()
        try:
            with torch.no_grad():
                self(
                    torch.zeros(
                        (1, *self.input_shape), dtype=parameter.dtype, device=parameter.device
                    )
                )
        finally:
            for module, training in modes.items():
                module.training = training
