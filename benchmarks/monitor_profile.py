"""Where a monitored step's time goes: Monitor(every=1) on the chapter's 100-layer SELU net.

Trains the net of ``monitor_overhead.py`` (784 -> 300 -> 99 x 100 -> 10, batch 32,
SGD lr 1e-3) in rounds of two blocks, one without a Monitor and one with
``Monitor(every=1, log=...)``, and prints per step, as medians over the rounds:

* the forward pass, the backward pass and ``optimizer.step()`` (which runs the
  Monitor's ``step()``), without and with the Monitor: the differences are what
  its layer hooks cost in the forward and backward passes and what a record costs;
* inside those, the Monitor's own parts, timed by wrapping its functions: the
  weights' norms taken at the forward pass, the packed moments of the
  pre-activations and activations, the gradients' sums of squares, the weight
  gradients' and updates' norms, and the record with its log line.

The wrapping reads private names of ``signalprop.monitor._monitor``: a profile,
not an interface. Absolute times wander with the machine's load; compare parts
within one run.

    python benchmarks/monitor_profile.py [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import signalprop as sp
from layer_overhead import BATCH, build_signalprop
from signalprop.monitor import _monitor

#: The Monitor's parts: (owner, function name) -> label.
PARTS = {
    (_monitor.Monitor, "_snapshot_weights"): "weight norms at the forward pass",
    (_monitor, "packed_moments"): "moments of pre-activations and activations",
    (_monitor, "packed_squares"): "gradient RMS (sums of squares)",
    (_monitor.Monitor, "_weight_quantities"): "weight-gradient and update norms",
    (_monitor.Monitor, "_make_record"): "record and log line",
    (_monitor.Monitor, "_finish_record"): "a record in all (of step())",
}


def timed(spent: dict[str, float], label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds of two blocks")
    parser.add_argument("--steps", type=int, default=16, help="training steps per block")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = build_signalprop()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(BATCH, 28, 28, generator=generator), torch.randint(0, 10, (BATCH,)))
        for _ in range(args.steps)
    ]
    spent: dict[str, float] = collections.defaultdict(float)
    for (owner, name), label in PARTS.items():
        setattr(owner, name, timed(spent, label, getattr(owner, name)))
    folder = Path(tempfile.mkdtemp(prefix="signalprop-monitor-profile-"))

    def block() -> tuple[float, float, float]:
        times = []
        for x, y in data:
            optimizer.zero_grad(set_to_none=True)
            start = time.perf_counter()
            output = model(x)
            forward = time.perf_counter()
            loss_fn(output, y).backward()
            backward = time.perf_counter()
            optimizer.step()
            times.append((forward - start, backward - forward, time.perf_counter() - backward))
        return tuple(statistics.median(t[i] for t in times) for i in range(3))  # type: ignore[return-value]

    phases = ("forward pass", "backward pass", "optimizer.step() + monitor.step()")
    without: dict[str, list[float]] = collections.defaultdict(list)
    within: dict[str, list[float]] = collections.defaultdict(list)
    for round_ in range(args.rounds + 1):  # the first round warms up
        plain = block()
        monitor = sp.Monitor(model, every=1, optimizer=optimizer, log=folder / f"r{round_}.jsonl")
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(data[0][0]), data[0][1]).backward()
        optimizer.step()  # the first record learns the layers
        spent.clear()
        monitored = block()
        monitor.close()
        if round_ == 0:
            continue
        for phase, a, b in zip(phases, plain, monitored, strict=True):
            without[phase].append(a)
            within[phase].append(b)
        for label, seconds in spent.items():
            within[label].append(seconds / len(data))

    print(
        f"100-layer SELU net, batch {BATCH}, SGD, {args.threads} thread(s), Monitor(every=1) "
        f"with a log; ms per step, medians over {args.rounds} rounds of {args.steps} steps"
    )
    total_without = sum(statistics.median(without[p]) for p in phases)
    total_within = sum(statistics.median(within[p]) for p in phases)
    for phase in phases:
        a, b = statistics.median(without[phase]), statistics.median(within[phase])
        print(f"  {phase:45s} {a * 1e3:7.3f} -> {b * 1e3:7.3f}  (+{(b - a) * 1e3:6.3f})")
    print(
        f"  {'step':45s} {total_without * 1e3:7.3f} -> {total_within * 1e3:7.3f}"
        f"  (ratio {total_within / total_without:5.3f})"
    )
    print("  the Monitor's parts (inside the phases above):")
    for label in PARTS.values():
        value = statistics.median(within[label]) * 1e3
        print(f"    {label:43s} {value:7.3f}  ({value / (total_without * 1e3):5.1%} of a step)")


if __name__ == "__main__":
    main()
