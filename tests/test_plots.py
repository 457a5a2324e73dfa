"""Plots: drawing only, headless, onto new or given axes, written as real PNG files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

import signalprop as sp
from _images import assert_png, assert_text_inside
from signalprop.examples import build_example
from signalprop.plots import plot_activations, plot_gradient_profiles, plot_layers

ASYMPTOTES = {"elu": -1.0, "selu": -sp.SELU_SCALE * sp.SELU_ALPHA}


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "agg")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=60)
    return path


@pytest.fixture(scope="module")
def report() -> sp.Report:
    with seeded(0):
        model = sp.Sequential(
            [sp.Dense(30, "sigmoid") for _ in range(3)]
            + [sp.Dense(30, "relu", kernel_initializer="he_normal") for _ in range(3)]
            + [sp.Dense(5)],
            input_shape=(30,),
        )
    x = torch.randn(64, 30, generator=torch.Generator().manual_seed(1))
    return sp.diagnose(model, x)


def horizontal_levels(ax: Axes) -> set[float]:
    levels = set()
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        if y.size and np.all(y == y[0]):
            levels.add(float(y[0]))
    return levels


def test_plot_activations_one_panel_per_curve(tmp_path: Path) -> None:
    curves = sp.activations.curves()
    figure = plot_activations(curves, asymptotes=ASYMPTOTES)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == len(curves) == 4
    assert [ax.get_title() for ax in figure.axes] == ["Logistic", "Leaky ReLU", "ELU", "SELU"]
    for ax, (z, y) in zip(figure.axes, curves.values(), strict=True):
        drawn = [line for line in ax.get_lines() if len(line.get_xdata()) == len(z)]
        assert any(np.array_equal(line.get_ydata(), y) for line in drawn)  # drawn, not recomputed
    elu, selu = figure.axes[2], figure.axes[3]
    assert ASYMPTOTES["elu"] in horizontal_levels(elu)
    assert ASYMPTOTES["selu"] in horizontal_levels(selu)
    assert ASYMPTOTES["selu"] not in horizontal_levels(figure.axes[0])
    assert_png(save(figure, tmp_path / "activations.png"))


@pytest.mark.parametrize(
    "names", [["relu"], ["sigmoid", "tanh", "elu"], ["relu", "leaky_relu", "elu", "selu", "gelu"]]
)
def test_plot_activations_has_exactly_one_axes_per_curve(names: list[str]) -> None:
    figure = plot_activations(sp.activations.curves(names))
    assert len(figure.axes) == len(names)


def test_plot_activations_draws_on_given_axes(tmp_path: Path) -> None:
    figure = Figure()
    axes = list(figure.subplots(1, 2))
    returned = plot_activations(sp.activations.curves(["relu", "tanh"]), axes=axes)
    assert returned is figure
    assert len(figure.axes) == 2
    assert all(ax.get_lines() for ax in axes)
    assert [ax.get_title() for ax in axes] == ["ReLU", "tanh"]
    assert_png(save(figure, tmp_path / "given.png"))


def test_too_few_axes_raise() -> None:
    figure = Figure()
    with pytest.raises(ValueError, match="'axes'"):
        plot_activations(sp.activations.curves(), axes=[figure.add_subplot()])
    with pytest.raises(ValueError, match="'axes'"):
        plot_layers(sp.propagate("selu", "lecun_normal", 3, 10, 10), axes=figure.axes)


@pytest.mark.parametrize(("source", "panels"), [("report", 4), ("propagate", 2)])
def test_plot_layers_fills_every_panel_and_keeps_its_labels_inside(
    report: sp.Report, source: str, panels: int
) -> None:
    """A report draws four panels (activations, fractions, gradient, weight scale), a
    propagation two (it records no fractions or weights): no panel left blank, and no
    label cut at the figure's edge (the fractions' y-label was, at 3 panels in a 2x2 grid)."""
    data = report if source == "report" else sp.propagate("selu", "lecun_normal", 5, 10, 10)
    figure = plot_layers(data)
    assert len(figure.axes) == panels
    for ax in figure.axes:
        assert ax.get_lines(), ax.get_title()  # something drawn in each
    columns = {ax.get_subplotspec().colspan.start for ax in figure.axes}
    rows = {ax.get_subplotspec().rowspan.start for ax in figure.axes}
    assert len(columns) * len(rows) == panels  # the grid is full: no empty cell
    assert_text_inside(figure)


def test_plot_layers_of_a_deep_report_keeps_its_labels_inside() -> None:
    model, x, y = build_example("chapter-relu", batch=32)
    assert_text_inside(plot_layers(sp.diagnose(model, x, y)))


def test_plot_layers_from_a_report(report: sp.Report, tmp_path: Path) -> None:
    figure = plot_layers(report)
    assert isinstance(figure, Figure)
    signal, fractions, gradient, scale = figure.axes
    stds = [r.act_std if r.act_std is not None else r.pre_std for r in report.layers]
    assert any(np.allclose(line.get_ydata(), stds) for line in signal.get_lines())
    labels = {line.get_label() for line in fractions.get_lines()}
    assert {"saturated", "dead"} <= labels
    grads = [r.grad_pre_rms for r in report.layers]
    assert any(np.allclose(line.get_ydata(), grads) for line in gradient.get_lines())
    scales = [r.weight_scale_fan_in for r in report.layers]
    assert any(np.allclose(line.get_ydata(), scales) for line in scale.get_lines())
    # Numbered from 1 as the table's "#", each layer's name beneath its number.
    assert list(signal.lines[0].get_xdata()) == list(range(1, len(report.layers) + 1))
    ticks = [t.get_text() for t in signal.get_xticklabels()]
    assert ticks == [f"{i}\n{r.name}" for i, r in enumerate(report.layers, start=1)]
    assert_png(save(figure, tmp_path / "layers.png"))


def test_plot_layers_from_propagate(tmp_path: Path) -> None:
    result = sp.propagate("relu", "glorot_uniform", depth=30, width=30, batch=50)
    figure = plot_layers(result)
    signal, gradient = figure.axes
    assert any(np.array_equal(line.get_ydata(), result.forward_std) for line in signal.get_lines())
    assert any(np.array_equal(line.get_ydata(), result.grad_std) for line in gradient.get_lines())
    assert_png(save(figure, tmp_path / "propagate.png"))


def test_an_exploding_nonnegative_signal_is_drawn_without_negative_decades() -> None:
    """ReLU with N(0, 1) weights: the signal grows by 1e15 over 20 layers, drawn on a
    symmetric log scale, which would give as many empty negative decades; the ReLU's
    outputs are never negative, so the axis starts at 0."""
    result = sp.propagate("relu", sp.init.RandomNormal(stddev=1.0), depth=20)
    signal, _ = plot_layers(result).axes
    assert signal.get_yscale() == "symlog"
    assert signal.get_ylim()[0] == 0
    tanh = sp.propagate("tanh", sp.init.RandomNormal(stddev=1e-3), depth=20)
    below, _ = plot_layers(tanh).axes[0].get_ylim()
    assert below < 0  # tanh's means go either side of 0: both sides are drawn


def test_plot_layers_draws_on_given_axes(report: sp.Report, tmp_path: Path) -> None:
    figure = Figure(figsize=(16, 3))
    axes = list(figure.subplots(1, 4))
    assert plot_layers(report, axes=axes) is figure
    assert len(figure.axes) == 4
    assert all(ax.get_lines() for ax in axes)
    assert_png(save(figure, tmp_path / "given_layers.png"))


def test_plot_layers_without_gradients_or_with_nan(tmp_path: Path) -> None:
    """Reports with missing or non-finite numbers still draw (and warn about nothing)."""
    with seeded(2):
        frozen = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).requires_grad_(False)
        broken = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(3))
    bad = x.clone()
    bad[0, 0] = float("nan")
    for name, data in (("frozen", sp.diagnose(frozen, x)), ("nan", sp.diagnose(broken, bad))):
        figure = plot_layers(data)
        assert_png(save(figure, tmp_path / f"{name}.png"))


def test_a_panel_whose_runs_all_diverged_says_so_without_a_legend_warning() -> None:
    """A study whose only run diverged has no gradient profile to draw: the panel says
    "no finite values" (an empty legend made matplotlib warn, an error in the tests)."""
    figure = sp.plots.plot_gradient_profiles({"relu": {}})
    (ax,) = figure.axes
    assert ax.get_legend() is None
    assert [text.get_text() for text in ax.texts] == ["no finite values"]


def accuracy_series(labels: int, depths: list[int]) -> dict[str, Any]:
    """``labels`` series of nearly equal accuracies (the hard case: markers on top of
    each other) at each of ``depths``."""
    x = np.array(depths)
    series = {}
    for i in range(labels):
        mean = np.full(len(depths), 0.8) + 0.001 * i
        series[f"activation {i}"] = (x, mean, mean - 0.01, mean + 0.01)
    return series


@pytest.mark.parametrize(("labels", "depths"), [(16, [20, 100]), (9, list(range(10, 110, 10)))])
def test_accuracy_vs_depth_keeps_every_marker_apart(
    labels: int, depths: list[int], tmp_path: Path
) -> None:
    """16 series at 2 depths (the ranking study draws 14; on a log axis they sat on 2 points),
    and 9 series at 10 depths: at each depth, each series' marker is at least a marker's
    radius from its neighbours', inside its depth's slot; the ticks are the depths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = sp.plots.plot_accuracy_vs_depth(accuracy_series(labels, depths))
    FigureCanvasAgg(figure).draw()
    (axis,) = figure.axes
    assert [t.get_text() for t in axis.get_xticklabels()] == [str(d) for d in depths]
    assert axis.get_xscale() == "linear"
    lines = [container.lines[0] for container in axis.containers]
    assert len(lines) == labels
    radius = lines[0].get_markersize() / 2 * figure.dpi / 72  # points to pixels
    for slot in range(len(depths)):
        xs = sorted(float(line.get_xdata()[slot]) for line in lines)
        assert slot - 0.5 < xs[0] and xs[-1] < slot + 0.5  # within its own depth's slot
        pixels = axis.transData.transform([(x, 0.8) for x in xs])[:, 0]
        assert np.diff(pixels).min() >= radius
    assert_text_inside(figure)
    assert_png(save(figure, tmp_path / "accuracy_vs_depth.png"))


def test_gradient_profiles_of_many_runs_put_the_legend_below_and_lay_out(tmp_path: Path) -> None:
    """The autoinit-zoo study draws 30 runs per panel: a legend inside the panel left it no
    room (matplotlib's "axes sizes collapsed to zero" warning, an error in this suite)."""
    rng = np.random.default_rng(0)
    runs = {f"run {i}": np.exp(rng.standard_normal(100)) for i in range(30)}
    figure = plot_gradient_profiles({"at initialization": runs, "after training": runs})
    assert_png(save(figure, tmp_path / "gradients.png"))
    for ax in figure.axes:
        legend = ax.get_legend()
        assert legend is not None
        below = legend.get_window_extent().y1 <= ax.get_window_extent().y0  # drawn by save
        assert below, "the legend sits on the panel"
