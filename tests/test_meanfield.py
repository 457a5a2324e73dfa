"""signalprop.meanfield: variance and correlation maps, phases, depth scales, the critical line.

Every expected number is computed here, not read back from the library:

* closed forms: ReLU's arc-cosine kernel (Cho & Saul 2009) and erf's arcsine kernel
  (Williams 1997), He's variance 2/(1+α²) for the ReLU family, the limit σ_w² = 1 of tanh;
* scipy's adaptive ``quad`` (split at 0, the kink of SELU) for one-dimensional Gaussian
  expectations, asked for 1e-13 and checked to report errors below 1e-11; fixed points
  by ``brentq`` on those integrals (xtol 1e-14);
* a tensor-product Gauss–Legendre rule written here for two-dimensional expectations
  (see :func:`gauss_legendre_normal` for its accuracy), not Mehler's series;
* Monte Carlo on wide random networks, with tolerances from the empirical standard error.

Tolerances. The library's 1-D quadrature is exact to round-off (~1e-15) for the
integrands used here; its correlation map carries a stated error bound (the Hermite
tail), which the closed-form tests check is honest. Comparisons with ``quad`` use 1e-9:
four orders of magnitude above both sides' errors, and still far below any modelling
mistake (a wrong factor, a dropped mean, the wrong fixed point all move the numbers by
more than 1e-3).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, optimize, special
from torch import nn

from _quad import normal_expectation
from signalprop import activations, meanfield

#: Comparisons with scipy's quad (see the module docstring).
QUAD = 1e-9
#: Round-off of the library's sums (a 1,536-node quadrature and a 257-term series).
ROUND_OFF = 1e-12

#: SELU's constants as published by Klambauer et al. (2017), to 20 digits.
PAPER_ALPHA = 1.6732632423543772848
PAPER_SCALE = 1.0507009873554804934


# ------------------------------------------------------------------ reference integrals


def expect(g: Callable[[float], float], q: float = 1.0) -> float:
    """E[g(u)] for u ~ N(0, q): the shared quad reference."""
    return normal_expectation(g, var=q)


def _tanh_derivative(x: float) -> float:
    return 1.0 - math.tanh(x) ** 2


def tanh_fixed_point(weight_var: float, bias_var: float) -> float:
    """The non-zero root of q = σ_w² E[tanh(√q z)²] + σ_b², by brentq on quad."""

    def gap(q: float) -> float:
        return weight_var * expect(lambda x: math.tanh(x) ** 2, q) + bias_var - q

    return float(optimize.brentq(gap, 1e-3, 50.0, xtol=1e-14, rtol=1e-14))


def tanh_critical_weight_var(bias_var: float) -> float:
    """σ_w² with χ₁ = 1 at the fixed point, for σ_b² > 0: solved in q, as in Schoenholz et al.

    On the critical line σ_w² = (q − σ_b²) / E[tanh²] and χ₁ = σ_w² E[tanh′²] = 1.
    """

    def chi_minus_one(q: float) -> float:
        second = expect(lambda x: math.tanh(x) ** 2, q)
        derivative = expect(lambda x: _tanh_derivative(x) ** 2, q)
        return (q - bias_var) / second * derivative - 1

    q = optimize.brentq(chi_minus_one, bias_var * (1 + 1e-9), 50.0, xtol=1e-15, rtol=1e-14)
    return (q - bias_var) / expect(lambda x: math.tanh(x) ** 2, q)


def gauss_legendre_normal(half_width: float = 9.0, panel: float = 0.25, nodes: int = 20):
    """Nodes and weights for E[g(z)], z ~ N(0, 1): composite Gauss–Legendre on [−9, 9].

    Not the library's rule (16 nodes on panels of 1/4 over [−12, 12]). Accuracy: the mass
    beyond ±9 is 2.3e-19 (the integrands here are bounded by 1); for the logistic σ(√q x)
    the nearest poles are at distance π/√q from the real axis (0.38 for q = 68, the
    largest used), 3 panel half-widths, so each 20-node panel converges like ρ^(−40) with
    ρ = 3 + √(3² + 1) ≈ 6.2: below 1e-31, i.e. round-off (~1e-15 for a 2-D sum of values
    below 1). ``test_two_dimensional_reference_is_converged`` checks it against a second rule.
    """
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.arange(-half_width, half_width - 1e-9, panel)
    z = (edges[:, None] + (x[None, :] + 1) * panel / 2).ravel()
    weights = np.tile(w * panel / 2, len(edges)) * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    return z, weights


def two_dimensional_kernel(
    f: Callable[[np.ndarray], np.ndarray], q: float, c: float, rule=None
) -> float:
    """E[f(u₁) f(u₂)] with u₁ = √q z₁, u₂ = √q (c z₁ + √(1−c²) z₂), by a product rule."""
    z, w = gauss_legendre_normal() if rule is None else rule
    u1 = math.sqrt(q) * z[:, None]
    u2 = math.sqrt(q) * (c * z[:, None] + math.sqrt(1 - c * c) * z[None, :])
    return float(w @ (f(u1) * f(u2)) @ w)


def logistic_fixed_point(weight_var: float, bias_var: float) -> float:
    """q = σ_w² E[σ(√q z)²] + σ_b² by brentq on the 1-D rule above."""
    z, w = gauss_legendre_normal()

    def gap(q: float) -> float:
        return weight_var * float(w @ special.expit(math.sqrt(q) * z) ** 2) + bias_var - q

    return float(optimize.brentq(gap, 1e-3, 1e4, xtol=1e-14, rtol=1e-14))


def hermite_tail(activation, q: float, second: float) -> float:
    """The kernel's error bound T at variance q, as the library reports it.

    At σ_w² = 1/2, σ_b² = q − E[φ(√q z)²]/2 (``second`` is that expectation, from a closed
    form) q is a fixed point, reached at once from ``input_var=q``, and the reported
    ``correlation_error`` is σ_w² T / q.
    """
    mf = meanfield.analyze(activation, 0.5, q - 0.5 * second, input_var=q)
    assert mf.q_star == pytest.approx(q, rel=1e-12)
    return mf.correlation_error * q / 0.5


#: A dense grid of correlations that includes −1, 0 and 1.
C_GRID = np.linspace(-1.0, 1.0, 2001)


def kernel_bound(tail: float, c: np.ndarray, scale: float) -> np.ndarray:
    """The documented bound: T for c ≥ 0, 2T for c < 0, plus round-off of values of ``scale``."""
    return np.where(c >= 0, tail, 2 * tail) + ROUND_OFF * max(scale, 1.0)


# ---------------------------------------------------------------- closed-form kernels


@pytest.mark.parametrize("q", [0.3, 1.0, 4.0])
def test_relu_kernel_is_the_arc_cosine_kernel(q):
    # Cho & Saul (2009): E[relu(u₁)relu(u₂)] = q/(2π) (√(1−c²) + (π − arccos c) c).
    expected = q / (2 * math.pi) * (np.sqrt(1 - C_GRID**2) + (math.pi - np.arccos(C_GRID)) * C_GRID)
    got = meanfield.kernel("relu", q, C_GRID)
    tail = hermite_tail("relu", q, second=q / 2)
    # The bound must be honest and useful: ReLU's squared coefficients decay like k^(−5/2),
    # so 256 terms leave a mass of order 1e-5 q, not a bound so loose it cannot fail.
    assert 0 < tail < 1e-4 * q
    error = np.abs(got - expected)
    assert (error <= kernel_bound(tail, C_GRID, q)).all(), error.max()
    # The tail term is fitted to be exact at c = 1; c = 0 is the first coefficient alone.
    assert got[-1] == pytest.approx(q / 2, abs=ROUND_OFF * q)
    assert got[1000] == pytest.approx(q / (2 * math.pi), abs=ROUND_OFF * q)


@pytest.mark.parametrize("q", [0.1, 1.0, 10.0])
def test_erf_kernel_is_the_arcsine_kernel(q):
    # Williams (1997): E[erf(u₁)erf(u₂)] = (2/π) arcsin(2qc / (1 + 2q)).
    expected = 2 / math.pi * np.arcsin(2 * q * C_GRID / (1 + 2 * q))
    got = meanfield.kernel(torch.erf, q, C_GRID)
    tail = hermite_tail(torch.erf, q, second=2 / math.pi * math.asin(2 * q / (1 + 2 * q)))
    error = np.abs(got - expected)
    assert (error <= kernel_bound(tail, C_GRID, 1.0)).all(), (error.max(), tail)


def test_kernel_bound_holds_for_an_odd_kinked_activation_at_negative_correlation():
    # hardtanh is odd, so E[φ(u)φ(−u)] = −E[φ(u)²] = −(1 − 2 ϕ(1)) at q = 1 (ϕ the normal
    # density): the part of the kernel the tail term's sign decides. The documented
    # bound for c < 0 is 2T.
    second = 1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi)
    tail = hermite_tail(F.hardtanh, 1.0, second)
    assert tail > 1e-7  # kinks: a real tail, so the check below has something to bound
    got = float(meanfield.kernel(F.hardtanh, 1.0, -1.0))
    assert abs(got + second) <= 2 * tail + ROUND_OFF
    assert float(meanfield.kernel(F.hardtanh, 1.0, 1.0)) == pytest.approx(second, abs=ROUND_OFF)


def test_correlation_map_slope_at_one_is_chi_1():
    # SPEC: χ₁ is the correlation map's slope at c = 1. A one-sided difference with step
    # h errs by h C''(1)/2 ≈ h (tanh is smooth, C''(1) = σ_w² q* E[φ''²] ≈ 1) plus
    # round-off 1e-15/h: 1e-6 and 1e-9 at h = 1e-6, so 1e-5 is a safe tolerance.
    h = 1e-6
    for weight_var, bias_var in [(2.54, 0.0), (1.5, 0.3)]:
        mf = meanfield.analyze("tanh", weight_var, bias_var)
        ends = meanfield.correlation_map("tanh", weight_var, bias_var, [1 - h, 1.0])
        assert ends[1] == pytest.approx(1.0, abs=ROUND_OFF)
        assert (ends[1] - ends[0]) / h == pytest.approx(mf.chi_1, abs=1e-5)


# ------------------------------------------------------------------ known constants


def test_relu_critical_point_is_he_variance_and_only_at_zero_bias():
    # χ₁ = σ_w² E[relu′²] = σ_w²/2 = 1 at σ_w² = 2; with σ_b² > 0 the variance map
    # q ↦ q + σ_b² has no fixed point at σ_w² = 2, and none is critical elsewhere.
    assert meanfield.critical_weight_var("relu", bias_var=0.0) == pytest.approx(2.0, rel=1e-12)
    for bias_var in (1e-3, 0.05, 1.0):
        assert meanfield.critical_weight_var("relu", bias_var=bias_var) is None
    line = meanfield.critical_line("relu", [0.0, 0.05, 1.0])
    assert line[0] == pytest.approx(2.0, rel=1e-12)
    assert np.isnan(line[1:]).all()


@pytest.mark.parametrize(
    "activation, params, alpha",
    [
        ("leaky_relu", {}, 0.3),  # signalprop's default slope
        ("leaky_relu", {"alpha": 0.2}, 0.2),
        (nn.LeakyReLU(0.2), {}, 0.2),
        (nn.PReLU(), {}, 0.25),  # one slope, 0.25 (exact in float32)
    ],
)
def test_leaky_relu_critical_point_is_two_over_one_plus_alpha_squared(activation, params, alpha):
    # E[φ′²] = (1 + α²)/2 for slope α below 0, so χ₁ = 1 at σ_w² = 2/(1 + α²).
    expected = 2 / (1 + alpha**2)
    got = meanfield.critical_weight_var(activation, bias_var=0.0, **params)
    assert got == pytest.approx(expected, rel=1e-12)
    mf = meanfield.analyze(activation, expected, **params)
    assert mf.chi_1 == pytest.approx(1.0, abs=1e-12)
    assert mf.phase == "critical"


def test_tanh_critical_point_at_zero_bias_is_one_with_q_star_zero():
    # At σ_b² = 0 the fixed point on the critical line is q* → 0, where E[tanh(√q z)²] =
    # q − 2q² + O(q³) and E[tanh′²] → 1: σ_w² = 1. The library takes the limit at q = 1e-12,
    # an error of 2e-12; 1e-9 allows for it.
    assert meanfield.critical_weight_var("tanh", bias_var=0.0) == pytest.approx(1.0, abs=1e-9)
    at_one = meanfield.analyze("tanh", 1.0)
    assert at_one.q_star == 0.0
    assert at_one.phase == "critical"
    assert at_one.chi_1 == pytest.approx(1.0, abs=1e-9)
    below = meanfield.analyze("tanh", 0.9)
    assert (below.q_star, below.phase) == (0.0, "ordered")
    assert below.chi_1 == pytest.approx(0.9, abs=1e-9)  # σ_w² E[tanh′(0)²]
    # Just above, a non-zero fixed point appears and χ₁ passes 1 (within CRITICAL_TOLERANCE
    # of it at σ_w² = 1.1, well past it at 1.5).
    near, above = meanfield.analyze("tanh", 1.1), meanfield.analyze("tanh", 1.5)
    assert near.q_star > 0 and 1 < near.chi_1 < math.exp(0.02) and near.phase == "critical"
    assert above.q_star > 0 and above.phase == "chaotic"


def test_selu_fixed_point_and_chi_1_from_quadrature():
    # Klambauer et al.: E[selu(z)²] = 1 for z ~ N(0, 1), so (σ_w², σ_b²) = (1, 0) has q* = 1.
    # χ₁ = E[selu′(z)²], selu′ = λ (z > 0), λα eᶻ (z < 0), by quad with the paper's constants.
    def derivative(z: float) -> float:
        return PAPER_SCALE if z > 0 else PAPER_SCALE * PAPER_ALPHA * math.exp(z)

    chi_1 = expect(lambda z: derivative(z) ** 2)
    assert chi_1 == pytest.approx(1.0716, abs=1e-4)  # the value quoted in the brief
    mf = meanfield.analyze("selu", 1.0, 0.0)
    # The library's constants solve the defining equations to ~1e-15; q* is solved to
    # relative 1e-12: QUAD covers both.
    assert mf.q_star == pytest.approx(1.0, abs=QUAD)
    assert mf.chi_1 == pytest.approx(chi_1, abs=QUAD)
    assert mf.phase == "chaotic"  # ln 1.0716 = 0.069 > CRITICAL_TOLERANCE (0.02)


def test_tanh_chaotic_point_against_quadrature():
    # Schoenholz et al.'s example, σ_w² = 2.54, σ_b² = 0: every quantity by quad.
    weight_var = 2.54
    q = tanh_fixed_point(weight_var, 0.0)
    chi_1 = weight_var * expect(lambda x: _tanh_derivative(x) ** 2, q)
    # tanh is odd and σ_b² = 0: C(0) = 0, and 0 is the stable fixed point c*, where the
    # slope is σ_w² a₁²/q* = σ_w² E[tanh′(√q* z)]² (Stein: a₁ = √q* E[tanh′]).
    chi_c = weight_var * expect(_tanh_derivative, q) ** 2
    # The variance map's slope: d/dq E[φ(√q z)²] = E[φ φ′(√q z) z] / √q.
    q_slope = weight_var * expect(lambda x: math.tanh(x) * _tanh_derivative(x) * x, q) / q

    mf = meanfield.analyze("tanh", weight_var)
    assert chi_1 == pytest.approx(1.178, abs=1e-3)
    assert mf.phase == "chaotic"
    assert mf.q_star == pytest.approx(q, rel=QUAD)
    assert mf.chi_1 == pytest.approx(chi_1, rel=QUAD)
    assert mf.q_slope == pytest.approx(q_slope, rel=QUAD)
    assert mf.q_stable
    assert mf.c_star == pytest.approx(0.0, abs=1e-12)
    # χ_c is a slope of the series at c* = 0: its error is the tail's (below 1e-12 for tanh).
    assert mf.chi_c == pytest.approx(chi_c, abs=QUAD)
    assert mf.xi_c == pytest.approx(-1 / math.log(chi_c), rel=1e-8)
    assert mf.xi_q == pytest.approx(-1 / math.log(q_slope), rel=1e-8)
    assert mf.trainable_depth == pytest.approx(6 * mf.xi_c, rel=1e-15)


def _narrow_expectation(f: Callable[[float], float], q: float) -> float:
    """E[f(√q z)] for an even f that changes over |u| ≲ a few (φ′ of tanh), at any q.

    Over |z| ≤ 12 by quad, split where u = √q z is 1, 4, 16, 64 and 256: each piece holds
    one scale of f, whatever q (the library's plain rule, panels of 1/4, does not).
    """
    scale = math.sqrt(q)

    def integrand(z: float) -> float:
        return f(scale * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    edges = sorted({0.0, 12.0, *(min(u / scale, 12.0) for u in (1, 4, 16, 64, 256))})
    total = 0.0
    for low, high in itertools.pairwise(edges):
        value, error = integrate.quad(integrand, low, high, epsabs=1e-15, epsrel=1e-13)
        assert error < 1e-12
        total += value
    return 2 * total  # f is even


def _sech2(u: float) -> float:
    return 1 / math.cosh(u) ** 2 if abs(u) < 350 else 0.0


@pytest.mark.parametrize("weight_var", [1e5, 1e6, 1e8])
def test_tanh_at_huge_weight_variance_against_quadrature(weight_var):
    # q* ≈ σ_w²: tanh′(√q* z)² lives on |z| ≲ 3/√q* (3e-4 at σ_w² = 1e8), far inside
    # one panel of the library's plain rule, which gave χ₁ 194 and 165 instead of 168
    # and 532, and 4e-17 ("ordered") at 1e8. Reference: q = σ_w² (1 − E[sech²(√q z)])
    # by brentq (tanh² = 1 − sech², no cancellation) and χ₁ = σ_w² E[sech⁴(√q* z)].
    def gap(q: float) -> float:
        return weight_var * (1 - _narrow_expectation(_sech2, q)) - q

    q = optimize.brentq(gap, weight_var / 2, weight_var, xtol=1e-14, rtol=1e-14)
    chi_1 = weight_var * _narrow_expectation(lambda u: _sech2(u) ** 2, q)
    mf = meanfield.analyze("tanh", weight_var)
    assert mf.q_star == pytest.approx(q, rel=1e-9)
    assert mf.chi_1 == pytest.approx(chi_1, rel=1e-9)
    assert mf.phase == "chaotic"


def test_a_fixed_point_beyond_the_engines_range_is_refused_not_called_infinite():
    # tanh at σ_w² = 1e9 has q* ≈ 1e9, beyond Q_MAX = 1e8: not unbounded (ReLU above He's
    # variance is), and out of range: refused by name.
    with pytest.raises(ValueError, match=r"'weight_var' parameter of meanfield\.analyze"):
        meanfield.analyze("tanh", 1e9)
    with pytest.raises(ValueError, match=r"'weight_vars' parameter of meanfield\.phase_diagram"):
        meanfield.phase_diagram("tanh", [1.0, 1e9], [0.0])
    assert meanfield.analyze("relu", 3.0).q_star == math.inf


@pytest.mark.parametrize("weight_var", [1.0, 1.5, 1.99])
def test_relu_below_he_variance_fades_to_zero_and_is_ordered(weight_var):
    mf = meanfield.analyze("relu", weight_var)
    assert mf.q_star == 0.0
    assert mf.chi_1 == pytest.approx(weight_var / 2, rel=1e-12)
    assert mf.phase == ("ordered" if math.log(weight_var / 2) < -0.02 else "critical")


@pytest.mark.parametrize("weight_var", [2.01, 2.5, 4.0])
def test_relu_above_he_variance_grows_without_bound_and_is_chaotic(weight_var):
    mf = meanfield.analyze("relu", weight_var)
    assert mf.q_star == math.inf
    assert not mf.q_stable
    assert mf.chi_1 == pytest.approx(weight_var / 2, rel=1e-12)
    assert mf.phase == ("chaotic" if math.log(weight_var / 2) > 0.02 else "critical")


# ------------------------------------------------------------------ the critical line


@pytest.mark.parametrize(
    "activation, bias_var",
    [("tanh", 0.05), ("tanh", 0.5), ("elu", 0.05), ("gelu", 0.2), ("sigmoid", 0.0), ("selu", 0.1)],
)
def test_critical_line_point_is_critical_at_a_stable_fixed_point(activation, bias_var):
    weight_var = meanfield.critical_weight_var(activation, bias_var=bias_var)
    assert weight_var is not None
    mf = meanfield.analyze(activation, weight_var, bias_var)
    # χ₁ is bisected in log q to round-off; 1e-8 leaves room for the fixed point's 1e-12.
    assert mf.chi_1 == pytest.approx(1.0, abs=1e-8)
    q = mf.q_star
    assert 0 < q < math.inf
    assert float(meanfield.variance_map(activation, weight_var, bias_var, q)) == pytest.approx(
        q, rel=1e-10
    )
    # Stable: the map's slope below 1, by a central difference with h = 1e-5 q* (truncation
    # h² V'''/6 ≈ 1e-11, round-off 1e-16 q*/h = 1e-11), not only the library's q_slope.
    h = 1e-5 * q
    ends = meanfield.variance_map(activation, weight_var, bias_var, [q - h, q + h])
    slope = (ends[1] - ends[0]) / (2 * h)
    assert slope < 1
    assert mf.q_slope == pytest.approx(slope, abs=1e-8)
    assert mf.q_stable


@pytest.mark.parametrize("bias_var", [0.05, 0.3])
def test_tanh_critical_line_against_quadrature(bias_var):
    expected = tanh_critical_weight_var(bias_var)
    assert meanfield.critical_weight_var("tanh", bias_var=bias_var) == pytest.approx(
        expected, rel=QUAD
    )
    if bias_var == 0.05:  # the point Schoenholz et al. train at
        assert expected == pytest.approx(1.761, abs=1e-3)


def test_critical_line_matches_critical_weight_var_pointwise():
    bias_vars = [0.0, 0.05, 0.1, 0.5, 1.0]
    line = meanfield.critical_line("tanh", bias_vars)
    assert line.shape == (5,)
    for value, bias_var in zip(line, bias_vars, strict=True):
        assert value == pytest.approx(
            meanfield.critical_weight_var("tanh", bias_var=bias_var), rel=1e-12
        )
    assert (np.diff(line) > 0).all()  # more bias needs more weight to stay critical


# ----------------------------------------------------- non-centred activations: the logistic


def _logistic(x: np.ndarray) -> np.ndarray:
    return special.expit(x)


def test_two_dimensional_reference_is_converged():
    # The reference rule against a different one (panels of 1/5, 24 nodes, on [−10, 10]) at
    # the steepest point used (q = 68) and a correlation near 1, where u₂ is steepest in
    # z₁: agreement to round-off backs its stated accuracy.
    other = gauss_legendre_normal(10.0, 0.2, 24)
    first = two_dimensional_kernel(_logistic, 68.0, 0.95)
    second = two_dimensional_kernel(_logistic, 68.0, 0.95, rule=other)
    assert first == pytest.approx(second, abs=1e-13)


@pytest.mark.parametrize("q", [0.5, 1.0, 68.0])
def test_logistic_kernel_at_zero_correlation_is_the_mean_squared(q):
    # Independent inputs: E[σ(u₁)σ(u₂)] = E[σ]², and E[σ(√q z)] = 1/2 because σ − 1/2 is odd.
    # A map that centred the activation would give 0 here.
    z, w = gauss_legendre_normal()
    tail = hermite_tail("sigmoid", q, second=float(w @ special.expit(math.sqrt(q) * z) ** 2))
    assert float(meanfield.kernel("sigmoid", q, 0.0)) == pytest.approx(0.25, abs=tail + ROUND_OFF)


@pytest.mark.parametrize(
    "weight_var, bias_var",
    [(4.0, 0.0), (1.0, 0.5), (150.0, 0.0)],
    ids=["ordered", "bias", "chaotic"],
)
def test_logistic_correlation_map_against_two_dimensional_quadrature(weight_var, bias_var):
    q = logistic_fixed_point(weight_var, bias_var)
    mf = meanfield.analyze("sigmoid", weight_var, bias_var)
    assert mf.q_star == pytest.approx(q, rel=1e-10)
    cs = np.array([-0.9, -0.3, 0.0, 0.5, 0.95])
    got = meanfield.correlation_map("sigmoid", weight_var, bias_var, cs)
    expected = [(weight_var * two_dimensional_kernel(_logistic, q, c) + bias_var) / q for c in cs]
    # The map's reported bound (σ_w² T/q*; twice it for c < 0) plus round-off; the
    # reference is exact to ~1e-15 and q* agrees to 1e-10 relative, which moves the map
    # by less than 1e-10 (its derivative in q is O(1)).
    bound = np.where(cs >= 0, mf.correlation_error, 2 * mf.correlation_error) + 1e-10
    assert (np.abs(got - expected) <= bound).all(), (got - expected, bound)


def test_logistic_ordered_phase_converges_to_c_star_one():
    weight_var = 4.0
    mf = meanfield.analyze("sigmoid", weight_var)
    assert mf.phase == "ordered"
    assert mf.c_star == 1.0
    # The map's value at 0 is σ_w² E[σ]²/q* = 1/q*: far from 0 because the mean is kept.
    q = logistic_fixed_point(weight_var, 0.0)
    c0 = float(meanfield.correlation_map("sigmoid", weight_var, 0.0, 0.0))
    assert c0 == pytest.approx(weight_var * 0.25 / q, abs=mf.correlation_error + ROUND_OFF)
    # Iterating from anticorrelated inputs reaches c = 1: one step takes c = −0.5 to about
    # 0.75, and |c − 1| then shrinks by at most χ₁ ≈ 0.17 per step (the map is convex on
    # [0, 1], its slope at most χ₁ there): below 1e-10 well before 40 steps.
    c = -0.5
    for _ in range(40):
        c = float(meanfield.correlation_map("sigmoid", weight_var, 0.0, c))
    assert c == pytest.approx(1.0, abs=1e-10)


def test_logistic_chaotic_c_star_is_a_fixed_point_of_the_reference_map():
    # σ_w² = 150 is past the logistic's critical line (σ_w² ≈ 103 at σ_b² = 0): c* < 1,
    # and c* > 0 because the mean makes C(0) = σ_w²/(4q*) > 0.
    weight_var = 150.0
    mf = meanfield.analyze("sigmoid", weight_var)
    assert mf.phase == "chaotic"
    assert 0 < mf.c_star < 1
    q = logistic_fixed_point(weight_var, 0.0)

    def reference(c: float) -> float:
        return weight_var * two_dimensional_kernel(_logistic, q, c) / q

    # The library's C(c*) = c* to 1e-15 and |C − reference| ≤ correlation_error (c* ≥ 0).
    assert reference(mf.c_star) == pytest.approx(mf.c_star, abs=mf.correlation_error + 1e-10)
    # Its slope there, by a central difference of the reference with h = 1e-4. Truncation
    # h² C'''/6: C''' ≈ 100 here (the difference to the library shrinks from 1.7e-5 to
    # 1.7e-7 as h goes from 1e-3 to 1e-4), so 2e-7; round-off 1e-15/h = 1e-11; the
    # library's slope misses at most (σ_w²/q*) 2κT c*^256 ≈ 1e-8 of the Hermite tail
    # (c*^256 ≈ 5e-5). 1e-6 covers the three.
    h = 1e-4
    slope = (reference(mf.c_star + h) - reference(mf.c_star - h)) / (2 * h)
    assert mf.chi_c == pytest.approx(slope, abs=1e-6)
    assert mf.chi_c < 1


# ------------------------------------------------------------------ Monte Carlo


WIDTH = 2000
DEPTH = 10
NETS = 10
PAIRS = 4


@dataclass(frozen=True)
class Forward:
    """Pairs of inputs with pre-activation variance q0 and correlation c0."""

    function: Callable[[torch.Tensor], torch.Tensor]
    name: str
    weight_var: float
    bias_var: float
    q0: float
    c0: float


@dataclass(frozen=True)
class Backward:
    """Inputs at the variance fixed point; a unit-variance gradient sent back from the top."""

    function: Callable[[torch.Tensor], torch.Tensor]
    name: str
    weight_var: float
    bias_var: float


FORWARD = {
    "tanh-chaotic": Forward(torch.tanh, "tanh", 2.54, 0.0, q0=0.5, c0=0.9),
    "tanh-ordered": Forward(torch.tanh, "tanh", 0.8, 0.2, q0=2.0, c0=0.1),
    "relu": Forward(torch.relu, "relu", 2.0, 0.1, q0=1.0, c0=0.2),
}
BACKWARD = {
    "tanh-chaotic": Backward(torch.tanh, "tanh", 2.54, 0.0),
    "tanh-ordered": Backward(torch.tanh, "tanh", 0.8, 0.2),
    "relu": Backward(torch.relu, "relu", 2.0, 0.0),
}


@dataclass
class Simulated:
    q: dict[str, np.ndarray]  # (NETS, DEPTH + 1): mean h² over units and inputs
    c: dict[str, np.ndarray]  # (NETS, DEPTH + 1): correlation, averaged over pairs
    growth: dict[str, np.ndarray]  # (NETS,): per-layer growth of the mean squared gradient


@pytest.fixture(scope="module")
def simulated() -> Iterator[Simulated]:
    """The Monte Carlo runs, on one thread like every test (module fixtures are set up
    before conftest's per-test ``one_thread``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _simulate()
    finally:
        torch.set_num_threads(threads)


def _layer(
    cases: list[Forward] | list[Backward], h: torch.Tensor, g: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """One dense layer for side-by-side cases, each ``h.shape[1] // len(cases)`` columns wide:
    (σ_w/√n) G φ(h) + σ_b β, with each case's φ, σ_w and σ_b."""
    n = g.shape[0]
    parts = h.chunk(len(cases), dim=1)
    x = torch.cat([case.function(part) for case, part in zip(cases, parts, strict=True)], dim=1)
    y = g @ x
    return torch.cat(
        [
            math.sqrt(case.weight_var / n) * part + math.sqrt(case.bias_var) * beta
            for case, part in zip(cases, y.chunk(len(cases), dim=1), strict=True)
        ],
        dim=1,
    )


def _simulate() -> Simulated:
    """NETS dense nets of DEPTH layers, width WIDTH, float64; all cases share their weights.

    Layer l maps pre-activations h to (σ_w/√n) G φ(h) + σ_b β, G with N(0, 1) entries and β
    a N(0, 1) bias vector shared by every input of the net. G is drawn in float32 and used
    in float64 (the draw is rounded to 6e-8 relative, invisible at this sample size; a
    float64 draw takes four times as long). Cases share G and differ in σ_w, σ_b and φ, so
    each case is a valid sample on its own; only comparisons within one case use its SE.
    The gradient is autograd's, through the very weights of the forward pass.
    """
    generator = torch.Generator().manual_seed(20240611)
    n = WIDTH
    forward, backward = list(FORWARD.values()), list(BACKWARD.values())
    q = {key: np.empty((NETS, DEPTH + 1)) for key in FORWARD}
    c = {key: np.empty((NETS, DEPTH + 1)) for key in FORWARD}
    growth = {key: np.empty(NETS) for key in BACKWARD}
    q_star = [meanfield.analyze(b.name, b.weight_var, b.bias_var).q_star for b in backward]

    for net in range(NETS):
        pairs = []
        for case in forward:
            z = torch.randn(n, 2, PAIRS, dtype=torch.float64, generator=generator)
            first = z[:, 0]
            second = case.c0 * first + math.sqrt(1 - case.c0**2) * z[:, 1]
            pairs.append(math.sqrt(case.q0) * torch.cat([first, second], dim=1))
        h = torch.cat(pairs, dim=1)  # per case: PAIRS first inputs, then their partners
        z = torch.randn(n, len(backward), PAIRS, dtype=torch.float64, generator=generator)
        start = (z * torch.tensor(q_star).sqrt()[None, :, None]).reshape(n, -1)
        start.requires_grad_(True)
        top = start
        record = [h]
        for _ in range(DEPTH):
            g = torch.randn(n, n, generator=generator).double()
            beta = torch.randn(n, 1, dtype=torch.float64, generator=generator)
            with torch.no_grad():
                h = _layer(forward, h, g, beta)
            record.append(h)
            top = _layer(backward, top, g, beta)
        for depth, layer in enumerate(record):
            for key, part in zip(FORWARD, layer.chunk(len(forward), dim=1), strict=True):
                squares = (part * part).mean(dim=0)
                q[key][net, depth] = squares.mean().item()
                cross = (part[:, :PAIRS] * part[:, PAIRS:]).mean(dim=0)
                correlation = cross / torch.sqrt(squares[:PAIRS] * squares[PAIRS:])
                c[key][net, depth] = correlation.mean().item()
        delta = torch.randn(n, len(backward) * PAIRS, dtype=torch.float64, generator=generator)
        (bottom,) = torch.autograd.grad(top, start, grad_outputs=delta)
        for key, out, back in zip(
            BACKWARD,
            delta.chunk(len(backward), dim=1),
            bottom.chunk(len(backward), dim=1),
            strict=True,
        ):
            # The geometric mean over the DEPTH layers of the ratio of mean squared gradients.
            growth[key][net] = ((back * back).mean().item() / (out * out).mean().item()) ** (
                1 / DEPTH
            )
    return Simulated(q=q, c=c, growth=growth)


def predicted(fwd: Forward, weight_var: float | None = None, at_fixed_point: bool = False):
    """q_l and c_l from iterating variance_map and the kernel at the current q_l."""
    weight_var = fwd.weight_var if weight_var is None else weight_var
    q, c = [fwd.q0], [fwd.c0]
    for _ in range(DEPTH):
        q_next = float(meanfield.variance_map(fwd.name, weight_var, fwd.bias_var, q[-1]))
        if at_fixed_point:  # the mistake of using the kernel at q* instead of q_l
            c_next = float(meanfield.correlation_map(fwd.name, weight_var, fwd.bias_var, c[-1]))
        else:
            k = float(meanfield.kernel(fwd.name, q[-1], c[-1]))
            c_next = (weight_var * k + fwd.bias_var) / q_next
        q.append(q_next)
        c.append(c_next)
    return np.array(q), np.array(c)


#: Tolerance = SIGMAS standard errors + FINITE_WIDTH / WIDTH. The standard error is the
#: spread over NETS = 10 independent nets / √NETS, so (mean − truth)/SE is Student-t with 9
#: degrees of freedom: P(|t| > 6) = 2e-4 per comparison, 1.3% by the union bound over the
#: 63 comparisons below (q and c at 10 layers × 3 cases, 3 growth rates), and less with the
#: allowance. The allowance covers the O(1/n) finite-width corrections the mean-field maps
#: leave out (the maps' curvature acting on the O(1/n) variance of the empirical kernel):
#: a 60-net run measured them below 5/n on q (relative), c and the growth rate, so 10/n =
#: 0.005 is twice that; it is small next to 6 SE (about 0.03 on q and c).
SIGMAS = 6.0
FINITE_WIDTH = 10.0


def _tolerance(samples: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    standard_error = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    return SIGMAS * standard_error + FINITE_WIDTH / WIDTH * np.asarray(scale)


@pytest.mark.parametrize("key", list(FORWARD))
def test_variance_per_layer_follows_the_variance_map(simulated, key):
    fwd = FORWARD[key]
    q, _ = predicted(fwd)
    samples = simulated.q[key]
    tolerance = _tolerance(samples, q)
    error = np.abs(samples.mean(axis=0) - q)
    assert (error[1:] <= tolerance[1:]).all(), (error / tolerance).round(2)
    if key == "tanh-chaotic":
        # The same tolerance would catch σ_w² wrong by 5%.
        wrong, _ = predicted(fwd, weight_var=1.05 * fwd.weight_var)
        assert (np.abs(samples.mean(axis=0) - wrong) > tolerance).any()


@pytest.mark.parametrize("key", list(FORWARD))
def test_correlation_per_layer_follows_the_kernel_at_the_current_variance(simulated, key):
    fwd = FORWARD[key]
    _, c = predicted(fwd)
    samples = simulated.c[key]
    tolerance = _tolerance(samples, 1.0)
    error = np.abs(samples.mean(axis=0) - c)
    assert (error[1:] <= tolerance[1:]).all(), (error / tolerance).round(2)
    if key == "tanh-ordered":
        # q starts at 2, far from q* = 0.39: the kernel at q* instead of q_l is rejected.
        _, wrong = predicted(fwd, at_fixed_point=True)
        assert (np.abs(samples.mean(axis=0) - wrong) > tolerance).any()


@pytest.mark.parametrize("key", list(BACKWARD))
def test_mean_squared_gradient_grows_by_chi_1_per_layer(simulated, key):
    bwd = BACKWARD[key]
    chi_1 = meanfield.analyze(bwd.name, bwd.weight_var, bwd.bias_var).chi_1
    samples = simulated.growth[key]
    tolerance = _tolerance(samples[:, None], chi_1)[0]
    assert abs(samples.mean() - chi_1) <= tolerance, (samples.mean(), chi_1, tolerance)
    if key.startswith("tanh"):
        # Sharp enough to tell the phase: the measured growth is not 1 within the tolerance.
        assert abs(samples.mean() - 1) > tolerance


# ------------------------------------------------------------------ phase diagram


def test_phase_diagram_agrees_with_analyze_pointwise():
    weight_vars = [0.5, 1.0, 1.5, 2.54, 4.0]
    bias_vars = [0.0, 0.05, 0.5]
    diagram = meanfield.phase_diagram("tanh", weight_vars, bias_vars)
    assert diagram.activation == "tanh"
    np.testing.assert_array_equal(diagram.weight_vars, weight_vars)
    np.testing.assert_array_equal(diagram.bias_vars, bias_vars)
    for field in ("q_star", "chi_1", "c_star", "xi_c", "xi_q", "phase"):
        assert getattr(diagram, field).shape == (3, 5), field
    for i, bias_var in enumerate(bias_vars):
        for j, weight_var in enumerate(weight_vars):
            mf = meanfield.analyze("tanh", weight_var, bias_var)
            assert diagram.phase[i, j] == mf.phase
            for field in ("q_star", "chi_1", "c_star"):
                # Same arithmetic, vectorized: only the summation order may differ, and
                # Newton's stopping test (relative 1e-12) sets how far q* may move.
                np.testing.assert_allclose(
                    getattr(diagram, field)[i, j], getattr(mf, field), rtol=1e-9, atol=1e-12
                )
            for field in ("xi_c", "xi_q"):
                # ξ = −1/ln(slope) is ill-conditioned where the slope is 1 (ξ ≈ 5e11 at the
                # critical point q* = 0 of tanh): compare 1/ξ = −ln(slope) instead.
                np.testing.assert_allclose(
                    1 / getattr(diagram, field)[i, j], 1 / getattr(mf, field), rtol=1e-9, atol=1e-12
                )
    np.testing.assert_array_equal(diagram.critical, meanfield.critical_line("tanh", bias_vars))


def test_phase_diagram_labels_follow_chi_1_and_the_critical_line():
    weight_vars = np.linspace(0.5, 4.0, 36)
    bias_vars = np.array([0.0, 0.1, 0.3])
    diagram = meanfield.phase_diagram("tanh", weight_vars, bias_vars)
    log_chi = np.log(diagram.chi_1)
    expected = np.where(
        np.abs(log_chi) <= 0.02, "critical", np.where(log_chi < 0, "ordered", "chaotic")
    )
    np.testing.assert_array_equal(diagram.phase, expected)
    assert set(np.unique(diagram.phase)) == {"ordered", "critical", "chaotic"}
    # χ₁ < 1 left of the critical line and > 1 right of it (labels near the line may be
    # "critical": at σ_b² = 0, χ₁ = 1.0014 at σ_w² = 1.1).
    for row, critical in enumerate(diagram.critical):
        side = np.sign(weight_vars - critical)
        away = np.abs(weight_vars - critical) > 0.05
        assert (side[away] < 0).any() and (side[away] > 0).any()
        np.testing.assert_array_equal(np.sign(log_chi[row, away]), side[away])


def test_phase_diagram_relu():
    diagram = meanfield.phase_diagram("relu", [1.0, 2.0, 3.0], [0.0])
    np.testing.assert_array_equal(diagram.q_star, [[0.0, 1.0, math.inf]])
    np.testing.assert_allclose(diagram.chi_1, [[0.5, 1.0, 1.5]], rtol=1e-12)
    np.testing.assert_array_equal(diagram.phase, [["ordered", "critical", "chaotic"]])
    assert diagram.critical[0] == pytest.approx(2.0, rel=1e-12)


def test_phase_diagram_with_as_many_chaotic_points_as_the_correlation_scan():
    # Regression: 401 chaotic points (the length of the library's correlation grid) used
    # to be read as one correlation per point and crashed with an IndexError.
    diagram = meanfield.phase_diagram("tanh", np.linspace(2.0, 4.0, 401), [0.0])
    assert (diagram.phase == "chaotic").all()
    # tanh is odd and σ_b² = 0, so c* = 0 exactly (see test_tanh_chaotic_point_against_quadrature).
    assert np.abs(diagram.c_star).max() < 1e-12


# ------------------------------------------------------------------ bad input


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match="Got 'tanhh' instead") as info:
        meanfield.analyze("tanhh", 1.0)
    message = str(info.value)
    for name in activations.names():  # the elementwise ones: softmax has no mean-field theory
        assert (repr(name) in message) == activations.is_elementwise(name), name
    assert "Did you mean 'tanh'?" in message


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: meanfield.analyze("tanh", -1.0), "weight_var"),
        (lambda: meanfield.analyze("tanh", 0.0), "weight_var"),
        (lambda: meanfield.analyze("tanh", math.nan), "weight_var"),
        (lambda: meanfield.analyze("tanh", 1.0, -0.1), "bias_var"),
        (lambda: meanfield.analyze("tanh", 1.0, input_var=0.0), "input_var"),
        (lambda: meanfield.variance_map("tanh", -1.0, 0.0, 1.0), "weight_var"),
        (lambda: meanfield.variance_map("tanh", 1.0, -1.0, 1.0), "bias_var"),
        (lambda: meanfield.variance_map("tanh", 1.0, 0.0, -1.0), "q"),
        (lambda: meanfield.correlation_map("tanh", 1.0, -0.5, 0.5), "bias_var"),
        (lambda: meanfield.critical_weight_var("tanh", bias_var=-0.1), "bias_var"),
        (lambda: meanfield.critical_line("tanh", [0.1, -0.1]), "bias_vars"),
        (lambda: meanfield.phase_diagram("tanh", [0.0, 1.0], [0.0]), "weight_vars"),
        (lambda: meanfield.phase_diagram("tanh", [1.0], [-1.0]), "bias_vars"),
        (lambda: meanfield.init_point("tanh", bias_var=-1.0), "bias_var"),
        (lambda: meanfield.kernel("relu", -1.0, 0.5), "q"),
    ],
)
def test_bad_variances_name_the_parameter(call, param):
    with pytest.raises(ValueError, match=f"The '{param}' parameter of meanfield"):
        call()


