"""diagnose: every recorded number against a brute-force autograd recomputation, each
detector on a network whose answer is known by construction, state left as it was, and
the report's text and data forms."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import signalprop as sp
from signalprop.diagnostics import Finding, Thresholds, surrogate_loss
from signalprop.diagnostics._report import KINDS

# The forward moments and weight scales are accumulated in float64; the similarity is
# reduced in float32 (eps 1.2e-7), which over the few hundred terms of these nets stays
# far below 1e-5 relative. A wrong definition is caught by a much larger margin: a biased
# instead of unbiased std differs by 1/(2n) ≈ 2e-3 at n = 256, a per-element instead of a
# per-unit dead fraction by whole units (≥ 1/8).
REL, ABS = 1e-5, 1e-9
SEED = 3  # the surrogate loss's seed used throughout


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from the global RNG with a fixed seed, leaving its state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def reference_surrogate(output: Tensor, seed: int) -> Tensor:
    """L = Σ(output ⊙ g) / batch with g ~ N(0, 1) from a generator seeded with ``seed``."""
    g = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed), dtype=output.dtype)
    return (output * g).sum() / output.shape[0]


# ------------------------------------------------------------ brute-force reference

ACTIVATION_FNS: dict[str | None, Callable[[Tensor], Tensor]] = {
    None: lambda z: z,
    "linear": lambda z: z,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,  # never in place: the reference keeps z intact
    "softmax": lambda z: torch.softmax(z, dim=-1),
}

# A plan runs a model by hand: (name of the weight layer, activation applied to its
# output) or a plain function between layers (a flatten).
Plan = list[Any]


def rms(t: Tensor) -> float:
    return t.norm().item() / math.sqrt(t.numel())


def expected_stats(z: Tensor, y: Tensor, module: nn.Module, kind: str | None) -> dict[str, Any]:
    """Each LayerStats field recomputed from the tensors of a hand-run forward/backward."""
    batch = z.shape[0]
    z, y = z.detach(), y.detach()
    out: dict[str, Any] = {
        "pre_mean": z.mean().item(),
        "pre_std": z.std().item(),  # unbiased, as torch.std
        "act_mean": None if kind is None else y.mean().item(),
        "act_std": None if kind is None else y.std().item(),
        "saturated": None,
        "dead": None,
        "similarity": None,
    }
    margin = Thresholds().saturation_margin
    if kind == "sigmoid":  # within margin·(1 − 0) of 0 or 1
        out["saturated"] = ((y <= margin) | (y >= 1 - margin)).double().mean().item()
    if kind == "tanh":  # within margin·(1 − (−1)) of ±1
        out["saturated"] = (y.abs() >= 1 - 2 * margin).double().mean().item()
    if kind == "relu":
        per_unit = z.transpose(0, 1).reshape(z.shape[1], -1)  # a unit is an index of dim 1
        out["dead"] = 1 - (per_unit > 0).any(dim=1).double().mean().item()
        v = z.reshape(batch, -1)
        mean = v.mean(dim=0)
        out["similarity"] = (batch * mean.dot(mean) / v.pow(2).sum()).item()
    weight = module.weight
    receptive_field = math.prod(weight.shape[2:])
    fan_in, fan_out = weight.shape[1] * receptive_field, weight.shape[0] * receptive_field
    variance = weight.detach().pow(2).mean().item()
    out.update(
        weight_var=variance,
        weight_scale_fan_in=variance * fan_in,
        weight_scale_fan_avg=variance * (fan_in + fan_out) / 2,
        fan_in=float(fan_in),
        fan_out=float(fan_out),
        grad_weight_rms=rms(weight.grad),
    )
    return out


def reference(
    model: nn.Module, plan: Plan, x: Tensor, loss_of: Callable[[Tensor], Tensor]
) -> tuple[float, dict[str, dict[str, Any]]]:
    """Run a copy of ``model`` by hand with ``retain_grad()``; return the loss and stats."""
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    h = x
    seen = {}
    for step in plan:
        if callable(step):
            h = step(h)
            continue
        name, kind = step
        module = modules[name]
        z = F.linear(h, module.weight, module.bias) if isinstance(module, sp.Dense) else module(h)
        z.retain_grad()
        y = ACTIVATION_FNS[kind](z)
        if y is not z:
            y.retain_grad()
        seen[name] = (z, y, module, kind)
        h = y
    loss = loss_of(h)
    loss.backward()
    expected = {}
    for name, (z, y, module, kind) in seen.items():
        stats = expected_stats(z, y, module, kind)
        stats["grad_pre_rms"] = rms(z.grad)
        stats["grad_out_rms"] = rms(y.grad)
        expected[name] = stats
    return loss.item(), expected


# ----------------------------------------------------------------- the tiny nets


def build_sp(relu: Any = "relu") -> tuple[nn.Module, Tensor, Plan]:
    """signalprop's Sequential of Dense layers (activations inside the layers)."""
    with seeded(0):
        model = sp.Sequential(
            [sp.Dense(8, "tanh"), sp.Dense(8, relu), sp.Dense(6, "sigmoid"), sp.Dense(3)],
            input_shape=(5,),
        ).double()
        x = torch.randn(32, 5, dtype=torch.float64)
    with torch.no_grad():
        model[0].weight.mul_(4)  # some tanh outputs saturate, some do not
        model[1].weight[:2] = 0.0  # two of eight ReLU units are dead: z = −1 always
        model[1].bias[:2] = -1.0
        model[2].weight.mul_(6)
    return model, x, [("0", "tanh"), ("1", "relu"), ("2", "sigmoid"), ("3", "linear")]


