"""Weight initialization: fans, one variance-scaling engine, and thin presets.

Every fan-based initializer draws weights with variance ``scale / n``, where
``n`` is the layer's fan-in, fan-out or their average (Glorot & Bengio, 2010;
He et al., 2015; LeCun et al., 1998). :func:`variance_scaling_` does all the
arithmetic; the named presets only choose ``(scale, mode, distribution)``:

| preset | scale | mode | distribution | pairs with |
| --- | --- | --- | --- | --- |
| glorot_uniform | 1 | fan_avg | uniform | none, tanh, logistic, softmax |
| glorot_normal | 1 | fan_avg | truncated_normal | same |
| he_uniform | 2 | fan_in | uniform | ReLU family, ELU |
| he_normal | 2 | fan_in | truncated_normal | same |
| lecun_uniform | 1 | fan_in | uniform | SELU |
| lecun_normal | 1 | fan_in | truncated_normal | same |

Two calling conventions are offered, with the same numbers:

* PyTorch style: in-place functions ending in ``_`` that run under
  ``torch.no_grad()``, return the tensor and take ``generator=``
  (``sp.init.he_normal_(layer.weight)``);
* Keras style: objects named as in Keras whose call fills a tensor in place
  (``sp.init.HeNormal(seed=0)(layer.weight)``), found by name with :func:`get`.

Weights use PyTorch's layout ``(out, in, *kernel)``; see :func:`compute_fans`
and :func:`fans_for` for convolutions, transposed and grouped ones included.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.lecun_normal_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() * 300, 1)
    1.0
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from signalprop._validation import (
    check_int,
    check_option,
    check_real,
    construct,
    external_stacklevel,
    invalid_parameter,
    lookup,
)

__all__ = [
    "DISTRIBUTIONS",
    "MATCHING",
    "MODES",
    "PRESETS",
    "TRUNCATED_NORMAL_STD_FACTOR",
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "PytorchDefault",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "constant_",
    "create",
    "fans_for",
    "get",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "init_module_",
    "is_hf_conv1d",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "names",
    "ones_",
    "orthogonal_",
    "pytorch_default_",
    "random_normal_",
    "random_uniform_",
    "truncated_normal_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

TRUNCATED_NORMAL_STD_FACTOR = 0.87962566103423978
"""Standard deviation of a standard normal truncated to [-2, 2]:
sqrt(1 - 4 φ(2) / (Φ(2) - Φ(-2))). Dividing the target std by it makes a
normal cut at ±2 std have exactly the target variance (the Keras and JAX
convention for ``truncated_normal``).

Examples:
    >>> import torch, signalprop as sp
    >>> round(sp.init.TRUNCATED_NORMAL_STD_FACTOR, 6)
    0.879626
"""

MODES = ("fan_in", "fan_out", "fan_avg")
"""The fans a variance-scaling initializer divides by: fan-in, fan-out or their average.

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.MODES
    ('fan_in', 'fan_out', 'fan_avg')
"""
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "normal", "uniform")
"""``normal`` is a synonym of ``untruncated_normal``: a plain Gaussian.

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.DISTRIBUTIONS
    ('truncated_normal', 'untruncated_normal', 'normal', 'uniform')
