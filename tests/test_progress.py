"""Long work shows progress when stderr is not a terminal: lines, not a silent bar."""

from __future__ import annotations

import re

import torch
from torch import nn

import signalprop as sp
from signalprop.train import fit


def test_fit_prints_a_line_per_epoch_and_tenths_without_a_terminal(capsys):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        x = torch.randn(400, 8)
        y = torch.randint(0, 3, (400,))
    fit(model, (x, y), (x[:50], y[:50]), epochs=2, batch_size=20, seed=0)
    err = capsys.readouterr().err  # pytest's captured stderr is not a terminal
    epochs = re.findall(
        r"^epoch (\d)/2: loss [\d.]+, accuracy [\d.]+, val_loss [\d.]+, "
        r"val_accuracy [\d.]+ \([\d.]+ s\)$",
        err,
        flags=re.M,
    )
    assert epochs == ["1", "2"]
    # 20 steps per epoch: a line at each tenth, 2/20 … 18/20, nine per epoch.
    assert len(re.findall(r"^epoch 1/2: \d+/20$", err, flags=re.M)) == 9


def test_fit_without_progress_is_silent(capsys):
    model = nn.Sequential(nn.Linear(8, 3))
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    fit(model, (x, y), None, epochs=1, batch_size=20, progress=False)
    assert capsys.readouterr().err == ""


def test_propagate_reports_its_layers_when_asked(capsys):
    sp.propagate("tanh", "glorot_uniform", depth=50, width=16, batch=8, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"propagate: 50 layers: {k}/50" for k in range(5, 50, 5)]
    sp.propagate("tanh", "glorot_uniform", depth=50, width=16, batch=8)
    assert capsys.readouterr().err == ""
