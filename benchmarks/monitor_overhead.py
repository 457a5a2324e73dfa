"""What leaving signalprop.Monitor on costs a plain training loop.

Trains the chapter's 100-layer SELU net (784 -> 300 -> 99 x 100 -> 10, batch
32, SGD lr 1e-3, cross-entropy) in a plain PyTorch loop, one model instance
throughout, in blocks of steps with and without a Monitor:

* baseline: no monitor;
* a Monitor that records no step: what its NaN watch costs every step;
* ``Monitor(every=16)`` and ``Monitor(every=1)``, each writing its JSON Lines log;
* with ``--tensorboard``, also ``Monitor(every=16, tensorboard=DIR)``, in blocks ten
  times as long: ten records, one of which draws the histograms, as every tenth
  record does in a run (the default ``histograms_every=10``);
* Cockpit (``cockpit-for-pytorch``), its "economy" quantities every 16th step and
  every step, where it is installed; the script says so where it is not. It
  installs next to torch 2.13 in a separate environment with
  ``pip install torch==2.13.0; pip install cockpit-for-pytorch "setuptools<81"
  -c constraints.txt`` (constraints.txt: ``torch==2.13.0``, or pip replaces torch
  through torchvision), then ``pip install -e . --no-deps tqdm mpmath``.

The variants are timed in interleaved rounds (A B C ..., then reversed), each
block a run of training steps, and the script prints each one's median time per
step, its ratio to the baseline's median, and the median of its per-round ratios
("paired": each block against the baseline's block of the same round) with their
interquartile range; then the three Monitor figures against their goals (every=16
<= 1.03, every=1 <= 1.25, every=16 with TensorBoard <= 1.05; Cockpit's own
figures: 1.04 at its cheapest, 1.51 tracking every step).

    python benchmarks/monitor_overhead.py [--blocks 40] [--steps 16] [--threads 1] [--tensorboard]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import signalprop as sp
from layer_overhead import BATCH, build_plain, build_signalprop, copy_weights

Step = Callable[[torch.Tensor, torch.Tensor], None]
#: The goals of the three configurations (issue 22).
GOALS = {
    "Monitor(every=16)": 1.03,
    "Monitor(every=1)": 1.25,
    "Monitor(every=16) + TensorBoard": 1.05,
}


class Loop:
    """A plain training loop on one model; a block of steps runs with or without a Monitor.

    Every variant trains the *same* model instance, one block after another: copies
    of one model with identical weights differ by up to 8 % in speed on this
    machine (where their memory lies), more than the effects measured here.
    """

    def __init__(self, model: nn.Module, folder: Path) -> None:
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        self.loss_fn = nn.CrossEntropyLoss()
        self.folder = folder
        self.blocks = 0

    def block(
        self, data: list[tuple[torch.Tensor, torch.Tensor]], monitor: dict[str, Any] | None
    ) -> float:
        """Seconds per step over ``data``; ``monitor``: Monitor options, or None for none.

        The Monitor is made before the clock starts and closed after it stops.
        """
        self.blocks += 1
        watcher = None
        if monitor is not None:
            log = self.folder / f"block{self.blocks}.jsonl"
            watcher = sp.Monitor(self.model, optimizer=self.optimizer, log=log, **monitor)
        self.step(*data[-1])  # untimed: a new Monitor learns the model's layers here
        # A Monitor whose TensorBoard events are written by a thread: wait for it.
        flush = getattr(getattr(watcher, "_tensorboard", None), "flush", lambda: None)
        flush()  # its first record's events are not this block's
        start = time.perf_counter()
        for x, y in data:
            self.step(x, y)
        flush()  # the block's own events are
        elapsed = time.perf_counter() - start
        if watcher is not None:
            watcher.close()
        return elapsed / len(data)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(x), y).backward()
        self.optimizer.step()


def cockpit_steps(model: nn.Module) -> dict[str, Step] | str:
    """Cockpit's cheapest and every-step configurations, or why they cannot run."""
    try:
        import backpack  # type: ignore[import-not-found]
        import cockpit  # type: ignore[import-not-found]
        from cockpit.utils.configuration import configuration  # type: ignore[import-not-found]
    except ImportError as error:
        return (
            f"not installed here ({error.name} missing): pip install cockpit-for-pytorch "
            "into this environment to compare"
        )
    variants: dict[str, Step] = {}
    # "full" (Hessian quantities) needs more than 24 GB on this net: economy at two rates.
    for label, config, track in (
        ("economy, every 16", "economy", 16),
        ("economy, every step", "economy", 1),
    ):
        net = backpack.extend(copy.deepcopy(model))
        loss_fn = backpack.extend(nn.CrossEntropyLoss(reduction="mean"))
        individual = nn.CrossEntropyLoss(reduction="none")
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
        schedule = cockpit.utils.schedules.linear(track)
        quantities = configuration(config, track_schedule=schedule)
        tool = cockpit.Cockpit(net.parameters(), quantities=quantities)
        counter = {"step": 0}

        def step(
            x: torch.Tensor,
            y: torch.Tensor,
            net: Any = net,
            loss_fn: Any = loss_fn,
            individual: Any = individual,
            optimizer: Any = optimizer,
            tool: Any = tool,
            counter: dict[str, int] = counter,
        ) -> None:
            optimizer.zero_grad()
            output = net(x)
            loss = loss_fn(output, y)
            losses = individual(output, y)
            info = {"batch_size": x.shape[0], "individual_losses": losses, "loss": loss,
                    "optimizer": optimizer}  # fmt: skip
            with tool(counter["step"], info=info):
                loss.backward(create_graph=tool.create_graph(counter["step"]))
            optimizer.step()
            counter["step"] += 1

        variants[f"Cockpit ({label})"] = step
    return variants


