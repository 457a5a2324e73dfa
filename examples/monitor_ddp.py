"""Train the chapter's deep SELU net with DistributedDataParallel, watched by signalprop.Monitor.

    torchrun --nproc-per-node 2 examples/monitor_ddp.py --monitor-log runs/ddp/monitor.jsonl

Each process trains on its own share of every batch (gloo, CPU). The monitor
reduces each process's share locally and combines them with one packed
``all_reduce`` per monitored step, so its records are those of the whole batch;
only rank 0 writes the log and prints what it found. Fashion-MNIST comes from
``--data-dir``, ``$SIGNALPROP_DATA`` or signalprop's cache; ``--synthetic`` trains
on random data instead (a smoke test that needs no files).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import signalprop as sp


def data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    if args.synthetic:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(4096, 784, generator=generator), torch.randint(
            0, 10, (4096,), generator=generator
        )
    from signalprop.data import load_fashion_mnist

    fashion = load_fashion_mnist(args.data_dir, validation=0, standardize=True, download=False)
    return fashion.x_train.reshape(len(fashion.x_train), -1), fashion.y_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=100, help="hidden layers (default 100)")
    parser.add_argument("--batch", type=int, default=64, help="whole batch, all ranks (64)")
    parser.add_argument("--steps", type=int, default=500, help="training steps (default 500)")
    parser.add_argument("--every", type=int, default=16, help="monitor every N steps (16)")
    parser.add_argument("--monitor-log", default="runs/ddp/monitor.jsonl", help="the monitor's log")
    parser.add_argument("--data-dir", help="Fashion-MNIST files (default $SIGNALPROP_DATA)")
    parser.add_argument("--synthetic", action="store_true", help="random data, no files")
    args = parser.parse_args()

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        torch.manual_seed(0)  # the same weights on every rank (DDP also broadcasts them)
        hidden = [
            sp.Dense(100, "selu", kernel_initializer="lecun_normal") for _ in range(args.depth)
        ]
        model = DistributedDataParallel(sp.Sequential([*hidden, sp.Dense(10)], input_shape=(784,)))
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        x, y = data(args)
        share = args.batch // world
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
        with sp.Monitor(
            model, every=args.every, optimizer=optimizer, log=args.monitor_log
        ) as monitor:
            for step in range(args.steps):
                start = (step * args.batch) % (len(x) - args.batch)
                index = order[start + rank * share : start + (rank + 1) * share]
                optimizer.zero_grad()
                F.cross_entropy(model(x[index]), y[index]).backward()
                optimizer.step()  # the Monitor steps with the optimizer
        if rank == 0:
            print(monitor.summary())
            print(f"log: {args.monitor_log}")
        dist.barrier()  # every rank done with its collectives before the group is taken down
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
