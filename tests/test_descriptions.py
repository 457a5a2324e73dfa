"""What the built-in nets and study presets say of themselves is what they build: every
layer, epoch and seed count in a description is counted again from the built model or the
expanded runs."""

from __future__ import annotations

import re

import pytest
from torch import nn

from signalprop.cli._autoinit import _presets
from signalprop.examples import build_example, build_torch_default, describe
from signalprop.study import PRESET_NAMES, load_spec


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dense layers, bottom to top (each module owning a 2-D weight)."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() == 2
    ]


def numbers(pattern: str, text: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(pattern, text)]


@pytest.mark.parametrize("name", _presets())
def test_an_example_nets_description_counts_its_layers(name: str) -> None:
    if name.startswith("torch-default-"):
        model = build_torch_default(name.removeprefix("torch-default-"), batch=2)[0]
    else:
        model = build_example(name, batch=2)[0]
    layers = weight_layers(model)
    hidden = len(layers) - 1  # the last is the output layer
    text = describe(name)
    assert numbers(r"(\d+) hidden", text) == [hidden]
    assert numbers(r"(\d+) weight layers", text) == [len(layers)]
    widths = [layer.weight.shape[0] for layer in layers[:-1]]
    if "then" in text:  # "300 units, then 29 of 100"
        first, rest, width = re.findall(r"(\d+) units, then (\d+) of (\d+)", text)[0]
        assert widths == [int(first)] + [int(width)] * int(rest)
    else:  # "50 hidden nn.Linear layers of 100 units"
        assert set(widths) == set(numbers(r"layers of (\d+) units", text))
    # No other count of layers anywhere in it ("a 30-layer net").
    assert set(numbers(r"(\d+)[- ](?:\w+[- ])?layers?\b", text)) <= {hidden, len(layers)}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_a_study_presets_description_counts_what_it_runs(name: str) -> None:
    spec = load_spec(name)
    text = spec.description
    mlp = [run for run in spec.runs if run.model == "mlp"]
    depths = {run.depth for run in mlp}
    claimed = set(numbers(r"(\d+)[- ]hidden[- ]layers?", text))
    if mlp:
        assert claimed, "the description gives no depth"
        assert claimed <= depths and max(depths) in claimed
    for rest in numbers(r"then (\d+) of 100", text):
        assert rest + 1 in depths
    for count in numbers(r"(\d+) seeds", text):
        assert count == len({run.seed for run in spec.runs})
    for epochs in numbers(r"(\d+) epochs", text):
        assert epochs in {run.epochs for run in spec.runs}
    blocks = {run.blocks for run in spec.runs if run.model == "residual_mlp"}
    for listed in re.findall(r"at ([\d, and]+) blocks", text):
        assert set(numbers(r"(\d+)", listed)) == blocks
    for run in spec.runs:  # a run's label: "100 hidden layers, ..." / "300-100 dense"
        label = run.label or ""
        assert set(numbers(r"(\d+) hidden layers", label)) <= {run.depth}
        for widths in re.findall(r"([\d-]+) dense", label):
            assert [int(w) for w in widths.split("-")] == list(run.hidden)
