"""``signalprop phase`` and the figure it draws: the files, the numbers against
``meanfield.analyze``, the axes' ranges, the user errors, and the drawing on its own."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from _images import PNG_SIGNATURE, assert_png
from signalprop import activations, meanfield, plots
from signalprop.cli import build_parser, main
from signalprop.plots import plot_phase_diagram

RESOLUTION = "8"  # a coarse grid: the files and numbers, not the picture's detail
LABELS = [
    "Glorot",
    "He",
    "LeCun",
    "PyTorch default",
    "autoinit (variance)",
    "autoinit (critical)",
]


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "agg")


def expected_points(activation: str, width: int) -> dict[str, tuple[float, float]]:
    """(σ_w², σ_b²) from the papers, for a square layer: σ_w² = Var(w) · fan_in; autoinit's
    critical point is labelled centred where autoinit centres the activation."""
    variance = meanfield.init_point(activation, "variance")
    critical = meanfield.init_point(activation, "critical")
    centred = ", centred" if meanfield.centres(activation) else ""
    return {
        "Glorot": (2 / (width + width) * width, 0.0),  # Var = 2 / (fan_in + fan_out)
        "He": (2.0, 0.0),  # Var = 2 / fan_in
        "LeCun": (1.0, 0.0),  # Var = 1 / fan_in
        # U(±1/√fan_in) for weights and biases: Var = (1/√fan_in)² / 3.
        "PyTorch default": (1 / 3, 1 / (3 * width)),
        "autoinit (variance)": (variance.weight_var, variance.bias_var),
        f"autoinit (critical{centred})": (critical.weight_var, critical.bias_var),
    }


def number(cell: str) -> float:
    return {"∞": math.inf, "–": math.nan}[cell] if cell in ("∞", "–") else float(cell)


def agrees(cell: str, value: float) -> bool:
    shown = number(cell)
    if math.isnan(value) or math.isinf(value):
        return shown == value or (math.isnan(shown) and math.isnan(value))
    return math.isclose(shown, value, rel_tol=6e-4, abs_tol=1e-12)  # 4 significant digits


def markdown_rows(markdown: str, first: str) -> list[list[str]]:
    """The body of the Markdown table whose header starts with ``first``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def printed_rows(out: str) -> list[list[str]]:
    """The printed table's body: columns are separated by two spaces or more."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("initialization"))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append([cell.strip() for cell in line.split("  ") if cell.strip()])
    return rows


def run_phase(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["phase", "--resolution", RESOLUTION, *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize(("activation", "width"), [("tanh", 100), ("relu", 10)])
def test_phase_writes_a_figure_and_a_page_whose_numbers_are_analyze_s(
    activation: str, width: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "new" / "dir"  # created on demand
    out = run_phase(
        ["--activation", activation, "--width", str(width), "--out", str(directory)], capsys
    )
    png = directory / "phase.png"
    assert_png(png)
    markdown = (directory / "phase.md").read_text()
    assert markdown.startswith(f"# {activation}: mean-field phase diagram")
    assert "![phase diagram](phase.png)" in markdown
    assert "Schoenholz" in markdown and "6ξ_c" in markdown

    rows = markdown_rows(markdown, "initialization")
    assert [row[0] for row in rows] == LABELS
    assert printed_rows(out) == rows  # the same table on stdout
    for row, (label, (weight_var, bias_var)) in zip(
        rows, expected_points(activation, width).items(), strict=True
    ):
        mf = meanfield.analyze(activation, weight_var, bias_var)
        assert row[5] == mf.phase, label
        values = [
            weight_var,
            bias_var,
            mf.q_star,
            mf.chi_1,
            mf.c_star,
            mf.xi_c,
            mf.trainable_depth,
        ]
        cells = [*row[1:5], *row[6:]]
        for cell, value in zip(cells, values, strict=True):
            assert agrees(cell, value), (label, cell, value)
    assert f"{directory}/phase.md" in out


def test_the_critical_line_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_phase(["--activation", "relu", "--out", str(tmp_path)], capsys)
    markdown = (tmp_path / "phase.md").read_text()
    (header,) = [line for line in markdown.splitlines() if line.startswith("| σ_b² |")]
    row, centred = markdown_rows(markdown, "σ_b²")
    bias_vars = [float(b) for b in header.strip("|").split("|")[1:]]
    assert bias_vars[0] == 0 and bias_vars == sorted(bias_vars) and bias_vars[-1] <= 0.5
    # ReLU is critical at He's variance with zero biases and nowhere else (SPEC).
    assert row == ["critical σ_w²", "2", *["none"] * (len(bias_vars) - 1)]
    # Centred (E[ReLU] ≠ 0), it is critical at σ_w² = 2 at every σ_b² > 0, and not at 0.
    assert centred[0] == "critical σ_w², centred"
    expected = meanfield.critical_line("relu", bias_vars, centred=True)
    assert centred[1] == "none" and np.isnan(expected[0])
    for cell, value in zip(centred[2:], expected[1:], strict=True):
        assert agrees(cell, value) and value == pytest.approx(2.0)


def test_autoinit_s_note_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_phase(["--activation", "selu", "--out", str(tmp_path)], capsys)
    note = meanfield.init_point("selu", "critical").note
    assert note
    assert f"autoinit (critical): {note}" in out
    assert note in (tmp_path / "phase.md").read_text()


def test_activation_params_reach_the_theory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_phase(
        ["--activation", "leaky_relu", "--param", "alpha=0.2", "--out", str(tmp_path)], capsys
    )
    assert out.startswith("leaky_relu(alpha=0.2): ")
    rows = {row[0]: row for row in printed_rows(out)}
    critical = meanfield.init_point("leaky_relu", "critical", alpha=0.2)
    assert agrees(rows["autoinit (critical)"][1], critical.weight_var)
    assert agrees(rows["autoinit (critical)"][1], 2 / (1 + 0.2**2))  # He's 2/(1+α²)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "silu"])
def test_the_axes_hold_every_mark_and_the_critical_point(
    activation: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[meanfield.PhaseDiagram, dict[str, tuple[float, float]]]] = []

    def recording(diagram: meanfield.PhaseDiagram, marks: Any, **kwargs: Any) -> Figure:
        drawn.append((diagram, dict(marks)))
        return plot_phase_diagram(diagram, marks, **kwargs)

    monkeypatch.setattr(plots, "plot_phase_diagram", recording)
    run_phase(["--activation", activation, "--out", str(tmp_path)], capsys)
    ((diagram, marks),) = drawn
    expected = expected_points(activation, 100)
    assert list(marks) == list(expected)
    for label, point in marks.items():
        assert point == pytest.approx(expected[label]), label
    w, b = diagram.weight_vars, diagram.bias_vars
    assert len(w) == len(b) == int(RESOLUTION)
    for weight_var, bias_var in marks.values():
        assert w[0] <= weight_var <= w[-1] and b[0] <= bias_var <= b[-1]
    critical = meanfield.init_point(activation, "critical")
    assert critical.weight_var < w[-1] / 1.4  # room beyond it, on the chaotic side
    assert b[0] == 0 and b[-1] >= max(0.5, 1.5 * critical.bias_var)
    # The logistic's critical σ_w² is ≈ 103: its σ_w² grid is geometric (a log axis).
    steps = np.diff(np.log(w)) if activation == "sigmoid" else np.diff(w)
    assert np.allclose(steps, steps[0])


def a_regular_file(tmp_path: Path) -> str:
    path = tmp_path / "file.txt"
    path.write_text("not a directory")
    return str(path / "sub")


ERRORS = [
    ("unknown activation", ["--activation", "tanhh"], ["'--activation'", "Did you mean 'tanh'?"]),
    (
        "softmax",
        ["--activation", "softmax"],
        ["must be an elementwise activation", "Got 'softmax'"],
    ),
    ("width 0", ["--activation", "tanh", "--width", "0"], ["'--width'", ">= 1"]),
    ("width not a number", ["--activation", "tanh", "--width", "wide"], ["--width", "'wide'"]),
    ("resolution 1", ["--activation", "tanh", "--resolution", "1"], ["'--resolution'"]),
    ("param not NAME=NUMBER", ["--activation", "elu", "--param", "alpha"], ["phase: --param"]),
    ("param not taken", ["--activation", "tanh", "--param", "alpha=1"], ["--param", "alpha"]),
    ("no activation", [], ["--activation"]),
    ("unwritable --out", ["--activation", "tanh", "--out", "FILE"], ["--out", "not a writable"]),
]


@pytest.mark.parametrize(("argv", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_user_errors_are_one_line_and_status_2(
    argv: list[str],
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path)]
    argv = [a_regular_file(tmp_path) if a == "FILE" else a for a in argv]
    assert main(["phase", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("signalprop: error: ")
    assert err.endswith("\n") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert not (tmp_path / "phase.md").exists()


def test_an_unknown_activation_lists_the_elementwise_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["phase", "--activation", "swishh", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    names = [name for name in activations.names() if name != "softmax"]
    assert str(sorted(names)) in err


def test_help_lists_the_activations(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["phase", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for flag in ("--activation", "--out", "--width", "--param", "--resolution"):
        assert flag in text
    for name in activations.names():
        assert (repr(name) in text) == (name != "softmax"), name


# -------------------------------------------------------------- the drawing alone


def synthetic_diagram() -> meanfield.PhaseDiagram:
    """Made-up numbers, so that the figure can only show what it is given."""
    w = np.linspace(0.5, 3.0, 6)
    b = np.linspace(0.0, 0.4, 5)
    xi = np.tile([0.5, 3.0, 40.0, np.inf, 20.0, 2.0], (5, 1))
    xi[2, 0] = np.nan
    q_star = np.ones((5, 6))
    q_star[:, -1] = np.inf
    phase = np.tile(["ordered"] * 3 + ["critical"] + ["chaotic"] * 2, (5, 1))
    return meanfield.PhaseDiagram(
        activation="made-up",
        weight_vars=w,
        bias_vars=b,
        q_star=q_star,
        chi_1=np.ones((5, 6)),
        c_star=np.ones((5, 6)),
        xi_c=xi,
        xi_q=np.ones((5, 6)),
        phase=phase,
        critical=np.array([2.0, 2.1, 2.2, np.nan, 2.4]),
    )


MARKS = {"Glorot": (1.0, 0.0), "He": (2.0, 0.0), "autoinit (critical)": (2.2, 0.2)}


def test_plot_phase_diagram_draws_what_it_is_given(tmp_path: Path) -> None:
    diagram = synthetic_diagram()
    figure = plot_phase_diagram(diagram, MARKS)
    assert isinstance(figure, Figure)
    axis, _ = figure.axes  # the diagram and its colour bar, nothing else
    assert axis.get_title() == "made-up: mean-field phase diagram"
    (mesh,) = [c for c in axis.collections if isinstance(c, QuadMesh)]
    shown = np.ma.filled(mesh.get_array(), np.nan).reshape(diagram.xi_c.shape)
    np.testing.assert_array_equal(shown, np.clip(diagram.xi_c, 1.0, 1e3))  # ∞ at the top
    assert mesh.norm.vmin == 1.0 and mesh.norm.vmax == 1e3
    lines = {line.get_label(): line for line in axis.get_lines()}
    critical = lines["critical line (χ₁ = 1)"]
    np.testing.assert_array_equal(critical.get_xdata(), diagram.critical)
    np.testing.assert_array_equal(critical.get_ydata(), diagram.bias_vars)
    for label, (x, y) in MARKS.items():
        (mark,) = [line for key, line in lines.items() if key.startswith(f"{label} (")]
        assert (list(mark.get_xdata()), list(mark.get_ydata())) == ([x], [y])
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert "q* = ∞ (signal grows)" in legend  # the last column's q* is infinite
    texts = [child.get_text() for child in axis.texts]
    assert "← ordered" in texts and "chaotic →" in texts
    assert axis.get_xscale() == "linear"
    assert axis.get_xlim() == (0.5, 3.0) and axis.get_ylim() == (0.0, 0.4)
    figure.savefig(tmp_path / "phase.png", dpi=60)
    assert (tmp_path / "phase.png").read_bytes()[:8] == PNG_SIGNATURE


def contour_labels(figure: Figure) -> set[str]:
    return {text.get_text() for text in figure.axes[0].texts if "xi_c" in text.get_text()}


def test_plot_phase_diagram_contours_only_the_depths_it_reaches() -> None:
    diagram = synthetic_diagram()  # ξ_c from 0.5 to ∞: 6ξ_c reaches every depth
    figure = plot_phase_diagram(diagram, MARKS, depths=(20, 100, 10_000))
    assert contour_labels(figure) >= {"$6\\xi_c$=20", "$6\\xi_c$=100", "$6\\xi_c$=10000"}
    bounded = replace(diagram, xi_c=np.where(np.isinf(diagram.xi_c), 30.0, diagram.xi_c))
    figure = plot_phase_diagram(bounded, MARKS, depths=(20, 100, 10_000))  # 6ξ_c ≤ 240
    assert contour_labels(figure) >= {"$6\\xi_c$=20", "$6\\xi_c$=100"}
    assert not any("10000" in label for label in contour_labels(figure))


def test_plot_phase_diagram_on_given_axes_and_a_log_grid() -> None:
    w = np.geomspace(0.1, 400.0, 7)
    b = np.array([0.0, 0.25, 0.5])
    diagram = meanfield.phase_diagram("sigmoid", w, b)
    figure = Figure()
    ax = figure.add_subplot()
    assert plot_phase_diagram(diagram, {"He": (2.0, 0.0)}, ax=ax) is figure
    assert ax.get_xscale() == "log"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0] == "critical line (χ₁ = 1)"
    assert "He (2, 0)" in legend


def test_autoinit_command_takes_a_criterion_and_a_distribution(capsys) -> None:
    status = main(
        [
            "autoinit",
            "--preset",
            "torch-default-tanh",
            "--criterion",
            "critical",
            "--distribution",
            "orthogonal",
            "--batch",
            "64",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "autoinit (critical, analytic, orthogonal)" in out
    assert "critical" in out.split("AFTER autoinit:")[1]  # the mean-field line after the fix
    assert main(["autoinit", "--preset", "torch-default-tanh", "--criterion", "edge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--criterion" in err


# ------------------------------------------- the legend, the labels, the line


def legend_matches_the_drawing(axis: Any) -> list[str]:
    """Each legend entry's artist is drawn with something to see; returns the entries.

    A line entry needs two neighbouring finite points (a visible piece of line); a
    marker entry needs one finite point inside or on the edge of the axes.
    """
    entries = [text.get_text() for text in axis.get_legend().get_texts()]
    lines = {line.get_label(): line for line in axis.get_lines()}
    (x0, x1), (y0, y1) = axis.get_xlim(), axis.get_ylim()
    for entry in entries:
        if entry == "q* = ∞ (signal grows)":
            continue  # the hatched patch, checked against q* elsewhere
        line = lines[entry]
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        seen = np.isfinite(x) & np.isfinite(y) & (x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1)
        if line.get_linestyle() not in ("None", "none", ""):
            assert (seen[1:] & seen[:-1]).any(), f"{entry!r} is listed but no line is drawn"
        else:
            assert line.get_marker() not in ("None", "none", "") and seen.any(), entry
    return entries


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_an_activation_critical_at_one_point_lists_a_point_not_a_line(activation: str) -> None:
    w = np.linspace(0.5, 3.0, 6)
    b = np.linspace(0.0, 0.5, 6)
    diagram = meanfield.phase_diagram(activation, w, b)  # critical at σ_b² = 0 only
    figure = plot_phase_diagram(diagram, {"He": (2.0, 0.0)})
    entries = legend_matches_the_drawing(figure.axes[0])
    assert not any(entry.startswith("critical line") for entry in entries)
    assert "critical point (χ₁ = 1)" in entries


def test_no_critical_entry_without_a_critical_point() -> None:
    diagram = replace(synthetic_diagram(), critical=np.full(5, np.nan))
    entries = legend_matches_the_drawing(plot_phase_diagram(diagram, MARKS).axes[0])
    assert not any(entry.startswith("critical") for entry in entries)


def test_the_synthetic_legend_matches_the_drawing() -> None:
    entries = legend_matches_the_drawing(plot_phase_diagram(synthetic_diagram(), MARKS).axes[0])
    assert entries[0] == "critical line (χ₁ = 1)"


@pytest.mark.parametrize("activation", ["linear", "tanh", "silu"])
def test_contour_labels_do_not_overlap(activation: str) -> None:
    """Every 6ξ_c label's box, as rendered, is clear of every other label's."""
    w = np.linspace(0.05, 4.0, 40)
    b = np.linspace(0.0, 1.5 if activation == "silu" else 0.5, 30)
    diagram = meanfield.phase_diagram(activation, w, b)
    figure = plot_phase_diagram(diagram, {"He": (2.0, 0.0)})
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    boxes = [
        text.get_window_extent(renderer)
        for text in figure.axes[0].texts
        if "xi_c" in text.get_text()
    ]
    assert len(boxes) >= 2  # labelled at all
    for i, first in enumerate(boxes):
        for second in boxes[i + 1 :]:
            assert not first.overlaps(second), (first, second)


SILU_THRESHOLD = 0.5554  # the smallest σ_b² with a stable critical point, to 4 digits


def test_silu_s_critical_line_is_drawn_from_many_points_near_its_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Any] = []

    def recording(diagram: meanfield.PhaseDiagram, marks: Any, **kwargs: Any) -> Figure:
        figure = plot_phase_diagram(diagram, marks, **kwargs)
        drawn.append((diagram, figure))
        return figure

    monkeypatch.setattr(plots, "plot_phase_diagram", recording)
    run_phase(["--activation", "silu", "--out", str(tmp_path)], capsys)  # an 8 × 8 grid
    ((diagram, figure),) = drawn
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    line = lines["critical line (χ₁ = 1)"]
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    on = np.isfinite(x)
    assert y[on].min() == pytest.approx(SILU_THRESHOLD, abs=5e-4)  # it starts there
    assert (on & (np.abs(y - SILU_THRESHOLD) < 0.01)).sum() >= 10
    assert on.sum() > 10 * len(diagram.bias_vars)  # far finer than the grid's rows
    np.testing.assert_allclose(x[on], meanfield.critical_line("silu", y[on]), rtol=1e-9)


# ------------------------------------------- the centred activation's critical line

CENTRED_LINE = "critical line, centred (biases −W·E[φ]𝟙)"


def recorded_phase(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[meanfield.PhaseDiagram, dict[str, Any], Figure]:
    drawn: list[Any] = []

    def recording(diagram: meanfield.PhaseDiagram, marks: Any, **kwargs: Any) -> Figure:
        figure = plot_phase_diagram(diagram, marks, **kwargs)
        drawn.append((diagram, dict(marks), figure))
        return figure

    monkeypatch.setattr(plots, "plot_phase_diagram", recording)
    run_phase([*argv, "--out", str(tmp_path)], capsys)
    ((diagram, marks, figure),) = drawn
    return diagram, marks, figure


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_the_centred_critical_line_is_drawn_where_the_mean_is_not_zero(
    activation: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, marks, figure = recorded_phase(["--activation", activation], tmp_path, capsys, monkeypatch)
    axis = figure.axes[0]
    entries = legend_matches_the_drawing(axis)
    assert CENTRED_LINE in entries
    lines = {line.get_label(): line for line in axis.get_lines()}
    line = lines[CENTRED_LINE]
    assert line.get_linestyle() == "--"
    if "critical line (χ₁ = 1)" in lines:  # softplus has none uncentred
        assert line.get_color() != lines["critical line (χ₁ = 1)"].get_color()
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    on = np.isfinite(x)
    assert on.sum() > 100
    np.testing.assert_allclose(
        x[on], meanfield.critical_line(activation, y[on], centred=True), rtol=1e-9
    )
    rows = markdown_rows((tmp_path / "phase.md").read_text(), "σ_b²")
    assert [row[0] for row in rows] == ["critical σ_w²", "critical σ_w², centred"]
    # autoinit centres the logistic (its mean is ½ at every variance): its critical point
    # is marked, labelled centred, on that line. Softplus's mean moves with the variance,
    # so autoinit does not centre it (meanfield.centres).
    point = meanfield.init_point(activation)
    assert point.centred == (activation == "sigmoid")
    if not point.centred:
        assert "autoinit (critical, centred)" not in marks
        return
    weight_var, bias_var = marks["autoinit (critical, centred)"]
    assert (weight_var, bias_var) == pytest.approx((point.weight_var, point.bias_var))
    on_line = meanfield.critical_weight_var(activation, bias_var, centred=True)
    assert weight_var == pytest.approx(on_line, rel=1e-6)


def test_the_logistic_centred_is_critical_like_tanh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """σ(x) − ½ = tanh(x/2)/2: critical at σ_w² = 4² = 16 with zero biases."""
    _, _, figure = recorded_phase(["--activation", "sigmoid"], tmp_path, capsys, monkeypatch)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    line = lines[CENTRED_LINE]
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    assert y[0] == 0 and x[0] == pytest.approx(16.0, rel=1e-6)
    # ... and the uncentred line (σ_w² ≈ 103) is on the axes beside it.
    uncentred = np.asarray(lines["critical line (χ₁ = 1)"].get_xdata(), dtype=float)
    assert uncentred[0] == pytest.approx(103.0, rel=1e-3)
    assert uncentred[0] < figure.axes[0].get_xlim()[1]


@pytest.mark.parametrize("activation", ["tanh", "linear"])
def test_no_centred_line_where_the_mean_is_zero(
    activation: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, marks, figure = recorded_phase(["--activation", activation], tmp_path, capsys, monkeypatch)
    axis = figure.axes[0]
    entries = legend_matches_the_drawing(axis)
    assert not any("centred" in entry for entry in entries)
    assert not any("centred" in str(line.get_label()) for line in axis.get_lines())
    assert "autoinit (critical)" in marks
    markdown = (tmp_path / "phase.md").read_text()
    assert len(markdown_rows(markdown, "σ_b²")) == 1 and "centred" not in markdown


def test_centred_flag_draws_the_centred_activation_s_own_diagram(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    diagram, marks, figure = recorded_phase(
        ["--activation", "sigmoid", "--centred"], tmp_path, capsys, monkeypatch
    )
    expected = meanfield.phase_diagram(
        "sigmoid", diagram.weight_vars, diagram.bias_vars, centred=True
    )
    assert diagram.activation == expected.activation == "sigmoid − E[·]"
    np.testing.assert_allclose(diagram.chi_1, expected.chi_1, rtol=1e-9)
    np.testing.assert_allclose(diagram.critical, expected.critical, rtol=1e-9)
    axis = figure.axes[0]
    entries = legend_matches_the_drawing(axis)
    assert "critical line (χ₁ = 1)" in entries and CENTRED_LINE not in entries
    line = {line.get_label(): line for line in axis.get_lines()}["critical line (χ₁ = 1)"]
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    assert y[0] == 0 and x[0] == pytest.approx(16.0, rel=1e-6)
    # Every row is read on the centred activation.
    rows = {
        row[0]: row for row in markdown_rows((tmp_path / "phase.md").read_text(), "initialization")
    }
    for label, (weight_var, bias_var) in marks.items():
        mf = meanfield.analyze("sigmoid", weight_var, bias_var, centred=True)
        assert agrees(rows[label][4], mf.chi_1), label
    assert rows["autoinit (critical, centred)"][5] == "critical"
    assert (tmp_path / "phase.md").read_text().startswith("# sigmoid − E[·]: mean-field")


def test_plot_phase_diagram_draws_the_centred_line_it_is_given() -> None:
    diagram = synthetic_diagram()
    centred = (diagram.bias_vars, np.array([1.5, 1.6, np.nan, 1.8, 1.9]))
    axis = plot_phase_diagram(diagram, MARKS, centred_line=centred).axes[0]
    entries = legend_matches_the_drawing(axis)
    assert entries[:2] == ["critical line (χ₁ = 1)", CENTRED_LINE]
    line = {line.get_label(): line for line in axis.get_lines()}[CENTRED_LINE]
    np.testing.assert_array_equal(line.get_xdata(), centred[1])
    np.testing.assert_array_equal(line.get_ydata(), centred[0])
    # A centred line with nothing on it is not listed.
    none = (diagram.bias_vars, np.full(5, np.nan))
    entries = legend_matches_the_drawing(
        plot_phase_diagram(diagram, MARKS, centred_line=none).axes[0]
    )
    assert not any("centred" in entry for entry in entries)
