"""Tests for signalprop.activations: formulas, gradients, dtypes, modules and registry.

Every expected value is computed here from the activation's textbook formula with
plain torch primitives (exp, expm1, log1p, erfc, where), never from the library or
from ``torch.nn.functional``'s version of the same activation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats
from torch import Tensor, nn

import signalprop.activations as A

F64 = torch.float64

# ------------------------------------------------------------ reference formulas


def ref_sigmoid(x: Tensor) -> Tensor:
    e = torch.exp(-x.abs())  # e^{-|x|} <= 1: no overflow on either side
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def ref_tanh(x: Tensor) -> Tensor:
    m = torch.expm1(-2 * x.abs())  # tanh|x| = -m / (2 + m), accurate near 0 too
    return torch.sign(x) * (-m / (2 + m))


def ref_relu(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, torch.zeros_like(x))


def ref_leaky(x: Tensor, alpha: float) -> Tensor:
    return torch.where(x > 0, x, alpha * x)


def ref_elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    return torch.where(x > 0, x, alpha * torch.expm1(torch.clamp(x, max=0)))


# SELU's α and λ as printed in Klambauer et al. (2017) and SPEC.md.
PAPER_SELU_ALPHA = 1.6732632423543772848
PAPER_SELU_SCALE = 1.0507009873554804934


def ref_selu(x: Tensor) -> Tensor:
    return PAPER_SELU_SCALE * ref_elu(x, PAPER_SELU_ALPHA)


def ref_softmax(x: Tensor, axis: int = -1) -> Tensor:
    e = torch.exp(x - x.amax(dim=axis, keepdim=True))
    return e / e.sum(dim=axis, keepdim=True)


def ref_gelu(x: Tensor) -> Tensor:
    # x·Φ(x) with Φ(x) = erfc(−x/√2)/2, which keeps Φ accurate in the left tail.
    return 0.5 * x * torch.erfc(-x / math.sqrt(2.0))


def ref_gelu_tanh(x: Tensor) -> Tensor:
    # Hendrycks & Gimpel's tanh approximation.
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def ref_silu(x: Tensor) -> Tensor:
    return x * ref_sigmoid(x)


def ref_log1pexp(x: Tensor) -> Tensor:
    """log(1 + e^x) without overflow: max(x, 0) + log1p(e^{−|x|})."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def ref_softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    # Exact log(1 + e^{βx})/β, switching to the identity where βx > threshold.
    return torch.where(beta * x > threshold, x, ref_log1pexp(beta * x) / beta)


def ref_mish(x: Tensor) -> Tensor:
    return x * ref_tanh(ref_log1pexp(x))


def ref_linear(x: Tensor) -> Tensor:
    return x.clone()


RRELU_MEAN = (1 / 8 + 1 / 3) / 2  # eval-mode slope of the default RReLU


# -------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One activation configuration: its function, its module, its reference formula."""

    id: str
    fn: Callable[[Tensor], Tensor]
    module: Callable[[], nn.Module]
    ref: Callable[[Tensor], Tensor]


def _prelu_fn(x: Tensor, slope: float = 0.25) -> Tensor:
    return A.prelu(x, torch.tensor([slope], dtype=x.dtype))


def _rrelu_eval(lower: float, upper: float) -> nn.Module:
    return A.RReLU(lower, upper).eval()


CASES = [
    Case("sigmoid", A.sigmoid, A.Sigmoid, ref_sigmoid),
    Case("tanh", A.tanh, A.Tanh, ref_tanh),
    Case("relu", A.relu, A.ReLU, ref_relu),
    Case("leaky_relu", A.leaky_relu, A.LeakyReLU, partial(ref_leaky, alpha=0.3)),
    *[
        Case(
            f"leaky_relu[{a}]",
            partial(A.leaky_relu, alpha=a),
            partial(A.LeakyReLU, alpha=a),
            partial(ref_leaky, alpha=a),
        )
        for a in (0.0, 0.01, 0.2, 1.0)
    ],
    Case(
        "prelu[shared 0.25]",
        _prelu_fn,
        partial(A.PReLU, init=0.25),
        partial(ref_leaky, alpha=0.25),
    ),
    Case(
        "rrelu[eval]",
        A.rrelu,
        partial(_rrelu_eval, 1 / 8, 1 / 3),
        partial(ref_leaky, alpha=RRELU_MEAN),
    ),
    Case(
        "rrelu[eval 0.1,0.5]",
        partial(A.rrelu, lower=0.1, upper=0.5),
        partial(_rrelu_eval, 0.1, 0.5),
        partial(ref_leaky, alpha=0.3),
    ),
    Case("elu", A.elu, A.ELU, ref_elu),
    *[
        Case(
            f"elu[{a}]",
            partial(A.elu, alpha=a),
            partial(A.ELU, alpha=a),
            partial(ref_elu, alpha=a),
        )
        for a in (0.0, 0.5, 2.0)
    ],
    Case("selu", A.selu, A.SELU, ref_selu),
    Case("linear", A.linear, A.Identity, ref_linear),
    Case("gelu", A.gelu, A.GELU, ref_gelu),
    Case(
        "gelu[tanh]",
        partial(A.gelu, approximate="tanh"),
        partial(A.GELU, approximate="tanh"),
        ref_gelu_tanh,
    ),
    Case("silu", A.silu, A.SiLU, ref_silu),
    Case("swish", A.swish, A.Swish, ref_silu),
    Case("mish", A.mish, A.Mish, ref_mish),
    Case("softplus", A.softplus, A.Softplus, ref_softplus),
    Case(
        "softplus[beta=2,threshold=10]",
        partial(A.softplus, beta=2.0, threshold=10.0),
        partial(A.Softplus, beta=2.0, threshold=10.0),
        partial(ref_softplus, beta=2.0, threshold=10.0),
    ),
    Case(
        "softplus[beta=0.5,threshold=5]",
        partial(A.softplus, beta=0.5, threshold=5.0),
        partial(A.Softplus, beta=0.5, threshold=5.0),
        partial(ref_softplus, beta=0.5, threshold=5.0),
    ),
    Case("softmax[axis=-1]", A.softmax, A.Softmax, ref_softmax),
    Case(
        "softmax[axis=0]",
        partial(A.softmax, axis=0),
        partial(A.Softmax, axis=0),
        partial(ref_softmax, axis=0),
    ),
]
ELEMENTWISE = [c for c in CASES if not c.id.startswith("softmax")]
SOFTMAX = [c for c in CASES if c.id.startswith("softmax")]


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def dense_grid(dtype: torch.dtype = F64) -> Tensor:
    """A dense grid over [−12, 12] with 0 and large ±x (up to ±1e4) added."""
    special = [0.0, 1e-300, 1e-12, 1e-6, 1e-3, 1.0, 5.0, 10.0, 20.0, 30.0, 100.0, 700.0, 1e4]
    points = torch.tensor(special, dtype=F64)
    x = torch.cat([torch.linspace(-12, 12, 2401, dtype=F64), points, -points])
    return x.sort().values.to(dtype)


