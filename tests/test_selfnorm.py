"""check_self_normalizing: each of Klambauer et al.'s conditions met on the chapter's net and
violated, at the right place, by one change at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import signalprop as sp
from signalprop.diagnostics import SelfNormalizationCheck

WIDTH, BATCH = 50, 256
CONDITIONS = [
    "standardized_inputs",
    "selu_activations",
    "lecun_normal_init",
    "sequential",
    "dense",
    "no_ordinary_dropout",
]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def standard_inputs(batch: int = BATCH, width: int = WIDTH, seed: int = 0) -> Tensor:
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    return (x - x.mean(0)) / x.std(0)


def selu_dense(units: int = WIDTH, init: Any = "lecun_normal", act: str = "selu") -> sp.Dense:
    return sp.Dense(units, act, kernel_initializer=init)


def chapter(*middle: nn.Module, depth: int = 4) -> sp.Sequential:
    """LeCun-normal SELU layers, then ``middle``, then more of them and a linear output."""
    with seeded(0):
        layers = [selu_dense() for _ in range(depth // 2)]
        layers += [*middle, *(selu_dense() for _ in range(depth - depth // 2)), sp.Dense(10)]
        return sp.Sequential(layers, input_shape=(WIDTH,))


def check(model: nn.Module, x: Tensor | None = None) -> SelfNormalizationCheck:
    return sp.check_self_normalizing(model, standard_inputs() if x is None else x)


def violated(result: SelfNormalizationCheck) -> list[str]:
    return [c.name for c in result.conditions if not c.met]


def test_the_chapter_net_meets_every_condition() -> None:
    result = check(chapter())
    assert [c.name for c in result.conditions] == CONDITIONS
    assert result.ok, str(result)
    assert all(c.where == [] for c in result.conditions)
    assert isinstance(result.report, sp.Report)
    assert result.report.healthy
    assert str(result).startswith("self-normalizing:")


def test_unstandardized_inputs_are_reported() -> None:
    pixels = torch.randint(0, 256, (BATCH, WIDTH), generator=torch.Generator().manual_seed(1))
    result = check(chapter(), pixels.float() / 255)  # mean ≈ 0.5, std ≈ 0.29
    assert violated(result) == ["standardized_inputs"]
    condition = result.condition("standardized_inputs")
    assert "standardize" in condition.detail
    assert str(result).startswith("not self-normalizing:")
    assert "VIOLATED" in str(condition)


@pytest.mark.parametrize("init", ["he_normal", "glorot_uniform"])
def test_a_hidden_layer_without_lecun_weights_is_named(init: str) -> None:
    # Glorot equals LeCun when fan_in = fan_out, so that layer narrows 50 -> 20:
    # var·fan_in = 2·50/(50 + 20) ≈ 1.43. He gives 2. The check's tolerance is
    # 5·sqrt(2/n) ≈ 0.14 for n = 50·20 weights.
    with seeded(0):
        model = sp.Sequential(
            [selu_dense(), selu_dense(), selu_dense(20, init), selu_dense(), sp.Dense(10)],
            input_shape=(WIDTH,),
        )
    result = check(model)
    assert violated(result) == ["lecun_normal_init"]
    condition = result.condition("lecun_normal_init")
    assert condition.where == ["2"]
    assert "lecun_normal" in condition.detail


def test_the_output_layer_needs_no_lecun_weights() -> None:
    with seeded(0):
        model = sp.Sequential(
            [selu_dense(), selu_dense(), sp.Dense(10, kernel_initializer="he_normal")],
            input_shape=(WIDTH,),
        )
    assert check(model).ok


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.out = nn.Linear(WIDTH, 10)
        for layer in (self.fc1, self.fc2):
            sp.init.init_module_(layer, "lecun_normal")
        self.act = nn.SELU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))
        h = h + self.act(self.fc2(h))  # the skip connection
        return self.out(h)


def test_a_skip_connection_is_not_sequential() -> None:
    with seeded(0):
        model = Residual()
    result = check(model)
    assert violated(result) == ["sequential"]
    condition = result.condition("sequential")
    assert condition.where
    assert "skip" in condition.detail


def test_a_conv_layer_is_not_dense() -> None:
    with seeded(0):
        conv = sp.init.init_module_(nn.Conv2d(1, 4, 3, padding=1), "lecun_normal")
        hidden = sp.init.init_module_(nn.Linear(4 * 5 * 10, WIDTH), "lecun_normal")
        model = nn.Sequential(
            conv, nn.SELU(), nn.Flatten(), hidden, nn.SELU(), nn.Linear(WIDTH, 10)
        )
    x = standard_inputs().reshape(BATCH, 1, 5, 10)
    result = check(model, x)
    assert not result.condition("dense").met
    assert result.condition("dense").where == ["0"]
    assert result.condition("sequential").met


@pytest.mark.parametrize(
    ("dropout", "met"), [(nn.Dropout(0.1), False), (nn.AlphaDropout(0.1), True)]
)
def test_ordinary_dropout_breaks_the_fixed_point_alpha_dropout_does_not(
    dropout: nn.Module, met: bool
) -> None:
    result = check(chapter(dropout).eval())
    condition = result.condition("no_ordinary_dropout")
    assert condition.met is met
    assert condition.where == ([] if met else ["2"])
    if not met:
        assert "AlphaDropout" in condition.detail
        assert violated(result) == ["no_ordinary_dropout"]


def test_a_non_selu_hidden_activation_is_named() -> None:
    with seeded(0):
        model = sp.Sequential(
            [selu_dense(), selu_dense(act="elu"), selu_dense(), sp.Dense(10)],
            input_shape=(WIDTH,),
        )
    result = check(model)
    assert violated(result) == ["selu_activations"]
    assert result.condition("selu_activations").where == ["1"]


class Functional(nn.Module):
    """Activations called as functions in ``forward``: only a torch.fx trace sees them."""

    def __init__(self, act: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.out = nn.Linear(WIDTH, 10)
        for layer in (self.fc1, self.fc2):
            sp.init.init_module_(layer, "lecun_normal")
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


def test_functional_selu_is_recognized_through_the_trace() -> None:
    with seeded(0):
        model = Functional(torch.selu)
    result = check(model)
    assert result.ok, str(result)
    assert all(r.activation is None for r in result.report.layers)  # no module to hook


def test_functional_tanh_is_recognized_as_not_selu() -> None:
    with seeded(0):
        model = Functional(torch.tanh)
    result = check(model)
    assert violated(result) == ["selu_activations"]
    assert result.condition("selu_activations").where == ["fc1", "fc2"]


def test_condition_lookup_and_arguments() -> None:
    result = check(chapter())
    with pytest.raises(KeyError):
        result.condition("no such condition")
    with pytest.raises(ValueError, match=r"^The 'model' parameter of check_self_normalizing"):
        sp.check_self_normalizing("model", standard_inputs())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^The 'inputs' parameter of check_self_normalizing"):
        sp.check_self_normalizing(chapter(), [[0.0] * WIDTH])  # type: ignore[arg-type]
