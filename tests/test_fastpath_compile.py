"""Compiling the fast path's step: one compile per architecture at a time across processes,
a ``history.path`` that says what ran, and the rule's arithmetic and cache keys."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import signalprop as sp
from signalprop import _fastpath
from signalprop._fastpath import CompiledDenseStackTrainer, DenseStackTrainer
from signalprop.train import fit


def data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, 8, generator=generator)
    return x, torch.randint(0, 10, (n,), generator=generator)


def net(*activations: str, seed: int = 0) -> sp.Sequential:
    torch.manual_seed(seed)
    hidden = [sp.Dense(16, a, kernel_initializer="glorot_uniform") for a in activations]
    return sp.Sequential(
        [sp.layers.Flatten(), *hidden, sp.Dense(10, "softmax")], input_shape=(8, 8)
    )


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty compile cache of this test's own (every architecture is new in it)."""
    import torch._dynamo  # noqa: F401 (imported with a usable cache before any test changes it)

    folder = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def unwritable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A compile cache no one can write, root included: a folder below a plain file."""
    import torch._dynamo  # noqa: F401 (imported with a usable cache, as in a running process)

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(blocker / "inductor"))
    yield blocker / "inductor"


def _compile_processes() -> list[int]:
    """This process's children that run compile_offline and have not ended."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == os.getpid() and state != "Z" and b"compile_offline" in command:
            alive.append(int(entry.name))
    return alive


def _wait_for_compiles() -> None:
    """Wait until no compiling process of this one is running (at most two minutes)."""
    deadline = time.monotonic() + 120
    while _compile_processes():
        assert time.monotonic() < deadline, "a compiling process ran for two minutes"
        time.sleep(0.05)


# ------------------------------------------------------- one compile per architecture
#: The other process: a trainer of the same architecture as the test's, which asks for a
#: background compile when told to ("go" on its stdin), then trains until it runs compiled.
OTHER = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from test_fastpath_compile import data, net
from signalprop._fastpath import CompiledDenseStackTrainer
torch.set_num_threads(1)
trainer = CompiledDenseStackTrainer(net("softplus", "tanh"), lr=0.01)
x, y = data(32)
print("ready", flush=True)
sys.stdin.readline()
trainer.compile_in_background(x, y)
started = trainer._process is not None
waited = trainer.waited_for_another
while trainer.compile_seconds is None and trainer.failure is None:
    trainer.step(x, y)
    started = started or trainer._process is not None
print(json.dumps({"started": started, "waited": waited, "eager_steps": trainer.eager_steps,
                  "failure": trainer.failure, "path": trainer.describe("why")}), flush=True)
