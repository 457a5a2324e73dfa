"""Cost of signalprop's Keras-style layers against the plain PyTorch stack.

Trains the chapter's 100-layer SELU net (784 -> 300 -> 99 x 100 -> 10, batch
32, SGD lr 1e-3, cross-entropy on logits) built twice with identical weights:

* baseline: ``nn.Sequential`` of ``nn.Flatten``, ``nn.Linear`` and ``nn.SELU``;
* signalprop: ``sp.Sequential`` of ``sp.layers.Flatten`` and ``sp.Dense(..., "selu")``.

The two are timed in interleaved blocks (A B B A A B ...), each block a run of
training steps; the script prints the median time per step of each, their
ratio (goal: signalprop / plain <= 1.03) and the spread over blocks.

    python benchmarks/layer_overhead.py [--blocks 15] [--steps 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import signalprop as sp

DEPTH = 100
BATCH = 32


def build_plain() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(784, 300), nn.SELU()]
    for _ in range(DEPTH - 1):
        layers += [nn.Linear(300 if len(layers) == 3 else 100, 100), nn.SELU()]
    layers.append(nn.Linear(100, 10))
    return nn.Sequential(*layers)


def build_signalprop() -> sp.Sequential:
    hidden = [sp.Dense(300, "selu", kernel_initializer="lecun_normal")]
    hidden += [sp.Dense(100, "selu", kernel_initializer="lecun_normal") for _ in range(DEPTH - 1)]
    return sp.Sequential([sp.layers.Flatten(), *hidden, sp.Dense(10)], input_shape=(28, 28))


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Give ``target`` the weights of ``source`` (same layer order)."""
    src = [p for p in source.parameters()]
    dst = [p for p in target.parameters()]
    assert [p.shape for p in src] == [p.shape for p in dst]
    with torch.no_grad():
        for s, d in zip(src, dst, strict=True):
            d.copy_(s)


def time_steps(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Seconds per training step over ``data``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15, help="interleaved blocks per variant")
    parser.add_argument("--steps", type=int, default=40, help="training steps per block")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = build_signalprop()
    plain = build_plain()
    copy_weights(ours, plain)
    generator = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(BATCH, 28, 28, generator=generator), torch.randint(0, 10, (BATCH,)))
        for _ in range(args.steps)
    ]
    # The two must compute the same thing: same loss on the same batch.
    x, _ = data[0]
    with torch.no_grad():
        difference = (ours(x) - plain(x)).abs().max().item()
    assert difference < 1e-5, f"models differ by {difference}"

    variants = {"plain PyTorch": plain, "signalprop": ours}
    for model in variants.values():  # warm-up
        time_steps(model, data[:5])
    times: dict[str, list[float]] = {name: [] for name in variants}
    for block in range(args.blocks):
        order = list(variants.items())
        for name, model in order if block % 2 == 0 else order[::-1]:  # A B, then B A
            times[name].append(time_steps(model, data))

    print(
        f"100-layer SELU net, batch {BATCH}, SGD, {args.threads} thread(s), "
        f"{args.blocks} interleaved blocks x {args.steps} steps"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:14s} median {median * 1e3:7.3f} ms/step  ({1 / median:6.1f} steps/s)"
            f"  min {min(values) * 1e3:7.3f}  max {max(values) * 1e3:7.3f}"
        )
    ratios = [a / b for a, b in zip(times["signalprop"], times["plain PyTorch"], strict=True)]
    ratio = statistics.median(times["signalprop"]) / statistics.median(times["plain PyTorch"])
    print(
        f"  ratio signalprop / plain: {ratio:.3f} (goal <= 1.03); per-block ratios "
        f"median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}"
    )


if __name__ == "__main__":
    main()
