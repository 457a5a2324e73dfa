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


def _split_in_numpy(weight: np.ndarray, bias: np.ndarray) -> tuple[float, float]:
    """bias_split's least squares, written out: b = -m·W1 + r."""
    sums = weight.reshape(len(weight), -1).sum(axis=1)
    m = -float(bias @ sums) / float(sums @ sums)
    rest = bias + m * sums
    if float(rest @ rest) > 0.5 * float(bias @ bias):
        return 0.0, float(np.mean(bias**2))
    return m, float(np.mean(rest**2))


def test_bias_splits_of_many_layers_are_each_layers_own() -> None:
    """Layers of mixed shapes, packed: each gets its own split, in its own place, equal to
    NumPy's; a layer without a bias, a 1-D weight and a bias of another length too."""
    aligned_w = _data(20, 12, 7)
    aligned_b = -0.3 * aligned_w.sum(dim=1) + 1e-3 * _data(21, 12)  # m = 0.3, small rest
    weights = [_data(22, 12, 7), aligned_w, _data(23, 5, 3, 2), _data(24, 12, 7), _data(25, 6)]
    biases = [_data(26, 12), aligned_b, _data(27, 5), None, _data(28, 6)]
    weights.append(_data(29, 4, 3))
    biases.append(_data(30, 5))  # no unit per bias: all of it is rest
    splits = _stats.bias_splits(weights, biases)  # type: ignore[arg-type]
    assert splits == [_stats.bias_split(w, b) for w, b in zip(weights, biases, strict=True)]
    for index in (0, 1, 2):
        expected = _split_in_numpy(weights[index].numpy(), biases[index].numpy())  # type: ignore[union-attr]
        assert splits[index] == pytest.approx(expected, rel=TIGHT, abs=1e-300)
    assert splits[1][0] == pytest.approx(0.3, rel=1e-3)
    assert splits[3] == (0.0, 0.0) and splits[4] == (0.0, 0.0)  # no bias; 1-D weight
    assert splits[5] == pytest.approx((0.0, float(np.mean(biases[5].numpy() ** 2))), rel=TIGHT)  # type: ignore[union-attr]


def test_weight_scales_of_many_layers_are_each_layers_own() -> None:
    weights = [_data(31, 20, 50, std=0.2), _data(32, 8, 3, 3, 3), _data(33, 20, 50, std=3.0)]
    biases = [_data(34, 20, std=0.1), None, torch.zeros(0, dtype=torch.float64)]
    fans = [(50.0, 20.0), (27.0, 72.0), (50.0, 20.0)]
    scales = _stats.packed_weight_scales(weights, biases, fans)
    for (weight, bias, (fan_in, fan_out)), scale in zip(
        zip(weights, biases, fans, strict=True), scales, strict=True
    ):
        variance = float(np.mean(weight.numpy() ** 2))
        assert scale["weight_var"] == pytest.approx(variance, rel=TIGHT)
        assert scale["weight_scale_fan_in"] == pytest.approx(variance * fan_in, rel=TIGHT)
        expected_bias = float(np.mean(bias.numpy() ** 2)) if bias is not None and len(bias) else 0.0
        assert scale["bias_var"] == pytest.approx(expected_bias, rel=TIGHT)
        assert (scale["fan_in"], scale["fan_out"]) == (fan_in, fan_out)


def test_read_back_gives_each_tensors_own_value() -> None:
    tensors = [
        torch.tensor(1 / 3, dtype=torch.float64),
        torch.tensor(0.1, dtype=torch.float32),
        torch.tensor(7),
        torch.tensor(-2.25, dtype=torch.float64),
        torch.tensor(float("nan")),
    ]
    values = _stats.read_back(tensors)
    assert values[:4] == [t.item() for t in tensors[:4]]  # float32's 0.1 exactly, as .item()
    assert np.isnan(values[4])
    assert _stats.norms_of([]) == []
    (norm,) = _stats.norms_of([_data(35, 30, 30)])
    assert norm.item() == _stats.norm_of(_data(35, 30, 30))[0].item()


def test_packed_reductions_in_a_workspace_are_those_without() -> None:
    """A workspace's buffers, reused for another record's numbers, change nothing."""
    workspace: _stats.Workspace = {}
    cpu = torch.device("cpu")
    for seed in (40, 41):  # the second record writes over the first's buffers
        tensors = {0: _data(seed, 32, 10).float(), 1: _data(seed + 9, 32, 10).float()}
        tensors[2] = _data(seed + 19, 32, 3).float()
        for reduce in (_stats.packed_moments, _stats.packed_squares):
            kept = reduce(tensors, 3, cpu, workspace)
            assert torch.equal(kept, reduce(tensors, 3, cpu))
    assert workspace  # the buffers are kept
