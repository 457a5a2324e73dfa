"""Activation functions: a function and a thin module for each, and a registry.

Each module subclasses the matching ``torch.nn`` module where PyTorch has one
(so ``isinstance(sp.layers.LeakyReLU(), nn.LeakyReLU)`` holds and PyTorch
tooling recognizes it), takes the Keras argument names, checks them when it
is built, and calls this module's function in ``forward``.

| name | definition | module |
| --- | --- | --- |
| sigmoid | 1 / (1 + e^−z), alias ``logistic`` | :class:`Sigmoid` |
| tanh | tanh z | :class:`Tanh` |
| relu | max(0, z) | :class:`ReLU` |
| leaky_relu | max(αz, z), α = 0.3 by default | :class:`LeakyReLU` |
| prelu | max(αz, z), α learned | :class:`PReLU` |
| rrelu | max(αz, z), α ~ U(lower, upper) in training | :class:`RReLU` |
| elu | z if z > 0 else α(e^z − 1) | :class:`ELU` |
| selu | λ · elu(z; α), α ≈ 1.6733, λ ≈ 1.0507 | :class:`SELU` |
| softmax | e^z / Σ e^z along ``axis`` | :class:`Softmax` |
| linear | z | :class:`Identity` |
| gelu | z · Φ(z) | :class:`GELU` |
| silu | z · sigmoid(z), alias ``swish`` | :class:`SiLU` |
| mish | z · tanh(softplus(z)) | :class:`Mish` |
| softplus | log(1 + e^z) | :class:`Softplus` |

Examples:
    >>> import torch, signalprop as sp
    >>> sp.activations.get("leaky_relu")
    LeakyReLU(alpha=0.3)
    >>> sp.activations.selu(torch.tensor([0.0, 1.0]))
    tensor([0.0000, 1.0507])
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signalprop._validation import (
    check_int,
    check_option,
    check_real,
    construct,
    invalid_parameter,
    lookup,
)

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "SELU_ALPHA",
    "SELU_SCALE",
    "Identity",
    "Lambda",
    "LeakyReLU",
    "Mish",
    "PReLU",
    "RReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Swish",
    "Tanh",
    "check_elementwise",
    "create",
    "curves",
    "elementwise_names",
    "elu",
    "gelu",
    "get",
    "is_elementwise",
    "leaky_relu",
    "linear",
    "mish",
    "name_of",
    "names",
    "prelu",
    "probe",
    "relu",
    "rrelu",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "swish",
    "tanh",
]


# ------------------------------------------------------------ SELU constants


def _selu_constants() -> tuple[float, float]:
    """Solve the SELU fixed-point equations for (mean, var) = (0, 1) exactly.

    With z ~ N(0, 1) and f = λ·elu(·; α), Klambauer et al. (2017) require
    E[f(z)] = 0 and E[f(z)²] = 1. Using E[e^z; z ≤ 0] = √e Φ(−1) and
    E[e^{2z}; z ≤ 0] = e² Φ(−2):

        α = √(2/π) / (1 − √e · erfc(1/√2))
        λ = (1/2 + α² (e² Φ(−2) − 2√e Φ(−1) + 1/2))^(−1/2)

    evaluated at 40 significant digits, then rounded once to float64.
    """
    with mpmath.workdps(40):
        e = mpmath.e
        alpha = mpmath.sqrt(2 / mpmath.pi) / (1 - mpmath.sqrt(e) * mpmath.erfc(1 / mpmath.sqrt(2)))
        negative_part = e**2 * mpmath.ncdf(-2) - 2 * mpmath.sqrt(e) * mpmath.ncdf(-1) + 0.5
        scale = 1 / mpmath.sqrt(0.5 + alpha**2 * negative_part)
        return float(alpha), float(scale)


_SELU_CONSTANTS = _selu_constants()
SELU_ALPHA = _SELU_CONSTANTS[0]
"""SELU's α (Klambauer et al., 2017), computed from its defining equations: ≈ 1.6732632423543772848.

Examples:
    >>> import signalprop as sp
    >>> round(sp.SELU_ALPHA, 10)
    1.6732632424
"""
SELU_SCALE = _SELU_CONSTANTS[1]
"""SELU's λ (Klambauer et al., 2017), computed from its defining equations: ≈ 1.0507009873554804934.

