"""propagate: the data-free depth experiment against the chapter's demo and the variance
recursion of a ReLU net with Glorot weights."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch

import signalprop as sp
from signalprop.propagate import PropagationResult


def test_sequences_have_one_entry_per_layer() -> None:
    result = sp.propagate("tanh", "glorot_uniform", depth=7, width=20, batch=30)
    assert isinstance(result, PropagationResult)
    for values in (result.forward_mean, result.forward_std, result.grad_std):
        assert isinstance(values, np.ndarray)
        assert values.shape == (7,)
        assert np.isfinite(values).all()
    assert (result.depth, result.width, result.batch, result.seed) == (7, 20, 30, 0)


def test_selu_lecun_keeps_its_fixed_point_over_1000_layers() -> None:
    """The chapter's demo, at its size: width 100, batch 500, depth 1000 (about a second)."""
    result = sp.propagate("selu", "lecun_normal", depth=1000, width=100, batch=500)
    # The chapter's tolerances: the observed extremes are about ±0.14 and [0.90, 1.16].
    assert len(result.forward_std) == 1000
    assert np.abs(result.forward_mean).max() < 0.25
    assert result.forward_std.min() > 0.75
    assert result.forward_std.max() < 1.25


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
def test_without_selu_the_same_weights_leave_the_band(activation: str) -> None:
    # The band above is a real test: with LeCun weights, tanh/ReLU/ELU fall below std 0.2
    # within 50 layers (about 0.10, 7e-9 and 0.05).
    result = sp.propagate(activation, "lecun_normal", depth=50, width=100, batch=500)
    assert result.forward_std[-1] < 0.2


def test_gradient_std_is_one_at_the_top() -> None:
    batch, width = 500, 100
    result = sp.propagate("selu", "lecun_normal", depth=10, width=width, batch=batch)
    # The top gradient is g ~ N(0, 1) itself: its sample std over n = batch·width values
    # has standard error 1/sqrt(2n) ≈ 0.0032; allow 5 of them.
    n = batch * width
    assert abs(result.grad_std[-1] - 1) < 5 / math.sqrt(2 * n)


def test_relu_glorot_shrinks_by_one_over_root_two_per_layer() -> None:
    """He et al. (2015): with var(w) = 1/fan_in, E[h_l²] = E[z_l²]/2 and z_{l+1} has the
    variance of h_l, so every layer halves the variance: std_l = c · 2^(−l/2), with
    c = sqrt(1/2 − 1/(2π)) the std of ReLU(N(0, 1))."""
    c = math.sqrt(0.5 - 1 / (2 * math.pi))
    runs = [
        sp.propagate("relu", "glorot_uniform", 20, width=100, batch=500, seed=s, dtype="float64")
        for s in range(10)
    ]
    first = np.array([r.forward_std[0] for r in runs])
    # Layer 1: a std over 50,000 values whose weights are 10,000 uniform draws; the spread
    # across seeds is about 0.7 % (measured), so 5 % is about 7 standard errors.
    assert np.abs(first / c - 1).max() < 0.05
    # The per-layer log-ratio log(std_{l+1}/std_l) fluctuates with the weights by about
    # 0.09 (width 100; measured over 60 seeds); averaged over 10 runs × 19 ratios, its
    # standard error is ≈ 0.007. Allow 0.035 (5 standard errors) around log(1/√2) ≈ −0.347.
    log_ratios = np.concatenate([np.diff(np.log(r.forward_std)) for r in runs])
    assert abs(log_ratios.mean() - math.log(2**-0.5)) < 0.035
    # And the formula itself, layer by layer: the log-deviation accumulates as a random
    # walk, SD ≈ 0.09·sqrt(19) ≈ 0.4 at the top; 1.5 is almost 4 SD (and a net that did
    # not shrink would be off by log(2^9.5) ≈ 6.6 there).
    for r in runs:
        predicted = c * 2.0 ** (-np.arange(20) / 2)
        assert np.all(np.abs(np.log(r.forward_std / predicted)) < 1.5)


def test_same_seed_same_result_different_seed_different() -> None:
    def run(seed: int) -> PropagationResult:
        return sp.propagate("elu", "he_normal", depth=5, width=30, batch=40, seed=seed)

    a, b, c = run(1), run(1), run(2)
    for key in ("forward_mean", "forward_std", "grad_std"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
        assert not np.array_equal(getattr(a, key), getattr(c, key))


@pytest.mark.parametrize("activation", ["selu", "rrelu"])
def test_the_global_rng_is_untouched(activation: str) -> None:
    state = torch.get_rng_state()
    sp.propagate(activation, "he_normal", depth=5, width=20, batch=30)
    assert torch.equal(state, torch.get_rng_state())


def test_float64_and_plain_data() -> None:
    result = sp.propagate("tanh", "glorot_normal", depth=12, width=20, batch=30, dtype="float64")
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["forward_std"] == [float(v) for v in result.forward_std]
    lines = result.table().splitlines()
    assert lines[0].split() == ["layer", "mean", "std", "grad", "std"]
    assert lines[1].split()[0] == "1" and lines[-1].split()[0] == "12"
    assert str(result).startswith(f"{result.activation} + {result.init}: 12 layers")


BAD_ARGUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("depth", {"depth": 0}),
    ("depth", {"depth": 2.5}),
    ("depth", {"depth": True}),
    ("width", {"width": 0}),
    ("batch", {"batch": 1}),
    ("seed", {"seed": -1}),
    ("dtype", {"dtype": "float16"}),
    ("activation", {"activation": "selux"}),
    ("activation", {"activation": "softmax"}),  # not elementwise: no hidden layer's
    ("activation", {"activation": torch.nn.Softmax(dim=-1)}),
    ("identifier", {"init": "lecun_normall"}),
]


@pytest.mark.parametrize(
    ("param", "change"), BAD_ARGUMENTS, ids=[repr(c) for _, c in BAD_ARGUMENTS]
)
def test_bad_arguments_raise(param: str, change: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"activation": "selu", "init": "lecun_normal", "depth": 3}
    kwargs.update(change)
    with pytest.raises(ValueError, match=rf"^The '{param}' parameter of "):
        sp.propagate(**kwargs)


@pytest.mark.parametrize(
    ("activation", "init", "shown", "verdict"),
    [
        # Measured at depth 100, width 100, batch 500, seed 0: forward ×1.02, gradient ×47.6.
        ("selu", "lecun_normal", "SELU() + LecunNormal()", "does not make a steady gradient"),
        # Forward ×0.298, gradient ×0.505.
        ("relu", "he_normal", "ReLU() + HeNormal()", "the gradient stays within ×2 and the"),
        # Forward ×0.074, gradient ×0.095.
        ("tanh", "glorot_uniform", "Tanh() + GlorotUniform()", "neither stays within ×2"),
    ],
)
def test_the_closing_note_speaks_of_the_pair_propagated(
    activation: str, init: str, shown: str, verdict: str
) -> None:
    result = sp.propagate(activation, init, depth=100)
    note = result.gradient_note()
    assert f"With {shown}, from layer 1 to layer 100" in note
    assert verdict in note
    if activation != "selu":
        assert "SELU" not in note and "selu" not in note
    assert str(result).endswith(note)
