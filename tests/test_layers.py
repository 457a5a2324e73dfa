"""Dense, Flatten, Activation and Sequential: Keras words on plain PyTorch modules."""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

import signalprop as sp
from signalprop.layers import Activation, Dense, Flatten, Sequential

# Standard error of the sample variance ratio s²/σ² is sqrt((κ - 1) / n): κ - 1 = 0.8 for
# a uniform, 1.366 for a normal cut at ±2σ. Five standard errors: a false failure has
# probability below 1e-6 per check.
UNIFORM_KURT, TRUNC_KURT = 0.8, 1.366


def assert_variance(weight: torch.Tensor, expected: float, excess_kurtosis: float) -> None:
    n = weight.numel()
    tolerance = 5 * math.sqrt(excess_kurtosis / n)
    ratio = weight.double().pow(2).mean().item() / expected  # the mean is 0 by construction
    assert abs(ratio - 1) < tolerance, (ratio, tolerance)


def chapter_net(activation: str, initializer: str, depth: int = 100) -> Sequential:
    """The chapter's deep net, written as a learner would write it in Keras."""
    return Sequential(
        [Flatten(), Dense(300, activation, kernel_initializer=initializer)]
        + [Dense(100, activation, kernel_initializer=initializer) for _ in range(depth - 1)]
        + [Dense(10, "softmax")],
        input_shape=(28, 28),
    )


# ------------------------------------------------------------------------ Dense


def test_dense_defaults_are_keras_glorot_uniform_and_zero_bias() -> None:
    torch.manual_seed(0)
    layer = Dense(200, input_dim=300)
    assert layer.weight.shape == (200, 300) and layer.bias is not None
    assert layer.bias.shape == (200,)
    variance = 1.0 / ((300 + 200) / 2)  # Glorot: scale 1 over fan_avg
    bound = math.sqrt(3 * variance)
    assert layer.weight.abs().max().item() <= bound
    assert layer.weight.abs().max().item() > 0.99 * bound  # 60,000 draws reach the edge
    assert_variance(layer.weight, variance, UNIFORM_KURT)
    assert torch.count_nonzero(layer.bias) == 0
    assert isinstance(layer.activation, sp.layers.Identity)


@pytest.mark.parametrize(
    ("initializer", "variance_of", "kurtosis"),
    [
        ("lecun_normal", lambda fi, fo: 1 / fi, TRUNC_KURT),
        ("he_normal", lambda fi, fo: 2 / fi, TRUNC_KURT),
        ("he_uniform", lambda fi, fo: 2 / fi, UNIFORM_KURT),
        ("glorot_normal", lambda fi, fo: 2 / (fi + fo), TRUNC_KURT),
    ],
)
def test_dense_kernel_statistics(initializer, variance_of, kurtosis) -> None:
    torch.manual_seed(1)
    layer = Dense(150, "selu", kernel_initializer=initializer, input_dim=400)
    assert_variance(layer.weight, variance_of(400, 150), kurtosis)


def test_dense_infers_input_size_at_first_call_with_right_fans() -> None:
    torch.manual_seed(2)
    layer = Dense(120, kernel_initializer="he_uniform")
    assert layer.has_uninitialized_params()
    out = layer(torch.randn(4, 500))
    assert out.shape == (4, 120)
    assert layer.in_features == 500 and layer.weight.shape == (120, 500)
    assert layer.weight.abs().max().item() <= math.sqrt(3 * 2 / 500)
    assert_variance(layer.weight, 2 / 500, UNIFORM_KURT)
    assert not layer.has_uninitialized_params()


def test_dense_applies_its_activation() -> None:
    layer = Dense(3, "relu", kernel_initializer="ones", bias_initializer="zeros", input_dim=2)
    x = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    assert torch.equal(layer(x), torch.tensor([[3.0] * 3, [0.0] * 3]))


def test_dense_accepts_modules_and_initializer_objects() -> None:
    prelu = sp.layers.PReLU()
    layer = Dense(4, prelu, kernel_initializer=sp.init.HeNormal(seed=3), input_dim=5)
    assert layer.activation is prelu
    names = dict(layer.named_parameters())
    assert set(names) == {"weight", "bias", "activation.weight"}
    again = Dense(4, "prelu", kernel_initializer=sp.init.HeNormal(seed=3), input_dim=5)
    assert torch.equal(layer.weight, again.weight)  # a seeded initializer repeats itself