Examples:
    >>> import signalprop as sp
    >>> round(sp.SELU_SCALE, 10)
    1.0507009874
"""


# ------------------------------------------------------------------ functions


def sigmoid(x: Tensor) -> Tensor:
    """Logistic function 1 / (1 + e^−x); saturates at 0 and 1, mean 0.5.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.sigmoid(torch.tensor([0.0]))
        tensor([0.5000])
    """
    return torch.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent; saturates at ±1, mean 0.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.tanh(torch.tensor([0.0, 100.0]))
        tensor([0., 1.])
    """
    return torch.tanh(x)


def relu(x: Tensor) -> Tensor:
    """max(0, x) (Nair & Hinton, 2010). Units can die: gradient 0 for x < 0 (and at 0).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.relu(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """
    return F.relu(x)


def leaky_relu(x: Tensor, alpha: float = 0.3) -> Tensor:
    """max(αx, x) (Maas et al., 2013) with α ≥ 0.

    The default α = 0.3 is Keras's ``LeakyReLU`` layer default, used everywhere
    in signalprop (PyTorch's default is 0.01; ``keras.activations.leaky_relu``'s
    is 0.2).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.leaky_relu(torch.tensor([-1.0, 1.0]))   # Keras's default slope, 0.3
        tensor([-0.3000,  1.0000])
    """
    alpha = check_real(alpha, param="alpha", caller="leaky_relu", low=0.0)
    return F.leaky_relu(x, alpha)


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """max(αx, x) with α = ``weight``: one slope shared, or one per channel (dim 1).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.prelu(torch.tensor([-1.0, 1.0]), torch.tensor([0.25]))
        tensor([-0.2500,  1.0000])
    """
    return F.prelu(x, weight)