def matrix_grid(dtype: torch.dtype = F64) -> Tensor:
    """The dense grid as a (N, 3) batch, so that softmax and per-channel slopes apply."""
    x = dense_grid(dtype)
    return x[: 3 * (x.numel() // 3)].reshape(-1, 3)


# --------------------------------------------------------- 1. values vs formula


@pytest.mark.parametrize("case", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_function_matches_formula_on_dense_float64_grid(case: Case) -> None:
    x = dense_grid()
    assert x.eq(0).any() and x.max() == 1e4 and x.min() == -1e4
    y = case.fn(x)
    assert y.dtype == F64 and y.shape == x.shape
    # Relative accuracy everywhere (so that e^x − 1 in place of expm1 fails near 0),
    # except GELU: x(1 + erf(x/√2))/2 cancels for x ≪ 0 and is only absolutely accurate.
    atol = 1e-14 if case.id.startswith("gelu") else 0.0
    torch.testing.assert_close(y, case.ref(x), rtol=1e-13, atol=atol)


@pytest.mark.parametrize("case", SOFTMAX, ids=_ids(SOFTMAX))
def test_softmax_matches_formula_and_sums_to_one(case: Case) -> None:
    g = torch.Generator().manual_seed(0)
    x = 6 * torch.randn(7, 5, 4, generator=g, dtype=F64)
    x[0, 0, 0], x[1, 0, 0], x[2, 1, 1] = 1e4, -1e4, 0.0
    axis = 0 if case.id == "softmax[axis=0]" else -1
    y = case.fn(x)
    torch.testing.assert_close(y, case.ref(x), rtol=1e-13, atol=1e-300)
    torch.testing.assert_close(
        y.sum(dim=axis), torch.ones_like(y.sum(dim=axis)), rtol=0, atol=1e-14
    )
    assert (y >= 0).all()


def test_softmax_axis_matters() -> None:
    x = torch.arange(6, dtype=F64).reshape(2, 3)
    torch.testing.assert_close(A.softmax(x, axis=0).sum(0), torch.ones(3, dtype=F64))
    torch.testing.assert_close(A.softmax(x, axis=1).sum(1), torch.ones(2, dtype=F64))
    torch.testing.assert_close(
        A.softmax(x, axis=0)[:, 0], ref_softmax(torch.tensor([0.0, 3.0])).double()
    )


def test_softmax_is_finite_at_extremes() -> None:
    x = torch.tensor([[1e4, 0.0, -1e4]], dtype=F64)
    torch.testing.assert_close(A.softmax(x), torch.tensor([[1.0, 0.0, 0.0]], dtype=F64))
    x32 = torch.tensor([[1e30, -1e30], [-1e30, -1e30]], dtype=torch.float32)
    expected = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(A.softmax(x32), expected, rtol=0, atol=1e-7)


# Large ±x (float32 and float64) give finite outputs that still match the formula.
@pytest.mark.parametrize("case", ELEMENTWISE, ids=_ids(ELEMENTWISE))
@pytest.mark.parametrize("big", [1e4, 1e30], ids=["1e4", "1e30"])
def test_finite_at_extremes(case: Case, big: float) -> None:
    for dtype in (torch.float32, F64):
        x = torch.tensor([-big, -1.0, 0.0, 1.0, big], dtype=dtype)
        y = case.fn(x)
        assert y.dtype == dtype
        assert torch.isfinite(y).all(), f"{case.id}({x.tolist()}) = {y.tolist()}"
        expected = case.ref(x.double()).to(dtype)
        assert torch.isfinite(expected).all()
        torch.testing.assert_close(y, expected, rtol=2e-6, atol=1e-6)


def test_linear_returns_its_input() -> None:
    x = torch.linspace(-2, 2, 12).reshape(3, 4)
    assert A.linear(x) is x
    assert A.Identity()(x) is x


def test_softplus_threshold_is_where_it_turns_linear() -> None:
    # Above the threshold (βx > threshold) softplus returns x itself; at or below it,
    # log1p(e^{βx})/β, which exceeds x by about e^{−threshold}/β.
    beta, threshold = 2.0, 10.0
    above = torch.tensor([5.0 + 1e-9, 6.0, 50.0], dtype=F64)
    assert torch.equal(A.softplus(above, beta, threshold), above)
    below = torch.tensor([4.9, 5.0], dtype=F64)
    excess = A.softplus(below, beta, threshold) - below
    torch.testing.assert_close(
        excess, torch.log1p(torch.exp(-beta * below)) / beta, rtol=0, atol=1e-14
    )
    assert (excess > 0).all()


# ------------------------------------------------------------- 2. gradients

GRAD_X = torch.cat(
    [
        torch.linspace(-4.9, 4.9, 50, dtype=F64),  # step 0.2: no point within 0.1 of 0 or ±5
        torch.tensor([-15.0, -8.0, 8.0, 15.0], dtype=F64),
    ]
)
assert GRAD_X.abs().min() > 1e-3  # away from the kink at 0 of the relu family


@pytest.mark.parametrize("case", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_gradcheck_float64(case: Case) -> None:
    x = GRAD_X.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(case.fn, (x,))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_gradcheck_softmax(axis: int) -> None:
    g = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(4, 5, 3, generator=g, dtype=F64)).requires_grad_(True)
    assert torch.autograd.gradcheck(partial(A.softmax, axis=axis), (x,))


def test_gradcheck_prelu_input_and_per_channel_weight() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 2, generator=g, dtype=F64)
    x = torch.where(x.abs() < 1e-2, x + 0.1, x).requires_grad_(True)
    w = torch.tensor([0.0, 0.25, -0.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(A.prelu, (x, w))
    shared = torch.tensor([0.3], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(A.prelu, (x, shared))


def test_gradcheck_rrelu_training_with_fixed_draw() -> None:
    # Reseeding inside the function makes every call draw the same slopes, so the
    # finite differences see one fixed piecewise-linear function.
    def fixed_draw(x: Tensor) -> Tensor:
        torch.manual_seed(123)
        return A.rrelu(x, 0.1, 0.4, training=True)

    x = GRAD_X.clone().requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        assert torch.autograd.gradcheck(fixed_draw, (x,))


def _grad_at(fn: Callable[[Tensor], Tensor], point: float) -> float:
    x = torch.tensor(point, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(x), x)
    return grad.item()


# The derivative PyTorch's autograd gives at exactly 0. At the kink of the relu
# family PyTorch takes the slope of the x <= 0 piece: relu'(0) = 0,
# leaky_relu'(0) = α (not 1), prelu'(0) = the weight, rrelu'(0) = (lower+upper)/2,
# elu'(0) = α and selu'(0) = λα (the left derivatives; the right ones are 1 and λ).
GRAD_AT_ZERO = [
    ("relu", A.relu, 0.0),
    ("leaky_relu", A.leaky_relu, 0.3),
    ("leaky_relu[0.2]", partial(A.leaky_relu, alpha=0.2), 0.2),
    ("leaky_relu[0]", partial(A.leaky_relu, alpha=0.0), 0.0),
    ("prelu[0.25]", _prelu_fn, 0.25),
    ("rrelu[eval]", A.rrelu, RRELU_MEAN),
    ("elu", A.elu, 1.0),  # α = 1: smooth, both one-sided derivatives are 1
    ("elu[0.5]", partial(A.elu, alpha=0.5), 0.5),
    ("elu[2]", partial(A.elu, alpha=2.0), 2.0),
    ("selu", A.selu, PAPER_SELU_SCALE * PAPER_SELU_ALPHA),
    ("linear", A.linear, 1.0),
    ("gelu", A.gelu, 0.5),  # Φ(0) + 0·φ(0)
    ("gelu[tanh]", partial(A.gelu, approximate="tanh"), 0.5),
    ("silu", A.silu, 0.5),  # σ(0) + 0·σ'(0)
    ("mish", A.mish, 0.6),  # tanh(softplus(0)) = tanh(ln 2) = (2 − 1/2)/(2 + 1/2)
    ("softplus", A.softplus, 0.5),  # σ(β·0) = 1/2 for every β
    ("softplus[beta=3]", partial(A.softplus, beta=3.0), 0.5),
    ("sigmoid", A.sigmoid, 0.25),  # σ(0)(1 − σ(0))
    ("tanh", A.tanh, 1.0),  # 1 − tanh²(0)
]


@pytest.mark.parametrize(
    ("fn", "expected"), [g[1:] for g in GRAD_AT_ZERO], ids=[g[0] for g in GRAD_AT_ZERO]
)
def test_gradient_at_zero(fn: Callable[[Tensor], Tensor], expected: float) -> None:
    assert _grad_at(fn, 0.0) == pytest.approx(expected, rel=1e-15, abs=1e-300)


@pytest.mark.parametrize(
    ("fn", "left", "right"),
    [
        (A.relu, 0.0, 1.0),
        (A.leaky_relu, 0.3, 1.0),
        (partial(A.elu, alpha=0.5), 0.5, 1.0),
        (A.elu, 1.0, 1.0),
        (A.selu, PAPER_SELU_SCALE * PAPER_SELU_ALPHA, PAPER_SELU_SCALE),
    ],
    ids=["relu", "leaky_relu", "elu[0.5]", "elu", "selu"],
)
def test_one_sided_derivatives_at_zero(
    fn: Callable[[Tensor], Tensor], left: float, right: float
) -> None:
    assert _grad_at(fn, -1e-12) == pytest.approx(left, rel=1e-11)
    assert _grad_at(fn, 1e-12) == pytest.approx(right, rel=1e-11)


# ------------------------------------------------------------------ 3. dtypes

# Machine epsilon of each dtype; the tolerance is a few units of it.
EPS = {
    torch.float16: 2.0**-10,
    torch.bfloat16: 2.0**-7,
    torch.float32: 2.0**-23,
    torch.float64: 2.0**-52,
}
DTYPES = list(EPS)
DTYPE_IDS = ["float16", "bfloat16", "float32", "float64"]


def _dtype_grid(dtype: torch.dtype) -> Tensor:
    return torch.linspace(-8, 8, 161, dtype=F64).reshape(23, 7).to(dtype)


def _assert_close_in(y: Tensor, x: Tensor, ref: Callable[[Tensor], Tensor]) -> None:
    eps = EPS[x.dtype]
    expected = ref(x.double())  # the formula, in float64, on the already-rounded input
    # A few units of rounding relative to each value, and absolutely relative to the
    # outputs' scale: x·Φ(x) computed as x(1 + erf)/2 keeps only absolute accuracy
    # where it is tiny (x ≪ 0), as does any formula that cancels.
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(y.double(), expected, rtol=4 * eps, atol=4 * eps * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_function_preserves_dtype(case: Case, dtype: torch.dtype) -> None:
    x = _dtype_grid(dtype)
    y = case.fn(x)
    assert y.dtype == dtype
    _assert_close_in(y, x, case.ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_module_preserves_dtype(case: Case, dtype: torch.dtype) -> None:
    x = _dtype_grid(dtype)
    y = case.module().to(dtype)(x)
    assert y.dtype == dtype
    _assert_close_in(y, x, case.ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rrelu_training_preserves_dtype(dtype: torch.dtype) -> None:
    # PyTorch has no float16 CPU rrelu kernel: the library computes in float32, casts back.
    lower, upper = 0.1, 0.4
    x = torch.linspace(-8, 8, 161, dtype=dtype).requires_grad_(True)
    for y in (A.rrelu(x, lower, upper, training=True), A.RReLU(lower, upper).train()(x)):
        assert y.dtype == dtype
        pos, neg = x > 0, x < 0
        assert torch.equal(y[pos], x[pos])
        slopes = (y[neg] / x[neg]).double()
        tol = 2 * EPS[dtype]
        assert slopes.min() >= lower * (1 - tol) and slopes.max() <= upper * (1 + tol)
        (grad,) = torch.autograd.grad(y.sum(), x)
        assert grad.dtype == dtype
        torch.testing.assert_close(grad[neg].double(), slopes, rtol=tol, atol=0)


# -------------------------------------------------- 4. modules and the registry

ALL_NAMES = [
    "elu",
    "gelu",
    "leaky_relu",
    "linear",
    "logistic",
    "mish",
    "prelu",
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
ALIASES = {"logistic": "sigmoid", "swish": "silu"}

# Each name's class in signalprop and the torch.nn class it must subclass.
CLASSES = {
    "elu": (A.ELU, nn.ELU),
    "gelu": (A.GELU, nn.GELU),
    "leaky_relu": (A.LeakyReLU, nn.LeakyReLU),
    "linear": (A.Identity, nn.Identity),
    "logistic": (A.Sigmoid, nn.Sigmoid),
    "mish": (A.Mish, nn.Mish),
    "prelu": (A.PReLU, nn.PReLU),
    "relu": (A.ReLU, nn.ReLU),
    "rrelu": (A.RReLU, nn.RReLU),
    "selu": (A.SELU, nn.SELU),
    "sigmoid": (A.Sigmoid, nn.Sigmoid),
    "silu": (A.SiLU, nn.SiLU),
    "softmax": (A.Softmax, nn.Softmax),
    "softplus": (A.Softplus, nn.Softplus),
    "swish": (A.SiLU, nn.SiLU),
    "tanh": (A.Tanh, nn.Tanh),
}


def test_names_are_the_documented_sorted_list() -> None:
    assert A.names() == ALL_NAMES


@pytest.mark.parametrize("name", ALL_NAMES)
def test_get_builds_the_right_module_subclassing_torch(name: str) -> None:
    ours, theirs = CLASSES[name]
    module = A.get(name)
    assert type(module) is ours
    assert isinstance(module, theirs)
    assert isinstance(ours(), theirs)
    assert A.get(name) is not module  # a fresh module each time


def _default_function_call(name: str, module: nn.Module, x: Tensor) -> Tensor:
    canonical = ALIASES.get(name, name)
    if canonical == "prelu":
        return A.prelu(x, module.weight)
    if canonical == "rrelu":  # a new module is in training mode
        return A.rrelu(x, training=True)
    return getattr(A, canonical)(x)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_registry_module_agrees_with_function(name: str) -> None:
    x = matrix_grid(torch.float32)  # the modules' default dtype
    module = A.get(name)
    direct = CLASSES[name][0]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        via_get = module(x)
        torch.manual_seed(7)
        via_class = direct(x)
        torch.manual_seed(7)
        via_function = _default_function_call(name, module, x)
    assert torch.equal(via_get, via_function)
    assert torch.equal(via_class, via_function)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_module_agrees_with_function(case: Case) -> None:
    x = matrix_grid()
    assert torch.equal(case.module().to(F64)(x), case.fn(x))


def test_modules_expose_torch_attributes() -> None:
    # PyTorch tooling reads torch's attribute names; they must hold our values.
    assert A.LeakyReLU(alpha=0.2).negative_slope == 0.2
    assert A.ELU(alpha=0.5).alpha == 0.5
    assert (A.RReLU(0.1, 0.4).lower, A.RReLU(0.1, 0.4).upper) == (0.1, 0.4)
    assert (A.Softplus(beta=2.0, threshold=7.0).beta, A.Softplus(2.0, 7.0).threshold) == (2.0, 7.0)
    assert A.GELU(approximate="tanh").approximate == "tanh"
    assert A.Softmax(axis=1).dim == 1 and A.Softmax(axis=1).axis == 1
    assert A.PReLU(num_parameters=4).num_parameters == 4
    assert A.Swish is A.SiLU and A.swish is A.silu


def test_get_passes_modules_through_unchanged() -> None:
    for module in (A.LeakyReLU(alpha=0.1), nn.ReLU(), nn.Linear(2, 2), A.PReLU(3)):
        assert A.get(module) is module


def test_get_none_is_identity() -> None:
    module = A.get(None)
    assert type(module) is A.Identity
    x = torch.linspace(-2, 2, 4)
    assert module(x) is x


# Every signalprop function that shares its registry name.
FUNCTION_NAMES = [n for n in ALL_NAMES if hasattr(A, n)]


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_get_maps_our_functions_to_their_module(name: str) -> None:
    assert type(A.get(getattr(A, name))) is CLASSES[name][0]


TORCH_FUNCTIONS = [
    (torch.sigmoid, A.Sigmoid),
    (F.sigmoid, A.Sigmoid),
    (torch.tanh, A.Tanh),
    (F.tanh, A.Tanh),
    (torch.relu, A.ReLU),
    (F.relu, A.ReLU),
    (torch.selu, A.SELU),
    (F.selu, A.SELU),
    (F.silu, A.SiLU),
    (F.mish, A.Mish),
]


@pytest.mark.parametrize(("fn", "cls"), TORCH_FUNCTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_get_maps_torch_parameter_free_functions(fn: Callable[[Tensor], Tensor], cls: type) -> None:
    module = A.get(fn)
    assert type(module) is cls
    x = dense_grid()
    assert torch.equal(module(x), fn(x))  # same values as the function it replaces


def _double(x: Tensor) -> Tensor:
    return 2 * x


@dataclass
class _Scaled:
    """A callable dataclass: compares by value, hence unhashable."""

    factor: float

    def __call__(self, x: Tensor) -> Tensor:
        return self.factor * x


@pytest.mark.parametrize(
    "fn",
    [_double, lambda x: x**3, F.leaky_relu, partial(torch.clamp, min=0.5), _Scaled(3.0)],
    ids=["function", "lambda", "F.leaky_relu", "partial", "unhashable"],
)
def test_get_wraps_other_callables_in_lambda(fn: Callable[[Tensor], Tensor]) -> None:
    module = A.get(fn)
    assert type(module) is A.Lambda
    assert module.fn is fn
    x = dense_grid()
    assert torch.equal(module(x), fn(x))


def test_get_keeps_torch_leaky_relu_slope() -> None:
    # F.leaky_relu's own default is 0.01: mapping it to LeakyReLU() (0.3) would change it.
    x = torch.tensor([-1.0, 1.0], dtype=F64)
    torch.testing.assert_close(A.get(F.leaky_relu)(x), torch.tensor([-0.01, 1.0], dtype=F64))


def test_lambda_repr_names_the_function() -> None:
    assert repr(A.Lambda(_double)) == "Lambda(_double)"


@pytest.mark.parametrize(
    ("name", "closest"),
    [("selu2", "selu"), ("SELU", "selu"), ("leakyrelu", "leaky_relu"), ("swissh", "swish")],
)
def test_get_unknown_name_lists_valid_names_and_closest(name: str, closest: str) -> None:
    message = (
        f"The 'activation' parameter of signalprop.activations.get must be one of "
        f"{ALL_NAMES}. Got {name!r} instead. Did you mean {closest!r}?"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        A.get(name)


def test_get_unknown_name_without_close_match_has_no_hint() -> None:
    message = (
        f"The 'activation' parameter of signalprop.activations.get must be one of "
        f"{ALL_NAMES}. Got 'zzzzzzzz' instead."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        A.get("zzzzzzzz")


@pytest.mark.parametrize("bad", [3, 2.5, [1]], ids=["int", "float", "list"])
def test_get_rejects_non_name_non_callable(bad: object) -> None:
    message = (
        "The 'activation' parameter of signalprop.activations.get must be an activation "
        f"name (one of {ALL_NAMES}), an nn.Module, a callable or None. Got {bad!r} instead."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        A.get(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_name_of_round_trips(name: str) -> None:
    canonical = ALIASES.get(name, name)
    assert A.name_of(A.get(name)) == canonical
    assert A.name_of(CLASSES[name][0]()) == canonical
    assert type(A.get(A.name_of(A.get(name)))) is CLASSES[name][0]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (nn.ReLU(), "relu"),
        (nn.Sigmoid(), "sigmoid"),
        (nn.Tanh(), "tanh"),
        (nn.LeakyReLU(), "leaky_relu"),
        (nn.PReLU(), "prelu"),
        (nn.RReLU(), "rrelu"),
        (nn.ELU(), "elu"),
        (nn.SELU(), "selu"),
        (nn.Softmax(dim=1), "softmax"),
        (nn.Identity(), "linear"),
        (nn.GELU(), "gelu"),
        (nn.SiLU(), "silu"),
        (nn.Mish(), "mish"),
        (nn.Softplus(), "softplus"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_name_of_recognizes_torch_modules(module: nn.Module, name: str) -> None:
    assert A.name_of(module) == name


@pytest.mark.parametrize(
    "module",
    [nn.Linear(2, 2), nn.Hardtanh(), A.Lambda(torch.relu), nn.Sequential(nn.ReLU())],
    ids=["Linear", "Hardtanh", "Lambda", "Sequential"],
)
def test_name_of_unknown_module_is_none(module: nn.Module) -> None:
    assert A.name_of(module) is None


# ------------------------------------------------------------------- 5. SELU


def _standard_normal_expectation(f: Callable[[float], float]) -> float:
    """E[f(z)] for z ~ N(0, 1) by adaptive quadrature, split at the kink at 0."""

    def integrand(z: float) -> float:
        return f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    left, _ = integrate.quad(integrand, -np.inf, 0.0, epsabs=1e-14, epsrel=1e-13)
    right, _ = integrate.quad(integrand, 0.0, np.inf, epsabs=1e-14, epsrel=1e-13)
    return left + right


def test_selu_constants_match_the_paper() -> None:
    assert abs(A.SELU_ALPHA / PAPER_SELU_ALPHA - 1) <= 1e-15
    assert abs(A.SELU_SCALE / PAPER_SELU_SCALE - 1) <= 1e-15


def test_selu_constants_make_mean_zero_variance_one_a_fixed_point() -> None:
    # Klambauer et al.'s defining equations: for z ~ N(0, 1), E[selu(z)] = 0 and
    # E[selu(z)²] = 1, checked with the library's constants in a formula written here.
    alpha, scale = A.SELU_ALPHA, A.SELU_SCALE

    def selu(z: float) -> float:
        return scale * (z if z > 0 else alpha * math.expm1(z))

    assert abs(_standard_normal_expectation(selu)) < 1e-10
    assert abs(_standard_normal_expectation(lambda z: selu(z) ** 2) - 1) < 1e-10
    # And the library's own function has the same two moments.
    lib = lambda z: A.selu(torch.tensor(z, dtype=F64)).item()  # noqa: E731
    assert abs(_standard_normal_expectation(lib)) < 1e-10
    assert abs(_standard_normal_expectation(lambda z: lib(z) ** 2) - 1) < 1e-10


def test_selu_is_scaled_elu() -> None:
    x = dense_grid()
    expected = A.SELU_SCALE * torch.where(x > 0, x, A.SELU_ALPHA * torch.expm1(x.clamp(max=0)))
    torch.testing.assert_close(A.selu(x), expected, rtol=1e-15, atol=1e-300)


def test_selu_matches_torch_to_round_off() -> None:
    x = dense_grid()
    torch.testing.assert_close(A.selu(x), F.selu(x), rtol=2**-52, atol=0)


# E[f(z)²] for z ~ N(0, 1), SPEC.md's numbers and the precision they are printed with.
# relu, leaky relu and selu are exact (1/2, (1 + α²)/2, 1); elu's closed form is
# 1/2 + e²Φ(−2) − 2√e·Φ(−1) + 1/2, which rounds to 0.645.
SECOND_MOMENTS = [
    ("sigmoid", A.sigmoid, 0.2934, 5e-5),
    ("tanh", A.tanh, 0.3943, 5e-5),
    ("relu", A.relu, 0.5, 1e-10),
    ("leaky_relu[0.3]", partial(A.leaky_relu, alpha=0.3), 0.545, 1e-10),
    ("elu", A.elu, 0.645, 5e-4),
    ("selu", A.selu, 1.0, 1e-10),
]


@pytest.mark.parametrize(
    ("fn", "published", "tol"), [m[1:] for m in SECOND_MOMENTS], ids=[m[0] for m in SECOND_MOMENTS]
)
def test_published_second_moments(
    fn: Callable[[Tensor], Tensor], published: float, tol: float
) -> None:
    moment = _standard_normal_expectation(lambda z: fn(torch.tensor(z, dtype=F64)).item() ** 2)
    assert abs(moment - published) <= tol


def test_elu_second_moment_closed_form() -> None:
    e = math.e
    closed = 1.0 + e**2 * stats.norm.cdf(-2) - 2 * math.sqrt(e) * stats.norm.cdf(-1)
    moment = _standard_normal_expectation(lambda z: A.elu(torch.tensor(z, dtype=F64)).item() ** 2)
    assert moment == pytest.approx(closed, abs=1e-10)


# ------------------------------------------------------------------ 6. RReLU


def _negative_slopes(lower: float, upper: float, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = -(torch.rand(n, generator=g, dtype=F64) + 0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        y = A.rrelu(x, lower, upper, training=True)
    return y / x


@pytest.mark.parametrize(("lower", "upper"), [(1 / 8, 1 / 3), (0.0, 1.0), (0.2, 0.25)])
def test_rrelu_training_slopes_are_uniform_on_lower_upper(lower: float, upper: float) -> None:
    n = 100_000
    slopes = _negative_slopes(lower, upper, n, seed=11)
    width = upper - lower
    tiny = 1e-12
    assert slopes.min() >= lower - tiny and slopes.max() <= upper + tiny
    # For U(l, u) the chance that all n draws miss the end 1e-3·(u − l) is (1 − 1e-3)^n ≈ e^−100.
    assert slopes.min() <= lower + 1e-3 * width and slopes.max() >= upper - 1e-3 * width
    # A uniform slope has variance (u − l)²/12, so the mean of n draws has standard
    # error (u − l)/√(12 n); allow 5 of them.
    se_mean = width / math.sqrt(12 * n)
    assert abs(slopes.mean().item() - (lower + upper) / 2) < 5 * se_mean
    # The sample variance's relative standard error is √((κ − 1)/n), κ − 1 = 0.8 for a uniform.
    var = width**2 / 12
    assert abs(slopes.var().item() / var - 1) < 5 * math.sqrt(0.8 / n)
    # Kolmogorov–Smirnov against U(lower, upper) itself.
    assert stats.kstest(slopes.numpy(), "uniform", args=(lower, width)).pvalue > 1e-3


def test_rrelu_training_leaves_positives_and_draws_anew_each_call() -> None:
    x = torch.linspace(-5, 5, 1001, dtype=F64)
    module = A.RReLU()
    assert module.training
    first, second = module(x), module(x)
    pos = x >= 0
    assert torch.equal(first[pos], x[pos]) and torch.equal(second[pos], x[pos])
    assert not torch.equal(first[~pos], second[~pos])
    third = A.rrelu(x, training=True)
    assert not torch.equal(first[~pos], third[~pos])


def test_rrelu_eval_is_deterministic_with_mean_slope() -> None:
    lower, upper = 0.1, 0.5
    x = torch.linspace(-5, 5, 1001, dtype=F64)
    module = A.RReLU(lower, upper).eval()
    expected = torch.where(x > 0, x, (lower + upper) / 2 * x)
    for y in (module(x), module(x), A.rrelu(x, lower, upper), A.rrelu(x, lower, upper, False)):
        torch.testing.assert_close(y, expected, rtol=1e-15, atol=0)


def test_rrelu_manual_seed_reproduces_training_draws() -> None:
    x = -torch.linspace(0.01, 3, 500, dtype=F64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        a = A.rrelu(x, training=True)
        b = A.RReLU().train()(x)
        torch.manual_seed(3)
        c = A.rrelu(x, training=True)
        d = A.RReLU().train()(x)
    assert torch.equal(a, c) and torch.equal(b, d)
    assert not torch.equal(a, b)


def test_rrelu_float16_training_reproducible_under_seed() -> None:
    x = -torch.linspace(0.01, 3, 500, dtype=torch.float16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        a = A.rrelu(x, training=True)
        torch.manual_seed(4)
        b = A.rrelu(x, training=True)
    assert a.dtype == torch.float16 and torch.equal(a, b)


# ------------------------------------------------------------------ 7. PReLU


def test_prelu_default_is_keras_shared_zero_slope() -> None:
    module = A.PReLU()
    assert module.weight.shape == (1,)
    assert isinstance(module.weight, nn.Parameter) and module.weight.requires_grad
    assert torch.equal(module.weight.detach(), torch.zeros(1))
    assert list(module.parameters()) == [module.weight]
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(module(x), torch.where(x > 0, x, torch.zeros_like(x)))


@pytest.mark.parametrize("shape", [(6, 4), (5, 4, 3, 2)], ids=["NC", "NCHW"])
def test_prelu_per_channel_slope_and_weight_gradient(shape: tuple[int, ...]) -> None:
    channels = shape[1]
    module = A.PReLU(num_parameters=channels, init=0.25, dtype=F64)
    assert module.weight.shape == (channels,) and module.weight.dtype == F64
    with torch.no_grad():
        module.weight.copy_(torch.tensor([0.0, 0.1, -0.5, 2.0], dtype=F64))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=g, dtype=F64)
    y = module(x)
    for c in range(channels):
        xc, yc = x[:, c], y[:, c]
        slope = module.weight[c].item()
        torch.testing.assert_close(yc, torch.where(xc > 0, xc, slope * xc), rtol=1e-15, atol=0)
    # d(Σ y)/dα_c = Σ of x over the channel's negative inputs.
    y.sum().backward()
    by_hand = torch.stack([x[:, c][x[:, c] < 0].sum() for c in range(channels)])
    torch.testing.assert_close(module.weight.grad, by_hand, rtol=1e-13, atol=1e-14)


def test_prelu_shared_slope_on_images() -> None:
    module = A.PReLU(init=0.2, dtype=F64)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    torch.testing.assert_close(module(x), torch.where(x > 0, x, 0.2 * x), rtol=1e-15, atol=0)
    module(x).sum().backward()
    torch.testing.assert_close(
        module.weight.grad, x[x < 0].sum().reshape(1), rtol=1e-13, atol=1e-14
    )


def test_prelu_weight_is_learned() -> None:
    module = A.PReLU(num_parameters=2, init=0.0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    x = torch.tensor([[-1.0, -2.0], [-3.0, 4.0]])
    module(x).sum().backward()  # grads: −4 for channel 0, −2 for channel 1
    optimizer.step()
    torch.testing.assert_close(module.weight.detach(), torch.tensor([0.4, 0.2]))


# ---------------------------------------------- 8. LeakyReLU defaults and reprs


def test_leaky_relu_default_alpha_is_keras_0_3() -> None:
    module = A.LeakyReLU()
    assert module.alpha == 0.3 and isinstance(module.alpha, float)
    assert A.LeakyReLU(alpha=0).alpha == 0.0 and isinstance(A.LeakyReLU(alpha=0).alpha, float)
    x = torch.tensor([-2.0, 3.0], dtype=F64)
    torch.testing.assert_close(A.leaky_relu(x), torch.tensor([-0.6, 3.0], dtype=F64))
    torch.testing.assert_close(module(x), torch.tensor([-0.6, 3.0], dtype=F64))


@pytest.mark.parametrize(
    ("module", "text"),
    [
        (A.LeakyReLU(), "LeakyReLU(alpha=0.3)"),
        (A.LeakyReLU(alpha=0.01), "LeakyReLU(alpha=0.01)"),
        (A.ELU(), "ELU(alpha=1)"),
        (A.ELU(alpha=0.5), "ELU(alpha=0.5)"),
        (A.SELU(), "SELU()"),
        (A.RReLU(), "RReLU(lower=0.125, upper=0.333333)"),
        (A.PReLU(), "PReLU(num_parameters=1)"),
        (A.Softmax(), "Softmax(axis=-1)"),
        (A.GELU(), "GELU(approximate='none')"),
        (A.Softplus(), "Softplus(beta=1.0, threshold=20.0)"),
        (A.Identity(), "Identity()"),
        (A.ReLU(), "ReLU()"),
        (A.SiLU(), "SiLU()"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_repr(module: nn.Module, text: str) -> None:
    assert repr(module) == text


# ------------------------------------------------------------------ 9. errors


def _real_message(param: str, caller: str, bound: str, got: object) -> str:
    return (
        f"The {param!r} parameter of {caller} must be a finite real number{bound}. "
        f"Got {got!r} instead."
    )


X = torch.zeros(2)

ERRORS = [
    # negative, non-finite and boolean slopes
    *[
        (partial(A.LeakyReLU, alpha=bad), _real_message("alpha", "LeakyReLU", " >= 0", bad))
        for bad in (-0.1, math.inf, math.nan, True, "0.3")
    ],
    *[
        (partial(A.leaky_relu, X, alpha=bad), _real_message("alpha", "leaky_relu", " >= 0", bad))
        for bad in (-0.1, -math.inf, math.nan, False)
    ],
    *[
        (partial(A.ELU, alpha=bad), _real_message("alpha", "ELU", " >= 0", bad))
        for bad in (-1.0, math.inf, math.nan, True)
    ],
    *[
        (partial(A.elu, X, alpha=bad), _real_message("alpha", "elu", " >= 0", bad))
        for bad in (-1.0, math.inf, math.nan, True)
    ],
    # RReLU bounds
    (partial(A.RReLU, 0.5, 0.25), _real_message("upper", "RReLU", " >= 0.5", 0.25)),
    (partial(A.rrelu, X, 0.5, 0.25), _real_message("upper", "rrelu", " >= 0.5", 0.25)),
    (partial(A.RReLU, -0.1, 0.3), _real_message("lower", "RReLU", " >= 0", -0.1)),
    (partial(A.rrelu, X, -0.1, 0.3), _real_message("lower", "rrelu", " >= 0", -0.1)),
    (partial(A.RReLU, 0.1, math.inf), _real_message("upper", "RReLU", " >= 0.1", math.inf)),
    (partial(A.RReLU, math.nan, 0.3), _real_message("lower", "RReLU", " >= 0", math.nan)),
    # PReLU
    (
        partial(A.PReLU, num_parameters=0),
        "The 'num_parameters' parameter of PReLU must be an integer >= 1. Got 0 instead.",
    ),
    (
        partial(A.PReLU, num_parameters=2.0),
        "The 'num_parameters' parameter of PReLU must be an integer >= 1. Got 2.0 instead.",
    ),
    *[
        (partial(A.PReLU, init=bad), _real_message("init", "PReLU", "", bad))
        for bad in (math.inf, -math.inf, math.nan, True)
    ],
    # Softplus
    *[
        (partial(A.Softplus, beta=bad), _real_message("beta", "Softplus", " > 0", bad))
        for bad in (0.0, -1.0, math.inf)
    ],
    (partial(A.softplus, X, beta=0), _real_message("beta", "softplus", " > 0", 0)),
    (partial(A.Softplus, threshold=0.0), _real_message("threshold", "Softplus", " > 0", 0.0)),
    (partial(A.softplus, X, threshold=-1.0), _real_message("threshold", "softplus", " > 0", -1.0)),
    # GELU
    (
        partial(A.GELU, approximate="tan"),
        "The 'approximate' parameter of GELU must be one of ['none', 'tanh']. "
        "Got 'tan' instead. Did you mean 'tanh'?",
    ),
    (
        partial(A.gelu, X, approximate="erf"),
        "The 'approximate' parameter of gelu must be one of ['none', 'tanh']. Got 'erf' instead.",
    ),
    (
        partial(A.GELU, approximate=None),
        "The 'approximate' parameter of GELU must be one of ['none', 'tanh']. Got None instead.",
    ),
    # Softmax
    (
        partial(A.Softmax, axis=1.0),
        "The 'axis' parameter of Softmax must be an integer. Got 1.0 instead.",
    ),
]


@pytest.mark.parametrize(("build", "message"), ERRORS, ids=[m for _, m in ERRORS])
def test_invalid_argument_message(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


def test_alpha_message_example_from_the_issue() -> None:
    message = (
        "The 'alpha' parameter of LeakyReLU must be a finite real number >= 0. Got -0.1 instead."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        A.LeakyReLU(alpha=-0.1)


def test_boundary_values_are_accepted() -> None:
    # The checks' bounds are inclusive where the docstrings say ≥.
    assert A.LeakyReLU(alpha=0).alpha == 0.0
    assert A.ELU(alpha=0).alpha == 0.0
    assert (A.RReLU(0.0, 0.0).lower, A.RReLU(0.2, 0.2).upper) == (0.0, 0.2)
    assert A.PReLU(init=-3).weight.item() == -3.0
    assert A.Softplus(beta=1e-3).beta == 1e-3


def test_get_instantiates_module_classes() -> None:
    assert type(A.get(torch.nn.ReLU)) is torch.nn.ReLU
    assert type(A.get(A.ELU)) is A.ELU


# ------------------------------------------------- the one elementwise rule


def test_is_elementwise_refuses_softmax_in_every_form() -> None:
    for softmax in ("softmax", A.Softmax, A.Softmax(), nn.Softmax(dim=-1), nn.LogSoftmax(-1)):
        assert not A.is_elementwise(softmax), softmax
    for function in (A.softmax, F.softmax, torch.softmax, F.log_softmax):
        assert not A.is_elementwise(function), function
    assert not A.is_elementwise("tanhh")  # unknown: nothing is known about it
    for tanh in ("tanh", A.Tanh, A.Tanh(), nn.Tanh(), torch.tanh, lambda x: torch.tanh(x)):
        assert A.is_elementwise(tanh), tanh
    assert A.elementwise_names() == sorted(set(A.names()) - {"softmax"})


ELEMENTWISE_LIST = re.escape(str(sorted(set(A.names()) - {"softmax"})))


@pytest.mark.parametrize("softmax", ["softmax", nn.Softmax(dim=-1), F.softmax])
def test_check_elementwise_words_the_refusal_one_way(softmax: object) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^The 'activation' parameter of propagate must be an elementwise activation "
        rf"\(one of {ELEMENTWISE_LIST}\)\. Got {re.escape(repr(softmax))} instead\.$",
    ):
        A.check_elementwise(softmax, caller="propagate")
    A.check_elementwise("tanh", caller="propagate")  # accepted: no error


def test_an_unknown_name_gets_the_same_words_and_the_closest_name() -> None:
    with pytest.raises(ValueError, match=r"elementwise activation .* Did you mean 'tanh'\?$"):
        A.check_elementwise("tanhh", caller="propagate")


def refusal(caller: str, param: str = "activation") -> str:
    """The one refusal of softmax as a hidden activation, as ``caller`` words it."""
    return (
        f"The {param!r} parameter of {caller} must be an elementwise activation "
        f"(one of {sorted(set(A.names()) - {'softmax'})}). Got 'softmax' instead."
    )


def test_every_api_entry_point_follows_the_rule() -> None:
    import signalprop as sp
    from signalprop import meanfield

    entries: dict[str, Callable[[str], object]] = {
        "propagate": lambda a: sp.propagate(a, "glorot_uniform", depth=2, width=4, batch=3),
        "moments": lambda a: sp.gain(a),
        "meanfield.analyze": lambda a: meanfield.analyze(a, 1.0),
        "meanfield.phase_diagram": lambda a: meanfield.phase_diagram(a, [1.0, 2.0], [0.0]),
    }
    for caller, call in entries.items():
        with pytest.raises(ValueError) as refused:
            call("softmax")
        assert str(refused.value) == refusal(caller), caller
        call("tanh")  # accepted


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["propagate", "--activation", "softmax"], refusal("signalprop propagate", "--activation")),
        (["gain", "softmax"], refusal("signalprop gain")),
        (
            ["phase", "--activation", "softmax", "--out", "OUT"],
            refusal("signalprop phase", "--activation"),
        ),
    ],
    ids=["propagate", "gain", "phase"],
)
def test_every_command_follows_the_rule_in_one_line_with_status_2(
    argv: list[str], message: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from signalprop.cli import main

    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"signalprop: error: {message}\n"
    assert not list(tmp_path.iterdir())  # refused before anything is written
