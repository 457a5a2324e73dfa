"""diagnose's paths that no test reached: the CLI presets, signal findings, no gradient at
all, non-finite gradients after a finite forward pass, and the 'not the cause' and
'alike' advice."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import signalprop as sp
from signalprop.cli import main


def _kinds(out: str) -> list[str]:
    return [
        line.split("]")[1].split(":")[0].strip() for line in out.splitlines() if line[:1] == "["
    ]


@pytest.mark.parametrize(
    ("preset", "kinds", "phrases"),
    [
        (
            "tanh-tiny",
            ["vanishing_gradients", "ordered", "vanishing_signal"],
            ["the forward signal shrinks with depth", "weights 99.9× too small"],
        ),
        (
            "relu-large",
            ["vanishing_gradients", "chaotic", "exploding_signal", "dead_units"],
            [
                "no gradient at all reaches",
                "the output layer receives no gradient either",
                "the forward signal grows with depth",
            ],
        ),
        (
            "relu-glorot-30",
            ["vanishing_gradients", "ordered", "vanishing_signal", "dead_units"],
            ["weights 2× too small"],
        ),
        ("chapter-relu", ["dead_units"], ["have become alike", "critical (χ₁ = 0.998)"]),
    ],
)
def test_cli_presets_give_their_findings(preset, kinds, phrases, capsys):
    assert main(["diagnose", "--preset", preset]) == 0
    out = capsys.readouterr().out
    assert _kinds(out) == kinds
    for phrase in phrases:
        assert phrase in out


class _NaNGradient(torch.autograd.Function):
    """Identity forward; a NaN gradient backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return torch.full_like(grad, float("nan"))


class _Poison(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return _NaNGradient.apply(x)


def test_finite_forward_with_non_finite_gradients_is_located():
    model = nn.Sequential(
        nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), _Poison(), nn.Tanh(), nn.Linear(16, 2)
    )
    report = sp.diagnose(model, torch.randn(32, 16, generator=torch.Generator().manual_seed(0)))
    (finding,) = report.findings
    assert finding.kind == "non_finite"
    assert "the forward pass is finite, but NaN or Inf first appears in the gradients" in (
        finding.message
    )
    # Gradients flow top-down: the highest layer below the poison is where it appears.
    assert "at layer 2" in finding.message
    assert all(layer.finite for layer in report.layers)


def test_large_logistic_weights_are_not_the_cause_of_vanishing_gradients():
    # Logistic with twice Glorot's variance: not saturated, yet E[σ′²]·σ_w² ≈ 0.09 per layer
    # makes the gradient vanish — larger weights would make it larger, so the advice is to
    # change the activation, not to re-initialize.
    layers: list[nn.Module] = []
    with torch.random.fork_rng():  # nn.Linear's biases come from the global RNG
        torch.manual_seed(0)
        for _ in range(10):
            layers += [nn.Linear(64, 64), nn.Sigmoid()]
        model = nn.Sequential(*layers, nn.Linear(64, 10))
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                sp.init.glorot_uniform_(layer.weight, generator=torch.Generator().manual_seed(1))
                layer.weight.mul_(2**0.5)
    report = sp.diagnose(model, torch.randn(256, 64, generator=torch.Generator().manual_seed(2)))
    (finding,) = report.findings_of("vanishing_gradients")
    assert finding.fix.startswith(
        "the weights are not the cause, the logistic itself is the problem"
    )
    assert "logistic with weights 2× too large (var·fan_avg ≈ 2, want 1)" in finding.message