def rrelu(
    x: Tensor, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0, training: bool = False
) -> Tensor:
    """Randomized leaky ReLU (Xu et al., 2015).

    In training, each element's slope is drawn from U(lower, upper) anew at
    every call; otherwise the slope is the mean (lower + upper) / 2.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.rrelu(torch.tensor([-1.0, 1.0]), lower=0.1, upper=0.3)   # mean slope
        tensor([-0.2000,  1.0000])
    """
    caller = "rrelu"
    lower = check_real(lower, param="lower", caller=caller, low=0.0)
    upper = check_real(upper, param="upper", caller=caller, low=lower)
    if training and x.dtype == torch.float16:  # PyTorch has no float16 CPU kernel
        return F.rrelu(x.float(), lower, upper, training=True).to(x.dtype)
    return F.rrelu(x, lower, upper, training=training)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else α(e^x − 1) (Clevert et al., 2015); smooth at 0 when α = 1.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.elu(torch.tensor([-1.0, 1.0]), alpha=0.5)
        tensor([-0.3161,  1.0000])
    """
    alpha = check_real(alpha, param="alpha", caller="elu", low=0.0)
    return F.elu(x, alpha)


def selu(x: Tensor) -> Tensor:
    """λ · elu(x; α) with :data:`SELU_ALPHA` and :data:`SELU_SCALE` (Klambauer et al., 2017).

    Mean 0 and variance 1 is a fixed point for inputs of mean 0 and variance 1
    through LeCun-normal dense layers. Computed by PyTorch's fused ``torch.selu``,
    whose built-in float64 constants are exactly :data:`SELU_ALPHA` and
    :data:`SELU_SCALE` (checked by the tests).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.selu(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 1.0507])
    """
    return torch.selu(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """e^x / Σ e^x along ``axis`` (for output layers).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.softmax(torch.zeros(1, 4))
        tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """
    return F.softmax(x, dim=axis)


def linear(x: Tensor) -> Tensor:
    """The identity (Keras's ``"linear"`` activation).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.linear(torch.tensor([-1.0, 1.0]))
        tensor([-1.,  1.])
    """
    return x


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x · Φ(x) (Hendrycks & Gimpel, 2016); ``approximate="tanh"`` for the tanh form.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.gelu(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.8413])
    """
    check_option(approximate, ("none", "tanh"), param="approximate", caller="gelu")
    return F.gelu(x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    """x · sigmoid(x), also called swish (Ramachandran et al., 2017).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.silu(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.7311])
    """
    return F.silu(x)


swish = silu
"""Keras's name for `silu`, the same function.

Examples:
    >>> import torch, signalprop as sp
    >>> x = torch.randn(5)
    >>> torch.equal(sp.activations.swish(x), sp.activations.silu(x))
    True
"""


def mish(x: Tensor) -> Tensor:
    """x · tanh(softplus(x)) (Misra, 2019).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.mish(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.8651])
    """
    return F.mish(x)


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^{βx}) / β, linear where βx > ``threshold`` for numerical stability.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.softplus(torch.tensor([0.0]))
        tensor([0.6931])
    """
    beta = check_real(beta, param="beta", caller="softplus", low=0.0, low_inclusive=False)
    threshold = check_real(
        threshold, param="threshold", caller="softplus", low=0.0, low_inclusive=False
    )
    return F.softplus(x, beta, threshold)


# -------------------------------------------------------------------- modules


class Sigmoid(nn.Sigmoid):
    """Logistic activation 1 / (1 + e^−x). Shape: any, elementwise.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.Sigmoid()(torch.tensor([0.0]))
        tensor([0.5000])
    """

    def forward(self, x: Tensor) -> Tensor:
        return sigmoid(x)


class Tanh(nn.Tanh):
    """Hyperbolic tangent activation. Shape: any, elementwise.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.Tanh()(torch.tensor([0.0, 100.0]))
        tensor([0., 1.])
    """

    def forward(self, x: Tensor) -> Tensor:
        return tanh(x)


class ReLU(nn.ReLU):
    """max(0, x). Shape: any, elementwise. Keras's ``ReLU()`` with no arguments.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.ReLU()(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return relu(x)


class LeakyReLU(nn.LeakyReLU):
    """max(αx, x) with a fixed slope α ≥ 0 (Maas et al., 2013). Shape: any.

    Args:
        alpha: The slope for x < 0. Default 0.3, Keras's layer default; the
            chapter's experiments use 0.2, Xu et al. (2015) found 0.2 better
            than 0.01, and PyTorch's own default is 0.01.

    Examples:
        >>> LeakyReLU(alpha=0.2)(torch.tensor([-1.0, 2.0]))
        tensor([-0.2000,  2.0000])
    """

    def __init__(self, alpha: float = 0.3) -> None:
        super().__init__(check_real(alpha, param="alpha", caller="LeakyReLU", low=0.0))

    @property
    def alpha(self) -> float:
        return float(self.negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"alpha={self.negative_slope:g}"


class PReLU(nn.PReLU):
    """Parametric ReLU: max(αx, x) with α learned by backprop (He et al., 2015).

    Shape: ``(N, C, *)`` or ``(N, C)``; with ``num_parameters = C`` each channel
    (dimension 1) learns its own slope, with 1 all share one.

    Args:
        num_parameters: 1 (shared slope) or the number of channels.
        init: The slopes' initial value; 0.0 as Keras's ``PReLU`` (PyTorch's
            default is 0.25). Any finite value; training may move it anywhere.

    Examples:
        >>> PReLU(num_parameters=3).weight.shape
        torch.Size([3])
    """

    def __init__(
        self,
        num_parameters: int = 1,
        init: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        num_parameters = check_int(num_parameters, param="num_parameters", caller="PReLU", low=1)
        init = check_real(init, param="init", caller="PReLU")
        super().__init__(num_parameters, init, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return prelu(x, self.weight)


class RReLU(nn.RReLU):
    """Randomized leaky ReLU (Xu et al., 2015). Shape: any, elementwise.

    Training mode: each element's slope for x < 0 is drawn from
    U(lower, upper) at every forward pass, which regularizes. Eval mode: the
    slope is fixed at (lower + upper) / 2. Keras has no equivalent.

    Args:
        lower: Smallest slope, ≥ 0. Default 1/8.
        upper: Largest slope, ≥ lower. Default 1/3.

    Examples:
        >>> import torch, signalprop as sp
        >>> act = sp.activations.RReLU(lower=0.1, upper=0.3).eval()   # the mean slope in eval
        >>> act(torch.tensor([-10.0, 1.0]))
        tensor([-2.,  1.])
    """

    def __init__(self, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0) -> None:
        lower = check_real(lower, param="lower", caller="RReLU", low=0.0)
        upper = check_real(upper, param="upper", caller="RReLU", low=lower)
        super().__init__(lower, upper)

    def forward(self, x: Tensor) -> Tensor:
        return rrelu(x, self.lower, self.upper, self.training)

    def extra_repr(self) -> str:
        return f"lower={self.lower:g}, upper={self.upper:g}"


class ELU(nn.ELU):
    """x if x > 0 else α(e^x − 1) (Clevert et al., 2015). Shape: any, elementwise.

    Args:
        alpha: Saturation value −α for x → −∞, ≥ 0. Default 1.0, where ELU is
            smooth at 0.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.ELU(alpha=1.0)(torch.tensor([-1.0, 1.0]))
        tensor([-0.6321,  1.0000])
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(check_real(alpha, param="alpha", caller="ELU", low=0.0))

    def forward(self, x: Tensor) -> Tensor:
        return elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class SELU(nn.SELU):
    """Scaled ELU λ·elu(x; α) with :data:`SELU_ALPHA`, :data:`SELU_SCALE`. Shape: any.

    Self-normalizing (Klambauer et al., 2017) in a plain stack of dense layers
    initialized with LeCun normal, on standardized inputs, without skip
    connections, ℓ1/ℓ2, ordinary dropout or max-norm.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.SELU()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 1.0507])
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return selu(x)

    def extra_repr(self) -> str:
        return ""


class Softmax(nn.Softmax):
    """e^x / Σ e^x along ``axis`` (default −1, as Keras). For output layers.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.Softmax(axis=-1)(torch.zeros(1, 4))
        tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__(dim=check_int(axis, param="axis", caller="Softmax"))

    @property
    def axis(self) -> int:
        return int(self.dim)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        return softmax(x, self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.dim}"


class Identity(nn.Identity):
    """The ``"linear"`` activation: returns its input unchanged.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.Identity()(torch.tensor([-2.0, 3.0]))
        tensor([-2.,  3.])
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class GELU(nn.GELU):
    """x · Φ(x) (Hendrycks & Gimpel, 2016). Shape: any, elementwise.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.GELU()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.8413])
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__(
            check_option(approximate, ("none", "tanh"), param="approximate", caller="GELU")
        )

    def forward(self, x: Tensor) -> Tensor:
        return gelu(x, self.approximate)


class SiLU(nn.SiLU):
    """x · sigmoid(x), a.k.a. swish (Ramachandran et al., 2017). Shape: any.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.SiLU()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.7311])
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return silu(x)


