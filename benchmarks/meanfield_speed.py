"""Speed of the mean-field analysis: one point, and a 100 x 100 phase diagram.

``meanfield.analyze`` is timed at points in the ordered, critical and chaotic
phases of tanh, ReLU, SELU, GELU and the logistic (critical points from
``critical_weight_var``, found before timing), and ``meanfield.phase_diagram``
on a 100 x 100 grid (σ_w² in [0.5, 4], σ_b² in [0, 0.5]) for tanh and ReLU.

Each is printed against its budget (10 ms per point, 10 s per diagram) and
against a baseline timed in the same run, interleaved with it: one
``signalprop.gains.moments`` call for the same activation (one 1,536-node
quadrature of φ and φ′ with autograd), the least an analysis must do. A
diagram is also compared with 10,000 single-point analyses (the median of
this run's points for that activation), the loop it replaces.

Variants run interleaved (A B C ..., then ... C B A), medians printed. Others
may share the CPU: the ratios are more telling than the absolute times.

    python benchmarks/meanfield_speed.py [--repeats 15] [--diagram-repeats 3] [--size 100]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from signalprop import gains, meanfield

#: Budgets from the brief: one analyze call, one 100 x 100 diagram.
POINT_BUDGET = 10e-3
DIAGRAM_BUDGET = 10.0
ACTIVATIONS = ("tanh", "relu", "selu", "gelu", "sigmoid")


def points() -> list[tuple[str, float, float]]:
    """(activation, σ_w², σ_b²) in each phase; critical points found here, before timing."""

    def critical(activation: str, bias_var: float) -> tuple[str, float, float]:
        weight_var = meanfield.critical_weight_var(activation, bias_var=bias_var)
        assert weight_var is not None, (activation, bias_var)
        return activation, weight_var, bias_var

    return [
        ("tanh", 0.8, 0.2),
        critical("tanh", 0.05),
        ("tanh", 2.54, 0.0),
        ("relu", 1.5, 0.0),
        ("relu", 2.0, 0.0),
        ("relu", 2.5, 0.1),
        ("selu", 0.5, 0.3),
        critical("selu", 0.1),
        ("selu", 1.0, 0.0),
        ("gelu", 1.0, 0.2),
        critical("gelu", 0.2),
        ("gelu", 3.0, 0.2),
        ("sigmoid", 4.0, 0.0),
        critical("sigmoid", 0.0),
        ("sigmoid", 150.0, 0.0),
    ]


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
) -> dict[str, list[float]]:
    """Seconds per call of each variant, in alternating order (A B C, C B A, ...)."""
    for run in variants.values() if warm_up else ():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for repeat in range(repeats):
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds of points")
    parser.add_argument("--diagram-repeats", type=int, default=3, help="rounds of diagrams")
    parser.add_argument("--size", type=int, default=100, help="diagram grid is size x size")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    grid = points()
    variants: dict[str, Callable[[], object]] = {}
    for activation in ACTIVATIONS:
        variants[f"moments({activation})"] = lambda a=activation: gains.moments(a)
    for activation, weight_var, bias_var in grid:
        variants[f"{activation} {weight_var:.4g} {bias_var:.4g}"] = (
            lambda a=activation, w=weight_var, b=bias_var: meanfield.analyze(a, w, b)
        )
    times = interleaved(variants, args.repeats)
    median = {name: statistics.median(values) for name, values in times.items()}

    print(
        f"meanfield.analyze, {args.threads} thread(s), {args.repeats} interleaved rounds; "
        f"budget {POINT_BUDGET * 1e3:.0f} ms per point"
    )
    print(
        f"  {'activation':8s} {'σ_w²':>8s} {'σ_b²':>5s}  {'phase':8s} {'χ₁':>7s}"
        f"  {'median':>9s}  {'/ budget':>8s}  {'/ moments':>9s}"
    )
    per_activation: dict[str, list[float]] = {a: [] for a in ACTIVATIONS}
    for activation, weight_var, bias_var in grid:
        name = f"{activation} {weight_var:.4g} {bias_var:.4g}"
        mf = meanfield.analyze(activation, weight_var, bias_var)
        seconds = median[name]
        per_activation[activation].append(seconds)
        print(
            f"  {activation:8s} {weight_var:8.4g} {bias_var:5.3g}  {mf.phase:8s} {mf.chi_1:7.4f}"
            f"  {seconds * 1e3:6.2f} ms  {seconds / POINT_BUDGET:8.2f}"
            f"  {seconds / median[f'moments({activation})']:8.1f}x"
        )
    for activation in ACTIVATIONS:
        print(f"  baseline moments({activation}): {median[f'moments({activation})'] * 1e3:.3f} ms")
    worst = max(median[name] for name in median if not name.startswith("moments"))
    print(f"  slowest point {worst * 1e3:.2f} ms: {worst / POINT_BUDGET:.2f} of the budget")

    weight_vars = np.linspace(0.5, 4.0, args.size)
    bias_vars = np.linspace(0.0, 0.5, args.size)
    diagrams: dict[str, Callable[[], object]] = {}
    for activation in ("tanh", "relu"):
        diagrams[f"moments({activation})"] = variants[f"moments({activation})"]
        diagrams[f"diagram({activation})"] = lambda a=activation: meanfield.phase_diagram(
            a, weight_vars, bias_vars
        )
    # No warm-up round: the points above have already warmed every code path.
    diagram_times = interleaved(diagrams, args.diagram_repeats, warm_up=False)
    print(
        f"\nmeanfield.phase_diagram, {args.size} x {args.size} (σ_w² in [0.5, 4], "
        f"σ_b² in [0, 0.5]), {args.diagram_repeats} interleaved rounds; "
        f"budget {DIAGRAM_BUDGET:.0f} s"
    )
    for activation in ("tanh", "relu"):
        seconds = statistics.median(diagram_times[f"diagram({activation})"])
        baseline = statistics.median(diagram_times[f"moments({activation})"])
        loop = args.size**2 * statistics.median(per_activation[activation])
        print(
            f"  {activation:8s} median {seconds:6.2f} s  / budget {seconds / DIAGRAM_BUDGET:5.2f}"
            f"  / moments {seconds / baseline:8.0f}x"
            f"  / {args.size**2} analyze calls {seconds / loop:5.3f}"
            f"  ({seconds / args.size**2 * 1e6:.0f} µs per point)"
        )


if __name__ == "__main__":
    main()