def test_per_channel_prelu_is_refused():
    with pytest.raises(ValueError, match="PReLU with 3 slopes"):
        meanfield.analyze(nn.PReLU(3), 2.0)


@pytest.mark.parametrize(
    "function",
    [torch.log, lambda x: torch.where(x > 3, torch.inf, x)],
    ids=["nan-below-zero", "inf-above-three"],
)
def test_activation_with_non_finite_values_is_refused(function):
    with pytest.raises(ValueError, match="an activation with finite values and derivative"):
        meanfield.analyze(function, 1.0)


@pytest.mark.parametrize("c", [1.5, -1.01, [0.0, 1.0 + 1e-9], math.nan])
def test_kernel_refuses_correlations_outside_minus_one_one(c):
    with pytest.raises(
        ValueError, match=r"The 'c' parameter of meanfield.kernel must be correlations in \[-1, 1\]"
    ):
        meanfield.kernel("relu", 1.0, c)


def test_correlation_map_refuses_a_point_without_a_finite_fixed_point():
    with pytest.raises(ValueError, match=r"q\* = 0.0 there"):
        meanfield.correlation_map("relu", 1.5, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"q\* = inf there"):
        meanfield.correlation_map("relu", 2.5, 0.0, 0.5)


def test_init_point_criterion_typo_lists_the_criteria():
    expected = r"one of \['critical', 'variance'\]. Got 'critcal' instead."
    with pytest.raises(ValueError, match=expected + r" Did you mean 'critical'\?"):
        meanfield.init_point("tanh", "critcal")