Swish = SiLU
"""Keras's name for the SiLU module, the same class.

Examples:
    >>> import signalprop as sp
    >>> sp.activations.Swish is sp.activations.SiLU
    True
"""


class Mish(nn.Mish):
    """x · tanh(softplus(x)) (Misra, 2019). Shape: any, elementwise.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.Mish()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.8651])
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return mish(x)


class Softplus(nn.Softplus):
    """log(1 + e^{βx}) / β, linear above ``threshold``. Shape: any, elementwise.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.Softplus()(torch.tensor([0.0]))
        tensor([0.6931])
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        beta = check_real(beta, param="beta", caller="Softplus", low=0.0, low_inclusive=False)
        threshold = check_real(
            threshold, param="threshold", caller="Softplus", low=0.0, low_inclusive=False
        )
        super().__init__(beta, threshold)

    def forward(self, x: Tensor) -> Tensor:
        return softplus(x, self.beta, self.threshold)


class Lambda(nn.Module):
    """Wraps any elementwise callable ``fn(x)`` as an activation module.

    Examples:
        >>> import torch, signalprop as sp
        >>> act = sp.activations.Lambda(torch.square)
        >>> act(torch.tensor([-2.0, 3.0]))
        tensor([4., 9.])
    """

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


# ------------------------------------------------------------------- registry

#: name -> module class. Names are Keras's, plus ``logistic`` and ``swish``.
_REGISTRY: dict[str, type[nn.Module]] = {
    "sigmoid": Sigmoid,
    "logistic": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "rrelu": RReLU,
    "elu": ELU,
    "selu": SELU,
    "softmax": Softmax,
    "linear": Identity,
    "gelu": GELU,
    "silu": SiLU,
    "swish": SiLU,
    "mish": Mish,
    "softplus": Softplus,
}