def time_block(step: Step, data: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    start = time.perf_counter()
    for x, y in data:
        step(x, y)
    return (time.perf_counter() - start) / len(data)


def plain_step(model: nn.Module) -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--blocks", type=int, default=40, help="interleaved rounds (a block per variant each)"
    )
    parser.add_argument("--steps", type=int, default=16, help="training steps per block")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--tensorboard", action="store_true", help="also time TensorBoard output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # As fit() does: subnormal gradients otherwise make step times wander by 50 %.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    base = build_signalprop()
    generator = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(BATCH, 28, 28, generator=generator), torch.randint(0, 10, (BATCH,)))
        for _ in range(args.steps)
    ]
    folder = Path(tempfile.mkdtemp(prefix="signalprop-monitor-bench-"))
    loop = Loop(base, folder)
    variants: dict[str, Callable[[], float]] = {
        "no monitor": lambda: loop.block(data, None),
        "Monitor, no step recorded": lambda: loop.block(data, {"every": 10**9}),
        "Monitor(every=16)": lambda: loop.block(data, {"every": 16}),
        "Monitor(every=1)": lambda: loop.block(data, {"every": 1}),
    }
    if args.tensorboard:
        # Blocks of 10 records, one of them with histograms (histograms_every=10), as a
        # long run has them; the events' writer thread is waited for before the clock stops.
        tensorboard = {"every": 16, "tensorboard": folder / "tensorboard"}
        variants["Monitor(every=16) + TensorBoard"] = lambda: loop.block(data * 10, tensorboard)
    # Cockpit's BackPACK extends torch.nn's layers only: it trains the same net built from
    # nn.Linear + nn.SELU, against that net's own baseline.
    plain = build_plain()
    copy_weights(base, plain)
    cockpit = cockpit_steps(plain)
    if isinstance(cockpit, str):
        print(f"Cockpit: {cockpit}")
    else:
        baseline_step = plain_step(plain)
        variants["nn.Sequential, no Cockpit"] = lambda: time_block(baseline_step, data)
        for name, step in cockpit.items():
            variants[name] = lambda step=step: time_block(step, data)  # type: ignore[misc]
    for run in variants.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for block in range(args.blocks):
        for name, run in order if block % 2 == 0 else order[::-1]:
            times[name].append(run())

    print(
        f"100-layer SELU net, batch {BATCH}, SGD, {args.threads} thread(s), "
        f"{args.blocks} interleaved rounds x {args.steps} steps; logs in {folder}"
    )
    print(
        "  per variant: median ms/step; 'ratio' = its median / the baseline's median; "
        "'paired' = median over rounds of (its block / the baseline's block in the same "
        "round), with the interquartile range of those per-round ratios"
    )
    reference = "no monitor"
    paired: dict[str, tuple[float, float, float]] = {}
    for name, values in times.items():
        if name == "nn.Sequential, no Cockpit":
            reference = name  # Cockpit's rows: against the net it trains
        median = statistics.median(values)
        ratio = median / statistics.median(times[reference])
        # Each block against the reference's block of the same round: the machine's
        # drift over the run cancels.
        ratios = [a / b for a, b in zip(values, times[reference], strict=True)]
        paired[name] = spread(ratios)
        middle, low, high = paired[name]
        print(
            f"  {name:34s} median {median * 1e3:7.3f} ms/step  ratio {ratio:5.3f}"
            f"  paired {middle:5.3f} [IQR {low:5.3f}-{high:5.3f}]"
            f"  min {min(values) * 1e3:7.3f}  max {max(values) * 1e3:7.3f}"
        )
    print(f"The Monitor's cost, paired ratio to no monitor over {args.blocks} rounds:")
    for name, goal in GOALS.items():
        if name in paired:
            middle, low, high = paired[name]
            verdict = "meets" if middle <= goal else "misses"
            print(
                f"  {name:34s} {middle:5.3f}  (IQR {low:5.3f}-{high:5.3f}; goal <= {goal}: "
                f"{verdict})"
            )


def spread(ratios: list[float]) -> tuple[float, float, float]:
    """The median of ``ratios`` and their first and third quartiles."""
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, middle, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return middle, low, high


if __name__ == "__main__":
    main()