# ------------------------------------------------------------------ init_point


def test_init_point_relu_is_he():
    point = meanfield.init_point("relu")
    assert point.criterion == "critical"
    assert point.weight_var == pytest.approx(2.0, rel=1e-12)
    assert point.bias_var == 0.0
    assert point.q_star == 1.0
    assert point.note == ""


def test_init_point_selu_keeps_its_fixed_point_and_says_so():
    point = meanfield.init_point("selu")
    assert (point.weight_var, point.bias_var) == (1.0, 0.0)
    assert point.q_star == pytest.approx(1.0, abs=QUAD)
    assert "SELU" in point.note and "fixed point" in point.note
    assert "χ₁ = 1.072" in point.note  # E[selu′²] = 1.0716 (test_selu_fixed_point_...)


def test_init_point_softplus_has_no_critical_point_and_falls_back_to_variance():
    point = meanfield.init_point("softplus", centred=False)
    assert "no critical point" in point.note
    second = expect(lambda x: float(np.logaddexp(0.0, x)) ** 2)
    assert point.weight_var == pytest.approx(1 / second, rel=QUAD)
    assert (point.bias_var, point.q_star) == (0.0, 1.0)


def test_init_point_tanh_is_on_the_critical_line_at_bias_005():
    point = meanfield.init_point("tanh")
    assert point.bias_var == 0.05
    assert point.weight_var == pytest.approx(tanh_critical_weight_var(0.05), rel=QUAD)
    assert point.q_star == pytest.approx(tanh_fixed_point(point.weight_var, 0.05), rel=QUAD)
    assert point.note == ""
    assert meanfield.analyze("tanh", point.weight_var, point.bias_var).chi_1 == pytest.approx(
        1.0, abs=1e-8
    )