_FUNCTIONS: dict[Callable[..., Any], type[nn.Module]] = {
    sigmoid: Sigmoid,
    tanh: Tanh,
    relu: ReLU,
    leaky_relu: LeakyReLU,
    prelu: PReLU,
    rrelu: RReLU,
    elu: ELU,
    selu: SELU,
    softmax: Softmax,
    linear: Identity,
    gelu: GELU,
    silu: SiLU,
    mish: Mish,
    softplus: Softplus,
    # PyTorch's parameter-free functions, so that they are recognized too.
    torch.sigmoid: Sigmoid,
    F.sigmoid: Sigmoid,
    torch.tanh: Tanh,
    F.tanh: Tanh,
    torch.relu: ReLU,
    F.relu: ReLU,
    torch.selu: SELU,
    F.selu: SELU,
    F.silu: SiLU,
    F.mish: Mish,
    F.gelu: GELU,
    F.elu: ELU,
    F.softplus: Softplus,
}


def names() -> list[str]:
    """The names :func:`get` accepts, sorted.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.names()[:4]
        ['elu', 'gelu', 'leaky_relu', 'linear']
    """
    return sorted(_REGISTRY)


def name_of(module: nn.Module) -> str | None:
    """The registry name of an activation module (``"selu"`` for ``SELU()``), else ``None``.

    PyTorch's own modules are recognized too (``nn.ReLU()`` is ``"relu"``).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.name_of(torch.nn.LeakyReLU())
        'leaky_relu'
        >>> sp.activations.name_of(torch.nn.Linear(2, 2)) is None
        True
    """
    for name, cls in _REGISTRY.items():
        if type(module) is cls:
            return name
    for name, cls in _REGISTRY.items():
        torch_cls = cls.__mro__[1]
        if torch_cls is not nn.Module and type(module) is torch_cls:
            return name
    return None


#: Activations that are not elementwise: each output depends on every unit of its row
#: (softmax normalizes over them), so they belong on an output layer, never a hidden one.
_NOT_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.Softmax,
    nn.Softmin,
    nn.LogSoftmax,
    nn.Softmax2d,
)
_NOT_ELEMENTWISE_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    softmax,
    F.softmax,
    F.softmin,
    F.log_softmax,
    torch.softmax,
    torch.log_softmax,
)


def is_elementwise(activation: str | nn.Module | type | Callable[..., Any]) -> bool:
    """Whether ``activation`` acts on each unit alone, as a hidden layer's activation must.

    The one rule every entry point that takes a hidden activation follows
    (propagate, gains and the mean-field theory, the command line, studies).
    Softmax and its relatives are not elementwise; every other registry name,
    module, module class or function is taken to be (a user's callable is
    trusted). An unknown name is not.

    Examples:
        >>> is_elementwise("tanh"), is_elementwise("softmax"), is_elementwise(nn.Softmax(-1))
        (True, False, False)
    """
    if isinstance(activation, str):
        cls = _REGISTRY.get(activation)
        return cls is not None and not issubclass(cls, _NOT_ELEMENTWISE)
    if isinstance(activation, nn.Module):
        return not isinstance(activation, _NOT_ELEMENTWISE)
    if isinstance(activation, type):
        return not issubclass(activation, _NOT_ELEMENTWISE)
    return not any(activation is f for f in _NOT_ELEMENTWISE_FUNCTIONS)


def elementwise_names() -> list[str]:
    """The names :func:`is_elementwise` accepts, sorted: every name but softmax.

    Examples:
        >>> import torch, signalprop as sp
        >>> names = sp.activations.elementwise_names()
        >>> 'softmax' in names, 'tanh' in names
        (False, True)
    """
    return [name for name in names() if is_elementwise(name)]


def check_elementwise(activation: Any, *, param: str = "activation", caller: str) -> None:
    """Refuse, in the one wording, an activation that cannot be a hidden layer's.

    Raises:
        ValueError: *The 'activation' parameter of propagate must be an elementwise
            activation (one of [...]). Got 'softmax' instead.* An unknown name is
            refused in the same words, with the closest elementwise name.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.check_elementwise(torch.nn.Tanh(), caller='my_function')   # fine
        >>> sp.activations.check_elementwise(torch.nn.Softmax(dim=-1), caller='my_function')
        Traceback (most recent call last):
            ...
        ValueError: The 'activation' parameter of my_function must be an elementwise ...
    """
    if is_elementwise(activation):
        return
    expected = "an elementwise activation"
    if isinstance(activation, str) and activation not in _REGISTRY:
        check_option(activation, elementwise_names(), param=param, caller=caller, what=expected)
    raise invalid_parameter(param, caller, f"{expected} (one of {elementwise_names()})", activation)