def test_dense_without_bias() -> None:
    layer = Dense(3, use_bias=False, input_dim=2)
    assert layer.bias is None and not layer.use_bias
    assert set(layer.state_dict()) == {"weight"}
    lazy = Dense(3, use_bias=False)
    lazy(torch.zeros(1, 7))
    assert lazy.bias is None and lazy.weight.shape == (3, 7)


def test_dense_reset_parameters_with_generator_is_reproducible() -> None:
    layer = Dense(6, "elu", kernel_initializer="he_normal", input_dim=4)
    layer.reset_parameters(generator=torch.Generator().manual_seed(9))
    first = layer.weight.detach().clone()
    layer.reset_parameters(generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, layer.weight)


def test_dense_state_dict_is_interchangeable_with_nn_linear() -> None:
    torch.manual_seed(4)
    layer = Dense(5, "selu", input_dim=3)
    linear = nn.Linear(3, 5)
    linear.load_state_dict(layer.state_dict())
    x = torch.randn(8, 3)
    assert torch.allclose(nn.functional.selu(linear(x)), layer(x), atol=1e-6)
    other = nn.Linear(3, 5)
    layer.load_state_dict(other.state_dict())  # and back: a Linear's weights drive the Dense
    assert torch.equal(layer.weight, other.weight) and torch.equal(layer.bias, other.bias)
    assert torch.allclose(layer(x), nn.functional.selu(other(x)), atol=1e-6)


def test_dense_dtype_and_device_arguments_and_to() -> None:
    layer = Dense(4, "tanh", input_dim=3, dtype=torch.float64, device="cpu")
    assert layer.weight.dtype == torch.float64
    assert layer(torch.ones(2, 3, dtype=torch.float64)).dtype == torch.float64
    lazy = Dense(4, dtype=torch.float64)
    lazy(torch.ones(1, 3, dtype=torch.float64))
    assert lazy.weight.dtype == torch.float64
    half = layer.to(torch.bfloat16)
    assert half.weight.dtype == torch.bfloat16


def test_dense_repr_shows_activation_and_initializer() -> None:
    layer = Dense(100, activation="selu", kernel_initializer="lecun_normal", input_dim=300)
    assert repr(layer) == (
        "Dense(units=100, input_dim=300, activation=SELU(), kernel_initializer=LecunNormal())"
    )
    assert "input_dim=None" in repr(Dense(3))
    text = repr(Dense(3, sp.layers.LeakyReLU(alpha=0.2), bias_initializer="ones", input_dim=2))
    assert "activation=LeakyReLU(alpha=0.2)" in text and "bias_initializer=Ones()" in text
    assert "use_bias=False" in repr(Dense(3, use_bias=False))


