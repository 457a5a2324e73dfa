"""signalprop.gains: gains by quadrature for any activation, recommend_init, selu_parameters.

Every expected number is computed here, independently of the library: closed forms for
the piecewise-linear activations and SELU, and scipy's adaptive ``quad`` (split at 0, the
kink of ReLU-like functions) for the smooth ones, with derivatives written by hand.

Tolerances. The library integrates with composite Gauss–Legendre, exact to round-off
(~1e-15) for integrands that are smooth on each panel; closed forms are therefore
compared at 1e-12 relative (a few hundred ulps: round-off of a 1536-term sum). scipy's
``quad`` is asked for 1e-13 and reports errors far below; comparisons against it use
1e-10, which leaves three orders of magnitude for both sides' round-off and for PyTorch's
float64 kernels (softplus switches to the identity above 20, an error below
2e-9 · φ(20) ≈ 1e-96).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special
from torch import nn

import signalprop as sp
from _quad import normal_expectation

#: Relative tolerance for closed forms (see the module docstring).
EXACT = 1e-12
#: Absolute tolerance against scipy's quad (see the module docstring).
QUAD = 1e-10

#: SELU's constants as published by Klambauer et al. (2017), to 20 digits.
PAPER_ALPHA = 1.6732632423543772848
PAPER_SCALE = 1.0507009873554804934


# ------------------------------------------------------------------ reference integrals


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _softplus(z: float) -> float:
    return float(np.logaddexp(0.0, z))


def _mish(z: float) -> float:
    return z * math.tanh(_softplus(z))


def _mish_derivative(z: float) -> float:
    t = math.tanh(_softplus(z))
    return t + z * (1 - t * t) * float(special.expit(z))


def _elu(z: float) -> float:
    return z if z > 0 else math.expm1(z)


#: name -> (f, f′), written from the definitions.
SMOOTH: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "tanh": (math.tanh, lambda z: 1 - math.tanh(z) ** 2),
    "sigmoid": (
        lambda z: float(special.expit(z)),
        lambda z: float(special.expit(z) * special.expit(-z)),
    ),
    "elu": (_elu, lambda z: 1.0 if z > 0 else math.exp(z)),
    "gelu": (
        lambda z: z * float(special.ndtr(z)),
        lambda z: float(special.ndtr(z)) + z * _phi(z),
    ),
    "silu": (
        lambda z: z * float(special.expit(z)),
        lambda z: float(special.expit(z)) * (1 + z * float(special.expit(-z))),
    ),
    "mish": (_mish, _mish_derivative),
    "softplus": (_softplus, lambda z: float(special.expit(z))),
}


def reference_second(name: str) -> float:
    f, _ = SMOOTH[name]
    return normal_expectation(lambda z: f(z) ** 2)


# ------------------------------------------------------------------ closed forms


def test_relu_gain_is_sqrt2_in_both_modes():
    assert sp.gain("relu") == pytest.approx(math.sqrt(2), rel=EXACT)
    assert sp.gain("relu", mode="backward") == pytest.approx(math.sqrt(2), rel=EXACT)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.2, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("mode", ["forward", "backward"])
def test_leaky_relu_gain_closed_form(alpha, mode):
    # E[f²] = E[f′²] = (1 + α²) / 2 for the slope α on the negative half.
    assert sp.gain("leaky_relu", mode=mode, alpha=alpha) == pytest.approx(
        math.sqrt(2 / (1 + alpha**2)), rel=EXACT
    )


@pytest.mark.parametrize("slope", [0.1, 0.25])
@pytest.mark.parametrize("module", [nn.PReLU, sp.activations.PReLU])
def test_prelu_module_uses_its_current_slope(module, slope):
    prelu = module()
    with torch.no_grad():
        prelu.weight.fill_(slope)
    # The slope the module really holds is the float32 nearest to ``slope`` (0.1 is not
    # representable; 0.25 is): √(2 / (1 + α²)) with that α.
    alpha = float(np.float32(slope))
    expected = math.sqrt(2 / (1 + alpha**2))
    assert sp.gain(prelu) == pytest.approx(expected, rel=EXACT)
    assert sp.gain(prelu, mode="backward") == pytest.approx(expected, rel=EXACT)


def test_per_channel_prelu_averages_the_second_moment_over_channels():
    slopes = [0.25, 0.5, 0.75]  # exact in float32
    prelu = nn.PReLU(num_parameters=3)
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor(slopes))
    second = (1 + sum(a * a for a in slopes) / len(slopes)) / 2
    moments = sp.moments(prelu)
    assert moments.second == pytest.approx(second, rel=EXACT)
    assert moments.derivative_second == pytest.approx(second, rel=EXACT)
    assert moments.mean == pytest.approx(
        sum((1 - a) / math.sqrt(2 * math.pi) for a in slopes) / 3, rel=EXACT
    )
    assert sp.gain(prelu) == pytest.approx(1 / math.sqrt(second), rel=EXACT)


def test_gain_does_not_modify_the_module_it_is_given():
    # Computing a gain must leave the caller's module as it was: dtype and mode.
    prelu = nn.PReLU()
    prelu.eval()
    sp.gain(prelu)
    assert prelu.weight.dtype == torch.float32
    assert not prelu.training


@pytest.mark.parametrize(
    ("make", "lower", "upper"),
    [
        (lambda: nn.RReLU(0.1, 0.3), 0.1, 0.3),
        (lambda: sp.activations.RReLU(), 1 / 8, 1 / 3),
    ],
)
def test_rrelu_in_training_mode_uses_its_eval_slope(make, lower, upper):
    rrelu = make()
    assert rrelu.training  # a random slope per element: the gain must not depend on it
    slope = (lower + upper) / 2
    expected = math.sqrt(2 / (1 + slope**2))
    assert sp.gain(rrelu) == pytest.approx(expected, rel=EXACT)
    assert sp.gain(rrelu) == pytest.approx(expected, rel=EXACT)  # no randomness
    assert rrelu.training  # left in its mode


def test_selu_forward_gain_is_exactly_one_and_backward_has_a_closed_form():
    assert sp.gain("selu") == pytest.approx(1.0, abs=1e-12)
    # E[f′²] = λ² (1/2 + α² E[e^{2z}; z < 0]) = λ² (1/2 + α² e² Φ(−2)).
    derivative_second = PAPER_SCALE**2 * (0.5 + PAPER_ALPHA**2 * math.e**2 * special.ndtr(-2))
    assert sp.gain("selu", mode="backward") == pytest.approx(
        1 / math.sqrt(derivative_second), rel=EXACT
    )


@pytest.mark.parametrize("mode", ["forward", "backward"])
def test_linear_gain_is_one(mode):
    assert sp.gain("linear", mode=mode) == pytest.approx(1.0, rel=EXACT)


def test_exp_has_finite_moments_under_the_normal_density():
    # E[e^{2z}] = e² for z ~ N(0, 1), and f′ = f: both gains are e^{−1}.
    assert sp.gain(torch.exp) == pytest.approx(math.exp(-1), abs=1e-10)
    assert sp.gain(torch.exp, mode="backward") == pytest.approx(math.exp(-1), abs=1e-10)
    assert sp.moments(torch.exp).mean == pytest.approx(math.exp(0.5), rel=1e-10)


# ------------------------------------------------------------------ smooth activations


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_moments_match_scipy_quadrature(name):
    f, derivative = SMOOTH[name]
    moments = sp.moments(name)
    assert moments.mean == pytest.approx(normal_expectation(f), abs=QUAD)
    assert moments.second == pytest.approx(normal_expectation(lambda z: f(z) ** 2), abs=QUAD)
    assert moments.derivative_second == pytest.approx(
        normal_expectation(lambda z: derivative(z) ** 2), abs=QUAD
    )


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_gains_match_scipy_quadrature(name):
    f, derivative = SMOOTH[name]
    forward = 1 / math.sqrt(normal_expectation(lambda z: f(z) ** 2))
    backward = 1 / math.sqrt(normal_expectation(lambda z: derivative(z) ** 2))
    # 1e-10 absolute on moments of order 0.05–1 is at most ~1e-8 relative on the gains.
    assert sp.gain(name) == pytest.approx(forward, rel=1e-8)
    assert sp.gain(name, mode="backward") == pytest.approx(backward, rel=1e-8)


@pytest.mark.parametrize(
    ("name", "published", "digits"),
    [
        ("sigmoid", 0.2934, 4),
        ("tanh", 0.3943, 4),
        ("relu", 0.5, 4),
        ("leaky_relu", 0.545, 3),  # at the default α = 0.3
        ("elu", 0.645, 3),
        ("selu", 1.0, 4),
    ],
)
def test_second_moments_agree_with_the_published_table(name, published, digits):
    assert round(sp.moments(name).second, digits) == published


# ------------------------------------------------------------------ what it accepts


def test_accepts_names_modules_functions_and_callables():
    root2 = math.sqrt(2)
    assert sp.gain("relu") == pytest.approx(root2, rel=EXACT)
    assert sp.gain(nn.ReLU()) == pytest.approx(root2, rel=EXACT)
    assert sp.gain(sp.activations.ReLU()) == pytest.approx(root2, rel=EXACT)
    assert sp.gain(torch.relu) == pytest.approx(root2, rel=EXACT)
    assert sp.gain(sp.activations.relu) == pytest.approx(root2, rel=EXACT)
    # Twice the ReLU: E[f²] = 4 · 1/2 = 2, gain 1/√2.
    assert sp.gain(lambda z: torch.relu(z) * 2) == pytest.approx(root2 / 2, rel=EXACT)


def test_accepts_torch_modules_with_their_own_arguments():
    # torch's own LeakyReLU and ELU, with their argument names.
    assert sp.gain(nn.LeakyReLU(negative_slope=0.3)) == pytest.approx(
        math.sqrt(2 / 1.09), rel=EXACT
    )
    assert sp.gain(nn.Tanh()) == pytest.approx(1 / math.sqrt(reference_second("tanh")), rel=1e-8)
    assert sp.gain(nn.GELU()) == pytest.approx(1 / math.sqrt(reference_second("gelu")), rel=1e-8)


# ------------------------------------------------------------------ errors


def test_non_integrable_square_raises():
    with pytest.raises(
        ValueError,
        match=r"The 'activation' parameter of moments must be an activation whose square "
        r"is integrable under the normal density",
    ):
        sp.gain(lambda z: torch.exp(z * z))


def test_non_finite_values_raise():
    with pytest.raises(
        ValueError,
        match=r"The 'activation' parameter of moments must be an activation with finite values",
    ):
        sp.gain(lambda z: z / 0)


@pytest.mark.parametrize("softmax", ["softmax", nn.Softmax(dim=-1), sp.activations.Softmax()])
def test_softmax_is_refused(softmax):
    with pytest.raises(
        ValueError,
        match=r"The 'activation' parameter of moments must be an elementwise activation",
    ):
        sp.gain(softmax)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(
        ValueError,
        match=r"The 'activation' parameter of .* Got 'reluu' instead\. Did you mean 'relu'",
    ):
        sp.gain("reluu")


def test_params_with_a_module_raise():
    with pytest.raises(
        ValueError, match=r"The 'params' parameter of moments must be given only with an activation"
    ):
        sp.gain(nn.LeakyReLU(), alpha=0.2)


def test_bad_mode_raises():
    with pytest.raises(
        ValueError,
        match=r"The 'mode' parameter of gain must be one of \['backward', 'forward'\]\. "
        r"Got 'fwd' instead\. Did you mean 'forward'\?",
    ):
        sp.gain("relu", mode="fwd")


@pytest.mark.parametrize("activation", [3, None, 1.5])
def test_non_callable_raises(activation):
    with pytest.raises(
        ValueError,
        match=r"The 'activation' parameter of moments must be an activation name, module or "
        r"callable",
    ):
        sp.gain(activation)


def test_zero_function_raises():
    with pytest.raises(ValueError, match=r"must be an activation that is not zero everywhere"):
        sp.gain(lambda z: z * 0)


# ------------------------------------------------------------------ the whole registry


@pytest.mark.parametrize("name", [n for n in sp.activations.names() if n != "softmax"])
def test_every_registered_activation_has_a_finite_positive_gain(name):
    for mode in ("forward", "backward"):
        value = sp.gain(name, mode=mode)
        assert math.isfinite(value)
        assert value > 0


def test_against_torch_calculate_gain():
    calculate = nn.init.calculate_gain
    assert sp.gain("relu") == pytest.approx(calculate("relu"), rel=EXACT)
    assert sp.gain("linear") == pytest.approx(calculate("linear"), rel=EXACT)
    assert sp.gain("leaky_relu", alpha=0.3) == pytest.approx(
        calculate("leaky_relu", 0.3), rel=EXACT
    )
    # The point of the feature: torch's table gives SELU 3/4, which shrinks a
    # self-normalizing net's variance by 9/16 per layer; the variance-preserving gain is 1.
    assert calculate("selu") == 0.75
    assert sp.gain("selu") == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------ recommend_init


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("selu", sp.init.LecunNormal),
        ("relu", sp.init.HeNormal),
        ("leaky_relu", sp.init.HeNormal),
        ("elu", sp.init.HeNormal),
        ("prelu", sp.init.HeNormal),
        ("rrelu", sp.init.HeNormal),
        ("tanh", sp.init.GlorotUniform),
        ("sigmoid", sp.init.GlorotUniform),
    ],
)
def test_recommend_init_table_entries(name, expected):
    assert type(sp.recommend_init(name)) is expected


def test_recommend_init_accepts_modules():
    assert type(sp.recommend_init(nn.SELU())) is sp.init.LecunNormal
    assert type(sp.recommend_init(sp.activations.ReLU())) is sp.init.HeNormal


@pytest.mark.parametrize("name", ["gelu", "silu", "mish", "softplus"])
def test_recommend_init_computes_the_scale_for_other_activations(name):
    initializer = sp.recommend_init(name)
    assert type(initializer) is sp.init.VarianceScaling
    assert initializer.scale == pytest.approx(1 / reference_second(name), rel=1e-8)
    assert initializer.mode == "fan_in"
    assert initializer.distribution == "truncated_normal"


def test_recommend_init_with_params_uses_the_computed_gain():
    initializer = sp.recommend_init("leaky_relu", alpha=0.2)
    assert type(initializer) is sp.init.VarianceScaling
    assert initializer.scale == pytest.approx(2 / (1 + 0.2**2), rel=EXACT)
    assert initializer.mode == "fan_in"
    assert initializer.distribution == "truncated_normal"


# ------------------------------------------------------------------ selu_parameters


def test_selu_parameters_at_zero_one_are_the_published_constants():
    alpha, scale = sp.selu_parameters(0.0, 1.0)
    assert alpha == pytest.approx(PAPER_ALPHA, rel=1e-12)
    assert scale == pytest.approx(PAPER_SCALE, rel=1e-12)


def test_selu_parameters_for_another_fixed_point():
    alpha, scale = sp.selu_parameters(-0.1, 2.0)
    assert alpha == pytest.approx(1.9769, abs=1e-4)
    assert scale == pytest.approx(1.0738, abs=1e-4)


@pytest.mark.parametrize(("mean", "var"), [(0.0, 1.0), (-0.1, 2.0), (0.1, 0.8), (0.05, 1.5)])
def test_selu_parameters_make_mean_and_variance_a_fixed_point(mean, var):
    alpha, scale = sp.selu_parameters(mean, var)

    def selu(z: float) -> float:
        return scale * (z if z > 0 else alpha * math.expm1(z))

    first = normal_expectation(selu, mean, var)
    second = normal_expectation(lambda z: selu(z) ** 2, mean, var)
    # The solver works at 40 digits; quad is good to ~1e-12: 1e-8 is loose on both.
    assert first == pytest.approx(mean, abs=1e-8)
    assert second - first**2 == pytest.approx(var, abs=1e-8)


@pytest.mark.parametrize("var", [0.0, -1.0])
def test_selu_parameters_refuse_a_non_positive_variance(var):
    with pytest.raises(
        ValueError, match=r"The 'var' parameter of selu_parameters must be a finite real number > 0"
    ):
        sp.selu_parameters(0.0, var)


def test_functional_form_agrees_with_the_module():
    # The same function given three ways has one gain (guards the callable path).
    assert sp.gain(F.silu) == pytest.approx(sp.gain(nn.SiLU()), rel=EXACT)
    assert sp.gain(F.silu) == pytest.approx(1 / math.sqrt(reference_second("silu")), rel=1e-8)
