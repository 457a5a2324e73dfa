"""The Monitor's findings over a run, against diagnose's on the same steps; their wording,
the heatmaps that show them, and the misuses that get one clear error."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import signalprop as sp
from signalprop._stats import alive_units
from signalprop.cli import main
from signalprop.monitor import LayerInfo, MonitorHistory, Record
from signalprop.plots import NON_FINITE_COLOR, plot_monitor

BATCH, STEPS = 32, 16


def clipped_nll(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Keras's sparse categorical cross-entropy on probabilities: clipped to [1e-7, 1 − 1e-7]
    before the log, so a saturated softmax gives a finite loss (13–16) and no gradient."""
    return F.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)), y)


def blow_up() -> tuple[sp.Monitor, list[nn.Module], torch.Tensor, torch.Tensor]:
    """A 5-layer He-ReLU net trained with SGD at lr 1e4, monitored on every step.

    Step 1's update multiplies the weights by ~1e5: from step 2 on the output's
    pre-activations reach ~1e19, the softmax saturates, the loss stays finite and every
    gradient is exactly 0. Returns the monitor, a copy of the model before each step,
    and the data (batch i is rows 32 i to 32 i + 31).
    """
    torch.manual_seed(0)
    x, y = torch.rand(STEPS * BATCH, 784), torch.randint(0, 10, (STEPS * BATCH,))
    layers = [sp.Dense(300, "relu", kernel_initializer="he_normal") for _ in range(4)]
    model = sp.Sequential([*layers, sp.Dense(10, "softmax")], input_shape=(784,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e4)
    before = []
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for i in range(STEPS):
            before.append(copy.deepcopy(model))
            optimizer.zero_grad()
            clipped_nll(
                model(x[BATCH * i : BATCH * (i + 1)]), y[BATCH * i : BATCH * (i + 1)]
            ).backward()
            optimizer.step()
    return monitor, before, x, y


def test_a_blow_up_is_found_as_diagnose_finds_it_on_the_same_steps() -> None:
    """The same kinds as diagnose, run on the model as it was before each step and that
    step's batch and loss: at the first step, at the last, and over the whole run."""
    monitor, before, x, y = blow_up()
    diagnosed = [
        {
            f.kind
            for f in sp.diagnose(
                model, x[BATCH * i : BATCH * (i + 1)], y[BATCH * i : BATCH * (i + 1)], clipped_nll
            ).findings
        }
        for i, model in enumerate(before)
    ]
    assert {"chaotic", "exploding_signal", "vanishing_gradients"} <= diagnosed[-1]
    findings = monitor.findings()
    assert {f.kind for f in findings if f.began == 1} == diagnosed[0]
    assert {f.kind for f in findings if f.last_seen == STEPS} == diagnosed[-1]
    assert {f.kind for f in findings} == set().union(*diagnosed)
    # Not a finite signal read as NaN: the output layer's std is measured (~1e19).
    assert all(math.isfinite(r.values["pre_std"][-1]) for r in monitor.history.records)
    assert "healthy" not in monitor.summary()


def test_the_blow_ups_fixes_name_no_initializer_the_net_started_at() -> None:
    """The net was He-initialized: neither 'use he_normal' nor 're-initialize with
    he_normal' is true of it; the weights that training blew up are named as the cause."""
    monitor, _, _, _ = blow_up()
    fixes = [f.fix for f in monitor.findings()]
    assert not any("use he_normal" in fix or "re-initialize with he_normal" in fix for fix in fixes)
    assert any("were at he_normal's scale at step 1" in fix for fix in fixes)
    assert any("lower the learning rate" in fix for fix in fixes)


def test_nan_units_are_neither_dead_nor_alive_by_accident() -> None:
    """A unit whose pre-activations are NaN or -Inf is not counted dead; a unit never
    positive is, a unit positive once is not."""
    nan, inf = math.nan, math.inf
    z = torch.tensor([[nan, -inf, -1.0, -1.0, 2.0], [nan, -inf, -2.0, 0.0, -1.0]])
    assert alive_units(z).tolist() == [True, True, False, False, True]
    # In a record: a layer whose weights are NaN reads NaN, not 100 % dead.
    torch.manual_seed(0)
    model = sp.Sequential(
        [sp.Dense(20, "relu") for _ in range(3)] + [sp.Dense(3)], input_shape=(5,)
    )
    with torch.no_grad():
        model[1].weight.fill_(math.nan)
    with sp.Monitor(model, every=1) as monitor:
        F.cross_entropy(model(torch.randn(32, 5)), torch.randint(0, 3, (32,))).backward()
        monitor.step()
    (record,) = monitor.history.records
    assert math.isnan(record.values["pre_std"][1])
    # Its dead fraction is undefined (NaN, drawn as NaN), not 0 % nor 100 %.
    assert math.isnan(record.values["dead"][1]) and math.isnan(record.values["dead"][2])
    assert record.values["dead"][0] is not None and math.isfinite(record.values["dead"][0])


def test_the_update_ratio_of_nan_weights_is_nan_and_of_zero_weights_unknown() -> None:
    """NaN weights (and so NaN updates everywhere) give a NaN update ratio, drawn as NaN,
    not a gap; a weight of norm zero has no scale to compare its update with."""
    torch.manual_seed(0)
    model = sp.Sequential(
        [sp.Dense(20, "relu") for _ in range(3)] + [sp.Dense(3)], input_shape=(5,)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        model[3].weight.zero_()
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for broken in (False, True):
            if broken:
                with torch.no_grad():
                    model[1].weight.fill_(math.nan)
            optimizer.zero_grad()
            F.cross_entropy(model(torch.randn(32, 5)), torch.randint(0, 3, (32,))).backward()
            optimizer.step()
    first, second = (record.values["update_ratio"] for record in monitor.history.records)
    assert all(math.isfinite(r) for r in first[:3]) and first[3] is None
    assert math.isnan(second[1])


def test_non_finite_values_behind_a_finite_loss_are_a_finding() -> None:
    """Inf pre-activations that tanh turns into 1: the output, loss and gradients stay
    finite, so no NaN event is raised; the record itself still holds Inf."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[0].fill_(1e38)  # unit 0 overflows to +Inf for positive inputs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(10 * torch.rand(32, 4)), torch.randint(0, 3, (32,)))
            assert math.isfinite(float(loss.detach()))
            loss.backward()
            optimizer.step()
    assert not monitor.events
    (finding,) = [f for f in monitor.findings() if f.kind == "non_finite"]
    assert finding.layers[0] == "0" and finding.began == 1 and finding.persistent
    assert "NaN or Inf first appears in the forward pass at layer 0" in finding.message
    assert "healthy" not in monitor.summary()


def dead_history(dead_at: list[int], records: int = 10) -> MonitorHistory:
    """Three ReLU layers; layer 1 has 60 % of its units dead (an error) at the steps ``dead_at``."""
    layers = [LayerInfo(str(i), "Linear", "relu") for i in range(3)]
    history = MonitorHistory(layers=layers)
    for step in range(1, records + 1):
        values: dict[str, list[float | None]] = {q: [None] * 3 for q in sp.monitor.QUANTITIES}
        values["dead"] = [0.0, 0.6 if step in dead_at else 0.0, 0.0]
        history.records.append(Record(step, 64, values))
    return history


def test_persistence_is_said_and_a_passing_spell_is_a_warning() -> None:
    (spell,) = dead_history([3, 5, 7]).findings()
    assert (spell.seen, spell.records, spell.persistent, spell.severity) == (3, 8, False, "warning")
    assert "seen in only 3 of the 8 records from then on, last at step 7" in spell.message
    assert "[warning] dead_units (in 3 of 8 records)" in dead_history([3, 5, 7]).summary()
    (lasting,) = dead_history([4, 5, 6, 7, 8, 9, 10]).findings()
    assert lasting.persistent and lasting.severity == "error"
    assert "between steps 3 and 4; seen in every record from then on, to step 10" in lasting.message
    (over,) = dead_history([4, 5, 6]).findings()
    assert "seen in every record to step 6, and in none from step 7 on" in over.message
    for finding in (spell, lasting, over):
        assert "gone by" not in finding.message


def test_a_run_without_records_is_not_called_healthy() -> None:
    history = MonitorHistory(layers=[LayerInfo("0", "Linear", "relu")], steps=5)
    assert "healthy" not in history.summary() and "nothing recorded" in history.summary()


# ---------------------------------------------------------------- heatmaps
def test_heatmaps_draw_nan_in_its_colour_tick_whole_steps_and_mark_finding_starts() -> None:
    torch.manual_seed(0)
    model = sp.Sequential(
        [sp.Dense(16, "relu") for _ in range(3)] + [sp.Dense(3)], input_shape=(5,)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for step in range(1, 4):
            if step == 3:
                with torch.no_grad():
                    model[1].weight.fill_(math.nan)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    history = monitor.history
    figure = plot_monitor(history, ["act_std"], findings=monitor.findings())
    (axis, _colorbar) = figure.axes
    figure.canvas.draw()
    ticks = [t for t in axis.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert "NaN or Inf" in labels
    assert any(label.startswith("step 3: non_finite") for label in labels)
    # The red layer covers exactly the non-finite cells: layers 1 and up at step 3.
    grid = np.array(history.series("act_std"), dtype=float).T
    red = [
        m for m in axis.collections if getattr(m.get_cmap(), "colors", None) == [NON_FINITE_COLOR]
    ]
    (mesh,) = red
    drawn = ~np.ma.getmaskarray(mesh.get_array()) & np.isfinite(
        np.ma.filled(mesh.get_array(), np.nan)
    )
    assert drawn.reshape(grid.shape).sum() == (~np.isfinite(grid)).sum() > 0
    assert [line.get_xdata()[0] for line in axis.get_lines() if line.get_linestyle() == "--"] == [3]
    # Rows numbered from 1 as everywhere (the names, "0" to "3", shown after the number).
    assert axis.get_ylabel() == "layer (from 1, input side)"
    assert list(axis.get_yticks()) == [1, 2, 3, 4]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["1 0", "2 1", "3 2", "4 3"]


# ---------------------------------------------------------------- misuse at the door
def small_net() -> nn.Module:
    return sp.Sequential([sp.Dense(8, "relu"), sp.Dense(3)], input_shape=(4,))


def test_a_step_without_a_backward_pass_says_when_to_call_it() -> None:
    model = small_net()
    monitor = sp.Monitor(model, every=1)
    model(torch.randn(16, 4))
    with pytest.raises(RuntimeError, match=r"after loss\.backward\(\) and optimizer\.step\(\)"):
        monitor.step()
    monitor.close()


def test_a_model_with_nothing_to_monitor_is_refused_at_the_door() -> None:
    weight = nn.Parameter(torch.zeros(3))
    with pytest.raises(
        ValueError, match="'model' parameter of Monitor must be a model with layers"
    ):
        sp.Monitor(nn.Sequential(nn.Identity()), optimizer=torch.optim.SGD([weight], lr=0.1))


def test_a_keras_model_is_pointed_to_the_keras_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    keras_like: Any = type("Sequential", (), {"__module__": "keras.src.models.sequential"})()
    with pytest.raises(ValueError, match=r"sp\.keras\.Monitor"):
        sp.Monitor(keras_like)


def test_an_optimizer_over_other_parameters_is_refused() -> None:
    other = nn.Linear(3, 3)
    with pytest.raises(
        ValueError, match=r"'optimizer' parameter of Monitor.*model\.parameters\(\)"
    ):
        sp.Monitor(small_net(), optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    # Fine-tuning the head alone is an optimizer over the model's parameters.
    model = small_net()
    sp.Monitor(model, optimizer=torch.optim.SGD(model[-1].parameters(), lr=0.1)).close()


def test_plot_monitor_prints_the_monitors_own_summary_from_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log keeps the findings drawn with the model (the mean-field phase) in its last
    line: `signalprop plot monitor` on it says what the Monitor said, word for word."""
    torch.manual_seed(0)
    x, y = torch.rand(4 * BATCH, 784), torch.randint(0, 10, (4 * BATCH,))
    layers = [sp.Dense(300, "relu", kernel_initializer="he_normal") for _ in range(4)]
    model = sp.Sequential([*layers, sp.Dense(10, "softmax")], input_shape=(784,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e4)
    log = tmp_path / "monitor.jsonl"
    with sp.Monitor(model, every=1, optimizer=optimizer, log=log) as monitor:
        for i in range(4):
            optimizer.zero_grad()
            rows = slice(BATCH * i, BATCH * (i + 1))
            clipped_nll(model(x[rows]), y[rows]).backward()
            optimizer.step()
    assert "chaotic" in {f.kind for f in monitor.findings()}
    assert main(["plot", "monitor", str(log), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.endswith(monitor.summary() + "\n")
