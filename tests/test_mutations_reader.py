"""The model reader on a model torch.fx cannot trace: read in module registration order,
looking through the modules a signal passes through unchanged, as the trace does."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import signalprop as sp
from signalprop._model import read_model, trace


class Marked(nn.Module):
    """A module marked as leaving the scale alone (as the Keras twin marks its permutes)."""

    _signalprop_transparent = True

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


class Chain(nn.Module):
    """Flatten → fc1 → Dropout → Marked → tanh → Identity → fc2 → AlphaDropout → ReLU → Unflatten →
    Flatten → fc3: every transparent module sits between a weight layer and an activation,
    or before the first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.1)
        self.marked = Marked()
        self.tanh = nn.Tanh()
        self.same = nn.Identity()
        self.fc2 = nn.Linear(16, 16)
        self.alpha_drop = nn.AlphaDropout(0.1)
        self.relu = nn.ReLU()
        self.unflat = nn.Unflatten(1, (4, 4))
        self.flat2 = nn.Flatten()
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        for module in self.children():
            x = module(x)
        return x


class Untraceable(Chain):
    """The same chain, with control flow on the data: torch.fx cannot trace it."""

    def forward(self, x: Tensor) -> Tensor:
        if bool(x.isnan().any()):
            raise ValueError("NaN input")
        return super().forward(x)


def test_the_chain_is_traceable_and_its_twin_is_not() -> None:
    assert trace(Chain()) is not None
    assert trace(Untraceable()) is None


def _reading(model: nn.Module) -> list[tuple[str, object, bool, object]]:
    return [
        (layer.name, layer.producer, layer.reads_data, layer.consumer)
        for layer in read_model(model).layers
    ]


def test_an_untraceable_model_is_read_through_its_transparent_modules() -> None:
    model = Untraceable()
    view = read_model(model)
    assert not view.traced
    assert _reading(model) == [
        ("fc1", None, True, model.tanh),  # the leading Flatten is not a producer
        ("fc2", model.tanh, False, model.relu),
        ("fc3", model.relu, False, None),
    ]


def test_the_untraceable_reading_agrees_with_the_trace() -> None:
    traced, untraced = Chain(), Untraceable()
    untraced.load_state_dict(traced.state_dict())
    assert read_model(traced).traced
    by_name = {name: module for name, module in traced.named_modules()}
    same = {id(module): by_name[name] for name, module in untraced.named_modules()}
    translated = [
        (name, same.get(id(producer)), reads, same.get(id(consumer)))
        for name, producer, reads, consumer in _reading(untraced)
    ]
    assert translated == _reading(traced)


def test_autoinit_reads_an_untraceable_model_as_it_reads_the_traceable_one() -> None:
    """What autoinit reads (each layer's producer and activation) does not depend on
    whether torch.fx could trace the model. The variances may differ: only a trace proves
    the model one plain chain, which autoinit then plans as a whole (χ = 1 per layer);
    an untraceable model's layers are planned one by one."""
    x = torch.randn(64, 2, 4, generator=torch.Generator().manual_seed(0))
    traced, untraced = Chain(), Untraceable()
    untraced.load_state_dict(traced.state_dict())
    plans = [
        [
            (layer.name, layer.producer, layer.activation, layer.input_from, layer.weight_var)
            for layer in sp.autoinit(model, x).layers
        ]
        for model in (traced, untraced)
    ]
    assert [(name, producer, feeds) for name, producer, feeds, _, _ in plans[0]] == [
        ("fc1", "data", "Tanh"),
        ("fc2", "Tanh", "ReLU"),
        ("fc3", "ReLU", "linear"),
    ]
    assert [plan[:4] for plan in plans[1]] == [plan[:4] for plan in plans[0]]
