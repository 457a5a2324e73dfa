"""``signalprop phase``: the mean-field phase diagram of an activation, with where the
usual initializations put a layer."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int
from signalprop.cli._common import (
    PROG,
    Config,
    add_param_argument,
    check_params,
    made_by,
    parse_params,
    text_table,
    writable_directory,
)

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "phase"

#: Grid points per axis of ``signalprop phase`` (100 × 100: a few seconds).
PHASE_RESOLUTION = 100


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    phase = subparsers.add_parser(
        NAME,
        help="the mean-field phase diagram of an activation, with where initializations sit",
        description="Draw ξ_c over (σ_w², σ_b²) with the critical line, mark where Glorot, "
        "He, LeCun, PyTorch's default and autoinit put a layer that feeds the activation, "
        "and write DIR/phase.png and DIR/phase.md. For an activation whose mean is not "
        "zero, the centred activation's critical line (each layer's biases also cancel the "
        "mean) is drawn beside it.",
    )
    phase.add_argument(
        "--activation",
        required=True,
        help=f"elementwise activation: one of {_activations.elementwise_names()}",
    )
    phase.add_argument("--out", metavar="DIR", required=True, help="directory for the files")
    phase.add_argument(
        "--width", type=int, default=100, help="units per layer (default 100; fan_in = fan_out)"
    )
    add_param_argument(phase)
    phase.add_argument(
        "--resolution",
        type=int,
        default=PHASE_RESOLUTION,
        help=f"grid points per axis (default {PHASE_RESOLUTION})",
    )
    phase.add_argument(
        "--centred",
        action="store_true",
        help="the diagram of the centred activation φ − E[φ]: each layer's biases also "
        "hold −W·E[φ]𝟙",
    )
    return phase


def config(args: argparse.Namespace) -> Config:
    caller = f"{PROG} phase"
    _activations.check_elementwise(args.activation, param="--activation", caller=caller)
    params = parse_params(args.param, "phase")
    check_params(args.activation, params, "phase")
    return Config(
        NAME,
        {
            "activation": args.activation,
            "params": params,
            "out": args.out,
            "width": check_int(args.width, param="--width", caller=caller, low=1),
            "resolution": check_int(args.resolution, param="--resolution", caller=caller, low=5),
            "centred": bool(args.centred),
        },
    )


def _phase_marks(
    activation: str, params: dict[str, Any], width: int, centred: bool = False
) -> tuple[dict[str, tuple[float, float]], dict[str, str], set[str]]:
    """Where each initialization puts a square layer of ``width`` units feeding ``activation``.

    autoinit's critical point is the one it uses (centred where :func:`meanfield.centres`
    says so), or, with ``centred``, the centred activation's own. Returns
    ``label -> (σ_w², σ_b²)``, ``label -> note`` (autoinit's, when it has one) and the
    labels of centred points (their label says so).
    """
    from signalprop.meanfield import init_point

    fans = {"fan_in": width, "fan_out": width, "fan_avg": width}  # a square layer

    def preset(name: str) -> float:
        scale, mode, _, _ = _init.PRESETS[name]
        return scale / fans[mode] * width  # σ_w²: the weights' variance × fan_in

    marks = {
        "Glorot": (preset("glorot_uniform"), 0.0),
        "He": (preset("he_normal"), 0.0),
        "LeCun": (preset("lecun_normal"), 0.0),
        # nn.Linear's bias is U(±1/√fan_in), like its weights: variance 1 / (3 fan_in).
        "PyTorch default": (preset("pytorch_default"), 1.0 / (3.0 * width)),
    }
    notes = {}
    centred_marks = set()
    for criterion in ("variance", "critical"):
        point = init_point(activation, criterion, centred=True if centred else None, **params)
        label = f"autoinit ({criterion}, centred)" if point.centred else f"autoinit ({criterion})"
        marks[label] = (point.weight_var, point.bias_var)
        if point.note:
            notes[label] = point.note
        if point.centred:
            centred_marks.add(label)
    return marks, notes, centred_marks


def _phase_grid(points: list[tuple[float, float]], resolution: int) -> tuple[Any, Any]:
    """(σ_w², σ_b²) axes holding every point; σ_w² geometric when its range is wide."""
    import numpy as np

    weights = [w for w, _ in points]
    top = max(4.0, 1.5 * max(weights))
    if top > 10:  # a log axis, with room on it for the side beyond the largest point
        weight_vars = np.geomspace(min(0.1, min(weights) / 2), 4 * max(weights), resolution)
    else:
        weight_vars = np.linspace(min(top / resolution, min(weights) / 2), top, resolution)
    bias_vars = np.linspace(0.0, max(0.5, 1.5 * max(b for _, b in points)), resolution)
    return weight_vars, bias_vars


def _shown(value: float) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if abs(value) < 1e-12:
        return "0"  # round-off around zero (c* of an odd activation)
    return f"{value:.4g}"


PHASE_COLUMNS = (
    "initialization",
    "σ_w²",
    "σ_b²",
    "q*",
    "χ₁",
    "phase",
    "c*",
    "ξ_c",
    "trainable depth (6ξ_c)",
)
#: Trainable depths drawn as contours on the phase diagram.
PHASE_DEPTHS = (20, 50, 100, 200)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


PHASE_READING = (  # {depths} is filled in with PHASE_DEPTHS
    "Each point (σ_w², σ_b²) is a deep stack of wide dense layers whose weights have variance "
    "σ_w²/fan_in and whose biases have variance σ_b², in the mean-field limit (Poole et al. "
    '2016; Schoenholz et al. 2017, "Deep information propagation"). Left of the critical line '
    "(χ₁ < 1) the stack is *ordered*: any two inputs become alike with depth and the mean "
    "squared gradient shrinks by a factor χ₁ per layer on its way back. Right of it (χ₁ > 1) "
    "the stack is *chaotic*: nearby inputs decorrelate and the gradient grows by χ₁ per layer. "
    "On the line, the edge of chaos, both survive. The colour is ξ_c, the number of layers "
    "over which the correlation between two inputs reaches its fixed point c*; it is infinite "
    "on the critical line. "
    "Schoenholz et al. found that networks train while their depth is below about 6ξ_c: the "
    "light contours are where 6ξ_c equals {depths} layers, so a net of depth L trains between "
    "its two L contours. q* is the pre-activations' variance the forward pass settles at (0: "
    "the signal fades, only as a power of depth on the critical line; ∞: it grows without "
    "bound, the hatched region, and ξ_c is then the gradient's depth scale 1/|ln χ₁|). "
    "These are wide-limit "
    "predictions for independent weights; a real layer of finite width only approaches them."
)


PHASE_CENTRED = (
    "The dashed line is the critical line of the centred activation φ − E[φ]: each layer's "
    "biases also hold −W·E[φ(√q* z)]𝟙, which cancels the mean φ adds to every unit of the "
    "next layer (a shared component no σ_w² removes), so that layer sees φ − E[φ]. "
    "autoinit does this where meanfield.centres says so (the logistic and hard sigmoid, "
    "whose mean stays ½ at every variance); a mark labelled centred is read on that line. "
    "Centred, the logistic is critical like tanh (σ(x) − ½ = tanh(x/2)/2: σ_w² = 16 at "
    "σ_b² = 0). Softplus, which has no critical point uncentred, has one centred "
    "(σ_w² ≈ 3.49 at σ_b² = 0.05) that autoinit does not use: its mean moves with the "
    "variance, so training breaks the biases' cancellation."
)
PHASE_CENTRED_ONLY = (
    "This is the diagram of the centred activation φ − E[φ]: each layer's biases also hold "
    "−W·E[φ(√q* z)]𝟙, cancelling the mean φ adds to every unit of the next layer, and every "
    "row of the table is read on it."
)


def _phase_numbers(
    name: str, params: dict[str, Any], width: int, resolution: int, centred: bool = False
) -> tuple[
    Any, dict[str, tuple[float, float]], dict[str, str], list[list[str]], list[float], Any, Any
]:
    """The diagram (of the centred activation with ``centred``), the marks and notes, the
    table's rows, and the critical line at a few σ_b², with the centred activation's
    beside it (``None`` with ``centred``, or where it is the same line: E[φ] = 0)."""
    import numpy as np

    from signalprop import meanfield

    marks, notes, centred_marks = _phase_marks(name, params, width, centred)
    (critical,) = [point for label, point in marks.items() if label.startswith("autoinit (crit")]
    # A centred autoinit point is off the diagram's own critical line: the grid holds both.
    own = meanfield.critical_weight_var(name, critical[1], centred=centred, **params)
    held = [*marks.values(), *([(own, critical[1])] if own is not None else [])]
    weight_vars, bias_vars = _phase_grid(held, resolution)
    diagram = meanfield.phase_diagram(name, weight_vars, bias_vars, centred=centred, **params)
    rows = []
    for label, (weight_var, bias_var) in marks.items():
        # A centred point is read on the centred activation, where autoinit puts it.
        on_centred = centred or label in centred_marks
        mf = meanfield.analyze(name, weight_var, bias_var, centred=on_centred, **params)
        values = (mf.weight_var, mf.bias_var, mf.q_star, mf.chi_1)
        rows.append(
            [
                label,
                *map(_shown, values),
                mf.phase,
                *map(_shown, (mf.c_star, mf.xi_c, mf.trainable_depth)),
            ]
        )
    levels = sorted(
        {b for b in (0.0, *meanfield.BIAS_VARS_TRIED) if b <= bias_vars[-1]} | {critical[1]}
    )
    line = meanfield.critical_line(name, levels, centred=centred, **params)
    centred_line = None
    if not centred:
        centred_line = meanfield.critical_line(name, levels, centred=True, **params)
        if np.allclose(centred_line, line, rtol=1e-6, equal_nan=True):
            centred_line = None  # E[φ] = 0 (tanh): centring changes nothing
    return diagram, marks, notes, rows, levels, line, centred_line


#: The critical line of ``signalprop phase`` is drawn from this many σ_b² spread over the
#: grid, plus ``PHASE_LINE_EDGE`` more between the two σ_b² around each end of the line:
#: near a threshold (SiLU's at σ_b² ≈ 0.556) the grid's rows alone draw a staircase.
PHASE_LINE_POINTS = 300
PHASE_LINE_EDGE = 40


def _phase_line(
    name: str, params: dict[str, Any], bias_vars: Any, centred: bool = False
) -> tuple[Any, Any]:
    """(σ_b², σ_w²) of the critical line, sampled finely, most finely around its ends."""
    import numpy as np

    from signalprop import meanfield

    b = np.linspace(bias_vars[0], bias_vars[-1], PHASE_LINE_POINTS)
    w = meanfield.critical_line(name, b, centred=centred, **params)
    exists = np.isfinite(w)
    ends = np.flatnonzero(exists[1:] != exists[:-1])
    if len(ends):
        extra = np.concatenate(
            [np.linspace(b[i], b[i + 1], PHASE_LINE_EDGE + 2)[1:-1] for i in ends]
        )
        b = np.concatenate([b, extra])
        w = np.concatenate([w, meanfield.critical_line(name, extra, centred=centred, **params)])
        order = np.argsort(b)
        b, w = b[order], w[order]
    return b, w


def run(options: dict[str, Any]) -> int:
    import numpy as np
    import torch

    from signalprop.plots import plot_phase_diagram

    directory = writable_directory(options["out"], "--out")
    name, params, width = options["activation"], options["params"], options["width"]
    centred = options.get("centred", False)
    # One torch thread: the tensors are small, and on a shared 2-core machine a second
    # spinning thread made phase_diagram 2-3x slower (tests/conftest.py does the same).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        diagram, marks, notes, rows, levels, line, centred_line = _phase_numbers(
            name, params, width, options["resolution"], centred
        )
        fine = _phase_line(name, params, diagram.bias_vars, centred)
        fine_centred = None
        if centred_line is not None:
            fine_centred = _phase_line(name, params, diagram.bias_vars, centred=True)
    finally:
        torch.set_num_threads(threads)

    figure = plot_phase_diagram(
        diagram, marks, depths=PHASE_DEPTHS, critical_line=fine, centred_line=fine_centred
    )
    figure.savefig(directory / "phase.png", dpi=110)

    title = f"{diagram.activation}: mean-field phase diagram, dense layers of width {width}"
    preamble = (
        f"Glorot, He and LeCun are for a square layer (fan_in = fan_out = {width}), σ_w² = "
        "the weights' variance × fan_in; PyTorch's default for nn.Linear draws weights and "
        f"biases from U(±1/√fan_in), σ_b² = 1/(3·{width}). autoinit's points come from "
        "meanfield.init_point."
    )

    def cells(values: Any) -> list[str]:
        return [_shown(w) if np.isfinite(w) else "none" for w in values]

    line_cells = cells(line)
    line_rows = [["critical σ_w²", *line_cells]]
    if centred_line is not None:
        line_rows.append(["critical σ_w², centred", *cells(centred_line)])
    markdown = "\n\n".join(
        [
            f"# {title}",
            preamble,
            *([PHASE_CENTRED_ONLY] if centred else []),
            "![phase diagram](phase.png)",
            "## Where initializations put a layer",
            _markdown_table(list(PHASE_COLUMNS), rows),
            "## The critical line",
            _markdown_table(["σ_b²", *map(_shown, levels)], line_rows),
            *([PHASE_CENTRED] if centred_line is not None else []),
            *(
                ["Notes:\n\n" + "\n".join(f"- {k}: {note}" for k, note in notes.items())]
                if notes
                else []
            ),
            "## How to read it",
            PHASE_READING.format(
                depths=", ".join(map(str, PHASE_DEPTHS[:-1])) + f" and {PHASE_DEPTHS[-1]}"
            ),
            made_by(),
        ]
    )
    (directory / "phase.md").write_text(markdown + "\n")

    print(title + "\n")
    left = (0, 5)  # the initialization and the phase
    right = [i for i in range(len(PHASE_COLUMNS)) if i not in left]
    print(text_table([list(PHASE_COLUMNS), *rows], right=right) + "\n")
    print(
        "critical σ_w²: "
        + ", ".join(f"{w} at σ_b² = {_shown(b)}" for b, w in zip(levels, line_cells, strict=True))
    )
    if centred_line is not None:
        print(
            "centred (biases −W·E[φ]𝟙): "
            + ", ".join(
                f"{w} at σ_b² = {_shown(b)}"
                for b, w in zip(levels, cells(centred_line), strict=True)
            )
        )
    for label, note in notes.items():
        print(f"note: {label}: {note}")
    print(f"\nwrote {directory}/phase.png and {directory}/phase.md")
    return 0
