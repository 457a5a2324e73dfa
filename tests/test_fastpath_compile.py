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
from pathlib import Path

import pytest
import torch

import signalprop as sp
from _machine import Machine
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
def unwritable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A compile cache no one can write, root included: a folder below a plain file.

    torch.compile is first called here on a usable folder: its first call imports
    modules that read the folder, and an import that fails there leaves them half
    imported for the rest of the process (the next tests' compiles would fail)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "usable"))
    torch.compile(torch.neg)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(blocker / "inductor"))
    return blocker / "inductor"


def _state(pid: int) -> tuple[str, int, bytes] | None:
    """A process's state letter, parent and command line, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(parent), command


def _wait_for_compiles() -> None:
    """Wait until this process's compiling processes have ended (at most two minutes).

    Ended means a zombie or gone: an exiting process clears its command line before
    it has ended, so each is found by its command line first, then watched by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        state = _state(int(entry.name)) if entry.name.isdigit() else None
        if state is not None and state[1] == os.getpid() and b"compile_offline" in state[2]:
            found.append(int(entry.name))
    deadline = time.monotonic() + 120
    for pid in found:
        while (state := _state(pid)) is not None and state[0] != "Z":
            assert time.monotonic() < deadline, "a compiling process ran for two minutes"
            time.sleep(0.05)


# ------------------------------------------------------- one compile per architecture
def test_two_trainers_wanting_one_new_architecture_while_another_process_compiles_it(
    cache: Path,
) -> None:
    """A trainer here starts the background compile of a new architecture (the on-disk
    cache is empty): it trains eagerly meanwhile, then takes over the step the other
    process compiled. That process holds the architecture's lock from its start to its
    end. A second trainer of it that asks for a background compile meanwhile starts
    none, and a third that compiles in the foreground does not compile: both train
    eagerly, then load the step once it is compiled. Losses: the eager path's, bit for
    bit while eager, then up to the compiled step's fused rounding (1e-5 relative,
    losses of order one)."""
    x, y = data(32)
    model = net("softplus", "tanh")
    first_eager = DenseStackTrainer(copy.deepcopy(model), lr=0.01)
    first = CompiledDenseStackTrainer(model, lr=0.01)
    first.compile_in_background(x, y)
    assert first._process is not None
    assert torch.equal(first.step(x, y)[0], first_eager.step(x, y)[0])
    assert first.eager_steps == 1  # the other process is still compiling
    second = CompiledDenseStackTrainer(copy.deepcopy(model), lr=0.01)
    second.compile_in_background(x, y)
    assert second._process is None and second.waited_for_another
    foreground = CompiledDenseStackTrainer(copy.deepcopy(model), lr=0.01)
    eager = DenseStackTrainer(copy.deepcopy(model), lr=0.01)
    twin = DenseStackTrainer(copy.deepcopy(model), lr=0.01)
    batches = data(32 * 64, seed=1)
    step = 0
    while second.compile_seconds is None or foreground.compile_seconds is None:
        index = slice(32 * (step % 64), 32 * (step % 64 + 1))
        xb, yb = batches[0][index], batches[1][index]
        waiting = second.compile_seconds is None, foreground.compile_seconds is None
        for trainer, reference, was_waiting in zip(
            (second, foreground), (eager, twin), waiting, strict=True
        ):
            loss, expected = trainer.step(xb, yb)[0], reference.step(xb, yb)[0]
            if was_waiting and trainer.compile_seconds is None:
                assert torch.equal(loss, expected)  # an eager step
            else:
                torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)
            assert trainer.failure is None and trainer._process is None  # no compile started
        step += 1
        time.sleep(0.01)  # leaves the cores to the compile
    for trainer in (second, foreground):
        assert trainer.eager_steps >= 1
        assert trainer.describe("why").startswith("compiled (why); the first ")
        assert trainer.describe("why").endswith(" steps eager, while another process compiled it")
    assert first._process is not None and first._process.wait() == 0
    for step in range(8):  # notes how the compile ended, then runs the step it compiled
        index = slice(32 * step, 32 * (step + 1))
        xb, yb = batches[0][index], batches[1][index]
        torch.testing.assert_close(
            first.step(xb, yb)[0], first_eager.step(xb, yb)[0], rtol=1e-5, atol=0
        )
    assert first.compile_seconds is not None and first.failure is None and first.note == ""
    assert first.eager_steps == 1
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
def test_a_compile_on_an_unwritable_cache_says_it_trained_on_the_fast_path(
    unwritable: Path,
) -> None:
    """An unwritable compile cache: torch.compile fails (it makes the cache folder on each
    call) and the run trains eagerly, with path="compiled" and with path="auto" (which
    compiles here: compile_for says many runs share the step); history.path says so, with
    the reason in one line, and the numbers are the eager fast path's."""
    x, y = data(320)
    for path, compile_for in (("compiled", 0), ("auto", 10**8)):
        model = net("mish", "gelu", "tanh")
        other = copy.deepcopy(model)
        history = fit(
            model, (x, y), None, epochs=1, lr=0.01, progress=False, path=path,
            compile_for=compile_for,
        )  # fmt: skip
        eager = fit(other, (x, y), None, epochs=1, lr=0.01, progress=False, path="fast")
        assert history.path.startswith("fast (compiling failed: NotADirectoryError: ")
        assert history.path.endswith("; trained on the fast path)")
        assert "\n" not in history.path and str(unwritable) in history.path
        assert history.loss == eager.loss