def test_init_point_variance_criterion_keeps_unit_variance():
    point = meanfield.init_point("tanh", "variance")
    second = expect(lambda x: math.tanh(x) ** 2)
    assert point.weight_var == pytest.approx(1 / second, rel=QUAD)
    assert (point.criterion, point.bias_var, point.q_star) == ("variance", 0.0, 1.0)


# ------------------------------------------------------------------ numerics: hard cases


def _mish(x: float) -> float:
    return x * math.tanh(math.log1p(math.exp(x)) if x < 30 else x)


def _mish_derivative(x: float) -> float:
    # d/dx x tanh(sp(x)) = tanh(sp) + x sech²(sp) σ(x), sp = softplus.
    sp = math.log1p(math.exp(x)) if x < 30 else x
    return math.tanh(sp) + x * (1 - math.tanh(sp) ** 2) * special.expit(x)


@pytest.mark.parametrize("weight_var", [2.0, 2.006])
def test_mish_fixed_point_between_two_close_roots_is_found(weight_var):
    # At σ_b² = 0.1 the gap g(q) = σ_w² E[mish(√q z)²] + σ_b² − q is positive at q = 1,
    # negative at 2 and positive again by q = 10 (σ_w² = 2.006: already by q = 3.2, both
    # roots inside one factor √10 of q = 1). The forward pass from q = 1
    # stops at the first root, a stable one. A bracketing that only compares the signs
    # at its trials sees g > 0 at both ends and reported q* = ∞ (and "critical").
    bias_var = 0.1

    def gap(q: float) -> float:
        return weight_var * expect(lambda x: _mish(x) ** 2, q) + bias_var - q

    assert gap(1.0) > 0 > gap(2.0) and gap(10.0) > 0
    if weight_var > 2:
        assert gap(3.2) > 0
    q = optimize.brentq(gap, 1.0, 2.0, xtol=1e-14, rtol=1e-14)
    chi_1 = weight_var * expect(lambda x: _mish_derivative(x) ** 2, q)
    mf = meanfield.analyze("mish", weight_var, bias_var)
    assert mf.q_star == pytest.approx(q, rel=QUAD)
    assert mf.q_stable and mf.q_slope < 1
    assert mf.chi_1 == pytest.approx(chi_1, rel=QUAD)
    assert mf.chi_1 < 1 and mf.c_star == 1.0
    # The same point seen from the critical line: σ_w² is left of it at this σ_b².
    assert meanfield.critical_weight_var("mish", bias_var=bias_var) > weight_var