def create(name: str, **kwargs: Any) -> nn.Module:
    """A new activation module by name with arguments: ``create("leaky_relu", alpha=0.2)``.

    Raises:
        ValueError: For an unknown name, an argument the activation does not
            take (listing those it takes), or an invalid value.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.activations.create('leaky_relu', alpha=0.2)
        LeakyReLU(alpha=0.2)
    """
    caller = "signalprop.activations.create"
    cls = lookup(_REGISTRY, name, param="activation", caller=caller)
    return construct(cls, kwargs, name=name, caller=caller)


def get(identifier: str | nn.Module | Callable[[Tensor], Tensor] | None) -> nn.Module:
    """Return an activation module for a name, a module, a function or ``None``.

    Args:
        identifier: A name from :func:`names` (a new module with default
            arguments), an ``nn.Module`` (returned as is) or module class
            (instantiated), one of this module's functions (its module), any
            other callable (wrapped), or ``None``
            (the identity, Keras's ``"linear"``).

    Raises:
        ValueError: For an unknown name, listing the valid ones and the closest.

    Examples:
        >>> get("selu")
        SELU()
    """
    if identifier is None:
        return Identity()
    if isinstance(identifier, nn.Module):
        return identifier
    if isinstance(identifier, str):
        cls = lookup(_REGISTRY, identifier, param="activation", caller="signalprop.activations.get")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, nn.Module):
        return identifier()  # a class, as in ``activation=nn.ReLU``
    if callable(identifier):
        try:
            known = _FUNCTIONS.get(identifier)
        except TypeError:  # an unhashable callable
            known = None
        return known() if known is not None else Lambda(identifier)  # type: ignore[arg-type]
    raise invalid_parameter(
        "activation",
        "signalprop.activations.get",
        f"an activation name (one of {names()}), an nn.Module, a callable or None",
        identifier,
    )


def curves(
    names: Sequence[str] = ("sigmoid", "leaky_relu", "elu", "selu"),
    low: float = -5.0,
    high: float = 5.0,
    points: int = 401,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each named activation evaluated on a grid, for plotting: ``name -> (z, f(z))``.

    Modules are built with their defaults, in eval mode (RReLU at its mean slope).

    Examples:
        >>> z, y = curves(["relu"], -1.0, 1.0, 3)["relu"]
        >>> y.tolist()
        [0.0, 0.0, 1.0]
    """
    z = torch.linspace(low, high, points, dtype=torch.float64)
    result = {}
    for name in names:
        module = get(name).eval()
        with torch.no_grad():
            result[name] = (z.numpy().copy(), module.double()(z).numpy().copy())
    return result


# ------------------------------------------------------------- elementwise probe

#: Points the probe evaluates a module on: 60 values across [−6, 6] (where every
#: registry activation's shape shows), in a (3, 4, 5) float64 tensor.
_PROBE_POINTS = 60
_PROBE_RANGE = 6.0
_PROBE_SHAPE = (3, 4, 5)
#: Two evaluations agree to this relative tolerance: loose enough for a module that
#: computes in float32 (eps 1.2e-7) or in vectorized and scalar code paths, tight
#: enough that GELU and its tanh approximation, 4.7e-4 apart, still differ from SiLU.
_PROBE_RTOL, _PROBE_ATOL = 1e-6, 1e-9
#: Registry names not compared against: learned (prelu), random (rrelu), not
#: elementwise (softmax), the identity (linear), and aliases.
_NOT_PROBED = {"prelu", "rrelu", "softmax", "linear", "logistic", "swish"}

_PROBED: weakref.WeakKeyDictionary[nn.Module, str | None] = weakref.WeakKeyDictionary()


def _probe_points() -> Tensor:
    z = torch.linspace(-_PROBE_RANGE, _PROBE_RANGE, _PROBE_POINTS, dtype=torch.float64)
    order = torch.randperm(_PROBE_POINTS, generator=torch.Generator().manual_seed(0))
    return z[order].reshape(_PROBE_SHAPE)


def _same(a: Any, b: Tensor) -> bool:
    return (
        isinstance(a, Tensor)
        and a.shape == b.shape
        and a.is_floating_point()
        and bool(torch.allclose(a.double(), b.double(), rtol=_PROBE_RTOL, atol=_PROBE_ATOL))
    )


def _elementwise_values(module: nn.Module) -> Tensor | None:
    """The module's values on the probe points if it is elementwise, else None."""
    forward = module.forward  # not module(): the probe runs no hook of the user's
    x = _probe_points()
    with torch.no_grad():
        y = forward(x.clone())
        if not isinstance(y, Tensor) or y.shape != x.shape or not y.is_floating_point():
            return None
        y = y.double()
        flat, flat_y = x.reshape(-1), y.reshape(-1)
        order = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(1))
        half = flat.numel() // 2
        elementwise = (
            _same(forward(x.clone()), y)  # deterministic
            # positions do not matter: permuting the inputs permutes the outputs
            and _same(forward(flat[order].reshape(x.shape)), flat_y[order].reshape(x.shape))
            # units do not interact: half the inputs alone give the same outputs
            and _same(forward(flat[:half].clone()), flat_y[:half])
            and bool(torch.isfinite(y).all())
        )
    return y if elementwise else None


