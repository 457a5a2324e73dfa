"""diagnose's mean-field verdict: phase, χ₁, ξ_c and trainable depth read from the weights.

Expected numbers come from formulas written here (σ_w² = mean(W²)·fan_in over the hidden
layers, χ₁ = σ_w² E[φ′(√q* z)²] by scipy's quad); the phase boundaries from
``signalprop.meanfield``, which tests/test_meanfield.py checks against closed forms.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import signalprop as sp
from _quad import normal_expectation
from signalprop.diagnostics import MeanFieldVerdict


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inputs(batch: int, width: int, seed: int = 0) -> Tensor:
    x = torch.randn(batch, width, generator=gen(seed))
    return (x - x.mean(0)) / x.std(0)


def chapter_net(activation: str, depth: int = 100, seed: int = 0) -> sp.Sequential:
    """The chapter's net: 300 units, then depth − 1 of 100, and a softmax output."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        hidden = [sp.Dense(300, activation)] + [sp.Dense(100, activation) for _ in range(depth - 1)]
        return sp.Sequential([*hidden, sp.Dense(10, "softmax")], input_shape=(64,))


def test_autoinit_variance_puts_100_tanh_layers_in_the_chaotic_phase():
    # The criticality issue's case: tanh at the variance-preserving σ_w² = 1/E[tanh²] ≈ 2.54
    # is chaotic (χ₁ ≈ 1.18), ξ_c ≈ 13.9, so 101 weight layers exceed 6ξ_c ≈ 83.
    model = chapter_net("tanh")
    x = inputs(256, 64)
    sp.autoinit(model, x, criterion="variance", generator=gen(1))
    report = sp.diagnose(model, x, torch.randint(0, 10, (256,), generator=gen(2)))
    verdict = report.meanfield
    assert isinstance(verdict, MeanFieldVerdict)
    # The hidden layers read tanh and feed tanh: all Dense layers but the first and the output.
    hidden = [layer for layer in model if isinstance(layer, sp.Dense)][1:-1]
    assert len(hidden) == 99
    expected = sum(
        layer.weight.double().pow(2).mean().item() * layer.weight.shape[1] for layer in hidden
    ) / len(hidden)
    assert verdict.weight_var == pytest.approx(expected, rel=1e-9)
    assert verdict.bias_var == 0.0
    assert verdict.depth == 101
    assert verdict.phase == "chaotic"
    chi = expected * normal_expectation(
        lambda z: (1 - math.tanh(math.sqrt(verdict.q_star) * z) ** 2) ** 2
    )
    assert verdict.chi_1 == pytest.approx(chi, rel=1e-7)
    assert 75 < verdict.trainable_depth < 95
    (finding,) = report.findings_of("chaotic")
    # Within 1.5 × the trainable depth a warning, beyond it an error.
    assert finding.severity == ("warning" if 1.5 * verdict.trainable_depth >= 101 else "error")
    assert "6ξ_c" in finding.message and "chaotic phase" in finding.message
    assert "criterion='critical'" in finding.fix
    assert "σ_w² = 1.761" in finding.fix and "σ_b² = 0.05" in finding.fix
    assert "chaotic" in report.summary()


def test_autoinit_critical_clears_the_finding():
    model = chapter_net("tanh")
    x = inputs(256, 64)
    sp.autoinit(model, x, criterion="critical", generator=gen(3))
    report = sp.diagnose(model, x)
    assert report.meanfield is not None
    assert report.meanfield.phase == "critical"
    assert report.meanfield.trainable
    assert report.findings_of("chaotic") == report.findings_of("ordered") == []
    assert report.meanfield.bias_var == pytest.approx(0.05, rel=0.1)  # 99 × 100 draws


def reinitialized(model: sp.Sequential, initializer, seed: int) -> sp.Sequential:
    """Every Dense layer's weights redrawn by ``initializer`` (an in-place sp.init function)."""
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, sp.Dense):
                initializer(layer.weight, generator=gen(seed))
    return model


