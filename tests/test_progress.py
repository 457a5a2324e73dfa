"""Long work shows progress when stderr is not a terminal: lines, not a silent bar."""

from __future__ import annotations

import re

import numpy as np
import pytest
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


# Mean wall times per size of the committed studies' runs (docs/results, fast path, one
# thread each): chapter11 by hidden layers, trainable-depth by depth.
CHAPTER11_SECONDS = {2: 19.6, 100: 75.7}
TRAINABLE_DEPTH_SECONDS = {
    10: 8, 20: 12, 30: 17, 40: 20, 60: 29, 80: 35, 100: 42, 130: 50, 160: 58, 200: 70,
}  # fmt: skip


@pytest.mark.parametrize(
    ("preset", "seconds"),
    [("chapter11", CHAPTER11_SECONDS), ("trainable-depth", TRAINABLE_DEPTH_SECONDS)],
)
def test_a_studys_time_left_is_near_the_truth_from_its_first_run(
    preset: str, seconds: dict[int, float]
) -> None:
    """The study's runs finish one after another, in its order, each taking its size's
    measured time ±10 % (seeded); after every run the estimate is within 25 % of the time
    the rest really takes. Counting runs instead said 11 × 20 s = 3.6 min after chapter11's
    first (small) run, for 9.2 min of work left: 61 % short."""
    from signalprop._progress import TimeLeft
    from signalprop.study import load_spec
    from signalprop.study._runner import expected_cost, run_size

    runs = load_spec(preset).runs
    rng = np.random.default_rng(0)
    times = [seconds[run.depth] * rng.uniform(0.9, 1.1) for run in runs]
    left = TimeLeft({run.run_id: (run_size(run), expected_cost(run)) for run in runs})
    assert left.left() is None  # nothing timed: no estimate
    for i, run in enumerate(runs):
        left.finished(run.run_id, times[i])
        truth = sum(times[i + 1 :])
        estimate = left.left()
        if i == len(runs) - 1:
            assert estimate is None
            break
        assert estimate is not None
        assert abs(estimate[0] - truth) <= 0.25 * truth, (i, estimate, truth)


def test_time_left_shares_the_work_among_parallel_jobs_but_waits_for_the_longest() -> None:
    from signalprop._progress import TimeLeft

    left = TimeLeft({k: ("one size", 1.0) for k in "abcde"}, parallel=2)
    left.finished("a", 10.0)
    assert left.left() == (20.0, 0)  # 4 runs of 10 s on 2 at once
    left = TimeLeft({"a": ("small", 1.0), "b": ("big", 10.0)}, parallel=4)
    left.finished("a", 3.0)
    assert left.left() == (30.0, 1)  # the big one alone, scaled by cost, still untimed
    left.finished("b", None)  # a failed run: no time to learn from
    assert left.left() is None


def test_a_studys_progress_lines_say_the_time_left_and_whether_it_is_scaled() -> None:
    from signalprop.study import load_spec
    from signalprop.study._runner import _StudyProgress

    runs = load_spec("chapter11").runs  # 3 seeds of each of 4 rows: small, small, big, big
    lines: list[str] = []
    progress = _StudyProgress("chapter11", len(runs), 0, runs, lines.append)
    for run in runs:
        record = {
            "history": {"val_accuracy": [0.8], "stopped": None},
            "wall_time": CHAPTER11_SECONDS[run.depth],
        }
        progress.finished(run, record, running=0)
    progress.close()
    # After the first run: 5 small runs timed (98 s) and 6 big ones scaled by cost (6 ×
    # 19.6 s × 3.77 = 443 s): 541 s, for 552 s really left.
    assert lines[0].endswith(
        "(20 s); 0 running, ~9 min left (1 run size(s) not timed yet: scaled by expected cost)"
    )
    assert lines[6].endswith("(76 s); 0 running, ~6 min left")  # 5 × 75.7 s, all timed
    assert lines[-1].endswith("(76 s)")  # nothing left: no estimate
