"""Gains computed for any activation, the matching initializer, and SELU's constants.

A layer with ``fan_in`` inputs, zero-mean weights of variance ``σ²`` and
inputs ``f(z)`` has pre-activations of variance ``fan_in · σ² · E[f(z)²]``
(He et al., 2015). Keeping it at 1 for ``z ~ N(0, 1)`` needs
``σ² = gain² / fan_in`` with the *forward* gain ``1 / √E[f(z)²]``; keeping the
gradient's variance needs the *backward* gain ``1 / √E[f′(z)²]`` (with
``fan_out``). Both expectations are computed numerically, so any activation
works — PyTorch's ``calculate_gain`` is a fixed table that raises for most of
them and returns 3/4 for SELU, which breaks self-normalization.

Quadrature: composite Gauss–Legendre against the standard normal density on
[−12, 12] (beyond which the density is below 1e-31), in panels of width 1/4
with 16 nodes each. The ReLU family, ELU and SELU have their kink at 0, a
panel edge, so each panel's integrand is smooth and the result is exact to
round-off (√2 for ReLU to 1e-15). Gauss–Hermite quadrature over the whole
line, the textbook choice for smooth functions, converges only as 1/n²
across a kink (E[selu(z)²] comes out 1 + 2.2e-5 with 200 nodes), which is why
it is not used here.

Examples:
    >>> import signalprop as sp
    >>> round(sp.gain("relu"), 12)
    1.414213562373
    >>> round(sp.gain("selu"), 12)
    1.0
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import torch
from torch import Tensor, nn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_option, check_real, invalid_parameter

__all__ = ["Moments", "gain", "moments", "recommend_init", "selu_parameters"]

#: Half-width of the integration range: φ(12) ≈ 5e-32.
RANGE = 12.0
#: Panel width; kinks at multiples of it are integrated exactly.
PANEL = 0.25
#: Gauss–Legendre nodes per panel.
NODES = 16


def _quadrature() -> tuple[Tensor, Tensor]:
    """Nodes and weights (float64) for E[g(z)], z ~ N(0, 1)."""
    x, w = np.polynomial.legendre.leggauss(NODES)
    edges = np.arange(-RANGE, RANGE, PANEL)
    nodes = (edges[:, None] + (x[None, :] + 1) * PANEL / 2).ravel()
    weights = np.tile(w * PANEL / 2, len(edges)) * np.exp(-(nodes**2) / 2) / math.sqrt(2 * math.pi)
    return torch.from_numpy(nodes), torch.from_numpy(weights)


_NODES, _WEIGHTS = _quadrature()


@dataclass(frozen=True)
class Moments:
    """Moments of an activation for z ~ N(0, 1).

    Attributes:
        mean: E[f(z)].
        second: E[f(z)²], which sets the forward gain.
        derivative_second: E[f′(z)²], which sets the backward gain.

    Examples:
        >>> import signalprop as sp
        >>> m = sp.moments('relu')
        >>> round(m.mean, 4), round(m.second, 4), round(m.derivative_second, 4)
        (0.3989, 0.5, 0.5)
    """

    mean: float
    second: float
    derivative_second: float

    @property
    def forward_gain(self) -> float:
        return 1.0 / math.sqrt(self.second)

    @property
    def backward_gain(self) -> float:
        return 1.0 / math.sqrt(self.derivative_second)


def _copy_without_hooks(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` without its hooks: a Monitor's or diagnose's hooks hold
    their recorder (and an open log file, which cannot be copied), and a copy that is
    only evaluated must not call them."""
    memo: dict[int, Any] = {}
    for part in module.modules():
        for name, value in vars(part).items():
            if "hooks" in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    return copy.deepcopy(module, memo)


def _as_function(
    activation: Any, params: dict[str, Any], caller: str
) -> Callable[[Tensor], Tensor]:
    _activations.check_elementwise(activation, caller=caller)
    if isinstance(activation, str):
        module = _activations.create(activation, **params)
    elif params:
        raise invalid_parameter(
            "params", caller, "given only with an activation name", sorted(params)
        )
    elif isinstance(activation, nn.Module):
        module = activation
    elif callable(activation):
        return activation  # type: ignore[no-any-return]
    else:
        raise invalid_parameter(
            "activation", caller, "an activation name, module or callable", activation
        )
    if isinstance(module, nn.PReLU) and module.weight.numel() > 1:
        slopes = module.weight.detach().double()

        def per_channel(z: Tensor) -> Tensor:
            # Every channel's slope at once: the moments are averaged over channels.
            return torch.where(z[:, None] >= 0, z[:, None], slopes[None, :] * z[:, None])

        return per_channel
    # A copy in eval mode (RReLU at its eval slope), float64 and out of place
    # (``nn.ReLU(inplace=True)`` would write into the tensor whose derivative is taken):
    # the caller's module is never changed.
    frozen = _copy_without_hooks(module).eval().to(torch.float64)
    for part in frozen.modules():
        if isinstance(getattr(part, "inplace", None), bool):
            setattr(part, "inplace", False)  # noqa: B010 (a Module attribute mypy cannot see)
    return frozen