"""


def test_two_processes_wanting_one_new_architecture_compile_it_once(cache: Path) -> None:
    """This process starts the background compile of a new architecture (its compiling
    process holds the architecture's lock); another process that asks for the same one
    meanwhile starts none, trains eagerly, and loads the step once it is compiled. So
    does a foreground compile in this process. The losses are the eager path's
    (1e-5 relative: the compiled step's fused rounding)."""
    with subprocess.Popen(
        [sys.executable, "-c", OTHER, str(Path(__file__).parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as other:
        try:
            assert other.stdout is not None and other.stdin is not None
            assert other.stdout.readline().strip() == "ready"
            x, y = data(32)
            model = net("softplus", "tanh")
            first = CompiledDenseStackTrainer(model, lr=0.01)
            first.compile_in_background(x, y)
            assert first._process is not None  # the compile, holding the lock from its start
            other.stdin.write("go\n")
            other.stdin.flush()
            # A foreground compile here waits for it too, on the eager path.
            foreground = CompiledDenseStackTrainer(copy.deepcopy(model), lr=0.01)
            eager = DenseStackTrainer(copy.deepcopy(model), lr=0.01)
            while foreground.compile_seconds is None:
                torch.testing.assert_close(
                    foreground.step(x, y)[0], eager.step(x, y)[0], rtol=1e-5, atol=0
                )
                assert foreground.failure is None and foreground._process is None
            assert foreground.waited_for_another and foreground.eager_steps >= 1
            assert "steps eager, while another process compiled it" in foreground.describe("why")
            report = json.loads(other.stdout.readline())
        finally:
            other.kill()
    assert report["failure"] is None
    assert report["waited"] and not report["started"], report
    assert report["eager_steps"] >= 1
    assert report["path"].startswith("compiled (why); the first ")
    assert report["path"].endswith(" steps eager, while another process compiled it")
    first._process.wait()
    first.step(x, y)  # notes how the compile ended, and runs the step it compiled
    assert first.compile_seconds is not None and first.failure is None
    key = _fastpath.architecture_key(first.eager.layers, True, 0.0, x, threads=1)
    assert key in _fastpath._read_index()
    lock = _fastpath.compile_lock(key)  # free again once the compile has ended
    assert lock is not None and lock >= 0
    _fastpath.release_compile_lock(lock)


HOLD = """
import sys
from signalprop._fastpath import compile_lock
lock = compile_lock(sys.argv[1])
print("held" if lock is not None and lock >= 0 else "not held", flush=True)
sys.stdin.readline()
"""


def test_the_compile_lock_of_a_killed_process_is_free(cache: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, "k" * 20],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert _fastpath.compile_lock("k" * 20) is None
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
    lock = _fastpath.compile_lock("k" * 20)
    assert lock is not None and lock >= 0
    _fastpath.release_compile_lock(lock)
    assert (cache / "locks" / f"{'k' * 20}.lock").is_file()


# ------------------------------------------------------- history.path says what ran
def test_a_failed_foreground_compile_says_it_trained_on_the_fast_path(
    unwritable: Path,
) -> None:
    """An unwritable compile cache: the compile fails and the run trains eagerly, with
    path="compiled" and with path="auto" (which compiles here: compile_for says many runs
    share the step); history.path says so, with the reason in one line."""
    x, y = data(320)
    for path, compile_for in (("compiled", 0), ("auto", 10**8)):
        model = net("mish", "gelu", "tanh")
        other = copy.deepcopy(model)
        history = fit(
            model, (x, y), None, epochs=1, lr=0.01, progress=False, path=path,
            compile_for=compile_for,
        )  # fmt: skip
        eager = fit(other, (x, y), None, epochs=1, lr=0.01, progress=False, path="fast")
        assert history.path.startswith("fast (compiling failed: "), history.path
        assert history.path.endswith("; trained on the fast path)")
        assert "\n" not in history.path and "Not a directory" in history.path
        assert history.loss == eager.loss  # the eager fast path's numbers, bit for bit


def test_a_failed_background_compile_says_it_trained_on_the_fast_path(unwritable: Path) -> None:
    """path="auto" chooses a background compile (a free core, a run the compile pays for
    only in the background); its process fails on the unwritable cache; history.path says
    the run trained on the fast path, and why."""
    planned = _fastpath.plan(net("silu", "softplus"))
    assert not isinstance(planned, str)
    layers = planned[0]
    count = len(layers)
    cold = _fastpath.COLD_COMPILE[0] + _fastpath.COLD_COMPILE[1] * count
    steps = math.ceil(cold / _fastpath._saved_per_step(layers)) - 1  # just does not pay
    x, y = data(32 * 20)
    torch.set_num_threads(2)  # a free core (the fixture one_thread restores the count)
    history = fit(
        net("silu", "softplus"), (x, y), None, epochs=2, progress=False, compile_for=steps,
        callbacks=[lambda epoch, logs: _wait_for_compiles()],
    )  # fmt: skip
    assert history.path.startswith("fast (compiling failed: NotADirectoryError"), history.path
    assert history.path.endswith("; trained on the fast path)")


def test_an_architecture_the_compiled_path_does_not_take_says_so() -> None:
    history = fit(net("prelu"), data(64), None, epochs=1, progress=False, path="compiled")
    assert history.path == "fast (PReLU and RReLU are not compiled; trained on the fast path)"
