"""Reports say what they cannot judge: one seed, damaged result files, layer numbering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import signalprop as sp
from _records import record, write_study
from signalprop.cli import main
from signalprop.plots import plot_layers
from signalprop.study import expand, read_results, write_report
from signalprop.study._runner import RESULTS


def _one_seed_study(directory: Path) -> None:
    spec = expand(
        {
            "name": "one-seed",
            "defaults": {"init": "matching", "depth": 2, "epochs": 1},
            "grid": {"activation": ["selu", "elu", "relu", "tanh"]},
        }
    )
    # SELU and ELU 0.0006 apart: with one seed that is no evidence either way.
    accuracy = {"selu": 0.8006, "elu": 0.8000, "relu": 0.7000, "tanh": 0.7500}
    write_study(directory, spec, [record(run, accuracy[run.activation]) for run in spec.runs])


def test_one_seed_reports_no_spread_and_judges_no_order(tmp_path: Path):
    _one_seed_study(tmp_path)
    text = write_report(tmp_path).read_text()
    assert "± 0.0000" not in text
    assert "0.8006 (one run: no spread)" in text
    ranking = next(line for line in text.splitlines() if line.startswith("Pairs ordered"))
    # 4 activations of 4 different ranks: 6 pairs, none of which one seed can order.
    assert ranking.startswith(
        "Pairs ordered as the rule of thumb says: 0; clearly the other way: 0; "
        "within noise: 0. Not judged: 6"
    )


def test_a_damaged_line_in_the_middle_is_named_and_a_cut_last_line_is_not(tmp_path: Path):
    _one_seed_study(tmp_path)
    path = tmp_path / RESULTS
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, "garbage\n")
    path.write_text("".join(lines) + '{"run_id": "cut sh')  # a kill mid-write: no newline
    with pytest.warns(UserWarning, match=rf"{RESULTS}:3: not a result record") as caught:
        records = read_results(tmp_path)
    assert len(caught) == 1  # the cut-short last line is not reported
    assert len(records) == 4


def test_the_report_command_prints_the_warning_as_one_line(tmp_path: Path, capsys):
    _one_seed_study(tmp_path)
    path = tmp_path / RESULTS
    path.write_text(path.read_text() + "not json\n")
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"signalprop: warning: {path}:5: not a result record, skipped ('not json')"]


def test_layer_figure_numbers_layers_as_the_table_does():
    """Layers are numbered from 1 (the table's "#"); a name that is not the number (PyTorch
    names these "0", "2", "4") is shown beneath it."""
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    report = sp.diagnose(model, torch.randn(32, 8, generator=torch.Generator().manual_seed(0)))
    assert [r.name for r in report.layers] == ["0", "2", "4"]
    assert [line.split()[:2] for line in report.table().splitlines()[1:]] == [
        ["1", "0"],
        ["2", "2"],
        ["3", "4"],
    ]
    figure = plot_layers(report)
    signal = figure.axes[0]
    assert list(signal.lines[0].get_xdata()) == [1, 2, 3]
    assert signal.get_xlabel() == "layer (from 1, input side)"
    assert [t.get_text() for t in signal.get_xticklabels()] == ["1\n0", "2", "3\n4"]
    fractions = figure.axes[1]
    assert fractions.get_ylabel().startswith("fraction")


def test_an_empty_fractions_panel_says_why():
    model = nn.Sequential(nn.Linear(8, 8), nn.SELU(), nn.Linear(8, 2))
    report = sp.diagnose(model, torch.randn(32, 8, generator=torch.Generator().manual_seed(1)))
    fractions = plot_layers(report).axes[1]
    assert not fractions.lines
    assert any("nothing saturates or dies" in t.get_text() for t in fractions.texts)


def test_report_numbers_on_known_answers(tmp_path: Path):
    # Three seeds per activation with accuracies chosen here; one ReLU seed diverged.
    # Expected: means and stds by hand, the diverged run counted at chance (0.1), and the
    # ranking's pair verdicts from the rule "clear if |Δmean| > 2·SE(Δ)".
    spec = expand(
        {
            "name": "known",
            "defaults": {"init": "matching", "depth": 2, "epochs": 1},
            "seeds": [0, 1, 2],
            "grid": {"activation": ["selu", "relu", "tanh"]},
        }
    )
    accuracy = {
        "selu": [0.80, 0.82, 0.84],  # mean 0.82, std 0.02
        "relu": [0.70, 0.72, float("nan")],  # at chance: mean (0.70+0.72+0.10)/3 = 0.5067
        "tanh": [0.81, 0.83, 0.85],  # mean 0.83, std 0.02: beats SELU, within noise
    }
    records = []
    for run in spec.runs:
        value = accuracy[run.activation][run.seed]
        made = record(run, value)
        if value != value:  # NaN: a diverged run
            made["history"]["stopped"] = {"reason": "non-finite loss"}
        records.append(made)
    write_study(tmp_path, spec, records)
    text = write_report(tmp_path).read_text()
    assert "| SELU + lecun_normal | 2 | 1 | 3 | 0.8200 ± 0.0200 | 0.8000–0.8400 |  |" in text
    # The table's mean and std skip the diverged run; the ranking counts it at chance.
    assert "| ReLU + he_normal | 2 | 1 | 3 | 0.7100 ± 0.0141 | 0.7000–0.7200 | 1 |" in text
    assert "ReLU (0.5067, 1 of 3 diverged)" in text
    ranking = next(line for line in text.splitlines() if line.startswith("Pairs ordered"))
    # ReLU's scores [0.70, 0.72, 0.10] have std 0.3523. SELU > ReLU: Δ = 0.3133,
    # SE = √(0.02²/3 + 0.3523²/3) = 0.2037 → within noise (< 2 SE); SELU vs tanh: Δ = −0.01,
    # SE = 0.0163 → within noise; ReLU vs tanh (ReLU ranks above tanh): Δ = −0.3233,
    # SE = 0.2037 → within noise. So 0 / 0 / 3.
    assert ranking.startswith(
        "Pairs ordered as the rule of thumb says: 0; clearly the other way: 0; within noise: 3."
    )


def test_a_configuration_whose_every_run_diverged_says_so(tmp_path: Path):
    spec = expand(
        {
            "name": "diverged",
            "defaults": {"init": "matching", "depth": 2, "epochs": 1},
            "seeds": [0, 1],
            "grid": {"activation": ["gelu"]},
        }
    )
    records = []
    for run in spec.runs:
        made = record(run, float("nan"))
        made["history"]["stopped"] = {"reason": "non-finite loss"}
        records.append(made)
    write_study(tmp_path, spec, records)
    text = write_report(tmp_path).read_text()
    assert "| GELU + he_normal | 2 | 1 | 2 | — (every run diverged) | — | 2 |" in text


def test_a_record_without_its_config_is_not_done_and_is_run_again(tmp_path: Path, capsys):
    """A valid JSON line with a run_id but no config is not a finished run: read_results
    warns and leaves it out (so run_study trains it again), and the report command says
    so in one line instead of failing with KeyError: 'config'."""
    _one_seed_study(tmp_path)
    path = tmp_path / RESULTS
    lines = path.read_text().splitlines(keepends=True)
    first = read_results(tmp_path)[0]["run_id"]
    half = json.dumps({"run_id": first, "history": None}) + "\n"
    path.write_text(half + "".join(lines[1:]))
    with pytest.warns(UserWarning, match=rf"{RESULTS}:1: a result record without 'config'"):
        records = read_results(tmp_path)
    assert len(records) == 3  # the first run is not counted as done
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "will be run again" in err[0]
    no_history = '{"run_id": "x", "config": {}}\n'
    path.write_text(no_history)
    with pytest.warns(UserWarning, match="without 'history' \\(or 'error'\\)"):
        assert read_results(tmp_path) == []
