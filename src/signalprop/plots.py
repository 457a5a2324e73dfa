"""Figures. Drawing only: every function takes recorded data and returns a figure.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no display),
so they work headless; save them with ``fig.savefig(path)``.

Examples:
    >>> import signalprop as sp
    >>> fig = plot_activations(sp.activations.curves())
    >>> fig.savefig("/tmp/activations.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from signalprop.diagnostics import Report
from signalprop.meanfield import TRAINABLE_DEPTH_FACTOR, PhaseDiagram
from signalprop.monitor import MonitorHistory, TimedFinding
from signalprop.propagate import PropagationResult

__all__ = [
    "plot_accuracy_vs_depth",
    "plot_activations",
    "plot_gradient_profiles",
    "plot_layers",
    "plot_learning_curves",
    "plot_monitor",
    "plot_phase_diagram",
    "plot_trainable_depth",
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

    Examples:
        >>> import numpy as np
        >>> from signalprop import plots
        >>> import signalprop as sp
        >>> fig = plots.plot_activations(sp.activations.curves())
        >>> len(fig.axes) > 0
        True
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


#: How every figure labels a layer axis: layers are numbered from 1 on the input side, as
#: in propagate's table, diagnose's "#" column, the Monitor's heatmaps and TensorBoard tags.
LAYER_AXIS = "layer (from 1, input side)"


def layer_ticks(names: Sequence[str], sep: str = "\n") -> list[str]:
    """Tick labels for layers numbered from 1: the number, and the layer's name in the
    model after ``sep`` where the name is not that number (PyTorch's ``"0"``, ``"2"``)."""
    return [
        str(number) if name == str(number) else f"{number}{sep}{name}"
        for number, name in enumerate(names, start=1)
    ]


def _series(data: Report | PropagationResult) -> dict[str, Any]:
    """Pick the per-layer arrays to draw (no arithmetic beyond selection)."""
    if isinstance(data, PropagationResult):
        return {
            "x": np.arange(1, data.depth + 1),
            "labels": None,
            "std": data.forward_std,
            "mean": data.forward_mean,
            "fractions": None,
            "grad": data.grad_std,
            "grad_label": "std of ∂L/∂(layer output)",
            "scale": None,
            "title": f"{data.activation} + {data.init}, width {data.width}",
        }
    layers = data.layers

    def column(attr: str) -> np.ndarray:
        return np.array([np.nan if getattr(r, attr) is None else getattr(r, attr) for r in layers])

    std = column("act_std")
    pre = column("pre_std")
    return {
        "x": np.arange(1, len(layers) + 1),  # the table's "#"
        "labels": [r.name for r in layers],
        "std": np.where(np.isnan(std), pre, std),
        "mean": np.where(np.isnan(std), column("pre_mean"), column("act_mean")),
        "fractions": {"saturated": column("saturated"), "dead": column("dead")},
        "grad": column("grad_pre_rms"),
        "grad_label": "RMS of ∂L/∂(pre-activation)",
        "scale": column("weight_scale_fan_in"),
        "title": f"{len(layers)} layers, batch {data.batch_size}",
    }


def plot_layers(data: Report | PropagationResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Per-layer activation statistics and gradient size; for a report, also the
    saturated/dead fractions and the weights' scale (variance × fan_in).

    Layers are numbered from 1 on the input side (the report's ``#`` column);
    with 12 layers or fewer each is ticked, with its name in the model beneath.

    Args:
        data: A :class:`~signalprop.Report` from :func:`~signalprop.diagnose`
            or a :class:`~signalprop.PropagationResult` from :func:`~signalprop.propagate`.
        axes: Axes to draw on, new ones if ``None``: four for a report (activations,
            fractions, gradient, weight scale), two for a propagation (activations,
            gradient), which records neither fractions nor weights.

    Returns:
        The figure.

    Examples:
        >>> import numpy as np
        >>> from signalprop import plots
        >>> import signalprop as sp
        >>> result = sp.propagate('selu', 'lecun_normal', depth=20, width=32, batch=64)
        >>> fig = plots.plot_layers(result)
        >>> len(fig.axes)  # activations and gradient: a propagation has no fractions
        2
    """
    series = _series(data)
    report = series["fractions"] is not None
    figure, panels = _grid(4 if report else 2, axes, (5.0, 3.2))
    if report:
        signal, fractions, gradient, scale = panels
    else:
        signal, gradient = panels
    x = series["x"]
    signal.plot(x, series["std"], "b.-", label="std")
    signal.plot(x, series["mean"], "g.-", label="mean", alpha=0.7)
    signal.axhline(1.0, color="gray", ls=":", lw=1)
    signal.set_title(f"Activations — {series['title']}")
    signal.set_ylabel("activation mean and std")
    signal.legend()
    finite_std = series["std"][np.isfinite(series["std"])]
    if (
        finite_std.size
        and np.nanmax(np.abs(finite_std)) / max(np.nanmin(np.abs(finite_std)), 1e-300) > 1e3
    ):
        signal.set_yscale("symlog", linthresh=1e-3)
        drawn = np.concatenate([finite_std, series["mean"][np.isfinite(series["mean"])]])
        if drawn.min() >= 0:  # no negative decades drawn for values that are never negative
            signal.set_ylim(bottom=0)
    grad = series["grad"]
    positive = np.isfinite(grad) & (grad > 0)
    gradient.semilogy(x[positive], grad[positive], "r.-")
    gradient.set_title(series["grad_label"])
    gradient.set_ylabel("gradient size (log scale)")
    if report:
        _draw_fractions(fractions, x, series["fractions"])
        _draw_scale(scale, x, series["scale"])
    for ax in panels[: 4 if report else 2]:
        ax.set_xlabel(LAYER_AXIS)
        ax.grid(alpha=0.3)
        if series["labels"] is not None and len(series["labels"]) <= 12:
            ax.set_xticks(x, layer_ticks(series["labels"]))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def _draw_fractions(ax: Axes, x: np.ndarray, fractions: Mapping[str, np.ndarray]) -> None:
    drawn = False
    for name, values in fractions.items():
        if np.any(np.isfinite(values)):
            ax.plot(x, values, ".-", label=name)
            drawn = True
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Saturated activations / dead units")
    ax.set_ylabel("fraction")
    if drawn:
        ax.legend()
    else:  # say why the panel is blank instead of leaving it empty
        ax.text(
            0.5,
            0.5,
            "no logistic, tanh or ReLU layer:\nnothing saturates or dies",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )


def _draw_scale(ax: Axes, x: np.ndarray, scale: np.ndarray) -> None:
    """Each layer's weight variance × fan_in, with LeCun's 1 and He's 2 marked."""
    known = np.isfinite(scale)
    ax.plot(x[known], scale[known], "m.-", label="var·fan_in")
    for level, name in ((1.0, "LeCun / Glorot (1)"), (2.0, "He (2)")):
        ax.axhline(level, color="gray", ls=":" if level == 1 else "--", lw=1, label=name)
    ax.set_title("Weight scale: variance × fan_in")
    ax.set_ylabel("var(W) · fan_in")
    positive = scale[known & (scale > 0)]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    ax.legend(fontsize=7)


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


def _legend(ax: Axes) -> None:
    """The panel's legend; a panel with nothing to draw (every run diverged: no finite
    value) says so instead of an empty legend and matplotlib's warning."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)


def _legend_layout(panels: Mapping[str, Mapping[str, Any]]) -> tuple[bool, tuple[float, float]]:
    """Whether the panels' legends go below them, and the panel size that makes room:
    more curves than :data:`LEGEND_INSIDE` put each legend below its panel, one entry a
    line (inside, they covered the curves and could leave the panel no room at all)."""
    entries = max((len(series) for series in panels.values()), default=0)
    below = entries > LEGEND_INSIDE
    return below, ((7.0, 4.0 + 0.19 * entries) if below else (6.0, 4.0))


def _panel_legend(ax: Axes, below: bool) -> None:
    """The panel's legend, below it when :func:`_legend_layout` says so."""
    if below and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=1, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    else:
        _legend(ax)


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

    Examples:
        >>> import numpy as np
        >>> from signalprop import plots
        >>> x = np.arange(1, 4)
        >>> mean = np.array([0.5, 0.6, 0.7])
        >>> band = (x, mean, mean - 0.02, mean + 0.02)   # x, mean, low, high
        >>> fig = plots.plot_learning_curves({'tanh, 20 layers': {'glorot_uniform': band}})
        >>> fig.axes[0].get_title()
        'tanh, 20 layers'
    """

    below, size = _legend_layout(panels)
    figure, panel_axes = _grid(len(panels), axes, size)
    for ax, (title, series) in zip(panel_axes, panels.items(), strict=False):
        _draw_bands(ax, series, styles, colors)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _panel_legend(ax, below)
    return figure


#: Curves per panel up to which the legend sits inside the panel.
LEGEND_INSIDE = 8


def plot_accuracy_vs_depth(
    series: Mapping[str, Band],
    *,
    styles: Mapping[str, str] | None = None,
    colors: Mapping[str, Any] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Final accuracy against depth: ``label -> (depths, mean, low, high)``.

    The depths are evenly spaced slots ticked with their values, so two depths read
    as well as ten; within a depth's slot each series sits at its own offset
    (:data:`DODGE` of the slot spread over them all), so that markers and error bars of
    one depth do not hide each other. The legend sits below the panel, where it
    cannot cover a marker (the best accuracies are at the panel's top).

    Examples:
        >>> import numpy as np
        >>> from signalprop import plots
        >>> depths = np.array([10, 20, 50])
        >>> mean = np.array([0.85, 0.84, 0.8])
        >>> fig = plots.plot_accuracy_vs_depth({'selu': (depths, mean, mean - 0.01, mean + 0.01)})
        >>> fig.axes[0].get_xlabel()
        'hidden layers'
    """
    depths = sorted({int(d) for x, *_ in series.values() for d in x})
    slot = {depth: i for i, depth in enumerate(depths)}
    count = len(series)
    legend_rows = (count + 1) // 2  # two columns
    size = (max(7.0, 3.0 + 1.2 * len(depths)), 4.8 + 0.22 * legend_rows)
    figure, (axis,) = _grid(1, None if ax is None else [ax], size)
    step = DODGE / (count - 1) if count > 1 else 0.0
    for i, (label, (x, mean, low, high)) in enumerate(series.items()):
        offset = (i - (count - 1) / 2) * step
        positions = np.array([slot[int(d)] for d in x], dtype=float) + offset
        axis.errorbar(
            positions,
            mean,
            yerr=[mean - low, high - mean],
            fmt=(styles or {}).get(label, "-"),
            marker="o",
            markersize=5,
            capsize=2,
            label=label,
            color=(colors or {}).get(label),
        )
    axis.set_xticks(range(len(depths)), [str(d) for d in depths])
    axis.set_xlim(-0.5, len(depths) - 0.5)
    axis.set_xlabel("hidden layers")
    axis.set_ylabel("final validation accuracy")
    axis.grid(alpha=0.3, axis="y")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return figure


#: The share of a depth's slot over which :func:`plot_accuracy_vs_depth` spreads its series.
DODGE = 0.6


def plot_gradient_profiles(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    *,
    ylabel: str = "RMS of ∂L/∂(pre-activation)",
    styles: Mapping[str, str] | None = None,
    colors: Mapping[str, Any] | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Per-layer values on a log scale, one panel per group: ``title -> label -> values``.

    Examples:
        >>> import numpy as np
        >>> from signalprop import plots
        >>> rms = {'he_normal': np.array([1.0, 0.9, 0.8]), 'glorot': np.array([1.0, 0.1, 0.01])}
        >>> fig = plots.plot_gradient_profiles({'relu': rms})
        >>> fig.axes[0].get_yscale()
        'log'
    """
    below, size = _legend_layout(panels)
    figure, panel_axes = _grid(len(panels), axes, size)
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
        ax.set_xlabel(LAYER_AXIS)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _panel_legend(ax, below)
    return figure


#: Marker shapes and fills for :func:`plot_phase_diagram`, in the order the marks are
#: given; light colours with black edges read on both ends of the colour map.
_MARKS = ("o", "s", "D", "^", "v", "*", "P", "X")
_MARK_COLORS = ("deepskyblue", "orange", "lime", "red", "violet", "white", "gold", "pink")
#: Closest two contour labels may be (points, centre to centre), and how close one may
#: come to a mark, so that no label covers another or a mark.
_LABEL_GAP = 70.0
_LABEL_MARK_GAP = 22.0
#: Candidate spots for a contour's label, as fractions of its length, best first.
_LABEL_SPOTS = (0.5, 0.3, 0.7, 0.15, 0.85)


#: The centred activation's critical line: its colour and what the legend calls it.
_CENTRED_COLOR = "springgreen"
_CENTRED = ", centred (biases −W·E[φ]𝟙)"


def _draw_critical(
    axis: Axes, line_b: np.ndarray, line_w: np.ndarray, color: str, style: str, kind: str
) -> np.ndarray:
    """Draw a critical line (pieces of two finite neighbours or more) and its lone points;
    the legend names a line, or a point where there is no piece, followed by ``kind``.

    A lone point is a ring where there is no piece (the ReLU family's critical point),
    and a dot beside a piece (a σ_b² near the line's end whose neighbours have none),
    which would otherwise not show. Returns where the line exists."""
    exists: np.ndarray = np.isfinite(line_w)
    # A piece of line needs two neighbours on it; a lone point is a critical point.
    joined = exists[1:] & exists[:-1]
    alone = exists & ~np.concatenate([[False], joined]) & ~np.concatenate([joined, [False]])
    if joined.any():
        axis.plot(line_w, line_b, style, color=color, lw=2, label=f"critical line{kind}")
    if alone.any() and joined.any():
        axis.plot(line_w[alone], line_b[alone], ".", color=color, ms=4, ls="none")
    elif alone.any():
        axis.plot(
            line_w[alone],
            line_b[alone],
            "o",
            ms=17,
            mfc="none",
            mec=color,
            mew=2.5,
            ls="none",
            clip_on=False,
            zorder=4,  # a ring around the marks that sit on it
            label=f"critical point{kind}",
        )
    return exists


def _label_spots(
    axis: Axes, contour_sets: Sequence[Any], taken: list[np.ndarray], figure: Figure
) -> list[list[tuple[float, float]]]:
    """Where to label each set's contours: at most two spots a level, far from each other.

    Spots are tried level by level (first one a level, then a second), at
    ``_LABEL_SPOTS`` along each level's two longest pieces, and kept only if
    their centre is ``_LABEL_GAP`` points from every kept label and
    ``_LABEL_MARK_GAP`` from every mark (``taken``, in display pixels), inside
    the axes. Points are display pixels × 72 / dpi.
    """
    to_points = 72.0 / figure.dpi
    box = axis.get_window_extent()
    margin = 25.0 / to_points
    candidates: list[tuple[int, list[np.ndarray]]] = []
    for index, contours in enumerate(contour_sets):
        for level in range(len(contours.levels)):
            pieces = sorted(
                (axis.transData.transform(seg) for seg in contours.allsegs[level] if len(seg) > 1),
                key=lambda xy: -float(np.hypot(*np.diff(xy, axis=0).T).sum()),
            )
            mine = []
            for xy in pieces[:2]:
                along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
                if along[-1] * to_points >= 40:  # long enough to hold a label
                    mine += [xy[np.searchsorted(along, f * along[-1])] for f in _LABEL_SPOTS]
            candidates.append((index, mine))
    placed: list[np.ndarray] = []
    counts = [0] * len(candidates)
    spots: list[list[tuple[float, float]]] = [[] for _ in contour_sets]
    inverse = axis.transData.inverted()
    for rank in range(2):  # one label a level first, then a second where there is room
        for n, (index, mine) in enumerate(candidates):
            if counts[n] > rank:
                continue
            for spot in mine:
                inside = (
                    box.x0 + margin < spot[0] < box.x1 - margin
                    and box.y0 + margin < spot[1] < box.y1 - margin
                )
                far = all(np.hypot(*(spot - p)) * to_points >= _LABEL_GAP for p in placed)
                clear = all(np.hypot(*(spot - m)) * to_points >= _LABEL_MARK_GAP for m in taken)
                if inside and far and clear:
                    placed.append(spot)
                    counts[n] += 1
                    x, y = inverse.transform(spot)
                    spots[index].append((float(x), float(y)))
                    break
    return spots


def plot_phase_diagram(
    diagram: PhaseDiagram,
    marks: Mapping[str, tuple[float, float]],
    *,
    depths: Sequence[float] = (20, 50, 100, 200),
    xi_range: tuple[float, float] = (1.0, 1e3),
    critical_line: tuple[Sequence[float], Sequence[float]] | None = None,
    centred_line: tuple[Sequence[float], Sequence[float]] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The correlation depth scale ξ_c over (σ_w², σ_b²), the critical line and marked points.

    The heatmap is ``diagram.xi_c`` on a log colour scale clipped to
    ``xi_range`` (ξ_c is infinite on the critical line). The critical line is
    ``critical_line`` when given, else ``diagram.critical`` against
    ``diagram.bias_vars``; where it exists at isolated σ_b² only (the ReLU
    family and linear, at σ_b² = 0) it is drawn, and listed, as a critical
    point. The legend lists only what is drawn. Solid contours are where the
    trainable depth 6 ξ_c (Schoenholz et al. 2017) equals each of ``depths``,
    labelled at spots far enough apart not to overlap. The σ_w² axis is
    logarithmic when the grid is geometric.

    Args:
        diagram: From :func:`signalprop.meanfield.phase_diagram`.
        marks: ``label -> (σ_w², σ_b²)``, e.g. where initializations put a layer.
        depths: Trainable depths to draw as contours (those the grid reaches).
        xi_range: ξ_c at the ends of the colour scale.
        critical_line: ``(σ_b², σ_w²)`` of the critical line sampled more finely
            than the grid (from :func:`signalprop.meanfield.critical_line`), so
            that it is smooth where the grid is coarse, as near SiLU's threshold.
        centred_line: ``(σ_b², σ_w²)`` of the centred activation's critical line
            (``critical_line(..., centred=True)``: each layer's biases also hold
            −W·E[φ]𝟙), drawn dashed beside the diagram's own; ``None`` draws
            none (pass it only where it differs, i.e. where E[φ] ≠ 0).
        ax: Axes to draw on; new ones if ``None``.

    Returns:
        The figure.

    Examples:
        >>> import numpy as np, signalprop as sp
        >>> diagram = sp.meanfield.phase_diagram("tanh", np.linspace(0.1, 4, 40), [0, 0.1, 0.2])
        >>> fig = plot_phase_diagram(diagram, {"He": (2.0, 0.0)})
    """
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch

    figure, (axis,) = _grid(1, None if ax is None else [ax], (7.5, 6.0))
    w, b = diagram.weight_vars, diagram.bias_vars
    steps = np.log(w[1:] / w[:-1]) if len(w) > 1 and w[0] > 0 else np.array([])
    geometric = steps.size > 1 and np.allclose(steps, steps[0]) and w[-1] / w[0] > 10
    if geometric:
        axis.set_xscale("log")
    axis.set_xlim(w[0], w[-1])
    axis.set_ylim(b[0], b[-1])
    low, high = xi_range
    shown = np.clip(diagram.xi_c, low, high)  # NaN stays blank
    mesh = axis.pcolormesh(
        w, b, shown, norm=LogNorm(low, high), cmap="magma", shading="nearest", rasterized=True
    )
    bar = figure.colorbar(mesh, ax=axis, extend="both")
    bar.set_label(r"$\xi_c$: correlation depth scale (layers)")

    if critical_line is None:
        line_b, line_w = b, diagram.critical
    else:
        line_b, line_w = (np.asarray(v, dtype=np.float64) for v in critical_line)
    exists = _draw_critical(axis, line_b, line_w, "tab:cyan", "-", " (χ₁ = 1)")
    if centred_line is not None:
        centred_b, centred_w = (np.asarray(v, dtype=np.float64) for v in centred_line)
        _draw_critical(axis, centred_b, centred_w, _CENTRED_COLOR, "--", _CENTRED)

    unbounded = np.isinf(diagram.q_star)
    if unbounded.any() and min(len(w), len(b)) > 1:
        axis.contourf(
            w, b, unbounded.astype(float), levels=[0.5, 1.5], colors="none", hatches=["//"]
        )

    drawn: list[tuple[float, float]] = []
    for i, (label, (x, y)) in enumerate(marks.items()):
        # Marks drawn at the same point shrink, so that each stays visible.
        under = sum(np.isclose(x, u, rtol=1e-6) and np.isclose(y, v, atol=1e-9) for u, v in drawn)
        drawn.append((x, y))
        axis.plot(
            x,
            y,
            _MARKS[i % len(_MARKS)],
            ms=13 - 3.5 * min(under, 2),
            mfc=_MARK_COLORS[i % len(_MARK_COLORS)],
            mec="black",
            mew=1,
            ls="none",
            label=f"{label} ({x:.3g}, {y:.3g})",
            clip_on=False,
            zorder=3,
        )

    # Contours of the trainable depth on ξ_c itself, with ∞ (the critical line) above all
    # levels; drawn apart on either side of the edge of the region where q* = ∞, where ξ_c
    # jumps (its meaning changes there), so that no contour runs along that edge.
    xi = np.where(np.isinf(diagram.xi_c), 1e12 * high, diagram.xi_c)
    finite = xi[np.isfinite(xi)]
    levels = [
        d
        for d in sorted(depths)
        if finite.size and finite.min() < d / TRAINABLE_DEPTH_FACTOR < finite.max()
    ]
    contour_sets = []
    if levels and min(len(w), len(b)) > 1:
        for region in (~unbounded, unbounded):
            if region.sum() < 4:  # no contour fits in fewer than four grid points
                continue
            contour_sets.append(
                axis.contour(
                    w,
                    b,
                    np.ma.masked_where(~region | ~np.isfinite(xi), xi),
                    levels=[d / TRAINABLE_DEPTH_FACTOR for d in levels],
                    colors="0.85",
                    linewidths=0.9,
                )
            )

    # The phases, named just above the plot on either side of the critical line's top
    # end (read off the top row), clear of the contours' labels.
    left, right = str(diagram.phase[-1, 0]), str(diagram.phase[-1, -1])
    text: dict[str, Any] = {"fontsize": 9, "fontweight": "bold", "va": "bottom"}
    if exists.any() and left != right:
        top = np.flatnonzero(exists)[-1]
        for name, side in ((f"← {left}", -1), (f"{right} →", 1)):
            axis.annotate(
                name,
                (line_w[top], b[-1]),
                xytext=(6 * side, 3),
                textcoords="offset points",
                ha="left" if side > 0 else "right",
                **text,
            )
    else:  # no critical line: the top corners
        axis.text(0.0, 1.01, left, transform=axis.transAxes, ha="left", **text)
        if right != left:
            axis.text(1.0, 1.01, right, transform=axis.transAxes, ha="right", **text)
    axis.set_xlabel("σ_w² (weight variance × fan_in)")
    axis.set_ylabel("σ_b² (bias variance)")
    axis.set_title(f"{diagram.activation}: mean-field phase diagram", pad=16)
    handles, labels = axis.get_legend_handles_labels()
    if unbounded.any():
        handles.append(Patch(facecolor="none", edgecolor="black", hatch="//"))
        labels.append("q* = ∞ (signal grows)")
    # Two columns hold the centred line's long entry without squeezing the axes.
    columns = 2 if centred_line is not None else 3
    axis.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=columns, fontsize=8
    )
    if contour_sets:
        # Labels are placed in display space, so the layout (legend, colour bar) is settled
        # first.
        figure.draw_without_rendering()
        taken = [axis.transData.transform(point) for point in drawn]
        spots = _label_spots(axis, contour_sets, taken, figure)
        for contours, manual in zip(contour_sets, spots, strict=True):
            if manual:
                axis.clabel(
                    contours,
                    fmt={d / TRAINABLE_DEPTH_FACTOR: rf"$6\xi_c$={d:g}" for d in levels},
                    fontsize=7,
                    inline_spacing=4,
                    manual=manual,
                )
    return figure


def plot_trainable_depth(
    accuracy: np.ndarray,
    weight_vars: Sequence[float],
    depths: Sequence[int],
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    measured: Sequence[int | None] | None = None,
    critical: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Accuracy over (σ_w², depth) with predicted trainable-depth curves drawn over it.

    Args:
        accuracy: Final validation accuracy, shape (len(depths), len(weight_vars));
            NaN where a run diverged or is missing.
        weight_vars: The grid's σ_w² (x axis).
        depths: The grid's depths (y axis).
        predicted: Curves to draw, label -> (σ_w², depth), e.g. ``"6ξ_c"``.
        measured: Per σ_w², the deepest depth measured as trainable (None: none).
        critical: σ_w² of the critical line, drawn as a vertical line.
        ax: Axes to draw on (default: a new figure).

    Examples:
        >>> import numpy as np
        >>> from signalprop import plots
        >>> accuracy = np.array([[0.8, 0.7], [0.6, np.nan]])   # (depths, weight_vars)
        >>> predicted = {'6ξ_c': (np.array([1.0, 2.0]), np.array([80.0, 60.0]))}   # (σ_w², depth)
        >>> fig = plots.plot_trainable_depth(accuracy, [1.0, 2.0], [10, 100], predicted)
        >>> fig.axes[0].get_ylabel()
        'depth (hidden layers)'
    """
    if ax is None:
        figure = Figure(figsize=(7.5, 5.5), layout="constrained")
        ax = figure.subplots()
    else:
        parent = ax.get_figure()
        assert isinstance(parent, Figure)
        figure = parent
    w = np.asarray(weight_vars, dtype=float)
    d = np.asarray(depths, dtype=float)
    # Cell edges halfway between grid points, so every cell is centred on its (σ_w², depth).
    w_edges = np.concatenate(
        [[w[0] - (w[1] - w[0]) / 2], (w[:-1] + w[1:]) / 2, [w[-1] + (w[-1] - w[-2]) / 2]]
    )
    d_edges = np.concatenate(
        [[d[0] - (d[1] - d[0]) / 2], (d[:-1] + d[1:]) / 2, [d[-1] + (d[-1] - d[-2]) / 2]]
    )
    mesh = ax.pcolormesh(
        w_edges, d_edges, np.ma.masked_invalid(accuracy), cmap="viridis", vmin=0.0, vmax=1.0
    )
    figure.colorbar(mesh, ax=ax, label="final validation accuracy")
    styles = ["w--", "w:", "w-."]
    for (label, (x, y)), style in zip(predicted.items(), styles, strict=False):
        ax.plot(x, y, style, linewidth=2, label=label)
    if measured is not None:
        xs = [wv for wv, m in zip(w, measured, strict=True) if m is not None]
        ys = [m for m in measured if m is not None]
        ax.plot(xs, ys, "o", color="orange", markeredgecolor="black", label="measured boundary")
    if critical is not None:
        ax.axvline(critical, color="white", linewidth=0.8, alpha=0.6)
    ax.set_xlim(w_edges[0], w_edges[-1])
    ax.set_ylim(d_edges[0], d_edges[-1])
    ax.set_xlabel("σ_w²")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(loc="upper right", fontsize=8, facecolor="0.3", labelcolor="white")
    return figure


#: What ``plot_monitor`` draws by default, and which quantities use a log colour scale.
MONITOR_PANELS = ("grad_pre_rms", "act_std", "act_mean", "update_ratio", "saturated", "dead")
LOG_QUANTITIES = {"grad_pre_rms", "grad_weight_rms", "act_std", "pre_std", "update_ratio"}


#: The colours ``plot_monitor`` gives cells outside the colour scale, and its marks.
NON_FINITE_COLOR = "red"
ZERO_COLOR = "0.55"
FINDING_COLOR = "white"
#: Finding starts named in a panel's legend (all are marked).
MARKED_STARTS = 6


def plot_monitor(
    history: MonitorHistory,
    quantities: Sequence[str] = MONITOR_PANELS,
    findings: Sequence[TimedFinding] | None = None,
) -> Figure:
    """Per-layer heatmaps over the steps of a monitored run, one panel per quantity.

    Rows are the layers in forward order, numbered from 1 at the input (bottom); columns the
    monitored steps, ticked at whole steps; gradient RMS, std and the update
    ratio use a log colour scale. Quantities that no layer has (the saturated
    fraction of a ReLU net) are left out. A NaN or Inf value is drawn in red and
    an exact 0 on a log scale in grey, each with a legend entry; a layer a
    quantity does not apply to stays blank. A dashed line and a triangle mark
    the step at which each finding (and each NaN or Inf event) began; the
    legend names the kinds that began there.

    Args:
        history: From a :class:`~signalprop.Monitor` or
            :func:`~signalprop.monitor.read_log`.
        quantities: Names from :data:`~signalprop.monitor.QUANTITIES`.
        findings: The findings to mark (``monitor.findings()``); None:
            ``history.findings()``.

    Returns:
        The figure.

    Examples:
        >>> import torch, torch.nn.functional as F, signalprop as sp
        >>> model = sp.Sequential([sp.Dense(16, "tanh") for _ in range(3)], input_shape=(4,))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with sp.Monitor(model, every=1, optimizer=opt) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 16, (8,))).backward()
        ...         opt.step()
        >>> fig = plot_monitor(monitor.history, findings=monitor.findings())
    """
    from matplotlib.colors import ListedColormap, LogNorm, Normalize
    from matplotlib.patches import Patch

    steps = np.array([record.step for record in history.records], dtype=float)
    names = history.names
    panels = []
    for quantity in quantities:
        grid = np.array(
            [[np.nan if v is None else v for v in column] for column in history.series(quantity)],
            dtype=float,
        ).T.reshape(len(names), len(steps))
        known = np.array(
            [[v is not None for v in column] for column in history.series(quantity)], dtype=bool
        ).T.reshape(len(names), len(steps))
        if len(steps) and known.any():
            panels.append((quantity, grid, known))
    figure, axes = _grid(max(1, len(panels)), None, (6.0, 4.2))
    if not panels:
        axes[0].text(0.5, 0.5, "nothing recorded", ha="center", va="center")
        axes[0].set_axis_off()
        return figure
    if findings is None:
        findings = history.findings()
    starts: dict[int, list[str]] = {}
    for event in history.events:
        starts.setdefault(event.step, []).append("non_finite")
    for finding in findings:
        kinds = starts.setdefault(finding.began, [])
        if finding.kind not in kinds:
            kinds.append(finding.kind)
    rows = np.arange(1, len(names) + 1)  # layers numbered from 1, as everywhere
    for axis, (quantity, grid, known) in zip(axes, panels, strict=True):
        non_finite = known & ~np.isfinite(grid)
        finite = grid[known & np.isfinite(grid)]
        positive = finite[finite > 0]
        zero = np.zeros_like(known)
        if quantity in LOG_QUANTITIES and positive.size:
            norm: Normalize = LogNorm(positive.min(), max(positive.max(), positive.min() * 1.01))
            zero = known & (grid == 0)
            shown = np.where(grid > 0, grid, np.nan)
        elif finite.size:
            norm = Normalize(finite.min(), max(finite.max(), finite.min() + 1e-12))
            shown = np.where(np.isfinite(grid), grid, np.nan)
        else:  # every value of it is NaN or Inf
            norm, shown = Normalize(0.0, 1.0), np.full_like(grid, np.nan)
        mesh = axis.pcolormesh(steps, rows, shown, norm=norm, cmap="viridis", shading="nearest")
        figure.colorbar(mesh, ax=axis).set_label(quantity)
        handles: list[Artist] = []
        for mask, color, label in (
            (non_finite, NON_FINITE_COLOR, "NaN or Inf"),
            (zero, ZERO_COLOR, "0 (below the log scale)"),
        ):
            if mask.any():
                axis.pcolormesh(
                    steps,
                    rows,
                    np.where(mask, 1.0, np.nan),
                    cmap=ListedColormap([color]),
                    shading="nearest",
                )
                handles.append(Patch(color=color, label=label))
        for step in sorted(starts):
            axis.axvline(step, color=FINDING_COLOR, linestyle="--", linewidth=1.0)
            axis.plot(step, 1.0, "v", color="black", transform=axis.get_xaxis_transform())
        shown_starts = sorted(starts.items())[:MARKED_STARTS]
        for step, kinds in shown_starts:
            label = f"step {step:,}: " + ", ".join(kinds)
            handles.append(Line2D([], [], color="black", marker="v", linestyle="--", label=label))
        if len(starts) > MARKED_STARTS:
            more = len(starts) - MARKED_STARTS
            handles.append(Line2D([], [], linestyle="", label=f"… {more} more start(s)"))
        if handles:
            axis.legend(
                handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7
            )
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("step")
        axis.set_ylabel(LAYER_AXIS)
        if len(names) <= 12:
            axis.set_yticks(rows, layer_ticks(names, sep=" "))
        else:
            axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(quantity.replace("_", " "))
    return figure