def test_fans_for_dense_matches_linear_layout() -> None:
    assert sp.init.fans_for(Dense(7, input_dim=3)) == (3, 7)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": 0}, "The 'units' parameter of Dense must be an integer >= 1. Got 0 instead."),
        (
            {"units": 2.5},
            "The 'units' parameter of Dense must be an integer >= 1. Got 2.5 instead.",
        ),
        ({"units": True}, "The 'units' parameter of Dense must be an integer >= 1. Got True"),
        (
            {"units": 3, "input_dim": 0},
            "The 'input_dim' parameter of Dense must be an integer >= 1. Got 0 instead.",
        ),
        (
            {"units": 3, "use_bias": "yes"},
            "The 'use_bias' parameter of Dense must be a bool. Got 'yes' instead.",
        ),
        ({"units": 3, "activation": "selu2"}, "Did you mean 'selu'?"),
        ({"units": 3, "kernel_initializer": "he_norml"}, "Did you mean 'he_normal'?"),
        ({"units": 3, "bias_initializer": "zero"}, "Did you mean 'zeros'?"),
    ],
)
def test_dense_rejects_bad_arguments_at_construction(kwargs, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Dense(**kwargs)


def test_sequential_rejects_non_modules_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match=re.escape("The 'layers[1]' parameter of Sequential")):
        Sequential([Dense(3), "relu"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'input_shape' parameter of Sequential"):
        Sequential([Dense(3)], input_shape=(0,))
    with pytest.raises(ValueError, match=re.escape("'layer' parameter of Sequential.add")):
        Sequential().add("relu")  # type: ignore[arg-type]


# --------------------------------------------------------------- Sequential


def test_a_slice_of_a_sequential_is_a_sequential_of_those_layers() -> None:
    """``model[1:]`` as nn.Sequential slices: the same layer objects, under their names."""
    model = Sequential([Dense(8, "relu"), Dense(8, "tanh"), Dense(2)], input_shape=(4,))
    tail = model[1:]
    assert isinstance(tail, Sequential)
    assert list(tail) == list(model)[1:]
    assert [name for name, _ in tail.named_children()] == ["1", "2"]
    x = torch.randn(5, 8)
    torch.testing.assert_close(tail(x), model[2](model[1](x)))
    refused = """The "layers['b']" parameter of Sequential"""
    with pytest.raises(ValueError, match=re.escape(refused)):
        Sequential(OrderedDict([("a", Dense(3)), ("b", "relu")]))  # type: ignore[list-item]


def test_sequential_with_input_shape_builds_every_layer_and_keeps_modes() -> None:
    dropout = nn.Dropout(0.5)
    model = Sequential([Flatten(), Dense(8, "relu"), dropout, Dense(3)], input_shape=(2, 5))
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert model[1].weight.shape == (8, 10) and model[3].weight.shape == (3, 8)
    assert model.training and dropout.training  # the dry run did not leave eval mode on
    frozen = nn.BatchNorm1d(8).eval()
    Sequential([Dense(8), frozen, Dense(2)], input_shape=(4,))
    assert not frozen.training
    assert torch.count_nonzero(frozen.running_mean) == 0  # eval dry run: statistics untouched


def test_sequential_without_input_shape_builds_at_first_call_and_add() -> None:
    model = Sequential([Dense(4, "tanh")])
    model.add(Dense(2))
    assert model(torch.randn(3, 6)).shape == (3, 2)
    built = Sequential([Dense(4)], input_shape=(6,)).add(Dense(5))
    assert built[1].weight.shape == (5, 4)


def test_activation_layer_and_flatten() -> None:
    assert isinstance(Activation("selu"), sp.layers.SELU)
    assert isinstance(Activation(None), sp.layers.Identity)
    assert Flatten()(torch.zeros(2, 3, 4, 5)).shape == (2, 60)
    assert isinstance(sp.layers.LeakyReLU(alpha=0.2), nn.LeakyReLU)


def test_top_level_surface() -> None:
    assert sp.Dense is Dense and sp.Sequential is Sequential
    assert sp.SELU_ALPHA == sp.activations.SELU_ALPHA
    assert sp.SELU_SCALE == sp.activations.SELU_SCALE


# ------------------------------------------------------ the chapter's 100 layers


def test_chapter_selu_net_self_normalizes_at_depth_100() -> None:
    """SELU + LeCun normal on standardized inputs keeps mean ~0, std ~1 at every depth.

    Width 100, batch 500: the published demo shows std between 0.83 and 1.00 every
    100 layers out of 1,000. The band below (|mean| < 0.25, 0.75 < std < 1.2) is wider
    than the run-to-run spread of a seeded batch of 500 x 100 values.
    """
    torch.manual_seed(42)
    model = chapter_net("selu", "lecun_normal")
    x = torch.randn(500, 28, 28)
    h = x.flatten(1)
    with torch.no_grad():
        for layer in list(model)[1:-1]:
            h = layer(h)
            assert abs(h.mean().item()) < 0.25
            assert 0.75 < h.std().item() < 1.2
        probabilities = model[-1](h)
    assert probabilities.shape == (500, 10)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(500), atol=1e-5)
    assert sum(isinstance(m, Dense) for m in model) == 101


def test_chapter_net_trains_and_compiles() -> None:
    torch.manual_seed(0)
    model = chapter_net("selu", "lecun_normal", depth=10)
    x, y = torch.randn(64, 28, 28), torch.randint(0, 10, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = nn.functional.nll_loss(torch.log(model(x)), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]  # 30 steps on one batch of 64: it must fit
    compiled = torch.compile(model)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)