def test_a_compile_that_fails_at_its_first_step_says_it_trained_on_the_fast_path(
    cache: Path,
) -> None:
    """A compile that fails when the first step compiles (here inductor's C++ compiler
    is missing; a read-only cache folder fails there too): history.path says what ran."""
    import torch._inductor.config

    model = net("elu", "softplus", "mish")
    other = copy.deepcopy(model)
    x, y = data(320)
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        history = fit(model, (x, y), None, epochs=1, lr=0.01, progress=False, path="compiled")
    eager = fit(other, (x, y), None, epochs=1, lr=0.01, progress=False, path="fast")
    assert history.path.startswith("fast (compiling failed: "), history.path
    assert history.path.endswith("; trained on the fast path)") and "\n" not in history.path
    assert history.loss == eager.loss


def test_a_failed_background_compile_says_it_trained_on_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    """path="auto" chooses a background compile (a free core, a run the compile pays for
    only in the background, on a machine whose eager steps take the rule's constant
    time); the compiling process fails (no C++ compiler there: $CXX names none; this
    process found its own before), and history.path says the run trained on the fast
    path, with that process's last line."""
    import torch._inductor.config  # this process finds its compiler before $CXX is set

    monkeypatch.setenv("CXX", "/nonexistent/c++")
    planned = _fastpath.plan(net("silu", "softplus"))
    assert not isinstance(planned, str)
    layers = planned[0]
    Machine(monkeypatch, eager=_fastpath._eager_per_step(layers))
    count = len(layers)
    cold = _fastpath.COLD_COMPILE[0] + _fastpath.COLD_COMPILE[1] * count
    steps = math.ceil(cold / _fastpath._saved_per_step(layers)) - 1  # just does not pay
    x, y = data(32 * 20)
    torch.set_num_threads(2)  # a free core (the fixture one_thread restores the count)
    # The compile starts after the 21 steps timed, in epoch 2; epoch 3 finds it ended.
    history = fit(
        net("silu", "softplus"), (x, y), None, epochs=3, progress=False, compile_for=steps,
        callbacks=[lambda epoch, logs: _wait_for_compiles()],
    )  # fmt: skip
    assert history.path.startswith("fast (compiling failed: "), history.path
    assert "/nonexistent/c++" in history.path and "\n" not in history.path
    assert history.path.endswith("; trained on the fast path)")


def test_a_compiling_process_that_cannot_start_is_a_failed_compile(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(cache / "no-python"))
    trainer = CompiledDenseStackTrainer(net("gelu"), lr=0.01)
    x, y = data(32)
    trainer.compile_in_background(x, y)
    assert trainer._process is None and trainer.failure is not None
    assert trainer.failure.startswith("FileNotFoundError: ")
    trainer.step(x, y)
    assert trainer.describe("why") == (
        f"fast (compiling failed: {trainer.failure}; trained on the fast path)"
    )
    lock = _fastpath.compile_lock(_fastpath.architecture_key(trainer.eager.layers, True, 0, x))
    assert lock is not None and lock >= 0  # not left held
    _fastpath.release_compile_lock(lock)


def test_an_architecture_the_compiled_path_does_not_take_says_so() -> None:
    history = fit(net("prelu"), data(64), None, epochs=1, progress=False, path="compiled")
    assert history.path == "fast (PReLU and RReLU are not compiled; trained on the fast path)"