def _gelu(x: float) -> float:
    return x * special.ndtr(x)


def _gelu_derivative(x: float) -> float:
    return special.ndtr(x) + x * math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _silu(x: float) -> float:
    return x * special.expit(x)


def _silu_derivative(x: float) -> float:
    s = special.expit(x)
    return s + x * s * (1 - s)


SMOOTH = {"gelu": (_gelu, _gelu_derivative), "silu": (_silu, _silu_derivative)}


def critical_line_by_q(name: str, q: float) -> tuple[float, float, float]:
    """(σ_b², σ_w², slope of the variance map) of the critical point with q* = q, by quad.

    χ₁ = σ_w² E[φ′²] = 1 and q = σ_w² E[φ²] + σ_b² give σ_w² = 1/E[φ′²] and σ_b² = q − σ_w²
    E[φ²]; the slope is σ_w² dE[φ(√q z)²]/dq = σ_w² E[φ φ′(u) u]/q, u ~ N(0, q).
    """
    f, df = SMOOTH[name]
    weight_var = 1 / expect(lambda x: df(x) ** 2, q)
    bias_var = q - weight_var * expect(lambda x: f(x) ** 2, q)
    slope = weight_var * expect(lambda x: f(x) * df(x) * x, q) / q
    return bias_var, weight_var, slope