def build_sp_inplace() -> tuple[nn.Module, Tensor, Plan]:
    """A Dense layer whose activation module works in place."""
    return build_sp(nn.ReLU(inplace=True))


def build_nn() -> tuple[nn.Module, Tensor, Plan]:
    """A plain nn.Sequential of nn.Linear and activation modules, ReLU in place."""
    with seeded(1):
        model = nn.Sequential(
            nn.Linear(5, 8),
            nn.Tanh(),
            nn.Linear(8, 8),
            nn.ReLU(inplace=True),
            nn.Linear(8, 6),
            nn.Sigmoid(),
            nn.Linear(6, 3),
        ).double()
        x = torch.randn(32, 5, dtype=torch.float64)
    with torch.no_grad():
        model[0].weight.mul_(4)
        model[2].weight[:2] = 0.0
        model[2].bias[:2] = -1.0
        model[4].weight.mul_(15)
    return model, x, [("0", "tanh"), ("2", "relu"), ("4", "sigmoid"), ("6", None)]


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int, act: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fc(x))


class Nested(nn.Module):
    def __init__(self, classes: int = 3, final: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Block(5, 8, nn.Tanh()), Block(8, 8, nn.ReLU()), Block(8, 6, nn.Sigmoid())
        )
        self.head = nn.Linear(6, classes)
        self.final = final

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.body(x))
        return out if self.final is None else self.final(out)


def build_nested() -> tuple[nn.Module, Tensor, Plan]:
    """A custom module with blocks nested two levels deep."""
    with seeded(2):
        model = Nested().double()
        x = torch.randn(32, 5, dtype=torch.float64)
    with torch.no_grad():
        model.body[0].fc.weight.mul_(4)
        model.body[1].fc.weight[:2] = 0.0
        model.body[1].fc.bias[:2] = -1.0
        model.body[2].fc.weight.mul_(15)
    plan = [("body.0.fc", "tanh"), ("body.1.fc", "relu"), ("body.2.fc", "sigmoid"), ("head", None)]
    return model, x, plan