def probe(module: nn.Module) -> str | None:
    """What a parameter-free module computes, found by evaluating it: ``"gelu"``, ...

    A module is taken for an elementwise activation when it has no
    parameters, buffers or child modules and, evaluated on 60 points of
    [−6, 6] in float64 (its ``forward`` called directly, no hooks run), its
    output keeps the input's shape, is deterministic, finite and not the
    identity, permuting the inputs permutes the outputs (no position
    matters), and half the inputs alone give the same outputs (no unit
    depends on another: softmax, a normalization or ``x − x.mean()`` fail).
    Such a module is then compared with every registry activation at its
    defaults (and GELU's tanh approximation, which is "gelu" as
    ``nn.GELU(approximate="tanh")`` is) on those points.

    The answer is kept per module (a module is evaluated once).

    Returns:
        The registry name it computes; ``"other"`` for an elementwise module that
        is none of them (Hugging Face's ``QuickGELUActivation``); None when it is
        not an elementwise activation.

    Examples:
        >>> class HandMadeTanh(nn.Module):
        ...     def forward(self, x):
        ...         return torch.tanh(x)
        >>> probe(HandMadeTanh()), probe(nn.Softmax(dim=-1))
        ('tanh', None)
    """
    try:
        return _PROBED[module]
    except KeyError:
        pass
    except TypeError:  # a module that cannot be weakly referenced
        return _probe(module)
    found = _probe(module)
    _PROBED[module] = found
    return found


def _probe(module: nn.Module) -> str | None:
    if (
        next(module.parameters(), None) is not None
        or next(module.buffers(), None) is not None
        or next(module.children(), None) is not None
    ):
        return None
    try:
        values = _elementwise_values(module)
    except Exception:  # a module that cannot run on a float64 tensor alone is no activation
        return None
    if values is None:
        return None
    x = _probe_points()
    if torch.allclose(values, x, rtol=_PROBE_RTOL, atol=_PROBE_ATOL):
        return None  # the identity passes the signal through: no activation
    candidates = [(name, cls()) for name, cls in _REGISTRY.items() if name not in _NOT_PROBED]
    candidates.append(("gelu", nn.GELU(approximate="tanh")))
    with torch.no_grad():
        for name, candidate in candidates:
            if _same(candidate.eval()(x), values):
                return name
    return "other"


def activation_key(activation: Any) -> Any:
    """A hashable identity: two activations with equal keys compute the same function.

    A module's key is its class, its repr (its arguments) and the values of its
    parameters and buffers, so that two PReLUs with different learned slopes
    differ; a function is its own key.
    """
    if not isinstance(activation, nn.Module):
        return activation
    state = tuple(
        tuple(t.detach().flatten().tolist())
        for t in (*activation.parameters(), *activation.buffers())
    )
    return type(activation), repr(activation), state