@pytest.mark.parametrize(
    "name, bracket, threshold", [("gelu", (2.0, 20.0), 0.173), ("silu", (5.0, 60.0), 0.555)]
)
def test_default_bias_var_is_just_above_the_smallest_stable_critical_point(
    name, bracket, threshold
):
    # Along the critical line (parametrized by q*) the variance map's slope falls through 1
    # where the stable critical point is born (the smallest σ_b² that has one) and through
    # 0.99 a little above, where the library puts its default (ξ_q ≤ 100 layers).
    def slope_minus(target: float) -> float:
        q = optimize.brentq(
            lambda q: critical_line_by_q(name, q)[2] - target, *bracket, xtol=1e-13, rtol=1e-13
        )
        return critical_line_by_q(name, q)[0]

    born = slope_minus(1.0)
    default = slope_minus(0.99)
    assert born == pytest.approx(threshold, abs=1e-3)  # the numbers quoted in the docstring
    # The true threshold, not a grid point: none just below it, one just above it.
    assert meanfield.critical_weight_var(name, bias_var=born * 0.99) is None
    above = meanfield.critical_weight_var(name, bias_var=born * 1.01)
    assert above is not None
    assert meanfield.analyze(name, above, born * 1.01).q_stable
    # The default is bisected from above, over a bracket of at most 0.5 cut 17-fold four
    # times (6e-6); quad's 1e-9 moves the reference far less.
    got = meanfield.default_bias_var(name)
    assert 0 <= got - default <= 1e-5, (got, default)
    point = meanfield.init_point(name)
    assert point.bias_var == got
    mf = meanfield.analyze(name, point.weight_var, point.bias_var)
    assert mf.q_stable and mf.q_slope <= 0.99 + 1e-6 and mf.chi_1 == pytest.approx(1, abs=1e-8)


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_variance_criterion_lands_on_a_stable_fixed_point(name):
    # With zero biases, σ_w² = 1/E[φ(z)²] makes q = 1 a fixed point with slope
    # E[φ φ′(z) z]/E[φ(z)²] > 1 (unstable) for GELU and SiLU: the variance runs away.
    f, df = SMOOTH[name]
    second = expect(lambda x: f(x) ** 2)
    mixed = expect(lambda x: f(x) * df(x) * x)  # dE[φ(√q z)²]/dq at q = 1
    assert mixed / second > 1.1
    point = meanfield.init_point(name, "variance")
    assert "unstable" in point.note
    # The point returned keeps q = 1 a fixed point and attracts (slope < 1), by quad.
    assert point.weight_var * second + point.bias_var == pytest.approx(1.0, abs=QUAD)
    assert point.weight_var * mixed == pytest.approx(0.99, abs=QUAD)
    assert point.bias_var > 0 and point.q_star == 1.0


# ------------------------------------------------------------------ kinks away from 0


def expect_split(g: Callable[[float], float], q: float, kinks: tuple[float, ...]) -> float:
    """E[g(u)], u ~ N(0, q), by quad on pieces split at 0 and at g's kinks (in u)."""

    cuts = [-math.inf, *sorted({0.0, *kinks}), math.inf]
    scale = math.sqrt(q)

    def integrand(u: float) -> float:
        return g(u) * math.exp(-0.5 * u * u / q) / (scale * math.sqrt(2 * math.pi))

    total = 0.0
    for low, high in itertools.pairwise(cuts):
        value, error = integrate.quad(integrand, low, high, epsabs=1e-14, epsrel=1e-13, limit=200)
        assert error < 1e-11  # the reference itself is trustworthy
        total += value
    return total


def _clip(low: float, high: float) -> Callable[[float], float]:
    return lambda x: min(max(x, low), high)


def _step(low: float, high: float) -> Callable[[float], float]:
    return lambda x: 1.0 if low < x < high else 0.0


KINKED = {
    "Hardtanh": (nn.Hardtanh(), _clip(-1, 1), _step(-1, 1), (-1.0, 1.0)),
    "F.hardtanh": (F.hardtanh, _clip(-1, 1), _step(-1, 1), (-1.0, 1.0)),
    "Hardtanh(-0.5, 2)": (nn.Hardtanh(-0.5, 2.0), _clip(-0.5, 2), _step(-0.5, 2), (-0.5, 2.0)),
    "ReLU6": (nn.ReLU6(), _clip(0, 6), _step(0, 6), (0.0, 6.0)),
    "Hardsigmoid": (
        nn.Hardsigmoid(),
        lambda x: min(max(x / 6 + 0.5, 0.0), 1.0),
        # PyTorch's backward of hardsigmoid uses 1/6 rounded to float32 (1/6 + 5e-9), even
        # in float64: the library differentiates what PyTorch computes.
        lambda x: float(np.float32(1 / 6)) if -3 < x < 3 else 0.0,
        (-3.0, 3.0),
    ),
    "Hardswish": (
        nn.Hardswish(),
        lambda x: x * min(max(x + 3, 0.0), 6.0) / 6,
        lambda x: 0.0 if x < -3 else (1.0 if x > 3 else (2 * x + 3) / 6),
        (-3.0, 3.0),
    ),
}


@pytest.mark.parametrize("key", list(KINKED))
@pytest.mark.parametrize("q", [0.3, 1.7, 40.0])
def test_kinked_activation_moments_are_exact(key, q):
    # Kinks at φ's argument ±1 (±3, 6, ...) sit at z = kink/√q, inside a panel of the
    # library's rule for most q: without a panel edge there its error was ~1e-3 relative.
    # Both sides are now exact to ~1e-13 (quad reports less; the rule is round-off).
    activation, f, df, kinks = KINKED[key]
    second, derivative = meanfield.second_moments(activation, q)
    assert second == pytest.approx(expect_split(lambda x: f(x) ** 2, q, kinks), abs=1e-12)
    assert derivative == pytest.approx(expect_split(lambda x: df(x) ** 2, q, kinks), abs=1e-12)


def test_hardtanh_critical_point_is_exact():
    # Closed forms with a = 1/√q: E[hardtanh′(u)²] = P(|z| < a) = erf(a/√2) and
    # E[hardtanh(u)²] = q (erf(a/√2) − 2a ϕ(a)) + erfc(a/√2). On the critical line
    # σ_w² = 1/E[φ′²] and σ_b² = q − σ_w² E[φ²]: solve σ_b² = 0.05 for q.
    def point(q: float) -> tuple[float, float]:
        a = 1 / math.sqrt(q)
        inside = special.erf(a / math.sqrt(2))
        density = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
        second = q * (inside - 2 * a * density) + special.erfc(a / math.sqrt(2))
        weight_var = 1 / inside
        return weight_var, q - weight_var * second

    q = optimize.brentq(lambda q: point(q)[1] - 0.05, 0.06, 10.0, xtol=1e-15, rtol=1e-15)
    expected = point(q)[0]
    assert expected == pytest.approx(1.165545, abs=1e-6)  # the value the brief quotes
    # χ₁ is bisected to round-off; 1e-10 covers the fixed point's relative 1e-12.
    got = meanfield.critical_weight_var(nn.Hardtanh(), bias_var=0.05)
    assert got == pytest.approx(expected, rel=1e-10)
    mf = meanfield.analyze(nn.Hardtanh(), got, 0.05)
    assert mf.q_star == pytest.approx(q, rel=1e-9) and mf.q_stable


@pytest.mark.parametrize("q", [0.3, 1.7])
def test_kinked_kernel_near_zero_correlation_is_exact(q):
    # Mehler: E[φ(u₁)φ(u₂)] = a₀² + a₁² c + O(c²) with a₀ = E[φ(√q z)] and, by Stein,
    # a₁ = E[φ(√q z) z] = √q E[φ′(√q z)]: the Hermite coefficients from a rule split at the
    # kinks (−0.5 and 2 lie inside panels at these q). The central difference with h = 1e-4
    # errs by h² Σₖ₌₃ k(k−1)(k−2)/6 aₖ² ≤ 1e-8 E[φ′²]-sized terms; 1e-7 covers it, and the
    # tail bound T (≤ 1e-6 here) enters only the value.
    activation, f, df, kinks = KINKED["Hardtanh(-0.5, 2)"]
    mean = expect_split(f, q, kinks)
    slope = q * expect_split(df, q, kinks) ** 2
    values = meanfield.kernel(activation, q, [-1e-4, 0.0, 1e-4])
    second = expect_split(lambda x: f(x) ** 2, q, kinks)
    tail = hermite_tail(activation, q, second)
    assert values[1] == pytest.approx(mean**2, abs=tail + ROUND_OFF)
    assert (values[2] - values[0]) / 2e-4 == pytest.approx(slope, abs=1e-7)


# ------------------------------------------------------------------ c* with a bias


def _tanh_array_derivative(x: np.ndarray) -> np.ndarray:
    return 1 - np.tanh(x) ** 2


def _logistic_derivative(x: np.ndarray) -> np.ndarray:
    s = special.expit(x)
    return s * (1 - s)


@pytest.mark.parametrize(
    "name, weight_var, bias_var",
    [("tanh", 4.0, 0.5), ("sigmoid", 150.0, 0.5)],
)
def test_chaotic_c_star_with_bias_against_two_dimensional_quadrature(name, weight_var, bias_var):
    # With σ_b² > 0 the bias enters C(c) = (σ_w² E[φ(u₁)φ(u₂)] + σ_b²)/q*: c* > 0 even
    # for tanh. Reference: q* by brentq on the 1-D rule, C by the product rule (exact to
    # ~1e-15, see gauss_legendre_normal), c* by brentq on C(c) − c over [0, 0.999]
    # (C(0) > 0 and C − c < 0 just below 1 since χ₁ > 1), χ_c = σ_w² E[φ′(u₁)φ′(u₂)].
    f, df = (
        (np.tanh, _tanh_array_derivative) if name == "tanh" else (_logistic, _logistic_derivative)
    )
    z, w = gauss_legendre_normal()

    def gap(q: float) -> float:
        return weight_var * float(w @ f(math.sqrt(q) * z) ** 2) + bias_var - q

    q = optimize.brentq(gap, 1e-3, 1e4, xtol=1e-14, rtol=1e-14)

    def h(c: float) -> float:
        return (weight_var * two_dimensional_kernel(f, q, c) + bias_var) / q - c

    assert h(0.0) > 0 > h(0.999)
    c_star = optimize.brentq(h, 0.0, 0.999, xtol=1e-14, rtol=1e-14)
    chi_c = weight_var * two_dimensional_kernel(df, q, c_star)
    mf = meanfield.analyze(name, weight_var, bias_var)
    assert mf.phase == "chaotic"
    assert mf.q_star == pytest.approx(q, rel=1e-10)
    # The library's map errs by at most ε = correlation_error for c ≥ 0 (1e-6 for the
    # logistic at q* = 68, far less for tanh), so c* moves by at most ε/(1 − χ_c). Its
    # slope misses the tail term's, σ_w²/q* κ T c*^(κ−1) with κ ≥ 257, which is below ε
    # for c* < 0.97; 1e-9 covers round-off and q*'s relative 1e-12.
    bound = mf.correlation_error / (1 - chi_c) + 1e-9
    assert mf.c_star == pytest.approx(c_star, abs=bound)
    assert c_star < 0.97
    assert mf.chi_c == pytest.approx(chi_c, abs=bound)


# ------------------------------------------------------- c* at a large variance fixed point


def _gelu_array(u: np.ndarray) -> np.ndarray:
    return u * special.ndtr(u)