"""


# --------------------------------------------------------------------------- fans


def compute_fans(
    shape: Sequence[int] | torch.Size, *, groups: int = 1, transposed: bool = False
) -> tuple[int, int]:
    """Fan-in and fan-out of a weight of the given PyTorch shape.

    Layouts (``rf`` is the receptive field, the product of the kernel sizes):

    * ``nn.Linear`` ``(out, in)``: fan_in = in, fan_out = out.
    * ``nn.Conv{1,2,3}d`` ``(out, in/groups, *k)``: fan_in = in/groups · rf, the
      inputs each output sums over; fan_out = out/groups · rf, the outputs each
      input reaches.
    * ``nn.ConvTranspose{1,2,3}d`` ``(in, out/groups, *k)`` (pass
      ``transposed=True``): fan_in = in/groups · rf, fan_out = out/groups · rf.

    PyTorch's own ``_calculate_fan_in_and_fan_out`` reads every weight as
    ``(out, in, *k)`` and ignores groups, so it gives the fans of a transposed
    convolution swapped and a grouped convolution's fan_out ``groups`` times too
    large. Strides are ignored, as everywhere else.

    Args:
        shape: The weight's shape; at least 2 dimensions.
        groups: The convolution's ``groups``.
        transposed: Whether the weight belongs to a transposed convolution.

    Returns:
        ``(fan_in, fan_out)``.

    Examples:
        >>> compute_fans((64, 3, 3, 3))
        (27, 576)
    """
    dims = tuple(int(d) for d in shape)
    if len(dims) < 2:
        raise invalid_parameter(
            "shape",
            "compute_fans",
            "a shape with at least 2 dimensions, (out, in, *kernel)",
            tuple(dims),
        )
    groups = check_int(groups, param="groups", caller="compute_fans", low=1)
    receptive_field = math.prod(dims[2:])
    if dims[0] % groups:
        raise invalid_parameter(
            "groups", "compute_fans", f"a divisor of the weight's first dimension {dims[0]}", groups
        )
    if transposed:  # (in, out/groups, *k)
        return dims[0] // groups * receptive_field, dims[1] * receptive_field
    return dims[1] * receptive_field, dims[0] // groups * receptive_field


def is_hf_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is Hugging Face's ``Conv1D`` (GPT-2's projections), without
    importing ``transformers``: a class named ``Conv1D`` with an integer ``nf`` and a
    2-D weight of shape ``(nx, nf)``, stored ``(in, out)``, the transpose of ``nn.Linear``'s.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.is_hf_conv1d(torch.nn.Linear(4, 2))
        False
    """
    if type(module).__name__ != "Conv1D":  # first: a miss costs nn.Module an exception
        return False
    weight = getattr(module, "weight", None)
    nf = getattr(module, "nf", None)
    return (
        isinstance(nf, int)
        and isinstance(weight, Tensor)
        and weight.dim() == 2
        and weight.shape[1] == nf
    )


def fans_for(module: nn.Module) -> tuple[int, int]:
    """Fan-in and fan-out of a layer's weight, knowing the layer's type.

    Knows ``nn.Linear`` and :class:`signalprop.layers.Dense` ``(out, in)``,
    ``nn.Conv*d`` ``(out, in/groups, *k)`` and ``nn.ConvTranspose*d``
    ``(in, out/groups, *k)`` (see :func:`compute_fans`), Hugging Face's
    ``Conv1D`` ``(in, out)`` (see :func:`is_hf_conv1d`), and
    ``nn.MultiheadAttention``: the fans of its query projection,
    ``(embed_dim, embed_dim)`` (its packed ``in_proj_weight`` is ``(3E, E)``:
    three ``E → E`` maps; with ``kdim``/``vdim`` the key and value projections
    read those widths).

    Raises:
        ValueError: For other module types (their fans are not determined by
            the weight's shape alone) and for weights not yet materialized.

    Examples:
        >>> fans_for(nn.ConvTranspose2d(16, 8, 3))
        (144, 72)
        >>> fans_for(nn.MultiheadAttention(32, 4))
        (32, 32)
    """
    if isinstance(module, nn.MultiheadAttention):
        return module.embed_dim, module.embed_dim
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or isinstance(weight, nn.parameter.UninitializedParameter):
        raise invalid_parameter(
            "module", "fans_for", "a layer with a materialized weight", type(module).__name__
        )
    if isinstance(module, nn.modules.conv._ConvNd):
        return compute_fans(weight.shape, groups=module.groups, transposed=module.transposed)
    if isinstance(module, nn.Linear) or getattr(module, "_signalprop_dense", False):
        return compute_fans(weight.shape)
    if is_hf_conv1d(module):
        return int(weight.shape[0]), int(weight.shape[1])
    raise invalid_parameter(
        "module",
        "fans_for",
        "an nn.Linear, Dense, nn.Conv*d, nn.ConvTranspose*d, Hugging Face's Conv1D or "
        "nn.MultiheadAttention; for another layer pass fans=compute_fans(...) to the initializer",
        type(module).__name__,
    )


# ---------------------------------------------------------------- the engine


def _is_empty(tensor: Tensor, caller: str, *, random: bool = True) -> bool:
    if not isinstance(tensor, Tensor):
        raise invalid_parameter("tensor", caller, "a torch.Tensor", type(tensor).__name__)
    if random and not tensor.is_floating_point():
        raise invalid_parameter(
            "tensor", caller, "a floating-point tensor (random weights)", str(tensor.dtype)
        )
    if tensor.numel() == 0:
        warnings.warn(
            f"{caller}: initializing a zero-element tensor is a no-op",
            stacklevel=external_stacklevel(),
        )
        return True
    return False