def build_conv() -> tuple[nn.Module, Tensor, Plan]:
    """Conv2d + ReLU: a unit is a channel (dim 1), not one position of the feature map.

    Channel 0 copies the input, whose top row is always negative: alive as a channel,
    though its 4 top-row positions never fire. Channel 1 is constant −1: dead. So the dead
    fraction is 1/2 per channel, but (4 + 16)/32 = 0.625 per position.
    """
    with seeded(3):
        model = nn.Sequential(
            nn.Conv2d(1, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2, 4, 3, padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 3),
        ).double()
        x = torch.randn(32, 1, 4, 4, dtype=torch.float64)
    x[:, :, 0, :] = -x[:, :, 0, :].abs() - 0.1
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 0.0]).reshape(2, 1, 1, 1))
        model[0].bias.copy_(torch.tensor([0.0, -1.0]))
        model[2].weight.mul_(15)
    return model, x, [("0", "relu"), ("2", "tanh"), nn.Flatten(), ("5", None)]


ALL_STYLES = {
    "sp_sequential": build_sp,
    "sp_dense_inplace_relu": build_sp_inplace,
    "nn_sequential_inplace_relu": build_nn,
    "nested": build_nested,
    "conv": build_conv,
}

QUANTITIES = [
    "pre_mean",
    "pre_std",
    "act_mean",
    "act_std",
    "saturated",
    "dead",
    "similarity",
    "grad_pre_rms",
    "grad_out_rms",
    "grad_weight_rms",
    "weight_var",
    "weight_scale_fan_in",
    "weight_scale_fan_avg",
    "fan_in",
    "fan_out",
]


@pytest.fixture(scope="module", params=list(ALL_STYLES))
def measured(request: pytest.FixtureRequest) -> SimpleNamespace:
    model, x, plan = ALL_STYLES[request.param]()
    report = sp.diagnose(model, x, seed=SEED)
    loss, expected = reference(model, plan, x, lambda out: reference_surrogate(out, SEED))
    return SimpleNamespace(
        style=request.param, model=model, plan=plan, report=report, loss=loss, expected=expected
    )


def assert_matches(report: sp.Report, expected: dict[str, dict[str, Any]], quantity: str) -> None:
    for name, stats in expected.items():
        got, want = getattr(report.layer(name), quantity), stats[quantity]
        if want is None:
            assert got is None, (name, quantity, got)
        else:
            assert got == pytest.approx(want, rel=REL, abs=ABS), (name, quantity, got, want)


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_each_quantity_matches_brute_force(measured: SimpleNamespace, quantity: str) -> None:
    assert_matches(measured.report, measured.expected, quantity)


def test_surrogate_loss_value_matches_its_definition(measured: SimpleNamespace) -> None:
    assert measured.report.surrogate is True
    assert measured.report.loss == pytest.approx(measured.loss, rel=1e-12)


def test_rows_are_named_as_in_named_modules(measured: SimpleNamespace) -> None:
    steps = [s for s in measured.plan if not callable(s)]
    names = dict(measured.model.named_modules())
    assert [r.name for r in measured.report.layers] == [name for name, _ in steps]
    for row in measured.report.layers:
        assert row.name in names
        assert row.layer_type == type(names[row.name]).__name__
    assert [r.activation for r in measured.report.layers] == [kind for _, kind in steps]


def test_constructed_nets_exercise_every_quantity(measured: SimpleNamespace) -> None:
    """The brute-force comparisons compare something: no fraction is trivially 0 or 1."""
    for name, kind in (s for s in measured.plan if not callable(s)):
        stats = measured.expected[name]
        if kind in ("tanh", "sigmoid"):
            assert 0.05 < stats["saturated"] < 0.95, (name, stats["saturated"])
        if kind == "relu":
            assert 0.2 < stats["dead"] < 0.8, (name, stats["dead"])
            assert 0.05 < stats["similarity"] < 0.95, (name, stats["similarity"])
        assert stats["grad_pre_rms"] > 0


def test_conv_unit_is_the_channel() -> None:
    model, x, _ = build_conv()
    report = sp.diagnose(model, x)
    assert report.layer("0").dead == 0.5  # per position it would be 0.625
    assert report.layer("0").fan_in == 1.0
    assert report.layer("2").fan_in == 2 * 3 * 3
    assert report.layer("2").fan_out == 4 * 3 * 3