def moments(activation: str | nn.Module | Callable[[Tensor], Tensor], **params: Any) -> Moments:
    """E[f(z)], E[f(z)²] and E[f′(z)²] for z ~ N(0, 1), by quadrature and autograd.

    Args:
        activation: A name (with ``params`` for its arguments, e.g.
            ``alpha=0.2``), a module (PReLU at its current slopes, averaged over
            channels; RReLU at its eval slope), or any elementwise callable.

    Raises:
        ValueError: If the activation gives non-finite values, or grows so fast
            that its moments do not exist under the normal density.

    Examples:
        >>> import signalprop as sp
        >>> m = sp.moments('tanh')   # of tanh(z), z ~ N(0, 1)
        >>> round(m.second, 4), round(m.derivative_second, 4)
        (0.3943, 0.4644)
    """
    caller = "moments"
    f = _as_function(activation, params, caller)
    z = _NODES.clone().requires_grad_(True)
    with torch.enable_grad():
        try:
            # On a copy: a callable that works in place must not write into the leaf.
            y = f(z.clone())
        except Exception as error:  # a user's callable may fail on float64 tensors
            raise invalid_parameter(
                "activation", caller, "a function of a float64 tensor", activation, hint=str(error)
            ) from None
        if not isinstance(y, Tensor) or y.shape[0] != z.shape[0]:
            raise invalid_parameter("activation", caller, "an elementwise function", activation)
        y = y.double().reshape(len(z), -1)
        (dy,) = torch.autograd.grad(y.sum(), z, allow_unused=True)
    y = y.detach()
    dy = torch.zeros_like(z) if dy is None else dy / y.shape[1]
    if not (torch.isfinite(y).all() and torch.isfinite(dy).all()):
        raise invalid_parameter(
            "activation",
            caller,
            "an activation with finite values on [-12, 12]",
            activation,
            hint="its moments under the normal density do not exist",
        )
    density = _WEIGHTS[:, None]
    edge = (y[[0, -1]] ** 2 * RANGE).max().item() * math.exp(-(RANGE**2) / 2)
    second = float((density * y**2).sum() / y.shape[1])
    if not math.isfinite(second) or edge > 1e-8 * max(second, 1e-300):
        raise invalid_parameter(
            "activation",
            caller,
            "an activation whose square is integrable under the normal density",
            activation,
            hint="f(z)² φ(z) does not vanish at |z| = 12: its moments do not exist",
        )
    mean = float((density * y).sum() / y.shape[1])
    derivative_second = (
        float((_WEIGHTS * dy**2).sum())
        if y.shape[1] == 1
        else float((density * _per_channel_derivative(f, y.shape[1]) ** 2).sum() / y.shape[1])
    )
    if second <= 0 or derivative_second <= 0:
        raise invalid_parameter(
            "activation", caller, "an activation that is not zero everywhere", activation
        )
    return Moments(mean=mean, second=second, derivative_second=derivative_second)


def _per_channel_derivative(f: Callable[[Tensor], Tensor], channels: int) -> Tensor:
    rows = []
    z = _NODES.clone().requires_grad_(True)
    with torch.enable_grad():
        y = f(z).double().reshape(len(z), channels)
        for c in range(channels):
            (d,) = torch.autograd.grad(y[:, c].sum(), z, retain_graph=True)
            rows.append(d)
    return torch.stack(rows, dim=1)


def gain(
    activation: str | nn.Module | Callable[[Tensor], Tensor],
    mode: str = "forward",
    **params: Any,
) -> float:
    """The variance-preserving gain of any activation, computed numerically.

    ``mode="forward"`` (the default) keeps the forward signal's variance:
    ``1 / √E[f(z)²]``, the gain that He and LeCun initialization use and the
    one that makes SELU self-normalizing (gain 1). ``mode="backward"`` keeps
    the gradient's variance: ``1 / √E[f′(z)²]``. For the ReLU family both are
    equal; they differ for smooth activations (tanh: 1.593 forward, 1.467
    backward; PyTorch's table has 5/3).

    Args:
        activation: Name (with ``params``), module or elementwise callable.
        mode: ``"forward"`` or ``"backward"``.
        **params: Arguments of a named activation (``alpha=0.2``).

    Examples:
        >>> round(gain("leaky_relu", alpha=0.2), 6) == round((2 / (1 + 0.2**2)) ** 0.5, 6)
        True
    """
    check_option(mode, ("forward", "backward"), param="mode", caller="gain")
    result = moments(activation, **params)
    return result.forward_gain if mode == "forward" else result.backward_gain