# ------------------------------------------------------- the rule and its keys
def test_a_cached_architecture_is_loaded_never_compiled_in_the_background(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    """With the architecture in the index, a run loads it when loading pays and otherwise
    stays eager; it never has another process compile it again (FOR_LATER_RUNS at 0:
    every run the compile does not pay for would otherwise be one)."""
    monkeypatch.setattr(_fastpath, "FOR_LATER_RUNS", 0.0)
    planned = _fastpath.plan(net("tanh", "tanh", "tanh"))
    assert not isinstance(planned, str)
    layers, flatten = planned
    x = torch.randn(32, 8, 8)
    assert _fastpath.choose_path(layers, flatten, 0.0, x, 10, free_core=True)[0] == "background"
    key = _fastpath.architecture_key(layers, flatten, 0.0, x)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / _fastpath._INDEX).write_text(json.dumps({key: {"seconds": 1.0}}))
    warm = _fastpath.WARM_COMPILE[0] + _fastpath.WARM_COMPILE[1] * len(layers)
    pays = math.ceil(warm / _fastpath._saved_per_step(layers))
    for steps in (10, pays - 1):
        path, why = _fastpath.choose_path(layers, flatten, 0.0, x, steps, free_core=True)
        assert path == "fast" and "from the on-disk cache" in why
    path, why = _fastpath.choose_path(layers, flatten, 0.0, x, pays + 1, free_core=True)
    assert path == "compiled" and "from the on-disk cache" in why


def test_the_background_rule_counts_the_slower_eager_steps_beside_a_compile(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    """At the boundary the docstring gives: a background compile is chosen when the steps
    left after it (the eager ones, BACKGROUND_SLOWER times slower beside the compile)
    save more than loading costs. Two steps either side of the boundary computed here."""
    monkeypatch.setattr(_fastpath, "FOR_LATER_RUNS", math.inf)
    planned = _fastpath.plan(net(*["tanh"] * 8))
    assert not isinstance(planned, str)
    layers, flatten = planned
    count = len(layers)
    x = torch.randn(32, 8, 8)
    cold = _fastpath.COLD_COMPILE[0] + _fastpath.COLD_COMPILE[1] * count
    warm = _fastpath.WARM_COMPILE[0] + _fastpath.WARM_COMPILE[1] * count
    per_step = _fastpath._saved_per_step(layers)
    eager_steps = cold * 1.45 / (70e-6 * count)  # the constants the docstring states
    boundary = eager_steps + warm / per_step
    assert boundary < cold / per_step  # below the steps a foreground compile pays at
    choose = _fastpath.choose_path
    assert choose(layers, flatten, 0.0, x, math.ceil(boundary) + 1, free_core=True)[0] == (
        "background"
    )
    assert choose(layers, flatten, 0.0, x, math.floor(boundary) - 1, free_core=True)[0] == "fast"


def test_compile_keys_tell_momentum_from_none_and_each_gets_its_own_step(cache: Path) -> None:
    """0 and 0.9 momentum compile different steps (velocities or none): different keys, and
    a compiled run with momentum after one without trains as the eager path with
    momentum (1e-4 relative on the weights, as the other compiled-path tests)."""
    planned = _fastpath.plan(net("selu", "leaky_relu"))
    assert not isinstance(planned, str)
    layers, flatten = planned
    x, y = data(32 * 30)
    activations = [layer.activation for layer in layers]
    has_bias = [layer.bias is not None for layer in layers]
    assert _fastpath.architecture_key(layers, flatten, 0.0, x[:32]) != (
        _fastpath.architecture_key(layers, flatten, 0.9, x[:32])
    )
    assert _fastpath._process_key(activations, has_bias, flatten, False) != (
        _fastpath._process_key(activations, has_bias, flatten, True)
    )
    fit(net("selu", "leaky_relu"), (x, y), None, epochs=1, lr=0.01, progress=False,
        path="compiled")  # fmt: skip
    model, other = net("selu", "leaky_relu", seed=1), net("selu", "leaky_relu", seed=1)
    compiled = fit(model, (x, y), None, epochs=1, lr=0.01, momentum=0.9, progress=False,
                   path="compiled")  # fmt: skip
    eager = fit(other, (x, y), None, epochs=1, lr=0.01, momentum=0.9, progress=False,
                path="fast")  # fmt: skip
    assert compiled.path == "compiled (asked for)"
    torch.testing.assert_close(compiled.loss, eager.loss, rtol=1e-5, atol=0)
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