def test_module_called_twice_gets_numbered_rows() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.act = nn.Tanh()
            self.out = nn.Linear(6, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.out(self.act(self.fc(self.act(self.fc(x)))))

    with seeded(4):
        model, x = Twice(), torch.randn(16, 6)
    report = sp.diagnose(model, x)
    assert [r.name for r in report.layers] == ["fc", "fc#2", "out"]
    assert [r.activation for r in report.layers] == ["tanh", "tanh", None]


# ---------------------------------------------------------------------- losses


def test_integer_targets_use_cross_entropy() -> None:
    model, x, plan = build_nested()
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(5))
    report = sp.diagnose(model, x, y)
    loss, expected = reference(model, plan, x, lambda out: F.cross_entropy(out, y))
    assert report.surrogate is False
    assert report.loss == pytest.approx(loss, rel=1e-12)
    for quantity in ("grad_pre_rms", "grad_out_rms", "grad_weight_rms"):
        assert_matches(report, expected, quantity)


def softmax_sp_model() -> tuple[nn.Module, Tensor, Plan]:
    model, x, plan = build_sp()
    with seeded(5):
        model[3] = sp.Dense(3, "softmax", input_dim=6).double()
    return model, x, [*plan[:-1], ("3", "softmax")]


def softmax_nn_model() -> tuple[nn.Module, Tensor, Plan]:
    model, x, plan = build_nested()
    model.final = nn.Softmax(dim=1)
    return model, x, [*plan[:-1], ("head", "softmax")]


@pytest.mark.parametrize("build", [softmax_sp_model, softmax_nn_model], ids=["sp", "nn"])
def test_softmax_output_uses_nll_of_log_probabilities(build: Callable[..., Any]) -> None:
    model, x, plan = build()
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(6))
    report = sp.diagnose(model, x, y)
    loss, expected = reference(model, plan, x, lambda p: F.nll_loss(torch.log(p), y))
    probabilities = model(x)
    # Cross-entropy on the probabilities themselves (the mistake) is a different number.
    assert abs(F.cross_entropy(probabilities, y).item() - loss) > 1e-3
    assert report.loss == pytest.approx(loss, rel=1e-10)
    for quantity in ("grad_pre_rms", "grad_weight_rms"):
        assert_matches(report, expected, quantity)


def test_float_targets_use_mse() -> None:
    model, x, plan = build_nn()
    y = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    report = sp.diagnose(model, x, y)
    loss, expected = reference(model, plan, x, lambda out: F.mse_loss(out, y))
    assert report.loss == pytest.approx(loss, rel=1e-12)
    assert_matches(report, expected, "grad_pre_rms")
    assert_matches(report, expected, "grad_weight_rms")


def test_custom_loss_fn_is_used() -> None:
    model, x, plan = build_sp()
    y = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))

    def quartic(output: Tensor, targets: Tensor) -> Tensor:
        return (output - targets).pow(4).sum() * 3.0

    report = sp.diagnose(model, x, y, quartic)
    loss, expected = reference(model, plan, x, lambda out: quartic(out, y))
    assert report.surrogate is False
    assert report.loss == pytest.approx(loss, rel=1e-12)
    assert abs(report.loss - F.mse_loss(model(x), y).item()) > 1e-3
    for quantity in ("grad_pre_rms", "grad_out_rms", "grad_weight_rms"):
        assert_matches(report, expected, quantity)


def test_surrogate_loss_function_and_seed() -> None:
    output = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    assert surrogate_loss(output, 11).item() == pytest.approx(
        reference_surrogate(output, 11).item(), rel=1e-12
    )
    model, x, _ = build_sp()
    assert sp.diagnose(model, x, seed=1).loss != sp.diagnose(model, x, seed=2).loss
    assert sp.diagnose(model, x, seed=1).loss == sp.diagnose(model, x, seed=1).loss


