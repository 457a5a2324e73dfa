"""When the fast path and autograd give the same numbers, and how far apart they are otherwise.

``fit(path="fast")`` trains on one thread whatever the caller set (see ``fit``);
``fit(path="autograd")`` runs on PyTorch's current thread count (2 on this
project's machine by default). A matrix product splits its sums differently on
two threads than on one, so the two paths round differently from the first step,
and a deep net amplifies that. From identical weights and the same seed, on
Fashion-MNIST (standardized, the first 200 x 32 training images, the 5,000
validation ones), the chapter's 100-layer SELU net (784 -> 300 -> 99 x 100 -> 10,
LeCun normal), batch 32, SGD at fit's default learning rate, the script prints for
each seed the largest absolute weight difference after 1, 10 and 200 steps and
both paths' validation accuracy after 200 steps, under three conditions:

* ``1 thread``: ``torch.set_num_threads(1)`` before both fits;
* ``2 threads (default)``: the caller leaves 2 threads; fit's fast path still uses
  one, autograd uses both;
* ``both on 2 threads``: the fast path's trainer and autograd driven by hand, both
  on 2 threads (what changes the numbers: the thread count or the path?).

    SIGNALPROP_DATA=../shared/data/fashion-mnist python benchmarks/path_agreement.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import signalprop as sp
from signalprop._fastpath import DenseStackTrainer
from signalprop.data import load_fashion_mnist
from signalprop.train import evaluate, fit

Data = tuple[torch.Tensor, torch.Tensor]
BATCH = 32
STEPS = 200
CHECKS = (1, 10, STEPS)


def build(seed: int) -> sp.Sequential:
    torch.manual_seed(seed)
    hidden = [300] + [100] * 99
    return sp.Sequential(
        [sp.layers.Flatten()]
        + [sp.Dense(width, "selu", kernel_initializer="lecun_normal") for width in hidden]
        + [sp.Dense(10)],
        input_shape=(28, 28),
    )


def max_difference(a: nn.Module, b: nn.Module) -> float:
    with torch.no_grad():
        return max(
            float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )


def by_fit(seed: int, threads: int, train: Data, valid: Data) -> tuple[list[float], float, float]:
    """Both paths through fit(), the caller on ``threads`` threads."""
    torch.set_num_threads(threads)
    differences = []
    for steps in CHECKS:
        fast, slow = build(seed), build(seed)
        part = (train[0][: steps * BATCH], train[1][: steps * BATCH])
        for model, path in ((fast, "fast"), (slow, "autograd")):
            fit(model, part, None, epochs=1, seed=seed, progress=False, path=path)
        differences.append(max_difference(fast, slow))
    torch.set_num_threads(1)
    return differences, evaluate(fast, valid)[1], evaluate(slow, valid)[1]


def by_hand(seed: int, threads: int, train: Data, valid: Data) -> tuple[list[float], float, float]:
    """The fast path's trainer and autograd + SGD, both on ``threads`` threads, same batches."""
    torch.set_num_threads(threads)
    fast, slow = build(seed), build(seed)
    trainer = DenseStackTrainer(fast, lr=1e-3)
    optimizer = torch.optim.SGD(slow.parameters(), lr=1e-3)
    order = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(seed))
    differences = []
    for step in range(STEPS):
        index = order[step * BATCH : (step + 1) * BATCH]
        xb, yb = train[0][index], train[1][index]
        trainer.step(xb, yb)
        optimizer.zero_grad()
        nn.functional.cross_entropy(slow(xb), yb).backward()
        optimizer.step()
        if step + 1 in CHECKS:
            differences.append(max_difference(fast, slow))
    torch.set_num_threads(1)
    return differences, evaluate(fast, valid)[1], evaluate(slow, valid)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    data = load_fashion_mnist(standardize=True)
    train = (data.x_train[: STEPS * BATCH], data.y_train[: STEPS * BATCH])
    valid = (data.x_valid, data.y_valid)
    print(
        f"100-layer SELU net, batch {BATCH}, SGD lr 1e-3, {STEPS} steps; torch "
        f"{torch.__version__}, default threads {default_threads}"
    )
    print("max |w_fast - w_autograd| after " + ", ".join(f"{s}" for s in CHECKS) + " steps;")
    print("validation accuracy after 200 steps: fast / autograd")
    conditions = (
        ("1 thread", by_fit, 1),
        (f"{default_threads} threads (default)", by_fit, default_threads),
        (f"both on {default_threads} threads", by_hand, default_threads),
    )
    for name, run, threads in conditions:
        for seed in args.seeds:
            differences, fast, slow = run(seed, threads, train, valid)
            shown = ", ".join(f"{d:.3g}" for d in differences)
            print(f"{name:>24}  seed {seed}: max diff {shown:<28} val acc {fast:.3f} / {slow:.3f}")


if __name__ == "__main__":
    main()
