"""signalprop._stats against brute force: NumPy in float64 on the same numbers.

Inputs are float64 so that the comparisons can be tight: a relative tolerance of 1e-12
is ~5,000 float64 epsilons, ample for sums over a few thousand numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signalprop import _stats

TIGHT = 1e-12


def _data(seed: int, *shape: int, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(*shape, generator=generator, dtype=torch.float64)


def test_moments_one_tensor_and_packed_give_numpys_mean_and_std() -> None:
    # |mean| >> std: a one-pass sum of squares would lose the variance here.
    x, y = _data(0, 64, 50, mean=30.0, std=0.5), _data(1, 64, 50)
    mean, std, finite = _stats.mean_std(_stats.moments(x))
    assert finite
    assert mean == pytest.approx(np.mean(x.numpy()), rel=TIGHT)
    assert std == pytest.approx(np.std(x.numpy(), ddof=1), rel=1e-9)  # cancellation: 30²/0.5²
    packed = _stats.packed_moments({0: x, 2: y}, 3, torch.device("cpu")).numpy()
    means, stds = _stats.mean_std_of_packed(*packed)
    assert means[[0, 2]] == pytest.approx([np.mean(x.numpy()), np.mean(y.numpy())], rel=TIGHT)
    assert stds[[0, 2]] == pytest.approx(
        [np.std(x.numpy(), ddof=1), np.std(y.numpy(), ddof=1)], rel=TIGHT
    )
    assert np.isnan(means[1])  # a row without a tensor


def test_packed_moments_summed_over_processes_are_the_whole_batchs() -> None:
    """Each process reduces its half; the sums give the std of the whole batch, the
    spread between the halves' means included."""
    whole = torch.cat([_data(2, 32, 40, mean=-1.0), _data(3, 32, 40, mean=2.0)])
    halves = [_stats.packed_moments({0: part}, 1, torch.device("cpu")) for part in whole.chunk(2)]
    mean, std = _stats.mean_std_of_packed(*(halves[0] + halves[1]).numpy())
    assert mean[0] == pytest.approx(np.mean(whole.numpy()), rel=TIGHT)
    assert std[0] == pytest.approx(np.std(whole.numpy(), ddof=1), rel=TIGHT)


def test_gradient_rms_one_tensor_and_packed() -> None:
    g = _data(4, 16, 30, std=1e-3)
    expected = np.sqrt(np.mean(g.numpy() ** 2))
    assert _stats.rms(_stats.norm_of(g)) == pytest.approx(expected, rel=TIGHT)
    n, squares = _stats.packed_squares({0: g}, 1, torch.device("cpu")).numpy()
    assert _stats.rms_of_squares(squares, n)[0] == pytest.approx(expected, rel=TIGHT)


def test_alive_units_along_the_unit_axis() -> None:
    conv = _data(5, 8, 4, 3, 3).abs()  # (batch, channels, h, w)
    conv[:, 2] = -conv[:, 2]
    dense = _data(6, 8, 5, 6).abs()  # (batch, tokens, features)
    dense[..., 4] = -dense[..., 4]
    conv_alive = _stats.alive_units(conv, 1)
    dense_alive = _stats.alive_units(dense, -1)
    assert conv_alive.tolist() == [True, True, False, True]
    assert dense_alive.tolist() == [True] * 4 + [False, True]
    flags = dense_alive.to(torch.float64).numpy()
    assert _stats.dead_of_flags(flags) == pytest.approx(1 / 6, rel=TIGHT)


def test_saturated_count_counts_both_ends() -> None:
    y = torch.tensor([-1.0, -0.97, -0.5, 0.0, 0.5, 0.97, 0.99, 1.0], dtype=torch.float64)
    # tanh's range is 2 wide: a margin of 0.02 is within 0.04 of either end.
    assert int(_stats.saturated_count(y, "tanh", 0.02)) == 5
    assert int(_stats.saturated_count(torch.sigmoid(y), "sigmoid", 0.02)) == 0


def test_weight_scales_from_the_weights_and_fans() -> None:
    weight, bias = _data(7, 20, 50, std=0.2), _data(8, 20, std=0.1)
    scales = _stats.weight_scales(weight, bias, 50, 20)
    variance = np.mean(weight.numpy() ** 2)
    assert scales["weight_var"] == pytest.approx(variance, rel=TIGHT)
    assert scales["weight_scale_fan_in"] == pytest.approx(variance * 50, rel=TIGHT)
    assert scales["weight_scale_fan_avg"] == pytest.approx(variance * 35, rel=TIGHT)
    assert scales["bias_var"] == pytest.approx(np.mean(bias.numpy() ** 2), rel=TIGHT)
    assert _stats.weight_scales(weight, None, 50, 20)["bias_var"] == 0.0


def test_bias_split_finds_the_mean_the_bias_cancels() -> None:
    weight = _data(9, 10, 40)
    bias = 0.7 * -weight.sum(dim=1)  # b = -m·W1 with m = 0.7, no rest
    m, rest = _stats.bias_split(weight, bias)
    assert m == pytest.approx(0.7, rel=TIGHT)
    assert rest == pytest.approx(0.0, abs=1e-20)


def test_update_norms_and_ratio() -> None:
    weight = _data(10, 30, 30)
    grad = _data(11, 30, 30)
    copy = weight.clone()
    lr = 0.01
    moved = weight - lr * grad
    (change,) = _stats.change_norms([copy], [moved]).tolist()
    step = lr * np.linalg.norm(grad.numpy())
    assert change == pytest.approx(step, rel=TIGHT)
    norms = _stats.norms_by_id([grad, grad, weight])  # the gradient named twice
    assert len(norms) == 2
    (squared,) = _stats.squared_norms([norms[id(grad)]], [lr]).tolist()
    assert squared == pytest.approx(step**2, rel=TIGHT)
    ratio = _stats.update_ratio(
        np.array([squared]), _stats.squared_norms([norms[id(weight)]]).numpy()
    )
    assert ratio[0] == pytest.approx(step / np.linalg.norm(weight.numpy()), rel=TIGHT)


def test_finite_flags() -> None:
    big = torch.full((4,), 3e38)  # finite, but their sum overflows float32
    nan = torch.tensor([1.0, float("nan")])
    assert _stats.finite_flags([big, big]) == [True, True]
    assert _stats.finite_flags([big, nan, torch.ones(2)]) == [True, False, True]
    assert _stats.finite_flags([]) == []