# ------------------------------------------------------------------- detectors

INIT_NAMES = ("glorot_uniform", "he_normal", "lecun_normal")


def assert_well_formed(finding: Finding, report: sp.Report) -> None:
    names = [r.name for r in report.layers]
    assert finding.kind in KINDS
    assert finding.layers, finding
    assert all(name in names for name in finding.layers), (finding.layers, names)
    assert finding.severity in {"warning", "error"}
    assert finding.message.strip() and finding.fix.strip()
    assert finding.kind in str(finding)


def only(report: sp.Report, kind: str) -> Finding:
    found = report.findings_of(kind)
    assert len(found) == 1, [f.kind for f in report.findings]
    for finding in report.findings:
        assert_well_formed(finding, report)
    return found[0]


def dense_stack(
    activation: str, init: Any, depth: int, width: int = 50, seed: int = 0
) -> sp.Sequential:
    with seeded(seed):
        layers = [sp.Dense(width, activation, kernel_initializer=init) for _ in range(depth)]
        return sp.Sequential([*layers, sp.Dense(10)], input_shape=(width,))


def standard_inputs(batch: int, width: int, seed: int = 0) -> Tensor:
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    return (x - x.mean(0)) / x.std(0)


def logistic_normal_report(**kwargs: Any) -> sp.Report:
    model = dense_stack("sigmoid", sp.init.RandomNormal(stddev=1.0), depth=5, width=100)
    return sp.diagnose(model, standard_inputs(128, 100), **kwargs)


def test_logistic_with_unit_normal_weights_saturates() -> None:
    report = logistic_normal_report()
    finding = only(report, "saturation")
    assert finding.layers == ["0", "1", "2", "3", "4"]
    assert finding.severity == "error"  # more than half saturated
    assert "logistic" in finding.message
    assert "glorot_uniform" in finding.fix


def test_raising_the_saturation_threshold_removes_the_finding() -> None:
    report = logistic_normal_report(thresholds=Thresholds(saturation=0.99))
    assert report.findings_of("saturation") == []
    assert report.thresholds.saturation == 0.99
    assert max(r.saturated or 0 for r in report.layers) > 0.5  # still measured


def test_relu_layer_with_large_negative_bias_is_dead() -> None:
    with seeded(1):
        model = nn.Sequential(
            nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 10)
        )
    with torch.no_grad():
        model[2].bias.fill_(-50.0)
    report = sp.diagnose(model, standard_inputs(128, 20))
    finding = only(report, "dead_units")
    assert finding.layers == ["2"]
    assert report.layer("2").dead == 1.0
    assert finding.severity == "error"
    assert "bias" in finding.fix
    assert "he_normal" in finding.fix


def test_dead_units_not_judged_on_a_small_batch() -> None:
    with seeded(1):
        model = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))
    with torch.no_grad():
        model[0].bias.fill_(-50.0)
    x = standard_inputs(8, 20)
    assert sp.diagnose(model, x).findings_of("dead_units") == []
    assert any("dead units not judged" in note for note in sp.diagnose(model, x).notes)
    judged = sp.diagnose(model, x, thresholds=Thresholds(min_batch_for_dead=4))
    assert only(judged, "dead_units").layers == ["0"]


def test_deep_tanh_with_tiny_weights_vanishes() -> None:
    model = dense_stack("tanh", sp.init.RandomNormal(stddev=0.01), depth=10)
    report = sp.diagnose(model, standard_inputs(128, 50))
    finding = only(report, "vanishing_gradients")
    assert finding.layers[0] == "0"
    assert finding.severity == "error"
    assert "glorot_uniform" in finding.fix
    assert report.findings_of("exploding_gradients") == []


def test_relu_with_large_weights_explodes() -> None:
    large = sp.init.VarianceScaling(scale=20.0, mode="fan_in", distribution="normal")
    model = dense_stack("relu", large, depth=30)
    report = sp.diagnose(model, standard_inputs(64, 50))
    finding = only(report, "exploding_gradients")
    assert finding.layers[0] == "0"
    assert finding.severity == "error"
    assert "he_normal" in finding.fix
    assert report.findings_of("vanishing_gradients") == []


