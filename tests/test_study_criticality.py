"""The criticality studies: their presets, random biases, autoinit objects, and their reports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from _data_dir import DATA, needs_data
from _images import assert_png
from _records import record, write_study
from signalprop import meanfield
from signalprop.autoinit import DEFAULT_DISTRIBUTION
from signalprop.study import expand, load_spec, read_results, run_study, write_report
from signalprop.study._runner import build_model


def test_autoinit_100_preset_is_the_issue_grid():
    spec = load_spec("autoinit-100")
    # 8 activations × 3 initializations × 3 seeds.
    assert len(spec.runs) == 8 * 3 * 3
    assert {r.activation for r in spec.runs} == {
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "silu",
    }
    assert {r.seed for r in spec.runs} == {0, 1, 2}
    assert all(r.depth == 100 and r.epochs == 5 and r.standardize for r in spec.runs)
    assert all(r.lr == 1e-3 and r.batch_size == 32 and r.optimizer == "sgd" for r in spec.runs)
    kinds = {json.dumps(r.autoinit, sort_keys=True) for r in spec.runs}
    assert kinds == {
        "null",
        json.dumps(
            {"criterion": "variance", "distribution": "truncated_normal", "mode": "analytic"},
            sort_keys=True,
        ),
        json.dumps(
            {"criterion": "critical", "distribution": "orthogonal", "mode": "analytic"},
            sort_keys=True,
        ),
    }


def test_trainable_depth_preset_is_the_schoenholz_grid():
    spec = load_spec("trainable-depth")
    scales = sorted({r.init_args["scale"] for r in spec.runs})
    depths = sorted({r.depth for r in spec.runs})
    assert len(scales) >= 8 and scales[0] >= 1 and scales[-1] <= 4
    assert depths[-1] >= 200
    assert len(spec.runs) == len(scales) * len(depths)
    assert {r.activation for r in spec.runs} == {"tanh"}
    assert {r.bias_var for r in spec.runs} == {0.05}
    # One fixed budget of steps for every run: 4 epochs of 16,000 images at batch 32.
    assert {(r.epochs, r.train_size, r.batch_size) for r in spec.runs} == {(4, 16000, 32)}


def test_autoinit_object_is_checked_and_its_defaults_written_into_the_identity():
    base = {"activation": "tanh", "init": "matching", "depth": 2, "epochs": 1}
    spec = expand({"runs": [{**base, "autoinit": {"criterion": "critical"}}]})
    assert spec.runs[0].autoinit == {
        "mode": "analytic",
        "criterion": "critical",
        "distribution": DEFAULT_DISTRIBUTION,
    }
    assert spec.runs[0].identity()["autoinit"] == spec.runs[0].autoinit
    # The string form keeps its meaning and its identity (no bias_var key when it is 0).
    old = expand({"runs": [{**base, "autoinit": "data"}]}).runs[0]
    assert old.autoinit == "data"
    assert "bias_var" not in old.identity()
    for bad, message in (
        ({"criterion": "edge"}, "'autoinit.criterion' parameter"),
        ({"distribution": "gauss"}, "'autoinit.distribution' parameter"),
        ({"colour": 1}, "an object with keys among"),
        ("lsuv", "null, 'analytic', 'data' or an object"),
    ):
        with pytest.raises(ValueError, match=message):
            expand({"runs": [{**base, "autoinit": bad}]})
    with pytest.raises(ValueError, match="'bias_var' parameter"):
        expand({"runs": [{**base, "bias_var": -1}]})


def test_bias_var_draws_normal_biases():
    spec = expand(
        {
            "runs": [
                {
                    "activation": "tanh",
                    "init": "glorot_uniform",
                    "hidden": [400] * 10,
                    "epochs": 1,
                    "bias_var": 0.05,
                }
            ]
        }
    )
    with torch.random.fork_rng():  # the global RNG draws the biases: seed it here only
        torch.manual_seed(0)
        model = build_model(spec.runs[0])
    model(torch.zeros(1, 28, 28))  # materializes the lazy layers
    biases = torch.cat([layer.bias.detach().double() for layer in list(model)[1:-1]])
    # 4,000 draws of N(0, 0.05): s²/σ² within 5 standard errors √(2/n) of 1.
    assert abs(biases.pow(2).mean().item() / 0.05 - 1) < 5 * math.sqrt(2 / biases.numel())
    output = list(model)[-1]
    assert torch.equal(output.bias, torch.zeros_like(output.bias))  # the output layer: zeros


# ------------------------------------------------------------------ reports, synthetic


def _record(config: Any, accuracy: float) -> dict[str, Any]:
    return record(config, accuracy)


def test_depth_scan_report_compares_boundaries(tmp_path: Path):
    scales = [1.0, 1.5, 2.0, 3.0]
    depths = [10, 20, 40, 80, 160]
    spec = expand(
        {
            "name": "scan",
            "defaults": {
                "activation": "tanh",
                "init": "variance_scaling",
                "bias_var": 0.05,
                "epochs": 1,
            },
            "grid": {
                "init_args": [{"scale": s, "mode": "fan_in"} for s in scales],
                "depth": depths,
            },
        }
    )
    limits = {s: meanfield.analyze("tanh", s, 0.05).trainable_depth for s in scales}
    # Synthetic accuracies: 0.8 where the theory says trainable, chance beyond; but the
    # σ_w² = 3 column fails two grid steps early, so it must be the one disagreement.
    made_up = {1.0: 20, 1.5: 80, 2.0: 160, 3.0: 10}
    records = []
    for run in spec.runs:
        scale, depth = run.init_args["scale"], run.depth
        records.append(_record(run, 0.8 if depth <= made_up[scale] else 0.1))
    write_study(tmp_path, spec, records)
    text = write_report(tmp_path).read_text()
    assert "## Trainable depth: measured against mean-field theory" in text
    assert "## Final validation accuracy\n" not in text  # the per-run tables are left out
    predicted = {s: max([d for d in depths if d <= limits[s]], default=None) for s in scales}
    assert predicted[3.0] == 40  # 6ξ_c ≈ 54 at σ_w² = 3
    for scale in scales:
        row = next(line for line in text.splitlines() if line.startswith(f"| {scale:g} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[6] == str(predicted[scale])
        assert cells[7] == str(made_up[scale])
        expected = abs(depths.index(made_up[scale]) - depths.index(predicted[scale])) <= 1
        assert cells[8] == ("yes" if expected else "no")
    assert "3 of 4 σ_w² columns (75%)" in text
    # Halfway from chance to the best (0.8): 0.45.
    assert "0.4500" in text
    assert_png(tmp_path / "trainable_depth.png")


def test_initializations_report_pivots_activations_and_criteria(tmp_path: Path):
    spec = expand(
        {
            "name": "inits",
            "defaults": {"init": "matching", "depth": 3, "epochs": 1},
            "seeds": [0, 1, 2],
            "grid": {
                "activation": ["tanh", "relu"],
                "autoinit": [None, {"criterion": "critical", "distribution": "orthogonal"}],
            },
        }
    )
    accuracy = {
        ("tanh", False): [0.70, 0.72, 0.74],
        ("tanh", True): [0.83, 0.84, 0.85],
        ("relu", False): [0.80, 0.81, 0.82],
        ("relu", True): [0.60, 0.61, float("nan")],
    }
    records = []
    for run in spec.runs:
        value = accuracy[(run.activation, run.autoinit is not None)][run.seed]
        record = _record(run, value)
        if math.isnan(value):
            record["history"]["stopped"] = {"reason": "non-finite loss"}
        records.append(record)
    write_study(tmp_path, spec, records)
    text = write_report(tmp_path).read_text()
    assert "## Initializations compared (3 hidden layers)" in text
    assert "| activation | textbook | autoinit critical, orthogonal |" in text
    assert "| tanh | 0.7200 ± 0.0200 | 0.8400 ± 0.0100 |" in text
    # A diverged run counts at chance (0.1) and is marked.
    assert "| relu | 0.8100 ± 0.0100 | 0.4367 ± 0.2916 † |" in text
    goals = next(line for line in text.splitlines() if line.startswith("- **autoinit critical"))
    assert "by more than the seeds' spread for tanh" in goals
    assert "worse for relu" in goals


# ------------------------------------------------------------------ a real run


@needs_data
def test_a_critical_orthogonal_run_with_biases_trains_and_is_recorded(tmp_path: Path):
    spec = expand(
        {
            "name": "real",
            "defaults": {
                "epochs": 1,
                "validation": 200,
                "train_size": 300,
                "batch_size": 50,
                "standardize": True,
                "depth": 3,
                "init": "matching",
            },
            "runs": [
                {
                    "activation": "tanh",
                    "autoinit": {"criterion": "critical", "distribution": "orthogonal"},
                },
                {
                    "activation": "tanh",
                    "init": "variance_scaling",
                    "init_args": {"scale": 1.76, "mode": "fan_in"},
                    "bias_var": 0.05,
                },
            ],
        }
    )
    run_study(spec, tmp_path, data_dir=str(DATA), echo=lambda _: None)
    records = read_results(tmp_path)
    assert len(records) == 2
    auto = records[0]["autoinit"]
    assert auto["criterion"] == "critical" and auto["distribution"] == "orthogonal"
    assert auto["bias_vars"][1:-1] == [0.05, 0.05]
    assert auto["phases"][1:-1] == ["critical", "critical"]
    assert all(0 <= r["history"]["val_accuracy"][-1] <= 1 for r in records)


def test_a_centred_run_is_judged_as_the_centred_activation():
    """autoinit's logistic runs cancel the mean ½ in their biases: at σ_w² 23.35,
    σ_b² 0.05 the centred logistic is critical, the uncentred one deep in the ordered
    phase (χ₁ ≈ 0.48), which is what the report used to print for them."""
    from signalprop.study._criticality import _phase_of

    scales = [None, 1.155] + [23.351194] * 20 + [1.0]
    record = {
        "config": {"activation": "sigmoid", "autoinit": {}},
        "layers": {"start": {"weight_scale_fan_in": [None, *scales]}},
        "autoinit": {"bias_vars": [0.05] * 22 + [0.0], "offsets": [0.0] + [0.5] * 22},
    }
    phase = _phase_of(record)
    assert phase is not None and phase[0] == "critical"
    record["autoinit"]["offsets"] = [0.0] * 23
    phase = _phase_of(record)
    assert phase is not None and phase[0] == "ordered"
