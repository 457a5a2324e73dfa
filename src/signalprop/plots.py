"""Figures. Drawing only: every function takes recorded data and returns a figure.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no display),
so they work headless; save them with ``fig.savefig(path)``.

Example:
    >>> import signalprop as sp
    >>> fig = plot_activations(sp.activations.curves())
    >>> fig.savefig("/tmp/activations.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from signalprop.diagnostics import Report
from signalprop.propagate import PropagationResult

__all__ = [
    "plot_accuracy_vs_depth",
    "plot_activations",
    "plot_gradient_profiles",
    "plot_layers",
    "plot_learning_curves",
]

TITLES = {
    "sigmoid": "Logistic",
    "leaky_relu": "Leaky ReLU",
    "elu": "ELU",
    "selu": "SELU",
    "relu": "ReLU",
    "tanh": "tanh",
}


def _grid(
    n: int, axes: Sequence[Axes] | None, size: tuple[float, float]
) -> tuple[Figure, list[Axes]]:
    if axes is not None:
        if len(axes) < n:
            raise ValueError(f"The 'axes' parameter needs {n} axes. Got {len(axes)} instead.")
        figure = axes[0].get_figure()
        assert isinstance(figure, Figure)
        return figure, list(axes)
    columns = min(n, 2)
    rows = (n + columns - 1) // columns
    figure = Figure(figsize=(size[0] * columns, size[1] * rows), layout="constrained")
    panels = list(np.atleast_1d(figure.subplots(rows, columns)).ravel())
    for extra in panels[n:]:
        extra.remove()
    return figure, panels[:n]


def _annotate_logistic(ax: Axes, z: np.ndarray, y: np.ndarray, margin: float) -> None:
    saturated = (y <= margin) | (y >= 1 - margin)
    ax.fill_between(z, -0.1, 1.1, where=saturated, color="tab:red", alpha=0.12, lw=0)
    ax.plot(z, 0.5 + z / 4, "g--", lw=1, label="linear region (slope 1/4)")
    ax.set_ylim(-0.1, 1.1)
    low, high = z[saturated & (z < 0)], z[saturated & (z > 0)]
    if low.size:
        ax.annotate(
            "Saturating", (low[-1], 0.02), (low[0] + 0.3, 0.4), arrowprops={"arrowstyle": "->"}
        )
    if high.size:
        ax.annotate(
            "Saturating", (high[0], 0.98), (high[0] - 0.5, 0.6), arrowprops={"arrowstyle": "->"}
        )
    ax.annotate("Linear", (0, 0.5), (-3.5, 0.85), arrowprops={"arrowstyle": "->"})


def plot_activations(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    axes: Sequence[Axes] | None = None,
    saturation_margin: float = 0.02,
    asymptotes: Mapping[str, float] | None = None,
) -> Figure:
    """The activation functions, one panel each, annotated as in the chapter.

    Args:
        curves: ``name -> (z, f(z))``, e.g. from :func:`signalprop.activations.curves`.
        axes: Axes to draw on (one per curve); new ones if ``None``.
        saturation_margin: The logistic's saturated band is shaded where its
            output is within this of 0 or 1 (as :class:`~signalprop.Thresholds`).
        asymptotes: ``name -> value`` of a horizontal asymptote to draw dashed
            (ELU's −α, SELU's −λα).

    Returns:
        The figure.
    """
    figure, panels = _grid(len(curves), axes, (4.5, 3.2))
    for ax, (name, (z, y)) in zip(panels, curves.items(), strict=False):
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(0, color="k", lw=0.6)
        ax.plot(z, y, "b-", lw=2, label=name)
        ax.grid(alpha=0.3)
        ax.set_title(TITLES.get(name, name))
        ax.set_xlabel("z")
        if name == "sigmoid":
            _annotate_logistic(ax, z, y, saturation_margin)
        if name == "leaky_relu":
            left = z < 0
            ax.annotate(
                "Leak",
                (z[left][len(z[left]) // 2], y[left][len(z[left]) // 2]),
                (z[left][len(z[left]) // 2], float(np.max(y)) * 0.4),
                arrowprops={"arrowstyle": "->"},
                ha="center",
            )
        if asymptotes and name in asymptotes:
            ax.axhline(asymptotes[name], color="gray", ls="--", lw=1)
    return figure


def _series(data: Report | PropagationResult) -> dict[str, Any]:
    """Pick the per-layer arrays to draw (no arithmetic beyond selection)."""
    if isinstance(data, PropagationResult):
        return {
            "x": np.arange(1, data.depth + 1),
            "labels": None,
            "std": data.forward_std,
            "mean": data.forward_mean,
            "fractions": {},
            "grad": data.grad_std,
            "grad_label": "std of ∂L/∂(layer output)",
            "title": f"{data.activation} + {data.init}, width {data.width}",
        }
    layers = data.layers

    def column(attr: str) -> np.ndarray:
        return np.array([np.nan if getattr(r, attr) is None else getattr(r, attr) for r in layers])

    std = column("act_std")
    pre = column("pre_std")
    return {
        "x": np.arange(1, len(layers) + 1),
        "labels": [r.name for r in layers],
        "std": np.where(np.isnan(std), pre, std),
        "mean": np.where(np.isnan(std), column("pre_mean"), column("act_mean")),
        "fractions": {"saturated": column("saturated"), "dead": column("dead")},
        "grad": column("grad_pre_rms"),
        "grad_label": "RMS of ∂L/∂(pre-activation)",
        "title": f"{len(layers)} layers, batch {data.batch_size}",
    }


def plot_layers(data: Report | PropagationResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Per-layer activation statistics, saturated/dead fractions and gradient size.

    Args:
        data: A :class:`~signalprop.Report` from :func:`~signalprop.diagnose`
            or a :class:`~signalprop.PropagationResult` from :func:`~signalprop.propagate`.
        axes: Three axes to draw on; new ones if ``None``.

    Returns:
        The figure.
    """
    series = _series(data)
    figure, (signal, fractions, gradient) = _grid(3, axes, (5.0, 3.2))
    x = series["x"]
    signal.plot(x, series["std"], "b.-", label="std")
    signal.plot(x, series["mean"], "g.-", label="mean", alpha=0.7)
    signal.axhline(1.0, color="gray", ls=":", lw=1)
    signal.set_title(f"Activations — {series['title']}")
    signal.set_xlabel("layer")
    signal.legend()
    finite_std = series["std"][np.isfinite(series["std"])]
    if (
        finite_std.size
        and np.nanmax(np.abs(finite_std)) / max(np.nanmin(np.abs(finite_std)), 1e-300) > 1e3
    ):
        signal.set_yscale("symlog", linthresh=1e-3)
    drawn = False
    for name, values in series["fractions"].items():
        if np.any(np.isfinite(values)):
            fractions.plot(x, values, ".-", label=name)
            drawn = True
    fractions.set_ylim(-0.02, 1.02)
    fractions.set_title(
        "Saturated activations / dead units" if drawn else "(no saturating or ReLU layers)"
    )
    fractions.set_xlabel("layer")
    if drawn:
        fractions.legend()
    grad = series["grad"]
    positive = np.isfinite(grad) & (grad > 0)
    gradient.semilogy(x[positive], grad[positive], "r.-")
    gradient.set_title(series["grad_label"])
    gradient.set_xlabel("layer")
    for ax in (signal, fractions, gradient):
        ax.grid(alpha=0.3)
    if series["labels"] is not None and len(series["labels"]) <= 12:
        for ax in (signal, fractions, gradient):
            ax.set_xticks(x, series["labels"])
    return figure