def tanh_net() -> nn.Sequential:
    with seeded(2):
        return nn.Sequential(
            nn.Linear(20, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(), nn.Linear(50, 10)
        )


def test_nan_input_is_non_finite_at_the_first_layer() -> None:
    x = standard_inputs(64, 20)
    x[3, 4] = float("nan")
    report = sp.diagnose(tanh_net(), x)
    finding = only(report, "non_finite")
    assert report.findings == [finding]  # the other detectors are skipped
    assert finding.layers[0] == "0"
    assert "layer 0" in finding.message
    assert "NaN" in finding.message
    assert "standardize" in finding.fix
    assert finding.severity == "error"


@pytest.mark.parametrize(("layer", "first"), [(0, "0"), (2, "2")])
def test_nan_weight_is_non_finite_from_its_layer(layer: int, first: str) -> None:
    model = tanh_net()
    with torch.no_grad():
        model[layer].weight[0, 0] = float("nan")
    report = sp.diagnose(model, standard_inputs(64, 20))
    finding = only(report, "non_finite")
    assert finding.layers[0] == first
    assert f"layer {first}" in finding.message
    assert report.layer(first).finite is False
    assert all(r.finite for r in report.layers[: int(first) // 2])


def test_logistic_outputs_are_mean_shifted() -> None:
    model = dense_stack("sigmoid", "glorot_uniform", depth=4)
    report = sp.diagnose(model, standard_inputs(128, 50))
    finding = only(report, "mean_shift")
    assert finding.layers == ["0", "1", "2", "3"]  # hidden layers, not the output
    assert "logistic" in finding.message
    assert re.search(r"tanh|ELU|SELU", finding.fix)
    relaxed = sp.diagnose(model, standard_inputs(128, 50), thresholds=Thresholds(mean_shift=10.0))
    assert relaxed.findings_of("mean_shift") == []


def test_selu_lecun_at_depth_200_is_healthy_and_self_normalizing() -> None:
    model = dense_stack("selu", "lecun_normal", depth=200, width=100)
    x = standard_inputs(256, 100)
    check = sp.check_self_normalizing(model, x)
    assert check.ok, str(check)
    report = check.report  # diagnose(model, x) itself, run once for the 200 layers
    assert report is not None
    assert [r.name for r in report.layers] == [str(i) for i in range(201)]
    assert report.findings == []
    assert report.healthy


def test_every_finding_names_a_signalprop_remedy() -> None:
    reports = [
        logistic_normal_report(),
        sp.diagnose(
            dense_stack("tanh", sp.init.RandomNormal(stddev=0.01), depth=10),
            standard_inputs(128, 50),
        ),
    ]
    for report in reports:
        for finding in report.findings:
            if finding.kind != "mean_shift":
                remedies = (*INIT_NAMES, "sp.autoinit(model, criterion='critical')")
                assert any(name in finding.fix for name in remedies), finding


INVALID_THRESHOLDS = [
    {"vanishing": 0.0},
    {"vanishing": -1e-2},
    {"vanishing": float("nan")},
    {"exploding": 1.0},
    {"exploding": 0.5},
    {"signal": 1.0},
    {"saturation": 1.5},
    {"saturation": -0.1},
    {"saturation": "0.2"},
    {"dead": 2.0},
    {"saturation_margin": 0.6},
    {"saturation_margin": -0.01},
    {"mean_shift": 0.0},
    {"min_batch_for_dead": -1},
    {"min_batch_for_dead": 2.5},
]


@pytest.mark.parametrize("kwargs", INVALID_THRESHOLDS, ids=lambda k: repr(k))
def test_invalid_thresholds_raise(kwargs: dict[str, Any]) -> None:
    (param,) = kwargs
    with pytest.raises(ValueError, match=rf"^The '{param}' parameter of Thresholds must be "):
        Thresholds(**kwargs)


# ----------------------------------------------------------------------- state


def hook_counts(model: nn.Module) -> list[tuple[int, ...]]:
    return [
        (
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(m._backward_pre_hooks),
        )
        for m in model.modules()
    ]


def global_hook_counts() -> tuple[int, int]:
    module = torch.nn.modules.module
    return len(module._global_forward_hooks), len(module._global_forward_pre_hooks)


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "training": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
        "hooks": hook_counts(model),
        "global_hooks": global_hook_counts(),
        "grad_mode": torch.is_grad_enabled(),
    }


def assert_same_state(model: nn.Module, before: dict[str, Any]) -> None:
    after = snapshot(model)
    for p0, p1 in zip(before["params"], after["params"], strict=True):
        assert torch.equal(p0, p1)  # bit-identical
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    for b0, b1 in zip(before["buffers"], after["buffers"], strict=True):
        assert torch.equal(b0, b1)
    for key in ("training", "hooks", "global_hooks", "grad_mode"):
        assert before[key] == after[key], key
    assert torch.equal(before["rng"], after["rng"])


def stateful_model() -> nn.Sequential:
    with seeded(3):
        model = nn.Sequential(
            nn.Linear(10, 20),
            nn.BatchNorm1d(20),
            nn.RReLU(),
            nn.Dropout(0.5),
            nn.Linear(20, 20),
            nn.ReLU(),
            nn.Linear(20, 3),
        )
        model[0].weight.grad = torch.randn(20, 10)  # an existing gradient stays as it is
    return model


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("with_targets", [False, True])
def test_diagnose_leaves_the_model_and_rng_as_they_were(mode: str, with_targets: bool) -> None:
    model = stateful_model()
    model.train(mode != "eval")
    if mode == "mixed":
        model[1].eval()
    x = standard_inputs(64, 10)
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    report = sp.diagnose(model, x, y if with_targets else None)
    assert report.layers
    assert_same_state(model, before)


def test_the_state_check_can_fail() -> None:
    """A plain forward in train mode moves the RNG and the BatchNorm statistics."""
    model = stateful_model()
    rng, running_mean = torch.get_rng_state(), model[1].running_mean.clone()
    with torch.random.fork_rng(devices=[]):
        model(standard_inputs(64, 10))
        assert not torch.equal(rng, torch.get_rng_state())
    assert not torch.equal(running_mean, model[1].running_mean)


def test_diagnose_under_no_grad_keeps_grad_mode_and_inputs_untouched() -> None:
    model = stateful_model().eval()
    x = standard_inputs(32, 10).requires_grad_(True)
    before = snapshot(model)
    with torch.no_grad():
        report = sp.diagnose(model, x)
        assert not torch.is_grad_enabled()
    assert x.grad is None
    assert_same_state(model, before)
    # The same numbers as outside no_grad: the gradients were measured, not skipped.
    outside = sp.diagnose(model, x)
    assert report.layer("0").grad_pre_rms == outside.layer("0").grad_pre_rms > 0


def test_hooks_removed_on_signalprop_layers() -> None:
    model = dense_stack("selu", "lecun_normal", depth=3, width=20)
    before = snapshot(model)
    sp.diagnose(model, standard_inputs(32, 20))
    assert_same_state(model, before)


class Boom(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom")


def test_hooks_removed_and_state_restored_when_forward_raises() -> None:
    with seeded(4):
        model = nn.Sequential(
            nn.Linear(10, 20), nn.BatchNorm1d(20), nn.Dropout(0.3), nn.ReLU(), Boom()
        )
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        sp.diagnose(model, standard_inputs(32, 10))
    assert_same_state(model, before)


def test_model_not_returning_a_tensor_raises_and_cleans_up() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"out": self.fc(x)}

    model, x = Pair(), standard_inputs(8, 4)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"^The 'model' parameter of diagnose must be "):
        sp.diagnose(model, x)
    assert_same_state(model, before)


# ------------------------------------------------------------------ report API


@pytest.fixture(scope="module")
def sick() -> sp.Report:
    return logistic_normal_report()


@pytest.fixture(scope="module")
def well() -> sp.Report:
    return sp.diagnose(dense_stack("selu", "lecun_normal", depth=6), standard_inputs(128, 50))


def test_table_has_a_header_and_one_row_per_layer(sick: sp.Report) -> None:
    lines = sick.table().splitlines()
    assert len(lines) == len(sick.layers) + 1
    assert lines[0].split()[:4] == ["#", "layer", "type", "act"]
    for number, (line, layer) in enumerate(zip(lines[1:], sick.layers, strict=True), start=1):
        assert line.split()[:2] == [str(number), layer.name]  # numbered from 1, then named
        assert layer.layer_type in line


def test_summary_lists_findings_or_says_healthy(sick: sp.Report, well: sp.Report) -> None:
    assert well.healthy and not sick.healthy
    assert "healthy: no findings" in well.summary()
    assert "healthy" not in sick.summary()
    for finding in sick.findings:
        assert finding.kind in sick.summary()
        assert finding.fix in sick.summary()
    assert f"batch {sick.batch_size}" in sick.summary()
    assert sick.table() in str(sick) and sick.summary() in str(sick)


def test_markdown_has_findings_then_a_layer_table(sick: sp.Report, well: sp.Report) -> None:
    text = sick.to_markdown()
    assert text.index("## Findings") < text.index("## Layers")
    for finding in sick.findings:
        assert f"**{finding.kind}**" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == len(sick.layers) + 1  # header + layers
    assert "Healthy" in well.to_markdown()


def test_to_dict_is_json_and_complete(sick: sp.Report) -> None:
    data = sick.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert [layer["name"] for layer in data["layers"]] == [r.name for r in sick.layers]
    assert [f["kind"] for f in data["findings"]] == [f.kind for f in sick.findings]
    assert data["batch_size"] == 128
    assert data["thresholds"]["saturation"] == Thresholds().saturation


def test_layer_and_findings_of(sick: sp.Report) -> None:
    assert sick.layer("2") is sick.layers[2]
    with pytest.raises(KeyError):
        sick.layer("no such layer")
    assert [f.kind for f in sick.findings_of("saturation")] == ["saturation"]
    assert sick.findings_of("dead_units") == []
    assert sick.input_mean == pytest.approx(0.0, abs=1e-6)  # standardized inputs
    assert sick.input_std == pytest.approx(1.0, abs=1e-2)


def _linear() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2))


