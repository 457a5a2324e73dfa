"""The command line prints the library's numbers: gain and autoinit against the API,
study --jobs 2 against --jobs 1, and propagate's gradient against an exact oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import signalprop as sp
from _data_dir import DATA, needs_data
from signalprop.cli import main
from signalprop.examples import build_torch_default
from signalprop.study import expand, read_results, run_study


def test_gain_table_prints_the_apis_moments(capsys):
    assert main(["gain"]) == 0
    rows = {
        cells[0]: cells
        for cells in (line.split() for line in capsys.readouterr().out.splitlines()[1:])
        if len(cells) >= 6 and cells[1].replace(".", "", 1).isdigit()
    }
    assert {"relu", "tanh", "selu", "gelu", "leaky_relu", "elu"} <= set(rows)
    for name, cells in rows.items():
        m = sp.moments(name)
        printed = [float(c) for c in cells[1:5]]
        expected = [m.second, m.derivative_second, m.forward_gain, m.backward_gain]
        assert printed == pytest.approx(expected, abs=1e-6)  # printed with 6 decimals
    assert main(["gain", "leaky_relu", "--param", "alpha=0.2"]) == 0
    cells = capsys.readouterr().out.splitlines()[1].split()
    assert float(cells[3]) == pytest.approx(math.sqrt(2 / (1 + 0.2**2)), abs=1e-6)


def test_autoinit_command_prints_what_the_api_does(capsys):
    assert main(["autoinit", "--preset", "torch-default-tanh", "--batch", "64"]) == 0
    out = capsys.readouterr().out
    table = out.split("autoinit (")[1].split("AFTER autoinit:")[0].splitlines()
    printed = [line.split() for line in table[2:] if line.split() and line.split()[0].isdigit()]
    # The same preset, batch and seed through the API.
    model, inputs, _ = build_torch_default("tanh", batch=64, seed=0)
    result = sp.autoinit(model, inputs)
    assert [row[0] for row in printed] == [layer.name for layer in result.layers]
    for row, layer in zip(printed, result.layers, strict=True):
        assert float(row[4]) == pytest.approx(layer.weight_var, rel=1e-3)  # σ_w², 4 digits
        assert float(row[5]) == pytest.approx(layer.bias_var, abs=1e-3)
        assert row[10] == (layer.phase or "input")


@needs_data
def test_study_with_two_jobs_gives_the_records_of_one_job(tmp_path: Path):
    raw = {
        "name": "jobs",
        "defaults": {"epochs": 1, "validation": 200, "train_size": 300, "batch_size": 50},
        "grid": {"activation": ["selu", "tanh", "relu"], "init": ["matching"], "depth": [2]},
    }
    spec = expand(raw, "jobs")
    run_study(spec, tmp_path / "one", jobs=1, data_dir=str(DATA), echo=lambda _: None)
    run_study(spec, tmp_path / "two", jobs=2, data_dir=str(DATA), echo=lambda _: None)

    def comparable(directory: Path) -> dict[str, str]:
        out = {}
        for record in read_results(directory):
            kept = {
                k: v
                for k, v in record.items()
                if k not in ("wall_time", "finished_at", "versions", "threads", "worker")
            }
            kept["history"] = {k: v for k, v in kept["history"].items() if k != "epoch_time"}
            out[record["run_id"]] = json.dumps(kept, sort_keys=True)
        return out

    one, two = comparable(tmp_path / "one"), comparable(tmp_path / "two")
    assert len(one) == 3
    assert one == two  # same seeds, same numbers, whichever process trained them


@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_propagate_gradient_matches_explicit_backpropagation(activation):
    # The oracle redraws propagate's random numbers in the order it documents (inputs,
    # then each layer's weight, then the backward signal g, all from one generator seeded
    # with seed) and backpropagates by hand: δ_L = g, δ_{l−1} = (δ_l ⊙ φ′(z_l)) W_l, with
    # tanh′ = 1 − tanh². propagate uses autograd; both in float64 must agree to round-off.
    depth, width, batch, seed = 12, 16, 32, 5
    result = sp.propagate(
        activation,
        "glorot_uniform",
        depth=depth,
        width=width,
        batch=batch,
        seed=seed,
        dtype="float64",
    )
    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    initializer = sp.init.get("glorot_uniform")
    weights, outputs = [], []
    for _ in range(depth):
        w = torch.empty(width, width, dtype=torch.float64)
        initializer(w, generator=generator, fans=(width, width))
        z = h @ w.T
        h = torch.tanh(z) if activation == "tanh" else z
        weights.append(w)
        outputs.append(h)
    delta = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    expected = [0.0] * depth
    for layer in reversed(range(depth)):
        expected[layer] = delta.std().item()  # the gradient w.r.t. this layer's output
        slope = 1 - outputs[layer] ** 2 if activation == "tanh" else 1.0
        delta = (delta * slope) @ weights[layer]
    assert list(result.grad_std) == pytest.approx(expected, rel=1e-9)
