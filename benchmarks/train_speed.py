"""Training speed: signalprop's fast path against plain PyTorch eager, same process.

Nets (Fashion-MNIST shaped, batch 32, SGD lr 1e-3, cross-entropy on logits):
the chapter's 100-layer SELU and ReLU nets (784 -> 300 -> 99 x 100 -> 10) and
the 2-hidden-layer (300, 100) net. For each, plain PyTorch eager (an
``nn.Sequential`` of ``nn.Linear`` and activation modules, autograd,
``torch.optim.SGD``), ``signalprop``'s fast path and the fast path compiled
by ``torch.compile`` train identical copies in interleaved blocks (A B C, then
C B A, ...); the script prints each one's median steps/s, the ratios, the
fraction of the matrix-product roof reached, and the memory each keeps
between forward and backward.

The roof: the same matrix products (forward, input gradient, weight gradient
of every layer) timed alone, back to back, with preallocated outputs — the
arithmetic the step cannot avoid at this CPU's speed for these shapes.

    python benchmarks/train_speed.py [--blocks 12] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch
from torch import nn

import signalprop as sp
from signalprop._fastpath import CompiledDenseStackTrainer, DenseStackTrainer

BATCH = 32
NETS = {
    "100-layer SELU": ("selu", "lecun_normal", [300] + [100] * 99),
    "100-layer ReLU": ("relu", "he_normal", [300] + [100] * 99),
    "300-100 ReLU": ("relu", "he_normal", [300, 100]),
}


def build(activation: str, init: str, hidden: list[int]) -> tuple[nn.Sequential, sp.Sequential]:
    """The plain PyTorch net and signalprop's, with identical weights."""
    torch.manual_seed(0)
    ours = sp.Sequential(
        [sp.layers.Flatten()]
        + [sp.Dense(width, activation, kernel_initializer=init) for width in hidden]
        + [sp.Dense(10)],
        input_shape=(28, 28),
    )
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [784, *hidden]
    module = {"selu": nn.SELU, "relu": nn.ReLU}[activation]
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), module()]
    layers.append(nn.Linear(sizes[-1], 10))
    plain = nn.Sequential(*layers)
    with torch.no_grad():
        for p, q in zip(plain.parameters(), ours.parameters(), strict=True):
            p.copy_(q)
    return plain, ours


def saved_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes autograd keeps between forward and backward: its saved tensors, parameters aside."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        pointer = t.untyped_storage().data_ptr()
        if pointer not in parameters:
            seen[pointer] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def fast_bytes(hidden: list[int], activation: str) -> int:
    """Bytes the fast path keeps between forward and backward: inputs, z and outputs."""
    widths = [784, *hidden, 10]
    per_layer = 0
    for n_out in widths[1:]:
        per_layer += BATCH * n_out * 4 * (1 if activation == "relu" else 2)  # z (and a)
    return per_layer + BATCH * 784 * 4


def roof_seconds(hidden: list[int], repeats: int = 30) -> float:
    """Median time of one step's matrix products alone (forward, dX, dW per layer)."""
    widths = [784, *hidden, 10]
    shapes = list(itertools.pairwise(widths))
    operands = [
        (
            torch.randn(BATCH, n_in),
            torch.randn(n_out, n_in),
            torch.randn(BATCH, n_out),
            torch.empty(BATCH, n_out),
            torch.empty(BATCH, n_in),
            torch.empty(n_in, n_out),
        )
        for n_in, n_out in shapes
    ]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for h, w, g, z, dh, dw in operands:
            torch.mm(h, w.t(), out=z)
            torch.mm(g, w, out=dh)
            torch.mm(h.t(), g, out=dw)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(hidden: list[int]) -> float:
    widths = [784, *hidden, 10]
    return sum(3 * 2 * BATCH * a * b for a, b in itertools.pairwise(widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12, help="interleaved blocks per variant")
    parser.add_argument("--steps", type=int, default=30, help="steps per block")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(BATCH, 28, 28, generator=generator), torch.randint(0, 10, (BATCH,)))
        for _ in range(args.steps)
    ]
    print(
        f"batch {BATCH}, SGD lr 1e-3, {args.threads} thread(s), {args.blocks} interleaved "
        f"blocks x {args.steps} steps"
    )
    for name in args.nets:
        measure(name, batches, args.blocks, args.steps)


def measure(
    name: str, batches: list[tuple[torch.Tensor, torch.Tensor]], blocks: int, steps: int
) -> None:
    """Time one net on both paths, interleaved, and print the figures."""
    activation, init, hidden = NETS[name]
    plain, ours = build(activation, init, hidden)
    plain_copy = copy.deepcopy(plain)
    ours_compiled = copy.deepcopy(ours)
    optimizer = torch.optim.SGD(plain.parameters(), lr=1e-3)
    trainer = DenseStackTrainer(ours, lr=1e-3)
    compiled = CompiledDenseStackTrainer(ours_compiled, lr=1e-3)

    def eager() -> None:
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(plain(x), y).backward()
            optimizer.step()

    def fast() -> None:
        for x, y in batches:
            trainer.step(x, y)

    def fast_compiled() -> None:
        for x, y in batches:
            compiled.step(x, y)

    variants = {
        "plain PyTorch eager": eager,
        "signalprop fast path": fast,
        "fast path, compiled": fast_compiled,
    }
    start = time.perf_counter()
    compiled.step(*batches[0])
    compile_seconds = time.perf_counter() - start
    for run in variants.values():
        run()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for block in range(blocks):
        order = list(variants.items())
        for label, run in order if block % 2 == 0 else order[::-1]:  # A B C, then C B A
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) / steps)
    roof = roof_seconds(hidden)
    x, y = batches[0]
    print(f"\n{name} ({flops(hidden) / 1e6:.0f} MFLOP per step)")
    for label, values in times.items():
        median = statistics.median(values)
        print(
            f"  {label:22s} {1 / median:7.1f} steps/s  ({median * 1e3:6.2f} ms/step, "
            f"min {min(values) * 1e3:.2f}, max {max(values) * 1e3:.2f})  "
            f"{roof / median:5.1%} of the product roof"
        )
    eager_median = statistics.median(times["plain PyTorch eager"])
    for label in ("signalprop fast path", "fast path, compiled"):
        ratio = eager_median / statistics.median(times[label])
        print(f"  ratio {label} / plain eager: {ratio:.2f}x (goal >= 2.4x)")
    print(f"  compiling took {compile_seconds:.0f} s (once per architecture and batch size)")
    print(
        f"  matrix-product roof: {roof * 1e3:.2f} ms/step = {1 / roof:.0f} steps/s "
        f"({flops(hidden) / roof / 1e9:.1f} GFLOP/s)"
    )
    print(
        f"  kept between forward and backward: autograd "
        f"{saved_bytes(plain_copy, x, y) / 1e6:.2f} MB, fast path "
        f"{fast_bytes(hidden, activation) / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