def recommend_init(
    activation: str | nn.Module | Callable[[Tensor], Tensor], **params: Any
) -> _init.Initializer:
    """The initializer to pair with an activation.

    The named initializer of SPEC's table for the activations it lists (SELU:
    LeCun normal; the ReLU family and ELU: He normal; none, tanh, logistic,
    softmax: Glorot uniform); for any other activation a
    ``VarianceScaling(scale=gain², mode="fan_in", distribution="truncated_normal")``
    with the computed forward gain.

    Examples:
        >>> recommend_init("selu")
        LecunNormal()
        >>> recommend_init("gelu")
        VarianceScaling(scale=2.35..., mode='fan_in', distribution='truncated_normal')
    """
    if isinstance(activation, str):
        name: str | None = activation
        _activations.create(activation, **params)  # checks the name and the arguments
    elif isinstance(activation, nn.Module):
        name = _activations.name_of(activation)
    else:
        name = None
    table = {
        k: v
        for k, v in _init.MATCHING.items()
        if k not in ("gelu", "silu", "swish", "mish", "softplus")
    }
    if name in table and not params:
        return _init.get(table[name])
    return _init.VarianceScaling(
        scale=gain(activation, **params) ** 2, mode="fan_in", distribution="truncated_normal"
    )


def selu_parameters(mean: float = 0.0, var: float = 1.0) -> tuple[float, float]:
    """SELU's ``(alpha, scale)`` that make ``(mean, var)`` a fixed point.

    Klambauer et al. (2017) map the mean μ and variance ν of a unit's input
    to those of its output, g(μ, ν) (weights summing to ω with squares summing
    to τ; here ω = τ = 1, so the pre-activation is z ~ N(μ, ν)). (μ, ν) is a
    fixed point when

        E[selu(z)] = μ  and  Var[selu(z)] = ν,   z ~ N(μ, ν).

    With s = √ν, Φ and φ the standard normal CDF and density, and
    P = Φ(−μ/s):

        E[z; z > 0]       = μ Φ(μ/s) + s φ(μ/s)
        E[z²; z > 0]      = (μ² + ν) Φ(μ/s) + μ s φ(μ/s)
        E[e^z; z ≤ 0]     = e^{μ + ν/2} Φ(−(μ + ν)/s)
        E[e^{2z}; z ≤ 0]  = e^{2μ + 2ν} Φ(−(μ + 2ν)/s)
        E[selu(z)]  = λ (E[z; z > 0] + α (E[e^z; z ≤ 0] − P))
        E[selu(z)²] = λ² (E[z²; z > 0] + α² (E[e^{2z}; z ≤ 0] − 2 E[e^z; z ≤ 0] + P))

    solved for (α, λ) at 40 digits with ``mpmath.findroot``. (0, 1) gives the
    standard constants to 1e-12.

    Examples:
        >>> [round(v, 4) for v in selu_parameters(-0.1, 2.0)]
        [1.9769, 1.0739]
    """
    mean = check_real(mean, param="mean", caller="selu_parameters")
    var = check_real(var, param="var", caller="selu_parameters", low=0.0, low_inclusive=False)
    with mpmath.workdps(40):
        mu, nu = mpmath.mpf(mean), mpmath.mpf(var)
        s = mpmath.sqrt(nu)
        density = mpmath.npdf(mu / s)
        above = mpmath.ncdf(mu / s)
        below = mpmath.ncdf(-mu / s)
        z_positive = mu * above + s * density
        z2_positive = (mu**2 + nu) * above + mu * s * density
        exp_negative = mpmath.exp(mu + nu / 2) * mpmath.ncdf(-(mu + nu) / s)
        exp2_negative = mpmath.exp(2 * mu + 2 * nu) * mpmath.ncdf(-(mu + 2 * nu) / s)
        negative = exp_negative - below
        square = exp2_negative - 2 * exp_negative + below

        def equations(alpha: Any, scale: Any) -> list[Any]:
            first = scale * (z_positive + alpha * negative) - mu
            second = scale**2 * (z2_positive + alpha**2 * square) - (nu + mu**2)
            return [first, second]

        try:
            alpha, scale = mpmath.findroot(equations, (mpmath.mpf("1.67"), mpmath.mpf("1.05")))
        except (ValueError, ZeroDivisionError):
            raise invalid_parameter(
                "(mean, var)", "selu_parameters", "a fixed point SELU can reach", (mean, var)
            ) from None
        if not (alpha > 0 and scale > 0):
            raise invalid_parameter(
                "(mean, var)",
                "selu_parameters",
                "a fixed point reachable with alpha > 0 and scale > 0",
                (mean, var),
            )
        return float(alpha), float(scale)