def _gelu_array_derivative(u: np.ndarray) -> np.ndarray:
    return special.ndtr(u) + u * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


def _silu_array(u: np.ndarray) -> np.ndarray:
    return u * special.expit(u)


def _silu_array_derivative(u: np.ndarray) -> np.ndarray:
    s = special.expit(u)
    return s * (1 + u * (1 - s))


def _graded_normal_rule(fine: float, reach: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """E[g(z)] by 16-node Gauss–Legendre on panels of ``fine`` over ±reach, 1/4 beyond (to ±9)."""
    x, w = np.polynomial.legendre.leggauss(16)
    edges = np.unique(
        np.concatenate([np.arange(-9, -reach, 0.25), np.arange(-reach, reach + fine / 2, fine)])
    )
    edges = np.unique(np.concatenate([edges, -edges]))
    left, width = edges[:-1, None], np.diff(edges)[:, None]
    z = (left + (x + 1) / 2 * width).ravel()
    weights = (w * width / 2).ravel() * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    return z, weights


@pytest.mark.parametrize("name, weight_var, bias_var", [("gelu", 1.99, 1.0), ("silu", 1.99, 1.5)])
def test_c_star_at_a_large_variance_against_two_dimensional_quadrature(name, weight_var, bias_var):
    # q* ≈ 195 (GELU) and 269 (SiLU): c* ≈ 0.999, where Mehler's series, 256 terms
    # and a tail term, left c* off by 3e-5 and 1.6e-5 and ξ_c 1 % and 0.6 % low.
    # Reference, not Mehler: u₁ = √q z₁, u₂ = √q (c z₁ + √(1−c²) z₂), the inner
    # expectation over z₂ on a plain rule (φ(u₂) changes over z₂ ~ 1/(√q √(1−c²)) ≈ 2)
    # and the outer over z₁ on panels of 1/50 within ±0.6 (φ(u₁) changes over 1/√q ≈
    # 0.07, the inner expectation over √(1−c²) ≈ 0.04); halving those panels moves c*
    # by less than 1e-12. q* by brentq on the outer rule, c* by brentq on C(c) − c.
    f, df = {
        "gelu": (_gelu_array, _gelu_array_derivative),
        "silu": (_silu_array, _silu_array_derivative),
    }[name]
    z1, w1 = _graded_normal_rule(1 / 50)
    z2, w2 = gauss_legendre_normal(panel=0.5, nodes=16)

    def gap(q: float) -> float:
        return weight_var * float(w1 @ f(math.sqrt(q) * z1) ** 2) + bias_var - q

    q = optimize.brentq(gap, 10.0, 1e4, xtol=1e-13, rtol=1e-15)

    def kernel(g, c: float) -> float:
        u1 = math.sqrt(q) * z1
        u2 = math.sqrt(q) * (c * z1[:, None] + math.sqrt(1 - c * c) * z2[None, :])
        return float(w1 @ (g(u1) * (g(u2) @ w2)))

    def h(c: float) -> float:
        return (weight_var * kernel(f, c) + bias_var) / q - c

    c_star = optimize.brentq(h, 0.99, 0.9999, xtol=1e-14, rtol=1e-15)
    chi_c = weight_var * kernel(df, c_star)
    mf = meanfield.analyze(name, weight_var, bias_var)
    assert mf.chi_1 > 1  # by 0.3 %: "critical" by name, c* < 1 all the same
    assert mf.q_star == pytest.approx(q, rel=1e-10)
    assert mf.c_star == pytest.approx(c_star, abs=1e-9)
    assert mf.chi_c == pytest.approx(chi_c, abs=1e-10)
    assert mf.xi_c == pytest.approx(-1 / math.log(chi_c), rel=1e-6)


@pytest.mark.parametrize("name", ["gelu", "silu", "mish"])
def test_no_critical_point_without_bias_for_gelu_silu_mish(name):
    # At σ_b² = 0 a fixed point q needs σ_w² = q/E[φ(√q z)²], where the variance map's
    # slope is the elasticity q V′(q)/V(q); it exceeds 1 for these activations (checked
    # by quad at q = 0.1, 1, 10; their V(q)/q increases), so every such fixed point is
    # unstable and the critical line has no point: χ₁ = 1 crossings exist but must not
    # count.
    f, df = SMOOTH.get(name, (_mish, _mish_derivative))
    for q in (0.1, 1.0, 10.0):
        elasticity = expect(lambda x: f(x) * df(x) * x, q) / expect(lambda x: f(x) ** 2, q)
        assert elasticity > 1
    assert meanfield.critical_weight_var(name, bias_var=0.0) is None
    assert np.isnan(meanfield.critical_line(name, [0.0])).all()


@pytest.mark.parametrize("q", [0.3, 1.0, 4.0])
def test_relu_kernel_tail_sign_at_minus_one(q):
    # relu(x) = x/2 + |x|/2: past degree 1 its Hermite series has only even terms, so the
    # missing tail is even and the tail term's sign for c < 0 must be (+1) there: the
    # arc-cosine kernel's value at c = −1 (0: relu(u) relu(−u) = 0) is then met to
    # round-off, not only within the documented 2T (T ≈ 1e-5 q here).
    tail = hermite_tail("relu", q, second=q / 2)
    assert tail > 1e-6 * q
    assert abs(float(meanfield.kernel("relu", q, -1.0))) <= ROUND_OFF * q


# ------------------------------------------------------------ centred activations


def _logistic_scalar(x: float) -> float:
    return float(special.expit(x))


def test_centred_logistic_is_tanh_at_a_quarter_of_the_variances():
    """σ(x) − ½ = tanh(x/2)/2: the centred logistic at (σ_w², σ_b²) is tanh at
    (σ_w²/16, σ_b²/4) in the variable h/2, so its critical σ_w² is 16 × tanh's."""
    for bias_var in (0.0, 0.05, 0.2):
        expected = 16 * (1.0 if bias_var == 0 else tanh_critical_weight_var(bias_var / 4))
        got = meanfield.critical_weight_var("sigmoid", bias_var, centred=True)
        assert got == pytest.approx(expected, rel=1e-6 if bias_var == 0 else QUAD)


def _expect_wide(g: Callable[[float], float], q: float) -> float:
    """E[g(√q z)] by scipy's quad on [−14√q, 14√q] split at 0 (softplus² grows as x²,
    where _quad's 1e-11 error bound is just missed: 1.2e-11 here)."""
    scale = math.sqrt(q)
    total = 0.0
    for low, high in ((-14.0, 0.0), (0.0, 14.0)):
        value, error = integrate.quad(
            lambda z: g(scale * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
            low,
            high,
            epsabs=1e-13,
            epsrel=1e-13,
            limit=200,
        )
        assert error < 1e-10
        total += value
    return total


def _centred_critical_point(
    function, derivative, bias_var: float, centred: bool = True
) -> tuple[float, float]:
    """(σ_w², q*) of φ − E[φ] from scipy quad: σ_w² = 1/E[φ′²] and q = σ_w² Var[φ] + σ_b²,
    the first root in q of r(q) + σ_b² − q with r = Var[φ]/E[φ′²], where the centred
    variance map is stable (slope < 1, checked by a finite difference)."""

    def moments(q: float) -> tuple[float, float, float]:
        mean = _expect_wide(function, q) if centred else 0.0
        variance = _expect_wide(lambda x: function(x) ** 2, q) - mean**2
        return mean, variance, _expect_wide(lambda x: derivative(x) ** 2, q)

    def gap(log_q: float) -> float:
        q = math.exp(log_q)
        _, variance, slope2 = moments(q)
        return variance / slope2 + bias_var - q

    grid = np.linspace(math.log(1e-3), math.log(1e3), 61)
    values = [gap(g) for g in grid]
    for lo, hi, a, b in zip(grid[:-1], grid[1:], values[:-1], values[1:], strict=True):
        if a * b < 0:
            q = math.exp(optimize.brentq(gap, lo, hi, xtol=1e-14, rtol=1e-13))
            weight_var = 1 / moments(q)[2]
            step = 1e-5 * q
            slope = weight_var * (moments(q + step)[1] - moments(q - step)[1]) / (2 * step)
            if slope < 1:
                return weight_var, q
    return math.nan, math.nan


@pytest.mark.parametrize("bias_var", [0.05, 2.0])
def test_centred_softplus_critical_point_against_quadrature(bias_var):
    weight_var, q_star = _centred_critical_point(
        lambda x: float(np.logaddexp(0.0, x)), _logistic_scalar, bias_var
    )
    point = meanfield.init_point("softplus", bias_var=bias_var, centred=True)
    assert point.weight_var == pytest.approx(weight_var, rel=1e-8)
    assert point.q_star == pytest.approx(q_star, rel=1e-8)
    assert point.mean == pytest.approx(
        _expect_wide(lambda x: float(np.logaddexp(0.0, x)), q_star), rel=1e-8
    )


def test_centred_logistic_critical_point_against_quadrature():
    weight_var, q_star = _centred_critical_point(
        _logistic_scalar, lambda x: _logistic_scalar(x) * (1 - _logistic_scalar(x)), 0.05
    )
    point = meanfield.init_point("sigmoid", bias_var=0.05, centred=True)
    assert (point.weight_var, point.q_star) == pytest.approx((weight_var, q_star), rel=1e-8)
    assert point.mean == 0.5


def test_centred_softplus_has_no_critical_point_at_zero_bias():
    """Near q = 0, softplus − E ≈ x/2 + (x² − q)/8: at σ_w² = 4 (χ₁ → 1) the variance map
    is q + q²/8 > q, so no stable fixed point with χ₁ = 1."""
    assert meanfield.critical_weight_var("softplus", 0.0, centred=True) is None
    assert _centred_critical_point(
        lambda x: float(np.logaddexp(0.0, x)), _logistic_scalar, 1e-12
    ) == pytest.approx((math.nan, math.nan), nan_ok=True)


@pytest.mark.parametrize("activation", ["sigmoid", "softplus", "gelu", "elu"])
def test_centred_variance_map_and_its_slope_against_quadrature(activation):
    function = {
        "sigmoid": _logistic_scalar,
        "softplus": lambda x: float(np.logaddexp(0.0, x)),
        "gelu": lambda x: x * 0.5 * (1 + math.erf(x / math.sqrt(2))),
        "elu": lambda x: x if x > 0 else math.expm1(x),
    }[activation]
    weight_var, bias_var, q = 1.7, 0.1, 0.8

    def centred_map(q: float) -> float:
        return weight_var * centred_map_at(function, q) + bias_var

    got = float(meanfield.variance_map(activation, weight_var, bias_var, q, centred=True))
    assert got == pytest.approx(centred_map(q), rel=QUAD)
    raw = float(meanfield.variance_map(activation, weight_var, bias_var, q))
    assert raw - got == pytest.approx(weight_var * _expect_wide(function, q) ** 2, rel=1e-8)
    mf = meanfield.analyze(activation, 2.2, 0.3, centred=True)
    step = 1e-5 * mf.q_star
    slope = 2.2 * (
        (centred_map_at(function, mf.q_star + step) - centred_map_at(function, mf.q_star - step))
        / (2 * step)
    )
    assert mf.q_slope == pytest.approx(slope, rel=1e-6)


def centred_map_at(function, q: float) -> float:
    mean = _expect_wide(function, q)
    return _expect_wide(lambda x: function(x) ** 2, q) - mean**2


def test_centring_is_on_by_default_only_where_the_mean_dominates_at_every_variance():
    # The logistic's mean is ½ at any q; softplus's grows with q (its centring would not
    # survive training), GELU's is below its standard deviation.
    assert [meanfield.centres(a) for a in ("sigmoid", "softplus")] == [True, False]
    assert meanfield.centres(nn.Hardsigmoid())
    assert not any(meanfield.centres(a) for a in ("tanh", "selu", "relu", "elu", "gelu"))
    assert meanfield.init_point("sigmoid").centred
    assert not meanfield.init_point("sigmoid", centred=False).centred


# ------------------------------------------------------------ heterogeneous chains

CYCLE = (
    nn.GELU(),
    nn.Tanh(),
    nn.LeakyReLU(0.1),
    nn.SELU(),
    nn.SiLU(),
    nn.ELU(),
    nn.Sigmoid(),
    nn.ReLU(),
)


def _cycle_layers(depth: int) -> list:
    acts = [CYCLE[i % len(CYCLE)] for i in range(depth)]
    return (
        [(None, acts[0])] + [(acts[i - 1], acts[i]) for i in range(1, depth)] + [(acts[-1], None)]
    )


def test_init_chain_puts_every_hidden_layer_of_a_mixed_cycle_at_chi_one():
    plan = meanfield.init_chain(_cycle_layers(24))
    hidden = plan.layers[1:-1]
    assert all(layer.chi == pytest.approx(1.0, abs=1e-9) for layer in hidden)
    assert [layer.phase for layer in plan.layers[:2]] == ["input", "critical"]
    assert plan.layers[-1].phase == "output"
    assert plan.phase == "critical" and plan.trainable
    # Every pre-activation within the useful range of the activation it feeds.
    for layer, (_, consumer) in zip(plan.layers[:-1], _cycle_layers(24)[:-1], strict=True):
        own = meanfield.init_point(consumer).q_star
        assert layer.q <= meanfield.USEFUL_RANGE * own * (1 + 1e-9), (layer, own)
    # The logistic is read centred: its layers' offset is its mean, ½.
    offsets = [layer.offset for layer in hidden if layer.reads.startswith("sigmoid")]
    assert offsets == pytest.approx([0.5] * 3)


def test_init_chain_of_one_activation_is_its_critical_point():
    for name in ("tanh", "relu", "sigmoid", "elu"):
        plan = meanfield.init_chain([(None, name)] + [(name, name)] * 5 + [(name, None)])
        point = meanfield.init_point(name)
        assert {(layer.weight_var, layer.bias_var) for layer in plan.layers[1:-1]} == {
            (point.weight_var, point.bias_var)
        }


def test_chain_cumulative_factor_is_the_product_of_the_factors_above():
    plan = meanfield.init_chain(_cycle_layers(10))
    chis = [layer.chi for layer in plan.layers]
    for index, layer in enumerate(plan.layers):
        above = [c for c in chis[index + 1 :] if c is not None]
        assert layer.cumulative == pytest.approx(math.prod(above), rel=1e-12)


CHAIN_WIDTH, CHAIN_NETS, CHAIN_DEPTH, CHAIN_BATCH = 400, 8, 16, 48


@pytest.fixture(scope="module")
def chain_simulated():
    """CHAIN_NETS random nets of the mixed cycle, Gaussian weights N(0, σ_w²/n) and biases
    N(0, σ_b²) − m·W𝟙 as init_chain plans them: per net, each layer's mean h² and the mean
    squared gradient at each layer's pre-activations over the logits' (a N(0, 1) gradient
    put at the logits), by autograd through the very weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    layers = _cycle_layers(CHAIN_DEPTH)
    plan = meanfield.init_chain(layers)
    generator = torch.Generator().manual_seed(7)
    q = np.empty((CHAIN_NETS, len(layers)))
    grad = np.empty((CHAIN_NETS, len(layers)))
    try:
        for net in range(CHAIN_NETS):
            x = torch.randn(CHAIN_BATCH, CHAIN_WIDTH, dtype=torch.float64, generator=generator)
            h, pre = x.requires_grad_(True), []
            for index, step in enumerate(plan.layers):
                if index:
                    h = layers[index][0](h)
                n = h.shape[1]
                w = torch.randn(CHAIN_WIDTH, n, dtype=torch.float64, generator=generator)
                w = w * math.sqrt(step.weight_var / n)
                b = torch.randn(CHAIN_WIDTH, dtype=torch.float64, generator=generator)
                b = b * math.sqrt(step.bias_var) - step.offset * w.sum(dim=1)
                h = h @ w.T + b
                h.retain_grad()
                pre.append(h)
            delta = torch.randn(h.shape, dtype=torch.float64, generator=generator)
            h.backward(delta)
            for index, p in enumerate(pre):
                q[net, index] = float((p.detach() ** 2).mean())
                grad[net, index] = float((p.grad**2).mean() / (delta**2).mean())
    finally:
        torch.set_num_threads(threads)
    return plan, q, grad


def test_chain_variances_and_gradients_agree_with_wide_random_nets(chain_simulated):
    """Tolerance: 6 standard errors over CHAIN_NETS = 8 nets (Student t, 7 degrees of
    freedom: P(|t| > 6) = 5e-4 per comparison, 3 % over the 2 × 17 layers by the union
    bound) plus 15/n for the O(1/n) finite-width corrections the maps leave out and
    that accumulate over 17 layers."""
    plan, q, grad = chain_simulated
    predicted_q = np.array([layer.q for layer in plan.layers])
    predicted_grad = np.array([layer.cumulative for layer in plan.layers])
    for samples, predicted in ((q, predicted_q), (grad, predicted_grad)):
        se = samples.std(axis=0, ddof=1) / math.sqrt(CHAIN_NETS)
        tolerance = 6 * se + 15 / CHAIN_WIDTH * predicted
        error = np.abs(samples.mean(axis=0) - predicted)
        assert (error <= tolerance).all(), (error / tolerance).round(2)
    # Sharp enough to see a wrong offset: without the logistic's centring the layer after
    # each logistic has a larger q by σ_w² × ¼ (≈ 5), far outside the tolerance.
    after_logistic = [i for i, layer in enumerate(plan.layers) if layer.reads.startswith("sigmoid")]
    for i in after_logistic:
        assert abs(q[:, i].mean() - (predicted_q[i] + plan.layers[i].weight_var / 4)) > 1


def _selu_scalar(x: float) -> float:
    alpha, scale = 1.6732632423543772848, 1.0507009873554804934
    return scale * (x if x > 0 else alpha * math.expm1(x))


def _selu_derivative(x: float) -> float:
    alpha, scale = 1.6732632423543772848, 1.0507009873554804934
    return scale * (1.0 if x > 0 else alpha * math.exp(x))


def _gelu_scalar(x: float) -> float:
    return x * 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _gelu_derivative(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2))) + x * math.exp(-x * x / 2) / math.sqrt(
        2 * math.pi
    )


@pytest.mark.parametrize(
    ("activation", "function", "derivative", "bias_var"),
    [
        (
            "elu",
            lambda x: x if x > 0 else math.expm1(x),
            lambda x: 1.0 if x > 0 else math.exp(x),
            0.05,
        ),
        (
            "elu",
            lambda x: x if x > 0 else math.expm1(x),
            lambda x: 1.0 if x > 0 else math.exp(x),
            0.5,
        ),
        ("selu", _selu_scalar, _selu_derivative, 0.05),
        ("gelu", _gelu_scalar, _gelu_derivative, 0.5),
        (
            "sigmoid",
            _logistic_scalar,
            lambda x: _logistic_scalar(x) * (1 - _logistic_scalar(x)),
            0.05,
        ),
    ],
)
def test_uncentred_critical_points_against_quadrature(activation, function, derivative, bias_var):
    """The first stable root of r(q) + σ_b² = q, r = E[φ²]/E[φ′²], by scipy quad and brentq
    (the logistic's at q* ≈ 45.6, past the scan's upper end: checked against the fixed point
    instead)."""
    got = meanfield.critical_weight_var(activation, bias_var, centred=False)
    assert got is not None
    if activation == "sigmoid":
        q_star = meanfield.analyze(activation, got, bias_var).q_star
        chi = got * _expect_wide(lambda x: derivative(x) ** 2, q_star)
        mapped = got * _expect_wide(lambda x: function(x) ** 2, q_star) + bias_var
        assert (chi, mapped) == pytest.approx((1.0, q_star), rel=1e-8)
        return
    weight_var, _ = _centred_critical_point(function, derivative, bias_var, centred=False)
    assert got == pytest.approx(weight_var, rel=1e-8)


@pytest.mark.parametrize("weight_var", [1.5337183780352726, 1.5337183865471524])
def test_just_above_the_critical_line_the_depth_scale_is_huge_not_nan(weight_var):
    """ELU at σ_b² = 0.05 with σ_w² a hair above its critical 1.53371833 (autoinit's
    weights as read back from a trained run's record): χ₁ − 1 ≈ 1e-8, so ξ_c is at
    least 1/(χ₁ − 1)-ish — huge, finite or ∞, never NaN (the report's phase column)."""
    mf = meanfield.analyze("elu", weight_var, 0.05)
    assert mf.phase == "critical"
    assert mf.xi_c > 1e6 and not math.isnan(mf.trainable_depth)