INVALID_CALLS = [
    ("model", lambda: sp.diagnose([nn.Linear(3, 2)], torch.randn(4, 3))),
    ("model", lambda: sp.diagnose(lambda x: x, torch.randn(4, 3))),
    ("inputs", lambda: sp.diagnose(_linear(), [[1.0, 2.0, 3.0]])),
    ("inputs", lambda: sp.diagnose(_linear(), ())),
    ("targets", lambda: sp.diagnose(_linear(), torch.randn(4, 3), [0, 1])),
    ("loss_fn", lambda: sp.diagnose(_linear(), torch.randn(4, 3), torch.randn(4, 2), "mse")),
    ("targets", lambda: sp.diagnose(_linear(), torch.randn(4, 3), loss_fn=F.mse_loss)),
    ("thresholds", lambda: sp.diagnose(_linear(), torch.randn(4, 3), thresholds={"dead": 0.5})),
    ("seed", lambda: sp.diagnose(_linear(), torch.randn(4, 3), seed=-1)),
]


@pytest.mark.parametrize(("param", "call"), INVALID_CALLS, ids=[p for p, _ in INVALID_CALLS])
def test_invalid_arguments_use_the_one_wording(param: str, call: Callable[[], Any]) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert re.fullmatch(
        rf"The '{param}' parameter of diagnose must be .+\. Got .+ instead\..*", str(info.value)
    ), str(info.value)
