"""Where a NaN of the backward pass began: the highest weight layer whose gradient is not
finite, since gradients flow top-down and everything below it is NaN too.

The poison sits above three weight layers, so that a scan from the wrong end (the bottom
up) names another layer: the lowest ("0") in diagnose, the second ("2") in the Monitor,
whose check runs as soon as the lowest layer's bias gradient exists, before its weight's.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import signalprop as sp
from signalprop.train import fit


class _NaNGradient(torch.autograd.Function):
    """The identity forward; a NaN gradient backward while ``on``."""

    on = False

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * math.nan if _NaNGradient.on else grad


class Poison(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return _NaNGradient.apply(x)  # type: ignore[no-any-return]


def poisoned() -> nn.Sequential:
    """Weight layers 0, 2 and 4 below the poison, 7 above it: the NaN begins at 4."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16),
        Poison(), nn.Tanh(), nn.Linear(16, 5),
    )  # fmt: skip


@pytest.fixture
def nan_gradients() -> Any:
    _NaNGradient.on = False
    yield _NaNGradient
    _NaNGradient.on = False


def test_diagnose_names_the_highest_layer_below_the_poison(nan_gradients: Any) -> None:
    nan_gradients.on = True
    x = torch.randn(32, 12, generator=torch.Generator().manual_seed(0))
    report = sp.diagnose(poisoned(), x)
    (finding,) = report.findings
    assert finding.kind == "non_finite"
    assert finding.message.endswith("first appears in the gradients at layer 4")
    assert set(finding.layers) == {"0", "2", "4"}


@pytest.mark.parametrize("every", [1, 16], ids=["monitored", "unmonitored"])
def test_the_monitor_names_the_highest_layer_below_the_poison(
    nan_gradients: Any, every: int
) -> None:
    model = poisoned()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    with sp.Monitor(model, every=every) as monitor:
        for step in range(1, 5):
            nan_gradients.on = step == 3
            x = torch.randn(16, 12, generator=generator)
            optimizer.zero_grad()
            y = torch.randint(0, 5, (16,), generator=generator)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            monitor.step()
    (event,) = monitor.events
    assert (event.step, event.pass_, event.layer) == (3, "backward", "4")
    assert "in the backward pass at layer 4" in event.message


#: Per layer, the scale of a 4-wide net's weights (positive, so every sum grows): the
#: forward pass stays finite (1e-36 at its smallest, 1e18 at the logits) while the
#: gradient, multiplied by 1e18 per layer from the top down, overflows float32 below
#: layer 3: the weight gradients of layers 2, 1 and 0 are not finite, layer 2's first.
OVERFLOW_SCALES = [1e-12, 1e-12, 1e-12, 1e18, 1e18, 1e18]


def overflowing() -> nn.Sequential:
    generator = torch.Generator().manual_seed(0)
    layers = [nn.Linear(4, 4) for _ in OVERFLOW_SCALES[:-1]] + [nn.Linear(4, 3)]
    with torch.no_grad():
        for layer, scale in zip(layers, OVERFLOW_SCALES, strict=True):
            layer.weight.copy_(scale * (torch.rand(layer.weight.shape, generator=generator) + 0.5))
            layer.weight.div_(4)
            layer.bias.zero_()
    return nn.Sequential(*layers)


def overflow_batch() -> tuple[Tensor, Tensor]:
    return torch.rand(8, 4, generator=torch.Generator().manual_seed(1)) + 0.5, torch.arange(8) % 3


def test_the_overflowing_net_overflows_backward_from_layer_2() -> None:
    model, (x, y) = overflowing(), overflow_batch()
    output = model(x)
    assert bool(torch.isfinite(output).all())
    F.cross_entropy(output, y).backward()
    finite = [bool(torch.isfinite(layer.weight.grad).all()) for layer in model]  # type: ignore[arg-type]
    assert finite == [False, False, False, True, True, True]


@pytest.mark.parametrize("path", ["fast", "autograd"])
def test_fits_monitor_names_where_the_gradient_overflowed(path: str) -> None:
    """On the fast path the Monitor sees the updated weights, non-finite in every layer
    the overflow reached: the highest of them is where it began."""
    model, data = overflowing(), overflow_batch()
    with sp.Monitor(model, every=1) as monitor:
        history = fit(
            model, data, None, epochs=1, batch_size=8, lr=1e-3, path=path, progress=False,
            monitor=monitor,
        )  # fmt: skip
    assert history.path.startswith(path)
    (event,) = monitor.events
    assert (event.step, event.pass_, event.layer) == (1, "backward", "2")
