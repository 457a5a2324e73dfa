"""check_self_normalizing: each of Klambauer et al.'s conditions met on the chapter's net and
violated, at the right place, by one change at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
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


class Wrapped(nn.Module):
    """The chapter's net behind an output that is not a Tensor, as Hugging Face models return."""

    def __init__(self, output: str) -> None:
        super().__init__()
        self.net = chapter()
        self.output = output

    def forward(self, x: Tensor) -> Any:
        logits = self.net(x)
        if self.output == "dict":
            return {"hidden": x, "logits": logits}  # logits not first
        if self.output == "tuple":
            return logits, x
        if self.output == "ModelOutput":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=logits)
        return logits


LOGITS = {
    "dict": lambda out: out["logits"],
    "tuple": lambda out: out[0],
    "ModelOutput": lambda out: out.logits,
}
EXAMPLES = {"dict": "out['logits']", "tuple": "out[0]", "ModelOutput": "out['logits']"}


def labels() -> Tensor:
    return torch.randint(0, 10, (BATCH,), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("output", list(LOGITS))
def test_a_model_returning_no_tensor_is_checked_with_a_loss_fn(output: str) -> None:
    """With ``loss_fn`` the check runs and its report measures that loss's gradients: the
    same as diagnose's on the same net returning its logits, with the same labels."""
    if output == "ModelOutput":
        pytest.importorskip("transformers")
    x, y = standard_inputs(), labels()
    pick = LOGITS[output]
    result = sp.check_self_normalizing(
        Wrapped(output), x, y, loss_fn=lambda out, y: F.cross_entropy(pick(out), y)
    )
    assert result.ok, str(result)
    assert result.report is not None
    plain = sp.diagnose(Wrapped("tensor"), x, y)
    got = [(layer.name, layer.grad_pre_rms) for layer in result.report.layers]
    assert got == [(layer.name, layer.grad_pre_rms) for layer in plain.layers]
    assert result.report.loss == plain.loss


def test_a_selu_model_of_its_own_returning_a_dict_meets_every_condition_but_one() -> None:
    """A transformers-free SELU classifier returning a dict; its one ordinary dropout is
    found with the loss_fn as without."""

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with seeded(3):
                self.hidden = nn.Linear(WIDTH, 32)
                self.drop = nn.Dropout(0.1)
                self.head = nn.Linear(32, 10)
            nn.init.normal_(self.hidden.weight, std=WIDTH**-0.5)
            nn.init.zeros_(self.hidden.bias)

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"logits": self.head(self.drop(F.selu(self.hidden(x))))}

    model = Classifier().eval()
    result = sp.check_self_normalizing(
        model, standard_inputs(), labels(), lambda out, y: F.cross_entropy(out["logits"], y)
    )
    assert violated(result) == ["no_ordinary_dropout"]
    assert result.condition("no_ordinary_dropout").where == ["drop"]


@pytest.mark.parametrize("output", list(EXAMPLES))
def test_without_a_loss_fn_the_error_shows_one_for_the_outputs_type(output: str) -> None:
    if output == "ModelOutput":
        pytest.importorskip("transformers")
    model = Wrapped(output)
    kind = {"ModelOutput": "SequenceClassifierOutput"}.get(output, output)
    message = (
        "The 'model' parameter of check_self_normalizing must be a model returning a Tensor, or "
        f"targets and a loss_fn that reads its output. Got {kind!r} instead. "
        f"e.g. loss_fn=lambda out, y: F.cross_entropy({EXAMPLES[output]}, y)"
    )
    for targets in (None, labels()):
        with pytest.raises(ValueError) as raised:
            sp.check_self_normalizing(model, standard_inputs(), targets)
        assert str(raised.value) == message
    # diagnose's error is the same one, naming itself.
    with pytest.raises(ValueError) as raised:
        sp.diagnose(model, standard_inputs())
    assert str(raised.value) == message.replace("check_self_normalizing", "diagnose")


def _not_scalar(out: Any, y: Tensor) -> Tensor:
    return F.cross_entropy(out["logits"], y, reduction="none")


@pytest.mark.parametrize(
    ("loss_fn", "targets", "param", "expected", "got"),
    [
        ("cross_entropy", True, "loss_fn", "a callable or None", "'cross_entropy'"),
        (F.cross_entropy, False, "targets", "given when loss_fn is given", "None"),
        (_not_scalar, True, "loss_fn", "a function returning a scalar Tensor", "'Tensor'"),
    ],
    ids=["not-callable", "no-targets", "not-scalar"],
)
def test_a_wrong_loss_fn_is_refused_in_diagnoses_words(
    loss_fn: Any, targets: bool, param: str, expected: str, got: str
) -> None:
    model, x, y = Wrapped("dict"), standard_inputs(), labels() if targets else None
    message = (
        f"The {param!r} parameter of check_self_normalizing must be {expected}. Got {got} instead."
    )
    with pytest.raises(ValueError) as raised:
        sp.check_self_normalizing(model, x, y, loss_fn)
    assert str(raised.value) == message
    with pytest.raises(ValueError) as raised:
        sp.diagnose(model, x, y, loss_fn)
    assert str(raised.value) == message.replace("check_self_normalizing", "diagnose")