Band = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, mean, low, high


def _draw_bands(
    ax: Axes,
    series: Mapping[str, Band],
    styles: Mapping[str, str] | None,
    colors: Mapping[str, Any] | None,
) -> None:
    for label, (x, mean, low, high) in series.items():
        style = (styles or {}).get(label, "-")
        color = (colors or {}).get(label)
        (line,) = ax.plot(x, mean, style, marker=".", label=label, color=color)
        if np.any(high > low):
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0)


def plot_learning_curves(
    panels: Mapping[str, Mapping[str, Band]],
    *,
    ylabel: str = "validation accuracy",
    styles: Mapping[str, str] | None = None,
    colors: Mapping[str, Any] | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Curves per epoch, one panel per group: ``title -> label -> (x, mean, low, high)``.

    The band between ``low`` and ``high`` (e.g. the seeds' range) is shaded;
    ``styles`` and ``colors`` give each label a line style and a colour.
    """
    from matplotlib.ticker import MaxNLocator

    figure, panel_axes = _grid(len(panels), axes, (6.0, 4.0))
    for ax, (title, series) in zip(panel_axes, panels.items(), strict=False):
        _draw_bands(ax, series, styles, colors)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return figure


def plot_accuracy_vs_depth(
    series: Mapping[str, Band],
    *,
    styles: Mapping[str, str] | None = None,
    colors: Mapping[str, Any] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Final accuracy against depth: ``label -> (depths, mean, low, high)``."""
    figure, (axis,) = _grid(1, None if ax is None else [ax], (7.0, 4.5))
    for label, (x, mean, low, high) in series.items():
        style = (styles or {}).get(label, "-")
        axis.errorbar(
            x,
            mean,
            yerr=[mean - low, high - mean],
            fmt=style,
            marker="o",
            capsize=3,
            label=label,
            color=(colors or {}).get(label),
        )
    axis.set_xscale("log")
    axis.set_xlabel("hidden layers")
    axis.set_ylabel("final validation accuracy")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    return figure


def plot_gradient_profiles(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    *,
    ylabel: str = "RMS of ∂L/∂(pre-activation)",
    styles: Mapping[str, str] | None = None,
    colors: Mapping[str, Any] | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Per-layer values on a log scale, one panel per group: ``title -> label -> values``."""
    figure, panel_axes = _grid(len(panels), axes, (6.0, 4.0))
    for ax, (title, series) in zip(panel_axes, panels.items(), strict=False):
        for label, values in series.items():
            x = np.arange(1, len(values) + 1)
            positive = np.isfinite(values) & (values > 0)
            style = (styles or {}).get(label, "-")
            ax.semilogy(
                x[positive],
                values[positive],
                style,
                marker=".",
                ms=3,
                label=label,
                color=(colors or {}).get(label),
            )
        ax.set_title(title)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return figure
