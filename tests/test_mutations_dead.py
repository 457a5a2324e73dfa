"""Dead ReLU units against a brute force written here: a unit is dead on a batch when its
pre-activation is positive for no example (``(z > 0).any`` over everything but the unit's
dimension is False); an exact 0 is not positive.

Each model's first layer has units alive everywhere, dead everywhere, exactly 0
everywhere, 0 but for one positive value, and 0 but for one negative value. A unit is a
feature of a dense layer (its output's last dimension, also on a sequence) and a channel
of a convolution (dimension 1, positive anywhere in the image).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import signalprop as sp
from signalprop.train import fit

#: Rows of the first layer's weight on inputs (x₀ > 0, x₁ ~ N(0, 1), x₂ = 0 but one 1):
#: alive, dead, exactly 0, alive on one example, 0 or negative, alive on some, exactly 0.
#: 4 of 7 dead: not half, so that counting the alive units for the dead ones shows.
DENSE_ROWS = [[1, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, -1], [0, 1, 0], [0, 0, 0]]
#: Channels of the 1x1 convolution on the same kind of input channels (x₁ = 0 but one 1):
#: alive, exactly 0, alive at one position of one example, dead, 0 or negative (3 of 5).
CONV_ROWS = [[1, 0], [0, 0], [0, 1], [-1, 0], [0, -1]]
DEAD = {"dense": 4 / 7, "sequence": 4 / 7, "conv": 3 / 5}


def _first_layer(model: nn.Sequential, rows: list[list[int]]) -> nn.Sequential:
    with torch.no_grad():
        weight = torch.tensor(rows, dtype=torch.float32)
        model[0].weight.copy_(weight.reshape(model[0].weight.shape))
        model[0].bias.zero_()
    return model


def _inputs(shape: tuple[int, ...], spot: tuple[int, ...]) -> Tensor:
    """Feature/channel 0 positive, 1 normal, the last 0 but a 1 at ``spot``."""
    generator = torch.Generator().manual_seed(0)
    features = 3 if len(shape) != 4 else 2
    x = torch.zeros(shape)
    x.select(-1 if len(shape) != 4 else 1, 0).copy_(
        torch.rand(x.select(-1 if len(shape) != 4 else 1, 0).shape, generator=generator) + 0.1
    )
    if features == 3:
        x[..., 1] = torch.randn(x[..., 1].shape, generator=generator)
    x[spot] = 1.0
    return x


def dense() -> tuple[nn.Sequential, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 4))
    return _first_layer(model, DENSE_ROWS), _inputs((16, 3), (0, 2))


def sequence() -> tuple[nn.Sequential, Tensor]:
    """The dense layer on (batch, tokens, features), as in a transformer's MLP."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 4))
    return _first_layer(model, DENSE_ROWS), _inputs((4, 5, 3), (1, 3, 2))


def conv() -> tuple[nn.Sequential, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 5, 1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 3 * 3, 4)
    )  # fmt: skip
    return _first_layer(model, CONV_ROWS), _inputs((4, 2, 3, 3), (1, 1, 2, 0))


def brute_dead(model: nn.Sequential, x: Tensor) -> float:
    """The first layer's dead fraction, by definition."""
    with torch.no_grad():
        z = model[0](x)
    unit = 1 if isinstance(model[0], nn.Conv2d) else -1
    per_unit = (z > 0).movedim(unit, 0).reshape(z.shape[unit], -1)
    return 1.0 - per_unit.any(1).double().mean().item()


MODELS: dict[str, Callable[[], tuple[nn.Sequential, Tensor]]] = {
    "dense": dense,
    "sequence": sequence,
    "conv": conv,
}


@pytest.mark.parametrize("name", MODELS)
def test_the_models_have_partly_dead_units_and_exact_zeros(name: str) -> None:
    model, x = MODELS[name]()
    with torch.no_grad():
        z = model[0](x)
    assert brute_dead(model, x) == pytest.approx(DEAD[name], abs=1e-12)
    assert bool((z == 0).any()) and bool((z > 0).any())


@pytest.mark.parametrize("name", MODELS)
def test_diagnose_counts_the_dead_units(name: str) -> None:
    model, x = MODELS[name]()
    report = sp.diagnose(model, x)
    assert report.layers[0].dead == pytest.approx(brute_dead(model, x), abs=1e-7)


def _loss(output: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), y.reshape(-1))


@pytest.mark.parametrize("name", MODELS)
def test_the_monitor_counts_the_dead_units(name: str) -> None:
    model, x = MODELS[name]()
    expected = brute_dead(model, x)
    y = torch.zeros(x.shape[:-1] if name == "sequence" else x.shape[:1], dtype=torch.long)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        optimizer.zero_grad()
        _loss(model(x), y).backward()
        optimizer.step()
        monitor.step()
    assert monitor.history.records[0].values["dead"][0] == pytest.approx(expected, abs=1e-7)


def test_the_monitor_on_fits_fast_path_counts_the_dead_units() -> None:
    model, x = dense()
    expected = brute_dead(model, x)
    y = torch.arange(len(x)) % 4
    with sp.Monitor(model, every=1) as monitor:
        history = fit(
            model, (x, y), None, epochs=1, batch_size=len(x), lr=0.1, path="fast",
            progress=False, monitor=monitor,
        )  # fmt: skip
    assert history.path.startswith("fast")
    assert monitor.history.records[0].values["dead"][0] == pytest.approx(expected, abs=1e-7)