def _draw(tensor: Tensor, fill: Callable[[Tensor], object]) -> Tensor:
    """Fill ``tensor`` in place, drawing in float32 for half-precision dtypes."""
    with torch.no_grad():
        if tensor.dtype in (torch.float16, torch.bfloat16):
            scratch = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
            fill(scratch)
            tensor.copy_(scratch)
        else:
            fill(tensor)
    return tensor


def _fill_variance(
    tensor: Tensor, variance: float, distribution: str, generator: torch.Generator | None
) -> Tensor:
    """Fill with mean 0 and the given variance, in the given distribution."""
    if distribution == "truncated_normal":
        std = math.sqrt(variance) / TRUNCATED_NORMAL_STD_FACTOR
        return _draw(
            tensor,
            lambda t: nn.init.trunc_normal_(
                t, 0.0, std, -2.0 * std, 2.0 * std, generator=generator
            ),
        )
    if distribution in ("untruncated_normal", "normal"):
        return _draw(tensor, lambda t: t.normal_(0.0, math.sqrt(variance), generator=generator))
    bound = math.sqrt(3.0 * variance)
    return _draw(tensor, lambda t: t.uniform_(-bound, bound, generator=generator))


def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    generator: torch.Generator | None = None,
    fans: tuple[int, int] | None = None,
) -> Tensor:
    r"""Fill ``tensor`` with weights of variance ``scale / n``, in place.

    ``n`` is fan_in, fan_out or fan_avg = (fan_in + fan_out) / 2 by ``mode``
    (at least 1). By ``distribution``:

    * ``"truncated_normal"``: N(0, s²) cut at ±2s with s = σ / 0.8796256610…,
      so the result's variance is exactly σ² = scale / n;
    * ``"untruncated_normal"`` (or ``"normal"``): N(0, σ²);
    * ``"uniform"``: U(−r, r) with r = √(3σ²).

    Args:
        tensor: The weight, PyTorch layout ``(out, in, *kernel)``, ≥ 2 dims.
        scale: The variance multiplier (1 for Glorot/LeCun, 2 for He); > 0.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: One of :data:`DISTRIBUTIONS`; never silently replaced.
        generator: Random generator to draw from; the global one if ``None``.
        fans: ``(fan_in, fan_out)`` to use instead of reading them from the
            shape, e.g. ``fans_for(conv_transpose)``.

    Returns:
        ``tensor``, filled.

    Examples:
        >>> w = variance_scaling_(torch.empty(100, 50), 2.0, "fan_avg", "uniform")
        >>> bool(w.abs().max() <= math.sqrt(3 * 2.0 / 75))
        True
    """
    return _variance_scaling(
        tensor, scale, mode, distribution, generator, fans, caller="variance_scaling_"
    )


def _variance_scaling(
    tensor: Tensor,
    scale: float,
    mode: str,
    distribution: str,
    generator: torch.Generator | None,
    fans: Sequence[int] | None,
    *,
    caller: str,
) -> Tensor:
    """The engine behind every fan-based initializer; errors name ``caller``."""
    scale = check_real(scale, param="scale", caller=caller, low=0.0, low_inclusive=False)
    check_option(mode, MODES, param="mode", caller=caller)
    check_option(distribution, DISTRIBUTIONS, param="distribution", caller=caller)
    if not isinstance(tensor, Tensor):
        raise invalid_parameter("tensor", caller, "a torch.Tensor", type(tensor).__name__)
    if tensor.dim() < 2:
        raise invalid_parameter(
            "tensor",
            caller,
            "a tensor with at least 2 dimensions, (out, in, *kernel)",
            tuple(tensor.shape),
        )
    if fans is None:
        fan_in, fan_out = compute_fans(tensor.shape)
    else:
        if not isinstance(fans, Sequence) or isinstance(fans, str) or len(fans) != 2:
            raise invalid_parameter(
                "fans", caller, "a pair of integers >= 0, (fan_in, fan_out)", fans
            )
        fan_in = check_int(fans[0], param="fans[0]", caller=caller, low=0)
        fan_out = check_int(fans[1], param="fans[1]", caller=caller, low=0)
    if _is_empty(tensor, caller):
        return tensor
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    return _fill_variance(tensor, scale / max(1.0, n), distribution, generator)


class InitFunction(Protocol):
    """The signature of the in-place fan-based presets."""

    __name__: str

    def __call__(
        self,
        tensor: Tensor,
        *,
        generator: torch.Generator | None = None,
        fans: tuple[int, int] | None = None,
    ) -> Tensor: ...


