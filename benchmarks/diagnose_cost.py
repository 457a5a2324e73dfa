"""Cost of one ``diagnose`` call against one plain training step, same model, same batch.

The chapter's 100-layer SELU net (784 -> 300 -> 99 x 100 -> 10 softmax),
batch 32: a training step is forward, negative log-likelihood, backward and an
SGD update; ``diagnose`` is one forward and one backward pass with every
statistic recorded and the findings computed. Interleaved (A B A B ...),
medians and their ratio printed (goal: diagnose / step <= 2), and the median and
interquartile range of each diagnosis's ratio to the step just before it.

With ``--model residual`` the net is a 64-block residual MLP
(:class:`signalprop.examples.ResidualMLP`, width 64, softmax added to its logits),
whose diagnosis also measures the residual stream (one more forward pass).

    python benchmarks/diagnose_cost.py [--repeats 30] [--batch 32] [--threads 1]
                                       [--model chapter-selu|residual]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import signalprop as sp
from signalprop.examples import build_example


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved pairs")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--model", choices=("chapter-selu", "residual"), default="chapter-selu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model == "residual":
        from signalprop.examples import ResidualMLP

        torch.manual_seed(0)
        model = nn.Sequential(ResidualMLP(64, width=64), nn.Softmax(dim=1))
        x, y = torch.randn(args.batch, 28, 28), torch.randint(0, 10, (args.batch,))
    else:
        model, x, y = build_example("chapter-selu", batch=args.batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.nll_loss(torch.log(model(x)), y)
        loss.backward()
        optimizer.step()

    def diagnosis() -> None:
        sp.diagnose(model, x, y)

    variants = {"training step": step, "diagnose": diagnosis}
    for run in variants.values():  # warm-up
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    print(
        f"{args.model} net, batch {args.batch}, {args.threads} thread(s), "
        f"{args.repeats} interleaved repeats"
    )
    for name, values in times.items():
        print(
            f"  {name:14s} median {statistics.median(values) * 1e3:8.2f} ms  "
            f"min {min(values) * 1e3:8.2f}  max {max(values) * 1e3:8.2f}"
        )
    ratio = statistics.median(times["diagnose"]) / statistics.median(times["training step"])
    print(f"  ratio of the medians, diagnose / training step: {ratio:.2f} (goal <= 2)")
    # Each diagnosis against the training step just before it: the machine's drift cancels.
    pairs = [d / s for d, s in zip(times["diagnose"], times["training step"], strict=True)]
    low, middle, high = statistics.quantiles(pairs, n=4, method="inclusive")
    print(f"  paired: median {middle:.2f}, interquartile range {low:.2f}-{high:.2f}")


if __name__ == "__main__":
    main()