def test_deep_logistic_with_glorot_is_ordered():
    # Glorot on square layers: σ_w² = 1; the logistic's χ₁ = E[σ′(√q* z)²] ≈ 0.056 there.
    model = reinitialized(chapter_net("sigmoid", depth=30), sp.init.glorot_uniform_, seed=4)
    report = sp.diagnose(model, inputs(128, 64))
    assert report.meanfield is not None
    assert report.meanfield.phase == "ordered"
    assert report.meanfield.chi_1 < 0.1
    (finding,) = report.findings_of("ordered")
    assert finding.severity == "error"
    assert "gradients shrink" in finding.message
    # The logistic's critical point is far out (σ_w² ≈ 103 at σ_b² = 0): named in the fix.
    assert "criterion='critical'" in finding.fix


def test_he_relu_is_critical_and_healthy():
    model = reinitialized(chapter_net("relu", depth=50), sp.init.he_normal_, seed=5)
    verdict = sp.diagnose(model, inputs(128, 64)).meanfield
    assert verdict is not None
    assert verdict.phase == "critical"
    assert verdict.trainable


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.c = nn.Linear(32, 32)
        self.out = nn.Linear(32, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.a(x))
        h = h + torch.tanh(self.b(h))
        return self.out(torch.tanh(self.c(h)))


@pytest.mark.parametrize(
    "model",
    [
        _Residual(),
        nn.Sequential(
            nn.Linear(32, 32),
            nn.Tanh(),
            nn.LayerNorm(32),
            nn.Linear(32, 32),
            nn.Tanh(),
            nn.Linear(32, 2),
        ),
        nn.Sequential(nn.Linear(32, 2)),
    ],
    ids=["residual", "normalization", "one layer"],
)
def test_no_verdict_outside_plain_dense_stacks(model):
    report = sp.diagnose(model, inputs(64, 32))
    assert report.meanfield is None
    assert "mean field" not in report.summary()


def test_mixed_stack_gets_a_chain_verdict_from_the_layers_factors():
    """A stack of differing activations is read as a chain: χ_l = σ_w² E[φ_{l−1}′²] at
    the variance that arrives (here PyTorch's default U(±1/√n), σ_w² = 1/3, deep in the
    ordered phase), the verdict from Σ ln χ; after autoinit every factor is 1."""
    layers: list[nn.Module] = [nn.Linear(32, 64)]
    for index in range(30):
        width = 2 if index == 29 else 64
        layers += [(nn.Tanh, nn.ReLU, nn.Sigmoid)[index % 3](), nn.Linear(64, width)]
    model = nn.Sequential(*layers)
    report = sp.diagnose(model, inputs(128, 32))
    verdict = report.meanfield
    assert verdict is not None and verdict.mixed
    assert verdict.phase == "ordered" and not verdict.trainable
    assert report.findings_of("ordered")
    assert "sp.autoinit(model)" in report.findings_of("ordered")[0].fix
    chain = verdict.chain
    assert chain is not None
    assert chain.log_gradient == pytest.approx(
        sum(math.log(layer.chi) for layer in chain.layers[1:-1] if layer.chi), rel=1e-12
    )
    sp.autoinit(model)
    after = sp.diagnose(model, inputs(128, 32))
    assert after.meanfield is not None and after.meanfield.phase == "critical"
    assert not after.findings_of("ordered") and not after.findings_of("chaotic")


def test_plain_torch_stack_gets_a_verdict_and_it_is_serialized():
    layers: list[nn.Module] = []
    for _ in range(40):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    report = sp.diagnose(model, inputs(128, 64))
    # PyTorch's default: U(±1/√fan_in), σ_w² = 1/3 — deep in the ordered phase.
    assert report.meanfield is not None
    assert report.meanfield.weight_var == pytest.approx(1 / 3, rel=0.02)
    assert report.meanfield.phase == "ordered"
    assert report.findings_of("ordered")
    data = report.to_dict()["meanfield"]
    assert data["phase"] == "ordered" and data["depth"] == 41
    assert "Mean field:" in report.to_markdown()