PRESETS: dict[str, tuple[float, str, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform", "no activation, tanh, logistic, softmax"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal", "no activation, tanh, logistic, softmax"),
    "he_uniform": (2.0, "fan_in", "uniform", "ReLU, leaky/randomized/parametric ReLU, ELU"),
    "he_normal": (2.0, "fan_in", "truncated_normal", "ReLU, leaky/randomized/parametric ReLU, ELU"),
    "lecun_uniform": (1.0, "fan_in", "uniform", "SELU"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal", "SELU"),
    "pytorch_default": (
        1.0 / 3.0,
        "fan_in",
        "uniform",
        "nothing in particular: it is what nn.Linear and nn.Conv* draw by default "
        "(kaiming_uniform_ with a = √5, bound 1/√fan_in)",
    ),
}
"""The named variance-scaling presets: name -> (scale, mode, distribution, pairs with).

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.PRESETS['he_normal'][:3]   # (scale, mode, distribution)
    (2.0, 'fan_in', 'truncated_normal')
"""


MATCHING: dict[str, str] = {
    "linear": "glorot_uniform",
    "sigmoid": "glorot_uniform",
    "logistic": "glorot_uniform",
    "tanh": "glorot_uniform",
    "softmax": "glorot_uniform",
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "prelu": "he_normal",
    "rrelu": "he_normal",
    "elu": "he_normal",
    "gelu": "he_normal",
    "silu": "he_normal",
    "swish": "he_normal",
    "mish": "he_normal",
    "softplus": "he_normal",
    "selu": "lecun_normal",
}
"""The initializer each activation pairs with (SPEC's table). GELU, SiLU, Mish
and softplus are not in it; they are ReLU-like and conventionally take He's
(:func:`signalprop.gain` computes their exact gains).

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.MATCHING['selu'], sp.init.MATCHING['relu'], sp.init.MATCHING['tanh']
    ('lecun_normal', 'he_normal', 'glorot_uniform')
"""


def _preset_function(name: str) -> InitFunction:
    scale, mode, distribution, pairs_with = PRESETS[name]

    def init_(
        tensor: Tensor,
        *,
        generator: torch.Generator | None = None,
        fans: tuple[int, int] | None = None,
    ) -> Tensor:
        return _variance_scaling(
            tensor, scale, mode, distribution, generator, fans, caller=f"{name}_"
        )

    init_.__name__ = init_.__qualname__ = f"{name}_"
    init_.__doc__ = (
        f"Fill ``tensor`` in place with {name} weights: "
        f"``variance_scaling_(tensor, scale={scale:g}, mode={mode!r}, "
        f"distribution={distribution!r})``.\n\n"
        f"    Pairs with: {pairs_with}. Takes ``generator=`` and ``fans=`` as\n"
        f"    :func:`variance_scaling_` does and returns ``tensor``.\n"
    )
    return init_


glorot_uniform_ = _preset_function("glorot_uniform")
"""Glorot (Xavier) uniform: uniform of variance 2 / (fan_in + fan_out), in place (Keras's default).

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.glorot_uniform_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (2 / (100 + 300)), 1)   # variance 2 / (100 + 300)
    1.0
"""
glorot_normal_ = _preset_function("glorot_normal")
"""Glorot (Xavier) normal: truncated normal of variance 2 / (fan_in + fan_out), in place.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.glorot_normal_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (2 / (100 + 300)), 1)   # variance 2 / (100 + 300)
    1.0
"""
he_uniform_ = _preset_function("he_uniform")
"""He (Kaiming) uniform: uniform of variance 2 / fan_in, in place; for the ReLU family.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.he_uniform_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (2 / 300), 1)   # variance 2 / 300
    1.0
"""
he_normal_ = _preset_function("he_normal")
"""He (Kaiming) normal: truncated normal of variance 2 / fan_in, in place; for the ReLU family.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.he_normal_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (2 / 300), 1)   # variance 2 / 300
    1.0
"""
lecun_uniform_ = _preset_function("lecun_uniform")
"""LeCun uniform: uniform of variance 1 / fan_in, in place.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.lecun_uniform_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (1 / 300), 1)   # variance 1 / 300
    1.0
"""
lecun_normal_ = _preset_function("lecun_normal")
"""LeCun normal: truncated normal of variance 1 / fan_in, in place; for SELU.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.lecun_normal_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (1 / 300), 1)   # variance 1 / 300
    1.0
"""
pytorch_default_ = _preset_function("pytorch_default")
"""PyTorch's own default for Linear and Conv: uniform of variance 1 / (3 fan_in), in place.

Examples:
    >>> import torch, signalprop as sp
    >>> w = torch.empty(100, 300)
    >>> _ = sp.init.pytorch_default_(w, generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() / (1 / (3 * 300)), 1)   # variance 1 / (3 * 300)
    1.0
"""
xavier_uniform_ = glorot_uniform_
"""PyTorch's name for `glorot_uniform_`, the same function.

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.xavier_uniform_ is sp.init.glorot_uniform_
    True
"""
xavier_normal_ = glorot_normal_
"""PyTorch's name for `glorot_normal_`, the same function.

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.xavier_normal_ is sp.init.glorot_normal_
    True
"""
kaiming_uniform_ = he_uniform_
"""PyTorch's name for `he_uniform_`, the same function.

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.kaiming_uniform_ is sp.init.he_uniform_
    True
"""
kaiming_normal_ = he_normal_
"""PyTorch's name for `he_normal_`, the same function.

Examples:
    >>> import torch, signalprop as sp
    >>> sp.init.kaiming_normal_ is sp.init.he_normal_
    True
"""


# --------------------------------------------------------- other initializers


def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 0 in place (the Keras and signalprop bias default).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.zeros_(torch.empty(3))
        tensor([0., 0., 0.])
    """
    return _constant(tensor, 0.0, caller="zeros_")


def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 1 in place.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.ones_(torch.empty(3))
        tensor([1., 1., 1.])
    """
    return _constant(tensor, 1.0, caller="ones_")


def constant_(tensor: Tensor, value: float = 0.0) -> Tensor:
    """Fill ``tensor`` with ``value`` in place.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.constant_(torch.empty(3), 0.5)
        tensor([0.5000, 0.5000, 0.5000])
    """
    return _constant(tensor, value, caller="constant_")


def _constant(tensor: Tensor, value: float, *, caller: str) -> Tensor:
    value = check_real(value, param="value", caller=caller)
    if _is_empty(tensor, caller, random=False):
        return tensor
    with torch.no_grad():
        return tensor.fill_(value)


def random_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    stddev: float = 0.05,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` in place from N(mean, stddev²) (Keras's ``RandomNormal``).

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.random_normal_(w, stddev=0.05, generator=torch.Generator().manual_seed(0))
        >>> round(w.std().item(), 2)
        0.05
    """
    caller = "random_normal_"
    mean = check_real(mean, param="mean", caller=caller)
    stddev = check_real(stddev, param="stddev", caller=caller, low=0.0, low_inclusive=False)
    if _is_empty(tensor, caller):
        return tensor
    return _draw(tensor, lambda t: t.normal_(mean, stddev, generator=generator))


def random_uniform_(
    tensor: Tensor,
    minval: float = -0.05,
    maxval: float = 0.05,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` in place from U(minval, maxval) (Keras's ``RandomUniform``).

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.random_uniform_(w, -0.05, 0.05, generator=torch.Generator().manual_seed(0))
        >>> w.abs().max().item() <= 0.05
        True
    """
    caller = "random_uniform_"
    minval = check_real(minval, param="minval", caller=caller)
    maxval = check_real(maxval, param="maxval", caller=caller, low=minval, low_inclusive=False)
    if _is_empty(tensor, caller):
        return tensor
    return _draw(tensor, lambda t: t.uniform_(minval, maxval, generator=generator))


def truncated_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    stddev: float = 0.05,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` in place from N(mean, stddev²) cut at mean ± 2·stddev.

    As in Keras's ``TruncatedNormal``, ``stddev`` is that of the normal before
    cutting, so the result's standard deviation is
    ``TRUNCATED_NORMAL_STD_FACTOR * stddev`` (≈ 0.88 · stddev). The
    variance-scaling presets correct for this; this function does not.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> generator = torch.Generator().manual_seed(0)
        >>> _ = sp.init.truncated_normal_(w, stddev=0.05, generator=generator)
        >>> w.abs().max().item() <= 2 * 0.05
        True
    """
    caller = "truncated_normal_"
    mean = check_real(mean, param="mean", caller=caller)
    stddev = check_real(stddev, param="stddev", caller=caller, low=0.0, low_inclusive=False)
    if _is_empty(tensor, caller):
        return tensor
    low, high = mean - 2.0 * stddev, mean + 2.0 * stddev
    return _draw(
        tensor, lambda t: nn.init.trunc_normal_(t, mean, stddev, low, high, generator=generator)
    )


def orthogonal_(
    tensor: Tensor, gain: float = 1.0, *, generator: torch.Generator | None = None
) -> Tensor:
    """Fill ``tensor`` in place with a (semi-)orthogonal matrix times ``gain``.

    Dimensions after the first are flattened (Saxe et al., 2013); drawn by
    ``torch.nn.init.orthogonal_``.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = sp.init.orthogonal_(torch.empty(3, 5), generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-6)
        True
    """
    caller = "orthogonal_"
    gain = check_real(gain, param="gain", caller=caller)
    if isinstance(tensor, Tensor) and tensor.dim() < 2:
        raise invalid_parameter(
            "tensor", caller, "a tensor with at least 2 dimensions", tuple(tensor.shape)
        )
    if _is_empty(tensor, caller):
        return tensor
    return _draw(tensor, lambda t: nn.init.orthogonal_(t, gain, generator=generator))


# ---------------------------------------------------------- Keras-style objects


class Initializer:
    """Base of the Keras-style initializer objects.

    Calling one fills a tensor in place and returns it. A ``seed`` makes every
    call draw the same values (as in Keras); ``generator=`` at call time takes
    precedence over the seed; with neither, PyTorch's global generator is used.

    Examples:
        >>> import torch, signalprop as sp
        >>> init = sp.init.get('he_normal')   # every initializer is one
        >>> isinstance(init, sp.init.Initializer), init.get_config()
        (True, {'seed': None})
    """

    seed: int | None = None

    def __call__(
        self,
        tensor: Tensor,
        *,
        generator: torch.Generator | None = None,
        fans: tuple[int, int] | None = None,
    ) -> Tensor:
        if generator is None and self.seed is not None and isinstance(tensor, Tensor):
            generator = torch.Generator(device=tensor.device).manual_seed(self.seed)
        return self._fill(tensor, generator, fans)

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, as in Keras."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


def _check_seed(seed: int | None, caller: str) -> int | None:
    return None if seed is None else check_int(seed, param="seed", caller=caller, low=0)


class VarianceScaling(Initializer):
    """Keras's ``VarianceScaling``: variance ``scale / n``; see :func:`variance_scaling_`.

    Examples:
        >>> he_avg_uniform = VarianceScaling(scale=2.0, mode="fan_avg", distribution="uniform")
        >>> he_avg_uniform(torch.empty(3, 4)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
    ) -> None:
        caller = type(self).__name__
        self.scale = check_real(scale, param="scale", caller=caller, low=0.0, low_inclusive=False)
        self.mode = check_option(mode, MODES, param="mode", caller=caller)
        self.distribution = check_option(
            distribution, DISTRIBUTIONS, param="distribution", caller=caller
        )
        self.seed = _check_seed(seed, caller)

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return _variance_scaling(
            tensor,
            self.scale,
            self.mode,
            self.distribution,
            generator,
            fans,
            caller=type(self).__name__,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }


class _Preset(VarianceScaling):
    """A named variance-scaling preset; its only argument is the seed."""

    preset: str = ""

    def __init__(self, seed: int | None = None) -> None:
        scale, mode, distribution, _ = PRESETS[self.preset]
        super().__init__(scale, mode, distribution, seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    """Glorot (Xavier) uniform: scale 1, fan_avg, uniform. Keras's ``Dense`` default.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.GlorotUniform(seed=0)(w)
        >>> round(w.var().item() / (2 / (100 + 300)), 1)   # variance 2 / (100 + 300)
        1.0
    """

    preset = "glorot_uniform"


class GlorotNormal(_Preset):
    """Glorot (Xavier) normal: scale 1, fan_avg, truncated normal.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.GlorotNormal(seed=0)(w)
        >>> round(w.var().item() / (2 / (100 + 300)), 1)   # variance 2 / (100 + 300)
        1.0
    """

    preset = "glorot_normal"


class HeUniform(_Preset):
    """He (Kaiming) uniform: scale 2, fan_in, uniform. For the ReLU family and ELU.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.HeUniform(seed=0)(w)
        >>> round(w.var().item() / (2 / 300), 1)   # variance 2 / 300
        1.0
    """

    preset = "he_uniform"


class HeNormal(_Preset):
    """He (Kaiming) normal: scale 2, fan_in, truncated normal. For the ReLU family and ELU.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.HeNormal(seed=0)(w)
        >>> round(w.var().item() / (2 / 300), 1)   # variance 2 / 300
        1.0
    """

    preset = "he_normal"


class LecunUniform(_Preset):
    """LeCun uniform: scale 1, fan_in, uniform.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.LecunUniform(seed=0)(w)
        >>> round(w.var().item() / (1 / 300), 1)   # variance 1 / 300
        1.0
    """

    preset = "lecun_uniform"


class LecunNormal(_Preset):
    """LeCun normal: scale 1, fan_in, truncated normal. What SELU needs.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.LecunNormal(seed=0)(w)
        >>> round(w.var().item() / (1 / 300), 1)   # variance 1 / 300
        1.0
    """

    preset = "lecun_normal"


class PytorchDefault(_Preset):
    """PyTorch's default for ``nn.Linear``/``nn.Conv*`` weights: scale 1/3, fan_in, uniform.

    ``kaiming_uniform_(w, a=√5)`` draws U(−1/√fan_in, 1/√fan_in), variance
    1/(3·fan_in): a third of LeCun's, which makes deep stacks vanish. For
    comparisons; not a recommendation.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.PytorchDefault(seed=0)(w)
        >>> round(w.var().item() / (1 / (3 * 300)), 1)   # variance 1 / (3 * 300)
        1.0
    """

    preset = "pytorch_default"


class Zeros(Initializer):
    """Fill with 0 (Keras's ``Zeros``); the bias default.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.Zeros()(torch.empty(2))
        tensor([0., 0.])
    """

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return zeros_(tensor)


class Ones(Initializer):
    """Fill with 1 (Keras's ``Ones``).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.Ones()(torch.empty(2))
        tensor([1., 1.])
    """

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return ones_(tensor)


class Constant(Initializer):
    """Fill with ``value`` (Keras's ``Constant``).

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.Constant(0.1)(torch.empty(2, 2))
        tensor([[0.1000, 0.1000],
                [0.1000, 0.1000]])
    """

    def __init__(self, value: float = 0.0) -> None:
        self.value = check_real(value, param="value", caller="Constant")

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return constant_(tensor, self.value)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomNormal(Initializer):
    """N(mean, stddev²) (Keras's ``RandomNormal``); see :func:`random_normal_`.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.RandomNormal(stddev=0.05, seed=0)(w)
        >>> round(w.std().item(), 2)
        0.05
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        caller = type(self).__name__
        self.mean = check_real(mean, param="mean", caller=caller)
        self.stddev = check_real(
            stddev, param="stddev", caller=caller, low=0.0, low_inclusive=False
        )
        self.seed = _check_seed(seed, caller)

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return random_normal_(tensor, self.mean, self.stddev, generator=generator)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    """N(mean, stddev²) cut at ±2·stddev (Keras's ``TruncatedNormal``).

    See :func:`truncated_normal_`: ``stddev`` is before the cut.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.TruncatedNormal(stddev=0.05, seed=0)(w)
        >>> w.abs().max().item() <= 2 * 0.05   # cut at 2 stddev
        True
    """

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return truncated_normal_(tensor, self.mean, self.stddev, generator=generator)


class RandomUniform(Initializer):
    """U(minval, maxval) (Keras's ``RandomUniform``); see :func:`random_uniform_`.

    Examples:
        >>> import torch, signalprop as sp
        >>> w = torch.empty(100, 300)
        >>> _ = sp.init.RandomUniform(-0.05, 0.05, seed=0)(w)
        >>> w.abs().max().item() <= 0.05
        True
    """

    def __init__(
        self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
    ) -> None:
        caller = "RandomUniform"
        self.minval = check_real(minval, param="minval", caller=caller)
        self.maxval = check_real(
            maxval, param="maxval", caller=caller, low=self.minval, low_inclusive=False
        )
        self.seed = _check_seed(seed, caller)

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return random_uniform_(tensor, self.minval, self.maxval, generator=generator)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Keras's ``Orthogonal``).

    Examples:
        >>> import torch, signalprop as sp
        >>> w = sp.init.Orthogonal(seed=0)(torch.empty(3, 5))
        >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-6)
        True
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain = check_real(gain, param="gain", caller="Orthogonal")
        self.seed = _check_seed(seed, "Orthogonal")

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        return orthogonal_(tensor, self.gain, generator=generator)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": self.seed}


class _CallableInitializer(Initializer):
    """Adapts any ``fn(tensor)`` (e.g. ``torch.nn.init.kaiming_normal_``)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        self._takes = {name for name in ("generator", "fans") if name in params}

    def _fill(
        self, tensor: Tensor, generator: torch.Generator | None, fans: tuple[int, int] | None
    ) -> Tensor:
        kwargs: dict[str, Any] = {}
        if "generator" in self._takes and generator is not None:
            kwargs["generator"] = generator
        if "fans" in self._takes and fans is not None:
            kwargs["fans"] = fans
        with torch.no_grad():
            self.fn(tensor, **kwargs)
        return tensor

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CallableInitializer) and other.fn is self.fn

    def __hash__(self) -> int:
        return hash(self.fn)


# -------------------------------------------------------------------- registry

#: Keras snake_case names (and the xavier/kaiming aliases) -> initializer class.
_REGISTRY: dict[str, type[Initializer]] = {
    "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "xavier_uniform": GlorotUniform,
    "xavier_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "kaiming_uniform": HeUniform,
    "kaiming_normal": HeNormal,
    "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "truncated_normal": TruncatedNormal,
    "orthogonal": Orthogonal,
    "pytorch_default": PytorchDefault,
}

#: signalprop's own in-place functions map to the equivalent object.
_FUNCTIONS: dict[Callable[..., Any], type[Initializer]] = {
    glorot_uniform_: GlorotUniform,
    glorot_normal_: GlorotNormal,
    he_uniform_: HeUniform,
    he_normal_: HeNormal,
    lecun_uniform_: LecunUniform,
    lecun_normal_: LecunNormal,
    pytorch_default_: PytorchDefault,
    zeros_: Zeros,
    ones_: Ones,
    random_normal_: RandomNormal,
    random_uniform_: RandomUniform,
    truncated_normal_: TruncatedNormal,
    orthogonal_: Orthogonal,
    variance_scaling_: VarianceScaling,
}


def names() -> list[str]:
    """The names :func:`get` accepts, sorted.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.names()[:4]
        ['constant', 'glorot_normal', 'glorot_uniform', 'he_normal']
    """
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> Initializer:
    """A new initializer by name with arguments: ``create("variance_scaling", scale=2.0)``.

    Raises:
        ValueError: For an unknown name, an argument the initializer does not
            take (listing those it takes), or an invalid value.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.init.create('variance_scaling', scale=2.0, mode='fan_out')
        VarianceScaling(scale=2.0, mode='fan_out', distribution='truncated_normal')
    """
    caller = "signalprop.init.create"
    cls = lookup(_REGISTRY, name, param="identifier", caller=caller)
    return construct(cls, kwargs, name=name, caller=caller)


def get(identifier: str | Initializer | Callable[..., Any]) -> Initializer:
    """Return an initializer object for a name, an initializer or a callable.

    Args:
        identifier: A Keras snake_case name (``"he_normal"``, ``"glorot_uniform"``,
            ``"lecun_normal"``, ``"variance_scaling"``, …) or alias
            (``"xavier_uniform"``, ``"kaiming_normal"``); an :class:`Initializer`
            (returned as is); one of this module's in-place functions; or any
            callable filling a tensor in place.

    Raises:
        ValueError: For an unknown name, listing the valid ones.

    Examples:
        >>> get("he_normal")
        HeNormal()
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        return lookup(_REGISTRY, identifier, param="identifier", caller="signalprop.init.get")()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()  # a class, as in ``kernel_initializer=HeNormal``
    if callable(identifier):
        cls = _FUNCTIONS.get(identifier)
        return cls() if cls is not None else _CallableInitializer(identifier)
    raise invalid_parameter(
        "identifier",
        "signalprop.init.get",
        f"an initializer name (one of {names()}), an Initializer or a callable",
        identifier,
    )


def init_module_(
    module: nn.Module,
    kernel_initializer: str | Initializer | Callable[..., Any] = "glorot_uniform",
    bias_initializer: str | Initializer | Callable[..., Any] = "zeros",
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialize one layer's weight and bias in place, with the right fans.

    The fans come from :func:`fans_for`, so transposed and grouped
    convolutions get theirs right.

    Examples:
        >>> conv = init_module_(nn.ConvTranspose2d(16, 8, 3), "he_normal")
    """
    kernel = get(kernel_initializer)
    bias = get(bias_initializer)
    kernel(module.weight, generator=generator, fans=fans_for(module))  # type: ignore[arg-type]
    if getattr(module, "bias", None) is not None:
        bias(module.bias, generator=generator)  # type: ignore[arg-type]
    return module
