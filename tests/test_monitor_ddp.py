"""Monitor under torch.distributed: two gloo processes make the records of the whole batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import signalprop as sp
from signalprop.monitor import QUANTITIES, MonitorHistory, read_log

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
BATCH = 32
STEPS = 3


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [sp.Dense(24, activation) for activation in ("relu", "tanh", "sigmoid", "selu")]
    return sp.Sequential([*layers, sp.Dense(5)], input_shape=(10,))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(BATCH, 10, generator=generator),
            torch.randint(0, 5, (BATCH,), generator=generator),
        )
        for _ in range(STEPS)
    ]


def train(model: torch.nn.Module, log: Path | None, part: slice, every: int = 1) -> MonitorHistory:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with sp.Monitor(model, every=every, optimizer=optimizer, log=log) as monitor:
        for x, y in batches():
            optimizer.zero_grad()
            F.cross_entropy(model(x[part]), y[part]).backward()
            optimizer.step()
    return monitor.history


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_dying() -> torch.nn.Module:
    """Units of the first layer: x₀, −x₀, x₁ and an exact 0 (zero weights, zero bias)."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.linspace(-1, 1, 12).reshape(3, 4))
        model[2].bias.zero_()
    return model


def dying_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Rank 0's half has x₀ > 0 (unit 1 dead), rank 1's x₀ < 0 (unit 0 dead); x₁ > 0
    throughout (unit 2 alive on both); unit 3 is 0 everywhere."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 2, generator=generator) + 0.1
    x[BATCH // WORLD :, 0] *= -1
    return x, torch.randint(0, 3, (BATCH,), generator=generator)


def train_dying(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, log: Path | None
) -> MonitorHistory:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with sp.Monitor(model, every=1, optimizer=optimizer, log=log) as monitor:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        monitor.step()
    return monitor.history


def rank_main(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        model = DistributedDataParallel(build())
        share = BATCH // WORLD
        part = slice(rank * share, (rank + 1) * share)
        history = train(model, Path(folder) / "monitor.jsonl", part)
        torch.save([r.values for r in history.records], Path(folder) / f"rank{rank}.pt")
        x, y = dying_batch()
        dying = train_dying(
            DistributedDataParallel(build_dying()), x[part], y[part], Path(folder) / "dying.jsonl"
        )
        torch.save(dying.records[0].values["dead"], Path(folder) / f"dying{rank}.pt")
        del model
        dist.barrier()  # both ranks done with every collective before the group goes
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the two ranks (starting a process costs seconds) for the tests below."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(rank_main, args=(free_port(), str(folder)), nprocs=WORLD, join=True)
    return folder


def test_two_processes_record_what_one_process_records_on_the_whole_batch(spawned: Path) -> None:
    """Sums and counts add up over the ranks (SUM), alive units and the weights' numbers
    agree (MAX), and only rank 0 writes. Against one process on the concatenated batch
    the numbers agree to float32 round-off: the halves' matrix products and the
    all-reduced mean gradient round differently (1e-5 relative; a mean near 0 to 1e-5
    of its std)."""
    tmp_path = spawned
    single = train(build(), None, slice(0, BATCH))
    logged = read_log(tmp_path / "monitor.jsonl")
    assert logged.world_size == WORLD
    assert [r.step for r in logged.records] == [r.step for r in single.records] == [1, 2, 3]
    assert all(r.batch_size == BATCH for r in logged.records)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    assert ranks[0] == ranks[1]  # every rank holds the combined records
    for combined, alone in zip(logged.records, single.records, strict=True):
        for quantity in QUANTITIES:
            scale = alone.values[quantity.replace("mean", "std")]
            for i, (got, want) in enumerate(
                zip(combined.values[quantity], alone.values[quantity], strict=True)
            ):
                if want is None:
                    assert got is None, (quantity, i)
                    continue
                tolerance = 1e-5 * (scale[i] or 0.0) if "mean" in quantity else 1e-9
                assert got == pytest.approx(want, rel=1e-5, abs=tolerance), (quantity, i)
    # Rank 1 wrote nothing: one header, three records and the end line.
    lines = (tmp_path / "monitor.jsonl").read_text().splitlines()
    assert len(lines) == 1 + STEPS + 1


def brute_dead(x: torch.Tensor) -> float:
    """The first layer's dead fraction, computed here and not by signalprop's helper."""
    with torch.no_grad():
        z = build_dying()[0](x)
    return 1.0 - (z > 0).any(0).double().mean().item()


def test_a_unit_dead_on_one_rank_but_alive_on_another_is_alive(spawned: Path) -> None:
    """Each rank sees a batch on which a different unit is dead: a record that kept one
    rank's own alive units (the MAX all-reduce dropped), or summed the ranks', would differ
    from what one process measures on the whole batch."""
    x, y = dying_batch()
    share = BATCH // WORLD
    assert [brute_dead(x[:share]), brute_dead(x[share:])] == [0.5, 0.5]  # each rank alone
    assert brute_dead(x) == 0.25  # together: only the unit that is 0 everywhere
    single = train_dying(build_dying(), x, y, None).records[0].values["dead"]
    assert single[0] == 0.25
    ranks = [torch.load(spawned / f"dying{rank}.pt") for rank in range(WORLD)]
    logged = read_log(spawned / "dying.jsonl").records[0].values["dead"]
    assert ranks[0] == ranks[1] == logged == single


def test_the_readme_torchrun_command_runs(tmp_path: Path) -> None:
    """The Monitor guide's torchrun line (docs/guide/monitor.md), on synthetic data and a
    few steps."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(free_port()),
        str(ROOT / "examples" / "monitor_ddp.py"),
        "--synthetic", "--steps", "20", "--every", "4",
        "--monitor-log", str(tmp_path / "monitor.jsonl"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    history = read_log(tmp_path / "monitor.jsonl")
    assert history.world_size == 2
    assert [r.step for r in history.records] == [1, 5, 9, 13, 17]
    assert "monitored steps" in done.stdout
