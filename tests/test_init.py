"""signalprop.init: fans, the variance-scaling engine, presets, Keras objects and ``get``.

Random initializers are checked as STYLE.md §11 asks: a Kolmogorov–Smirnov test against
the exact target distribution, a variance check whose tolerance follows from the sample
size, and exact bounds. The expected σ always comes from the papers' formula written
here, σ² = scale / n with n = fan_in, fan_out or (fan_in + fan_out) / 2, and the fans
from a hand computation written in each case; nothing is read back from the library.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from signalprop import init
from signalprop.layers import Dense

# ------------------------------------------------------------------ reference numbers

#: Std of N(0, 1) cut at ±2, from scipy, not from the library.
TRUNC_STD = float(stats.truncnorm(-2, 2).std())

#: κ − 1 (kurtosis minus one) of each target distribution, from scipy's excess kurtosis
#: (κ − 1 = excess + 2). The standard error of s²/σ² over n draws (mean known to be 0) is
#: sqrt((κ − 1) / n).
KAPPA_MINUS_1 = {
    "normal": float(stats.norm.stats(moments="k")) + 2,
    "uniform": float(stats.uniform.stats(moments="k")) + 2,
    "truncated_normal": float(stats.truncnorm(-2, 2).stats(moments="k")) + 2,
}
KAPPA_MINUS_1["untruncated_normal"] = KAPPA_MINUS_1["normal"]

#: Variance checks allow 5 standard errors: a correct sampler fails one with probability
#: about 5.7e-7 (two-sided normal tail), i.e. under 1e-4 for all of this file's checks.
N_SE = 5

#: KS p-value threshold. For a correct sampler the p-value is Uniform(0, 1), so a given
#: seed makes one KS test fail with probability 1e-5 (about 0.1% for all of this file's
#: ~120 KS tests together); the seeds are fixed, so the outcome is deterministic. The KS
#: tests catch a wrong shape (a plain normal for a normal cut at ±2s of the same variance
#: is 0.0167 away in sup-CDF distance: p ≈ 1e-24 at the n = 100 000 used below); a wrong
#: scale is caught by the variance checks, which at n ≥ 18 432 detect a σ off by 2.6%.
KS_P_MIN = 1e-5

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "normal", "uniform")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seed_for(*parts: str) -> int:
    """A distinct, deterministic seed per test case."""
    return zlib.crc32("-".join(parts).encode())


def f32(x: float) -> float:
    """``x`` rounded to float32, as torch rounds a Python bound for a float32 tensor."""
    return float(np.float32(x))


def expected_sigma(scale: float, mode: str, fans: tuple[int, int]) -> float:
    fan_in, fan_out = fans
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return math.sqrt(scale / n)


def target(distribution: str, sigma: float) -> Any:
    """The exact distribution ``distribution`` must draw for standard deviation ``sigma``."""
    if distribution == "uniform":
        r = math.sqrt(3 * sigma**2)
        return stats.uniform(loc=-r, scale=2 * r)
    if distribution in ("normal", "untruncated_normal"):
        return stats.norm(0, sigma)
    assert distribution == "truncated_normal"
    return stats.truncnorm(-2, 2, scale=sigma / TRUNC_STD)


def to_numpy(w: Tensor) -> np.ndarray:
    return w.detach().double().flatten().numpy()


def assert_variance(values: np.ndarray, sigma: float, kind: str, extra: float = 0.0) -> None:
    """s²/σ² within N_SE standard errors of 1 (mean known to be 0), plus ``extra``."""
    n = values.size
    ratio = float(np.mean(values**2)) / sigma**2
    tolerance = N_SE * math.sqrt(KAPPA_MINUS_1[kind] / n) + extra
    assert abs(ratio - 1) < tolerance, f"s²/σ² = {ratio:.4f}, tolerance {tolerance:.4f}"


def assert_ks(values: np.ndarray, dist: Any) -> None:
    result = stats.kstest(values, dist.cdf)
    assert result.pvalue > KS_P_MIN, f"KS D = {result.statistic:.4g}, p = {result.pvalue:.3g}"


def test_reference_numbers_match_their_definitions() -> None:
    # The truncated-normal factor of the papers/Keras/JAX, checked against scipy; and the
    # κ − 1 values quoted in STYLE.md §11.
    assert abs(TRUNC_STD - 0.87962566103423978) < 1e-15
    assert abs(init.TRUNCATED_NORMAL_STD_FACTOR - TRUNC_STD) < 1e-15
    assert KAPPA_MINUS_1["normal"] == pytest.approx(2.0)
    assert KAPPA_MINUS_1["uniform"] == pytest.approx(0.8)
    assert KAPPA_MINUS_1["truncated_normal"] == pytest.approx(1.366, abs=5e-4)


# ------------------------------------------------- 1. the distribution of every preset

InitFn = Callable[..., Tensor]


@dataclass(frozen=True)
class Spec:
    """A fan-based initializer and the (scale, mode, distribution) the papers give it."""

    id: str
    fill: InitFn
    scale: float
    mode: str
    distribution: str


# Glorot & Bengio (2010): Var = 2 / (fan_in + fan_out) = 1 / fan_avg. He et al. (2015):
# Var = 2 / fan_in. LeCun et al. (1998): Var = 1 / fan_in. The normal presets use the
# Keras truncated normal.
PRESET_SPECS = [
    Spec("glorot_uniform", init.glorot_uniform_, 1.0, "fan_avg", "uniform"),
    Spec("glorot_normal", init.glorot_normal_, 1.0, "fan_avg", "truncated_normal"),
    Spec("he_uniform", init.he_uniform_, 2.0, "fan_in", "uniform"),
    Spec("he_normal", init.he_normal_, 2.0, "fan_in", "truncated_normal"),
    Spec("lecun_uniform", init.lecun_uniform_, 1.0, "fan_in", "uniform"),
    Spec("lecun_normal", init.lecun_normal_, 1.0, "fan_in", "truncated_normal"),
]


def _variance_scaling_spec(mode: str, distribution: str) -> Spec:
    scale = 2.5  # not 1 or 2, so a dropped or swapped scale shows

    def fill(tensor: Tensor, **kwargs: Any) -> Tensor:
        return init.variance_scaling_(tensor, scale, mode, distribution, **kwargs)

    return Spec(f"variance_scaling-{mode}-{distribution}", fill, scale, mode, distribution)


SPECS = PRESET_SPECS + [
    _variance_scaling_spec(mode, dist) for mode in MODES for dist in DISTRIBUTIONS
]


@dataclass(frozen=True)
class Shape:
    """A weight, the ``fans=`` to pass (None: read from the shape) and its fans by hand."""

    id: str
    make: Callable[[], tuple[Tensor, tuple[int, int] | None]]
    fans: tuple[int, int]


def _transposed() -> tuple[Tensor, tuple[int, int] | None]:
    shape = (32, 64, 3, 3)  # ConvTranspose2d(32, 64, 3): (in, out, kh, kw)
    return torch.empty(shape), init.compute_fans(shape, transposed=True)


def _transposed_module() -> tuple[Tensor, tuple[int, int] | None]:
    layer = nn.ConvTranspose2d(64, 16, 5)
    return layer.weight, init.fans_for(layer)


def _grouped() -> tuple[Tensor, tuple[int, int] | None]:
    shape = (256, 16, 3, 3)  # Conv2d(64, 256, 3, groups=4): (out, in/groups, kh, kw)
    return torch.empty(shape), init.compute_fans(shape, groups=4)


def _grouped_transposed_module() -> tuple[Tensor, tuple[int, int] | None]:
    layer = nn.ConvTranspose2d(256, 64, 3, groups=4)  # weight (256, 16, 3, 3)
    return layer.weight, init.fans_for(layer)


SHAPES = [
    Shape("dense", lambda: (torch.empty(200, 300), None), (300, 200)),
    Shape("conv2d", lambda: (torch.empty(64, 32, 3, 3), None), (32 * 9, 64 * 9)),
    # fan_in = in · rf, fan_out = out · rf: the transpose of what the layout suggests.
    Shape("conv_transpose", _transposed, (32 * 9, 64 * 9)),
    Shape("conv_transpose_module", _transposed_module, (64 * 25, 16 * 25)),
    # fan_in = in/groups · rf = 16 · 9, fan_out = out/groups · rf = 64 · 9.
    Shape("grouped_conv", _grouped, (16 * 9, 256 // 4 * 9)),
    # fan_in = in/groups · rf = 64 · 9, fan_out = out/groups · rf = 16 · 9.
    Shape("grouped_conv_transpose", _grouped_transposed_module, (256 // 4 * 9, 64 // 4 * 9)),
]

CASES = [
    pytest.param(spec, shape, id=f"{spec.id}-{shape.id}") for spec in SPECS for shape in SHAPES
]
BOUNDED_CASES = [
    pytest.param(spec, shape, id=f"{spec.id}-{shape.id}")
    for spec in SPECS
    if spec.distribution in ("uniform", "truncated_normal")
    for shape in SHAPES
]


@functools.cache
def draw(spec: Spec, shape: Shape) -> tuple[np.ndarray, float]:
    """Fill the case's weight with the case's seed; return the values and the target σ.

    Cached (read-only) so the KS, variance and bounds tests of a case share one draw.
    """
    tensor, fans = shape.make()
    kwargs: dict[str, Any] = {"generator": gen(seed_for(spec.id, shape.id))}
    if fans is not None:
        kwargs["fans"] = fans
    out = spec.fill(tensor, **kwargs)
    assert out is tensor
    values = to_numpy(tensor)
    values.flags.writeable = False
    return values, expected_sigma(spec.scale, spec.mode, shape.fans)


@pytest.mark.parametrize(("spec", "shape"), CASES)
def test_draws_follow_the_target_distribution(spec: Spec, shape: Shape) -> None:
    values, sigma = draw(spec, shape)
    assert_ks(values, target(spec.distribution, sigma))


@pytest.mark.parametrize(("spec", "shape"), CASES)
def test_variance_is_scale_over_n(spec: Spec, shape: Shape) -> None:
    values, sigma = draw(spec, shape)
    assert_variance(values, sigma, spec.distribution)


@pytest.mark.parametrize(("spec", "shape"), BOUNDED_CASES)
def test_bounds_are_exact(spec: Spec, shape: Shape) -> None:
    values, sigma = draw(spec, shape)
    n = values.size
    largest = float(np.abs(values).max())
    if spec.distribution == "uniform":
        bound = math.sqrt(3 * sigma**2)
        # P(max |w| < r (1 − 20/n)) = (1 − 20/n)^n < e^-20 for a correct sampler.
        near = bound * (1 - 20 / n)
    else:
        s = sigma / TRUNC_STD
        bound = 2 * s
        # The density just inside the cut is pdf(2s); a band of width δ on each side with
        # 2 n pdf(2s) δ = 20 expected draws is empty with probability below e^-20.
        density = float(target("truncated_normal", sigma).pdf(bound * (1 - 1e-12)))
        near = bound - 20 / (2 * n * density)
    assert largest <= f32(bound)
    assert largest >= near


# ------------------------------------------------------------------ "normal" is untruncated


def test_normal_distribution_is_a_plain_gaussian_not_truncated() -> None:
    # Keras silently turns "normal" into "truncated_normal"; signalprop must not.
    sigma = expected_sigma(1.0, "fan_in", (250, 400))
    w = init.variance_scaling_(torch.empty(400, 250), 1.0, "fan_in", "normal", generator=gen(3))
    values = to_numpy(w)
    assert_ks(values, stats.norm(0, sigma))
    truncated = stats.kstest(values, target("truncated_normal", sigma).cdf)
    assert truncated.pvalue < KS_P_MIN
    # 100 000 plain-normal draws pass the truncation point 2s ≈ 2.27σ about 2 300 times.
    assert np.abs(values).max() > 2 * sigma / TRUNC_STD
    assert np.mean(np.abs(values) > 2 * sigma / TRUNC_STD) > 0.01
    same = init.variance_scaling_(
        torch.empty(400, 250), 1.0, "fan_in", "untruncated_normal", generator=gen(3)
    )
    assert torch.equal(w, same)


# ------------------------------------------------------------- 2. Keras-style objects


@dataclass(frozen=True)
class Pair:
    """A Keras-style object factory and the in-place function it must match."""

    id: str
    make: Callable[..., init.Initializer]  # make(seed=...) or make()
    fn: Callable[[Tensor, torch.Generator], Tensor]
    seeded: bool = True


PAIRS = [
    Pair(
        "VarianceScaling",
        lambda **kw: init.VarianceScaling(2.5, "fan_out", "uniform", **kw),
        lambda t, g: init.variance_scaling_(t, 2.5, "fan_out", "uniform", generator=g),
    ),
    Pair("GlorotUniform", init.GlorotUniform, lambda t, g: init.glorot_uniform_(t, generator=g)),
    Pair("GlorotNormal", init.GlorotNormal, lambda t, g: init.glorot_normal_(t, generator=g)),
    Pair("HeUniform", init.HeUniform, lambda t, g: init.he_uniform_(t, generator=g)),
    Pair("HeNormal", init.HeNormal, lambda t, g: init.he_normal_(t, generator=g)),
    Pair("LecunUniform", init.LecunUniform, lambda t, g: init.lecun_uniform_(t, generator=g)),
    Pair("LecunNormal", init.LecunNormal, lambda t, g: init.lecun_normal_(t, generator=g)),
    Pair(
        "RandomNormal",
        lambda **kw: init.RandomNormal(mean=0.5, stddev=0.3, **kw),
        lambda t, g: init.random_normal_(t, 0.5, 0.3, generator=g),
    ),
    Pair(
        "RandomUniform",
        lambda **kw: init.RandomUniform(minval=-0.2, maxval=0.7, **kw),
        lambda t, g: init.random_uniform_(t, -0.2, 0.7, generator=g),
    ),
    Pair(
        "TruncatedNormal",
        lambda **kw: init.TruncatedNormal(mean=0.5, stddev=0.3, **kw),
        lambda t, g: init.truncated_normal_(t, 0.5, 0.3, generator=g),
    ),
    Pair(
        "Orthogonal",
        lambda **kw: init.Orthogonal(gain=1.5, **kw),
        lambda t, g: init.orthogonal_(t, 1.5, generator=g),
    ),
    Pair("Zeros", init.Zeros, lambda t, g: init.zeros_(t), seeded=False),
    Pair("Ones", init.Ones, lambda t, g: init.ones_(t), seeded=False),
    Pair("Constant", lambda: init.Constant(-0.75), lambda t, g: init.constant_(t, -0.75), False),
]
PAIR_PARAMS = [pytest.param(p, id=p.id) for p in PAIRS]
SEEDED_PARAMS = [pytest.param(p, id=p.id) for p in PAIRS if p.seeded]


@pytest.mark.parametrize("pair", PAIR_PARAMS)
def test_object_gives_the_functions_numbers(pair: Pair) -> None:
    by_object = pair.make()(torch.empty(30, 40), generator=gen(7))
    by_function = pair.fn(torch.empty(30, 40), gen(7))
    assert torch.equal(by_object, by_function)


def test_object_passes_fans_through() -> None:
    fans = (50, 7)
    obj = init.VarianceScaling(2.0, "fan_out", "uniform")
    by_object = obj(torch.empty(30, 40), generator=gen(1), fans=fans)
    by_function = init.variance_scaling_(
        torch.empty(30, 40), 2.0, "fan_out", "uniform", generator=gen(1), fans=fans
    )
    assert torch.equal(by_object, by_function)
    assert by_object.abs().max().item() <= f32(math.sqrt(3 * 2.0 / 7))
    assert by_object.abs().max().item() > math.sqrt(3 * 2.0 / 30)  # not the shape's fan_out


@pytest.mark.parametrize("pair", SEEDED_PARAMS)
def test_seed_makes_every_call_identical(pair: Pair) -> None:
    obj = pair.make(seed=3)
    first = obj(torch.empty(30, 40))
    second = obj(torch.empty(30, 40))
    assert torch.equal(first, second)
    assert torch.equal(first, pair.fn(torch.empty(30, 40), gen(3)))
    assert not torch.equal(first, pair.make(seed=4)(torch.empty(30, 40)))


@pytest.mark.parametrize("pair", SEEDED_PARAMS)
def test_call_time_generator_overrides_the_seed(pair: Pair) -> None:
    obj = pair.make(seed=3)
    overridden = obj(torch.empty(30, 40), generator=gen(11))
    assert torch.equal(overridden, pair.fn(torch.empty(30, 40), gen(11)))
    assert not torch.equal(overridden, obj(torch.empty(30, 40)))


@pytest.mark.parametrize("pair", SEEDED_PARAMS)
def test_unseeded_object_draws_from_the_global_generator(pair: Pair) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(5)
        first = pair.make()(torch.empty(30, 40))
        second = pair.make()(torch.empty(30, 40))
        torch.manual_seed(5)
        again = pair.make()(torch.empty(30, 40))
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    ("obj", "config", "text"),
    [
        pytest.param(
            init.VarianceScaling(2.0, "fan_out", "uniform", seed=5),
            {"scale": 2.0, "mode": "fan_out", "distribution": "uniform", "seed": 5},
            "VarianceScaling(scale=2.0, mode='fan_out', distribution='uniform', seed=5)",
            id="VarianceScaling",
        ),
        pytest.param(init.HeNormal(), {"seed": None}, "HeNormal()", id="HeNormal"),
        pytest.param(
            init.GlorotUniform(seed=1), {"seed": 1}, "GlorotUniform(seed=1)", id="GlorotUniform"
        ),
        pytest.param(init.LecunNormal(seed=0), {"seed": 0}, "LecunNormal(seed=0)", id="Lecun"),
        pytest.param(init.Zeros(), {}, "Zeros()", id="Zeros"),
        pytest.param(init.Ones(), {}, "Ones()", id="Ones"),
        pytest.param(init.Constant(0.5), {"value": 0.5}, "Constant(value=0.5)", id="Constant"),
        pytest.param(
            init.RandomNormal(0.0, 0.1),
            {"mean": 0.0, "stddev": 0.1, "seed": None},
            "RandomNormal(mean=0.0, stddev=0.1)",
            id="RandomNormal",
        ),
        pytest.param(
            init.TruncatedNormal(1.0, 0.2, seed=2),
            {"mean": 1.0, "stddev": 0.2, "seed": 2},
            "TruncatedNormal(mean=1.0, stddev=0.2, seed=2)",
            id="TruncatedNormal",
        ),
        pytest.param(
            init.RandomUniform(-1.0, 2.0),
            {"minval": -1.0, "maxval": 2.0, "seed": None},
            "RandomUniform(minval=-1.0, maxval=2.0)",
            id="RandomUniform",
        ),
        pytest.param(
            init.Orthogonal(2.0, seed=9),
            {"gain": 2.0, "seed": 9},
            "Orthogonal(gain=2.0, seed=9)",
            id="Orthogonal",
        ),
    ],
)
def test_repr_and_get_config(obj: init.Initializer, config: dict[str, Any], text: str) -> None:
    assert obj.get_config() == config
    assert repr(obj) == text
    rebuilt = type(obj)(**obj.get_config())  # Keras's from_config round trip
    assert rebuilt == obj
    assert hash(rebuilt) == hash(obj)


def test_keras_default_arguments() -> None:
    # Keras: RandomNormal(0, 0.05), RandomUniform(-0.05, 0.05), TruncatedNormal(0, 0.05),
    # VarianceScaling(1.0, "fan_in", "truncated_normal"), Constant(0), Orthogonal(1).
    assert init.RandomNormal() == init.RandomNormal(mean=0.0, stddev=0.05)
    assert init.RandomUniform() == init.RandomUniform(minval=-0.05, maxval=0.05)
    assert init.TruncatedNormal() == init.TruncatedNormal(mean=0.0, stddev=0.05)
    assert init.VarianceScaling() == init.VarianceScaling(1.0, "fan_in", "truncated_normal")
    assert init.Constant() == init.Constant(0.0)
    assert init.Orthogonal() == init.Orthogonal(1.0)


def test_equality_and_hash() -> None:
    assert init.HeNormal(seed=1) == init.HeNormal(seed=1)
    assert init.HeNormal(seed=1) != init.HeNormal(seed=2)
    assert init.HeNormal() != init.HeUniform()
    assert init.VarianceScaling(2, "fan_in", "uniform") == init.VarianceScaling(
        2.0, "fan_in", "uniform"
    )
    assert init.VarianceScaling(2.0, "fan_in", "uniform") != init.VarianceScaling(
        2.0, "fan_out", "uniform"
    )
    # Same arguments, different distributions.
    assert init.TruncatedNormal(0.0, 0.1) != init.RandomNormal(0.0, 0.1)
    assert init.Constant(1.0) != init.Constant(2.0)
    assert init.Zeros() == init.Zeros()
    assert init.Zeros() != init.Ones()
    assert init.HeNormal() != "he_normal"
    assert len({init.HeNormal(seed=1), init.HeNormal(seed=1), init.Zeros(), init.Zeros()}) == 2


# ------------------------------------------------------------------------------ 3. get

#: Every name ``get`` must know, and its class, written from Keras's names.
EXPECTED_NAMES: dict[str, type[init.Initializer]] = {
    "variance_scaling": init.VarianceScaling,
    "glorot_uniform": init.GlorotUniform,
    "glorot_normal": init.GlorotNormal,
    "xavier_uniform": init.GlorotUniform,
    "xavier_normal": init.GlorotNormal,
    "he_uniform": init.HeUniform,
    "he_normal": init.HeNormal,
    "kaiming_uniform": init.HeUniform,
    "kaiming_normal": init.HeNormal,
    "lecun_uniform": init.LecunUniform,
    "lecun_normal": init.LecunNormal,
    "zeros": init.Zeros,
    "ones": init.Ones,
    "constant": init.Constant,
    "random_normal": init.RandomNormal,
    "random_uniform": init.RandomUniform,
    "truncated_normal": init.TruncatedNormal,
    "orthogonal": init.Orthogonal,
    "pytorch_default": init.PytorchDefault,
}
ALIASES = {
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_names_are_the_keras_snake_case_names() -> None:
    assert init.names() == sorted(EXPECTED_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_name_resolves_to_its_class(name: str) -> None:
    obj = init.get(name)
    assert type(obj) is EXPECTED_NAMES[name]
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name)
    assert snake_case(type(obj).__name__) == ALIASES.get(name, name)
    w = obj(torch.full((20, 30), math.nan), generator=gen(0))
    assert torch.isfinite(w).all()


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_aliases_give_the_same_class(alias: str, name: str) -> None:
    assert type(init.get(alias)) is type(init.get(name))
    assert init.get(alias) == init.get(name)


@pytest.mark.parametrize(
    ("fn", "cls"),
    [
        (init.glorot_uniform_, init.GlorotUniform),
        (init.glorot_normal_, init.GlorotNormal),
        (init.xavier_uniform_, init.GlorotUniform),
        (init.xavier_normal_, init.GlorotNormal),
        (init.he_uniform_, init.HeUniform),
        (init.he_normal_, init.HeNormal),
        (init.kaiming_uniform_, init.HeUniform),
        (init.kaiming_normal_, init.HeNormal),
        (init.lecun_uniform_, init.LecunUniform),
        (init.lecun_normal_, init.LecunNormal),
        (init.zeros_, init.Zeros),
        (init.ones_, init.Ones),
        (init.random_normal_, init.RandomNormal),
        (init.random_uniform_, init.RandomUniform),
        (init.truncated_normal_, init.TruncatedNormal),
        (init.orthogonal_, init.Orthogonal),
        (init.variance_scaling_, init.VarianceScaling),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_our_functions_map_to_objects(fn: InitFn, cls: type[init.Initializer]) -> None:
    obj = init.get(fn)
    assert type(obj) is cls
    assert obj == cls()


def test_other_callables_are_wrapped_and_fill_the_tensor() -> None:
    torch_fn = nn.init.kaiming_normal_
    wrapped = init.get(torch_fn)
    assert isinstance(wrapped, init.Initializer)
    weight = nn.Parameter(torch.full((30, 40), math.nan))
    out = wrapped(weight, generator=gen(2))
    assert out is weight
    assert torch.equal(weight, torch_fn(torch.empty(30, 40), generator=gen(2)))
    assert weight.grad_fn is None
    assert init.get(torch_fn) == wrapped

    filler = init.get(lambda t: t.fill_(3.0))  # takes no generator: must still work
    assert torch.equal(filler(torch.empty(2, 3), generator=gen(0)), torch.full((2, 3), 3.0))


def test_objects_pass_through_unchanged() -> None:
    obj = init.HeNormal(seed=1)
    assert init.get(obj) is obj
    custom = init.VarianceScaling(3.0, "fan_avg", "uniform")
    assert init.get(custom) is custom


@pytest.mark.parametrize(
    ("name", "closest"),
    [("he_norml", "he_normal"), ("glorot_unifrom", "glorot_uniform"), ("Zeros", "zeros")],
)
def test_unknown_name_lists_the_valid_ones_and_the_closest(name: str, closest: str) -> None:
    message = (
        f"The 'identifier' parameter of signalprop.init.get must be one of "
        f"{sorted(EXPECTED_NAMES)}. Got {name!r} instead. Did you mean {closest!r}?"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        init.get(name)


@pytest.mark.parametrize(
    "identifier", [3, None, 1.5, [init.zeros_]], ids=["int", "None", "float", "list"]
)
def test_non_callable_non_string_raises(identifier: Any) -> None:
    prefix = "The 'identifier' parameter of signalprop.init.get must be an initializer name"
    with pytest.raises(
        ValueError, match=f"^{re.escape(prefix)}.*Got {re.escape(repr(identifier))}"
    ):
        init.get(identifier)


# ---------------------------------------------------------- 4. compute_fans and fans_for


@pytest.mark.parametrize(
    ("make", "groups", "transposed", "fans"),
    [
        pytest.param(lambda: nn.Linear(3, 5), 1, False, (3, 5), id="Linear"),
        pytest.param(lambda: nn.Conv1d(6, 10, 5), 1, False, (6 * 5, 10 * 5), id="Conv1d"),
        pytest.param(lambda: nn.Conv2d(3, 64, (3, 5)), 1, False, (3 * 15, 64 * 15), id="Conv2d"),
        pytest.param(lambda: nn.Conv3d(4, 8, (2, 3, 5)), 1, False, (4 * 30, 8 * 30), id="Conv3d"),
        # Each output sees in/groups = 2 channels; each input reaches out/groups = 4.
        pytest.param(lambda: nn.Conv2d(8, 16, 3, groups=4), 4, False, (2 * 9, 4 * 9), id="grouped"),
        pytest.param(lambda: nn.Conv2d(8, 8, 3, groups=8), 8, False, (1 * 9, 1 * 9), id="dw"),
        pytest.param(
            lambda: nn.Conv2d(8, 16, 3, groups=8), 8, False, (1 * 9, 2 * 9), id="dw_multiplier"
        ),
        pytest.param(lambda: nn.ConvTranspose1d(6, 10, 5), 1, True, (6 * 5, 10 * 5), id="ConvT1d"),
        pytest.param(lambda: nn.ConvTranspose2d(16, 8, 3), 1, True, (16 * 9, 8 * 9), id="ConvT2d"),
        pytest.param(
            lambda: nn.ConvTranspose3d(4, 8, (2, 3, 5)), 1, True, (4 * 30, 8 * 30), id="ConvT3d"
        ),
        # weight (16, 2, 3, 3): each output sees 16/4 inputs; each input reaches 8/4 outputs.
        pytest.param(
            lambda: nn.ConvTranspose2d(16, 8, 3, groups=4),
            4,
            True,
            (4 * 9, 2 * 9),
            id="grouped_ConvT2d",
        ),
        pytest.param(lambda: Dense(5, input_dim=3), 1, False, (3, 5), id="Dense"),
    ],
)
def test_fans_match_a_hand_computation(
    make: Callable[[], nn.Module], groups: int, transposed: bool, fans: tuple[int, int]
) -> None:
    module = make()
    assert init.fans_for(module) == fans
    shape = module.weight.shape
    assert init.compute_fans(shape, groups=groups, transposed=transposed) == fans
    assert init.compute_fans(list(shape), groups=groups, transposed=transposed) == fans


def test_torch_fans_agree_only_for_plain_layers() -> None:
    # What torch's own helper says, as the contrast the library documents.
    torch_fans = nn.init._calculate_fan_in_and_fan_out
    conv = nn.Conv2d(3, 64, 3)
    assert init.fans_for(conv) == torch_fans(conv.weight)
    transposed = nn.ConvTranspose2d(16, 8, 3)
    assert torch_fans(transposed.weight) == (8 * 9, 16 * 9)  # swapped
    assert init.fans_for(transposed) == (16 * 9, 8 * 9)
    grouped = nn.Conv2d(8, 16, 3, groups=4)
    assert torch_fans(grouped.weight) == (2 * 9, 16 * 9)  # fan_out groups times too large
    assert init.fans_for(grouped) == (2 * 9, 4 * 9)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: nn.Embedding(10, 4), id="Embedding"),
        pytest.param(lambda: nn.LayerNorm(4), id="LayerNorm"),
        pytest.param(lambda: nn.Bilinear(3, 4, 5), id="Bilinear"),
        pytest.param(lambda: nn.ReLU(), id="no_weight"),
        pytest.param(lambda: Dense(5), id="lazy_Dense"),
        pytest.param(lambda: nn.LazyLinear(5), id="LazyLinear"),
        pytest.param(lambda: nn.LazyConv2d(5, 3), id="LazyConv2d"),
    ],
)
def test_fans_for_refuses_what_it_cannot_know(make: Callable[[], nn.Module]) -> None:
    module = make()
    with pytest.raises(ValueError, match=r"^The 'module' parameter of fans_for must be "):
        init.fans_for(module)


@pytest.mark.parametrize(
    ("shape", "groups", "message"),
    [
        (
            (5,),
            1,
            "The 'shape' parameter of compute_fans must be a shape with at least 2 dimensions, "
            "(out, in, *kernel). Got (5,) instead.",
        ),
        (
            (),
            1,
            "The 'shape' parameter of compute_fans must be a shape with at least 2 dimensions, "
            "(out, in, *kernel). Got () instead.",
        ),
        (
            (10, 3, 3, 3),
            4,
            "The 'groups' parameter of compute_fans must be a divisor of the weight's first "
            "dimension 10. Got 4 instead.",
        ),
        (
            (8, 3, 3, 3),
            0,
            "The 'groups' parameter of compute_fans must be an integer >= 1. Got 0 instead.",
        ),
        (
            (8, 3, 3, 3),
            True,
            "The 'groups' parameter of compute_fans must be an integer >= 1. Got True instead.",
        ),
        (
            (8, 3, 3, 3),
            2.0,
            "The 'groups' parameter of compute_fans must be an integer >= 1. Got 2.0 instead.",
        ),
    ],
    ids=["1d", "0d", "groups_not_dividing", "groups_0", "groups_bool", "groups_float"],
)
def test_compute_fans_errors(shape: tuple[int, ...], groups: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        init.compute_fans(shape, groups=groups)


FAN_BASED: list[Any] = [
    pytest.param(init.variance_scaling_, id="variance_scaling_"),
    *[pytest.param(s.fill, id=s.id) for s in PRESET_SPECS],
    pytest.param(init.VarianceScaling(), id="VarianceScaling"),
    pytest.param(init.GlorotUniform(), id="GlorotUniform"),
    pytest.param(init.GlorotNormal(), id="GlorotNormal"),
    pytest.param(init.HeUniform(seed=0), id="HeUniform"),
    pytest.param(init.HeNormal(), id="HeNormal"),
    pytest.param(init.LecunUniform(), id="LecunUniform"),
    pytest.param(init.LecunNormal(), id="LecunNormal"),
]


@pytest.mark.parametrize("fill", FAN_BASED)
@pytest.mark.parametrize("shape", [(10,), ()], ids=["1d", "0d"])
def test_fan_based_initializers_refuse_fewer_than_2_dims(fill: InitFn, shape: tuple) -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fill(torch.empty(shape))


@pytest.mark.parametrize("fill", [init.orthogonal_, init.Orthogonal()], ids=["fn", "object"])
@pytest.mark.parametrize("shape", [(10,), ()], ids=["1d", "0d"])
def test_orthogonal_refuses_fewer_than_2_dims(fill: InitFn, shape: tuple) -> None:
    message = (
        f"The 'tensor' parameter of orthogonal_ must be a tensor with at least 2 dimensions. "
        f"Got {shape!r} instead."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fill(torch.empty(shape))


# ---------------------------------------------------------------------- 5. init_module_


@pytest.mark.parametrize(
    ("kernel", "scale", "mode", "distribution"),
    [
        pytest.param("he_normal", 2.0, "fan_in", "truncated_normal", id="he_normal"),
        pytest.param(init.he_uniform_, 2.0, "fan_in", "uniform", id="he_uniform_"),
        pytest.param(init.LecunNormal(), 1.0, "fan_in", "truncated_normal", id="LecunNormal"),
        pytest.param(
            init.VarianceScaling(2.0, "fan_out", "normal"), 2.0, "fan_out", "normal", id="fan_out"
        ),
    ],
)
def test_init_module_uses_the_transposed_convolutions_fans(
    kernel: Any, scale: float, mode: str, distribution: str
) -> None:
    layer = nn.ConvTranspose2d(64, 32, 5)  # weight (64, 32, 5, 5): (in, out, kh, kw)
    fans = (64 * 25, 32 * 25)  # fan_in = in · rf, fan_out = out · rf
    torch_fans = nn.init._calculate_fan_in_and_fan_out(layer.weight)
    assert torch_fans == (fans[1], fans[0])  # what a shape-only reading would use
    assert layer.bias is not None
    assert layer.bias.abs().sum() > 0  # torch's default bias is not zero

    out = init.init_module_(layer, kernel, generator=gen(8))
    assert out is layer
    values = to_numpy(layer.weight)
    sigma = expected_sigma(scale, mode, fans)
    assert_ks(values, target(distribution, sigma))
    assert_variance(values, sigma, distribution)
    # The torch fans would give a variance 2× too large or too small: far outside tolerance.
    wrong = expected_sigma(scale, mode, torch_fans)
    ratio = float(np.mean(values**2)) / wrong**2
    assert abs(ratio - 1) > 0.4
    assert torch.count_nonzero(layer.bias) == 0


def test_init_module_grouped_transposed_and_dense() -> None:
    layer = nn.ConvTranspose2d(128, 64, 5, groups=4)  # weight (128, 16, 5, 5)
    init.init_module_(layer, "he_uniform", "ones", generator=gen(4))
    bound = math.sqrt(3 * 2.0 / (128 // 4 * 25))  # fan_in = in/groups · rf
    assert layer.weight.abs().max().item() <= f32(bound)
    assert layer.weight.abs().max().item() > 0.99 * bound
    assert layer.bias is not None
    assert torch.equal(layer.bias, torch.ones(64))

    dense = Dense(200, input_dim=300)
    init.init_module_(dense, "lecun_uniform", generator=gen(4))
    assert_variance(to_numpy(dense.weight), math.sqrt(1 / 300), "uniform")
    assert dense.bias is not None
    assert torch.count_nonzero(dense.bias) == 0

    no_bias = nn.Conv2d(3, 8, 3, bias=False)
    init.init_module_(no_bias, "glorot_uniform", generator=gen(4))
    assert no_bias.bias is None


def test_init_module_is_reproducible_with_a_generator() -> None:
    def run(seed: int) -> nn.Module:
        return init.init_module_(
            nn.ConvTranspose2d(16, 8, 3), "he_normal", "random_normal", generator=gen(seed)
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)
    seeded_a = init.init_module_(nn.Linear(30, 20), init.HeNormal(seed=2))
    seeded_b = init.init_module_(nn.Linear(30, 20), init.HeNormal(seed=2))
    assert torch.equal(seeded_a.weight, seeded_b.weight)


def test_init_module_refuses_a_lazy_layer() -> None:
    with pytest.raises(ValueError, match=r"^The 'module' parameter of fans_for must be "):
        init.init_module_(Dense(5), "he_normal")


# --------------------------------------------------------------- 6. other initializers


@pytest.mark.parametrize(
    ("fill", "value"),
    [
        pytest.param(init.zeros_, 0.0, id="zeros_"),
        pytest.param(init.ones_, 1.0, id="ones_"),
        pytest.param(lambda t: init.constant_(t, -2.5), -2.5, id="constant_"),
        pytest.param(init.constant_, 0.0, id="constant_default"),
    ],
)
def test_constant_fills(fill: Callable[[Tensor], Tensor], value: float) -> None:
    w = torch.full((4, 5, 3), math.nan)
    assert fill(w) is w
    assert torch.equal(w, torch.full((4, 5, 3), value))


@pytest.mark.parametrize(
    ("fill", "dist"),
    [
        pytest.param(
            lambda t, g: init.random_normal_(t, 1.5, 0.3, generator=g),
            stats.norm(1.5, 0.3),
            id="random_normal",
        ),
        pytest.param(
            lambda t, g: init.random_normal_(t, generator=g),
            stats.norm(0.0, 0.05),
            id="random_normal_keras_default",
        ),
        pytest.param(
            lambda t, g: init.random_uniform_(t, -0.2, 0.7, generator=g),
            stats.uniform(-0.2, 0.9),
            id="random_uniform",
        ),
        pytest.param(
            lambda t, g: init.random_uniform_(t, generator=g),
            stats.uniform(-0.05, 0.1),
            id="random_uniform_keras_default",
        ),
        # Keras semantics: stddev is that of the normal before the cut at mean ± 2 stddev.
        pytest.param(
            lambda t, g: init.truncated_normal_(t, 0.5, 0.2, generator=g),
            stats.truncnorm(-2, 2, loc=0.5, scale=0.2),
            id="truncated_normal",
        ),
        pytest.param(
            lambda t, g: init.truncated_normal_(t, generator=g),
            stats.truncnorm(-2, 2, loc=0.0, scale=0.05),
            id="truncated_normal_keras_default",
        ),
    ],
)
def test_random_fills_follow_their_distribution(fill: Any, dist: Any) -> None:
    w = torch.empty(200, 300)
    assert fill(w, gen(21)) is w
    values = to_numpy(w)
    assert_ks(values, dist)
    n = values.size
    mean, std = float(dist.mean()), float(dist.std())
    assert abs(values.mean() - mean) < N_SE * std / math.sqrt(n)
    lo, hi = dist.support()
    if math.isfinite(lo):
        assert values.min() >= f32(lo) and values.max() <= f32(hi)


def test_truncated_normal_std_is_before_the_cut() -> None:
    stddev = 0.2
    w = init.truncated_normal_(torch.empty(200, 300), 0.0, stddev, generator=gen(5))
    values = to_numpy(w)
    # Result std is TRUNC_STD · stddev ≈ 0.8796 · stddev, not stddev.
    assert_variance(values, TRUNC_STD * stddev, "truncated_normal")
    assert abs(values).max() <= f32(2 * stddev)
    assert abs(values).max() > 0.99 * 2 * stddev


@pytest.mark.parametrize("gain", [1.0, 2.5])
@pytest.mark.parametrize(
    ("shape", "rows"),
    [
        pytest.param((50, 80), 50, id="wide"),
        pytest.param((80, 50), 80, id="tall"),
        pytest.param((16, 4, 3, 3), 16, id="conv_wide"),
        pytest.param((64, 4, 3, 3), 64, id="conv_tall"),
    ],
)
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(
    shape: tuple[int, ...], rows: int, gain: float
) -> None:
    w = torch.empty(shape, dtype=torch.float64)
    assert init.orthogonal_(w, gain, generator=gen(6)) is w
    matrix = w.reshape(rows, -1)  # dimensions after the first flattened
    cols = matrix.shape[1]
    if rows <= cols:
        product, k = matrix @ matrix.T, rows
    else:
        product, k = matrix.T @ matrix, cols
    identity = torch.eye(k, dtype=torch.float64)
    torch.testing.assert_close(product, gain**2 * identity, atol=1e-10, rtol=0)

    w32 = init.orthogonal_(torch.empty(shape), gain, generator=gen(6))
    m32 = w32.reshape(rows, -1)
    p32 = m32 @ m32.T if rows <= cols else m32.T @ m32
    torch.testing.assert_close(p32, gain**2 * torch.eye(k), atol=1e-5 * gain**2, rtol=0)


# ----------------------------------------------------- 7. dtypes, reproducibility, no_grad

DTYPES = [
    pytest.param(torch.float16, id="float16"),
    pytest.param(torch.bfloat16, id="bfloat16"),
    pytest.param(torch.float32, id="float32"),
    pytest.param(torch.float64, id="float64"),
]

#: The dtype tests fill a (100, 200) weight: fan_in 200, fan_out 100, fan_avg 150.
DTYPE_SHAPE = (100, 200)

# (fill(tensor, generator), expected std, kind for κ − 1, bound on |w| or None)
SCALED: list[Any] = [
    pytest.param(
        lambda t, g: init.he_normal_(t, generator=g),
        math.sqrt(2 / 200),
        "truncated_normal",
        2 * math.sqrt(2 / 200) / TRUNC_STD,
        id="he_normal_",
    ),
    pytest.param(
        lambda t, g: init.glorot_uniform_(t, generator=g),
        math.sqrt(1 / 150),
        "uniform",
        math.sqrt(3 / 150),
        id="glorot_uniform_",
    ),
    pytest.param(
        lambda t, g: init.variance_scaling_(t, 3.0, "fan_out", "normal", generator=g),
        math.sqrt(3 / 100),
        "normal",
        None,
        id="variance_scaling_normal",
    ),
    pytest.param(
        lambda t, g: init.random_normal_(t, 0.0, 0.3, generator=g), 0.3, "normal", None, id="rn"
    ),
    pytest.param(
        lambda t, g: init.random_uniform_(t, -0.2, 0.2, generator=g),
        0.2 / math.sqrt(3),
        "uniform",
        0.2,
        id="ru",
    ),
    pytest.param(
        lambda t, g: init.truncated_normal_(t, 0.0, 0.3, generator=g),
        0.3 * TRUNC_STD,
        "truncated_normal",
        0.6,
        id="tn",
    ),
    # The 100 rows of a wide orthogonal matrix are unit vectors: mean square 100 / (100 · 200).
    pytest.param(
        lambda t, g: init.orthogonal_(t, generator=g), math.sqrt(1 / 200), "normal", 1.0, id="orth"
    ),
]


@pytest.mark.parametrize(("fill", "std", "kind", "bound"), SCALED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_preserved_with_finite_values_of_the_right_scale(
    dtype: torch.dtype, fill: Any, std: float, kind: str, bound: float | None
) -> None:
    w = torch.full(DTYPE_SHAPE, math.nan, dtype=dtype)
    assert fill(w, gen(13)) is w
    assert w.dtype == dtype
    assert torch.isfinite(w).all()
    half = dtype in (torch.float16, torch.bfloat16)
    # Rounding to 8 (bfloat16) or 11 (float16) significant bits moves s² by well under 2%.
    assert_variance(to_numpy(w), std, kind, extra=0.02 if half else 0.0)
    if bound is not None:
        assert w.abs().max().item() <= bound * (1 + (2**-8 if half else 1e-6))


@pytest.mark.parametrize(("fill", "std", "kind", "bound"), SCALED)
def test_same_seed_same_tensor_different_seed_different(
    fill: Any, std: float, kind: str, bound: float | None
) -> None:
    a = fill(torch.empty(20, 30), gen(1))
    b = fill(torch.empty(20, 30), gen(1))
    c = fill(torch.empty(20, 30), gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        d = fill(torch.empty(20, 30), None)
        torch.manual_seed(1)
        e = fill(torch.empty(20, 30), None)
    assert torch.equal(d, e)


#: Every initializer of the module as ``fill(tensor, generator)``.
ALL_INITIALIZERS: list[Any] = [
    pytest.param(lambda t, g: init.variance_scaling_(t, generator=g), id="variance_scaling_"),
    *[pytest.param(lambda t, g, f=s.fill: f(t, generator=g), id=s.id + "_") for s in PRESET_SPECS],
    pytest.param(lambda t, g: init.zeros_(t), id="zeros_"),
    pytest.param(lambda t, g: init.ones_(t), id="ones_"),
    pytest.param(lambda t, g: init.constant_(t, 0.5), id="constant_"),
    pytest.param(lambda t, g: init.random_normal_(t, generator=g), id="random_normal_"),
    pytest.param(lambda t, g: init.random_uniform_(t, generator=g), id="random_uniform_"),
    pytest.param(lambda t, g: init.truncated_normal_(t, generator=g), id="truncated_normal_"),
    pytest.param(lambda t, g: init.orthogonal_(t, generator=g), id="orthogonal_"),
    *[pytest.param(lambda t, g, p=p: p.make()(t, generator=g), id=p.id) for p in PAIRS],
    *[
        pytest.param(lambda t, g, p=p: p.make(seed=1)(t, generator=g), id=p.id + "_seeded")
        for p in PAIRS
        if p.seeded
    ],
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("fill", ALL_INITIALIZERS)
def test_works_on_a_leaf_parameter_under_no_grad(fill: Any, dtype: torch.dtype) -> None:
    param = nn.Parameter(torch.full((20, 30), math.nan, dtype=dtype))
    out = fill(param, gen(0))
    assert out is param
    assert param.grad_fn is None and param.is_leaf and param.requires_grad
    assert torch.isfinite(param).all()
    (param.float() ** 2).sum().backward()  # the graph still starts at the leaf
    assert param.grad is not None


def test_wrapped_callable_runs_under_no_grad() -> None:
    param = nn.Parameter(torch.empty(20, 30))
    out = init.get(nn.init.orthogonal_)(param, generator=gen(0))
    assert out is param and param.grad_fn is None


# ------------------------------------------------------------------------ 8. error paths


def _message(param: str, caller: str, expected: str, got: str) -> str:
    return f"The '{param}' parameter of {caller} must be {expected}. Got {got} instead."


def _w() -> Tensor:
    return torch.empty(20, 30)


MODES_LIST = "one of ['fan_avg', 'fan_in', 'fan_out']"
DISTS_LIST = "one of ['normal', 'truncated_normal', 'uniform', 'untruncated_normal']"
POSITIVE = "a finite real number > 0"

ERRORS: list[Any] = [
    # the one wording, quoted in STYLE.md §6, with the closest match appended
    pytest.param(
        lambda: init.variance_scaling_(_w(), mode="fan_inn"),
        _message("mode", "variance_scaling_", MODES_LIST, "'fan_inn'") + " Did you mean 'fan_in'?",
        id="mode_typo",
    ),
    pytest.param(
        lambda: init.variance_scaling_(_w(), mode="FAN_IN"),
        _message("mode", "variance_scaling_", MODES_LIST, "'FAN_IN'") + " Did you mean 'fan_in'?",
        id="mode_case",
    ),
    pytest.param(
        lambda: init.variance_scaling_(_w(), mode=None),
        _message("mode", "variance_scaling_", MODES_LIST, "None"),
        id="mode_none",
    ),
    pytest.param(
        lambda: init.variance_scaling_(_w(), distribution="gaussian"),
        _message("distribution", "variance_scaling_", DISTS_LIST, "'gaussian'"),
        id="distribution_unknown",
    ),
    pytest.param(
        lambda: init.variance_scaling_(_w(), distribution="uniformm"),
        _message("distribution", "variance_scaling_", DISTS_LIST, "'uniformm'")
        + " Did you mean 'uniform'?",
        id="distribution_typo",
    ),
    pytest.param(
        lambda: init.VarianceScaling(mode="fan_inn"),
        _message("mode", "VarianceScaling", MODES_LIST, "'fan_inn'") + " Did you mean 'fan_in'?",
        id="object_mode",
    ),
    pytest.param(
        lambda: init.VarianceScaling(distribution="gaussian"),
        _message("distribution", "VarianceScaling", DISTS_LIST, "'gaussian'"),
        id="object_distribution",
    ),
    *[
        pytest.param(
            lambda s=scale: init.variance_scaling_(_w(), s),
            _message("scale", "variance_scaling_", POSITIVE, got),
            id=f"scale_{got}",
        )
        for scale, got in [
            (0.0, "0.0"),
            (-1, "-1"),
            (math.nan, "nan"),
            (math.inf, "inf"),
            (True, "True"),
            ("2", "'2'"),
        ]
    ],
    pytest.param(
        lambda: init.VarianceScaling(scale=0),
        _message("scale", "VarianceScaling", POSITIVE, "0"),
        id="object_scale",
    ),
    *[
        pytest.param(
            lambda c=cls: c(seed=-1),
            _message("seed", cls.__name__, "an integer >= 0", "-1"),
            id=f"{cls.__name__}_negative_seed",
        )
        for cls in [
            init.VarianceScaling,
            init.HeNormal,
            init.GlorotUniform,
            init.RandomNormal,
            init.RandomUniform,
            init.TruncatedNormal,
            init.Orthogonal,
        ]
    ],
    pytest.param(
        lambda: init.HeNormal(seed=True),
        _message("seed", "HeNormal", "an integer >= 0", "True"),
        id="bool_seed",
    ),
    pytest.param(
        lambda: init.LecunNormal(seed=1.0),
        _message("seed", "LecunNormal", "an integer >= 0", "1.0"),
        id="float_seed",
    ),
    pytest.param(
        lambda: init.RandomUniform(1, 1),
        _message("maxval", "RandomUniform", "a finite real number > 1", "1"),
        id="RandomUniform_equal",
    ),
    pytest.param(
        lambda: init.RandomUniform(0.5, 0.1),
        _message("maxval", "RandomUniform", "a finite real number > 0.5", "0.1"),
        id="RandomUniform_reversed",
    ),
    pytest.param(
        lambda: init.random_uniform_(_w(), 0.5, 0.1),
        _message("maxval", "random_uniform_", "a finite real number > 0.5", "0.1"),
        id="random_uniform_reversed",
    ),
    pytest.param(
        lambda: init.random_uniform_(_w(), math.nan, 0.1),
        _message("minval", "random_uniform_", "a finite real number", "nan"),
        id="random_uniform_nan",
    ),
    pytest.param(
        lambda: init.random_normal_(_w(), stddev=0.0),
        _message("stddev", "random_normal_", POSITIVE, "0.0"),
        id="random_normal_stddev",
    ),
    pytest.param(
        lambda: init.truncated_normal_(_w(), stddev=-1.0),
        _message("stddev", "truncated_normal_", POSITIVE, "-1.0"),
        id="truncated_normal_stddev",
    ),
    pytest.param(
        lambda: init.RandomNormal(stddev=0),
        _message("stddev", "RandomNormal", POSITIVE, "0"),
        id="RandomNormal_stddev",
    ),
    # The mistake is made in TruncatedNormal's constructor and must be reported there.
    pytest.param(
        lambda: init.TruncatedNormal(stddev=0),
        _message("stddev", "TruncatedNormal", POSITIVE, "0"),
        id="TruncatedNormal_stddev",
    ),
    pytest.param(
        lambda: init.random_normal_(_w(), mean=math.inf),
        _message("mean", "random_normal_", "a finite real number", "inf"),
        id="random_normal_mean",
    ),
    pytest.param(
        lambda: init.constant_(_w(), True),
        _message("value", "constant_", "a finite real number", "True"),
        id="constant_bool",
    ),
    pytest.param(
        lambda: init.Constant(math.nan),
        _message("value", "Constant", "a finite real number", "nan"),
        id="Constant_nan",
    ),
    pytest.param(
        lambda: init.orthogonal_(_w(), gain=math.inf),
        _message("gain", "orthogonal_", "a finite real number", "inf"),
        id="orthogonal_gain",
    ),
    pytest.param(
        lambda: init.variance_scaling_(_w(), fans=(-1, 3)),
        _message("fans[0]", "variance_scaling_", "an integer >= 0", "-1"),
        id="fans_negative",
    ),
    pytest.param(
        lambda: init.variance_scaling_(_w(), fans=(3, 2.5)),
        _message("fans[1]", "variance_scaling_", "an integer >= 0", "2.5"),
        id="fans_float",
    ),
    pytest.param(
        lambda: init.variance_scaling_([[1.0, 2.0]]),
        _message("tensor", "variance_scaling_", "a torch.Tensor", "'list'"),
        id="not_a_tensor_list",
    ),
    pytest.param(
        lambda: init.variance_scaling_(np.zeros((3, 4))),
        _message("tensor", "variance_scaling_", "a torch.Tensor", "'ndarray'"),
        id="not_a_tensor_ndarray",
    ),
]


@pytest.mark.parametrize(("call", "message"), ERRORS)
def test_error_message(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


@pytest.mark.parametrize("fans", [(3,), (3, 4, 5), 7], ids=["one", "three", "int"])
def test_fans_must_be_a_pair(fans: Any) -> None:
    # A malformed ``fans=`` is a user mistake: reported at the door in the one wording,
    # not as an IndexError/TypeError from inside, and never silently truncated.
    with pytest.raises(ValueError, match=r"^The 'fans' parameter of variance_scaling_ must be "):
        init.variance_scaling_(_w(), fans=fans)


@pytest.mark.parametrize("fill", ALL_INITIALIZERS)
@pytest.mark.parametrize(
    "bad", [np.zeros((20, 30)), [[0.0] * 30] * 20, None], ids=lambda v: type(v).__name__
)
def test_non_tensor_argument_is_refused(fill: Any, bad: Any) -> None:
    got = re.escape(repr(type(bad).__name__))
    pattern = rf"^The 'tensor' parameter of \w+ must be a torch\.Tensor\. Got {got} instead\.$"
    with pytest.raises(ValueError, match=pattern):
        fill(bad, gen(0))


# ------------------------------------------------------------------- 9. zero-size tensors


@pytest.mark.parametrize("shape", [(0, 5), (4, 0, 3, 3)], ids=["2d", "4d"])
@pytest.mark.parametrize("fill", ALL_INITIALIZERS)
def test_zero_size_tensor_warns_and_is_a_no_op(fill: Any, shape: tuple[int, ...]) -> None:
    w = torch.empty(shape)
    g = gen(0)
    state = g.get_state()
    with pytest.warns(UserWarning, match="zero-element tensor is a no-op"):
        out = fill(w, g)
    assert out is w
    assert w.shape == shape
    assert torch.equal(g.get_state(), state)  # nothing was drawn


def test_get_instantiates_initializer_classes() -> None:
    assert init.get(init.HeNormal) == init.HeNormal()
    assert isinstance(init.get(init.VarianceScaling), init.VarianceScaling)


def test_zero_size_warning_points_at_the_callers_line() -> None:
    with pytest.warns(UserWarning) as record:
        init.HeNormal()(torch.empty(0, 3))
    assert record[0].filename == __file__


def test_errors_name_the_function_the_user_called() -> None:
    with pytest.raises(ValueError, match=re.escape("The 'tensor' parameter of he_normal_ must")):
        init.he_normal_(torch.empty(5))
    with pytest.raises(ValueError, match=re.escape("The 'tensor' parameter of LecunNormal must")):
        init.LecunNormal()(torch.empty(5))


def test_pytorch_default_is_what_nn_linear_draws() -> None:
    """nn.Linear's kaiming_uniform_(a=sqrt(5)) draws U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    ours = init.pytorch_default_(torch.empty(200, 300), generator=gen(1))
    bound = 1 / math.sqrt(300)
    assert ours.abs().max().item() <= bound
    with torch.random.fork_rng():  # nn.Linear draws from the global RNG: seed it here
        torch.manual_seed(2)
        theirs = torch.nn.Linear(300, 200).weight.detach()
    assert stats.ks_2samp(ours.flatten().numpy(), theirs.flatten().numpy()).pvalue > 1e-5
