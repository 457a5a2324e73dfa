"""fit(path="auto")'s rule on machines other than the one its constants were measured on:
it times the run's first eager steps, and the compile cache's index keeps what each
compiled step measured (its time per step, its load), for the next runs. The machines
are simulated (step times given, see ``_machine.py``): no test depends on real timings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import signalprop as sp
from _machine import Machine
from signalprop import _fastpath
from signalprop._fastpath import AutoDenseStackTrainer, EagerTiming, choose_path
from signalprop.train import fit


def data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, 8, generator=generator)
    return x, torch.randint(0, 10, (n,), generator=generator)


def net(*activations: str) -> sp.Sequential:
    torch.manual_seed(0)
    hidden = [sp.Dense(16, a, kernel_initializer="glorot_uniform") for a in activations]
    return sp.Sequential(
        [sp.layers.Flatten(), *hidden, sp.Dense(10, "softmax")], input_shape=(8, 8)
    )


def relu_100() -> sp.Sequential:
    """The chapter's 100-layer ReLU net: 784 -> 300 -> 99 x 100 -> 10."""
    hidden = [sp.Dense(300, "relu")] + [sp.Dense(100, "relu") for _ in range(99)]
    return sp.Sequential(
        [sp.layers.Flatten(), *hidden, sp.Dense(10, "softmax")], input_shape=(28, 28)
    )


def planned(model: sp.Sequential) -> tuple[list[Any], bool]:
    result = _fastpath.plan(model)
    assert not isinstance(result, str)
    return result


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has compiled and timed nothing yet (what the tests before compiled
    stays out of the rule's way)."""
    monkeypatch.setattr(_fastpath, "_SEEN", set())
    monkeypatch.setattr(_fastpath, "_TIMED_HERE", set())


@pytest.fixture
def compiler(monkeypatch: pytest.MonkeyPatch, new_process: None) -> None:
    """A new process with a C++ compiler, as far as the rule knows (the tests that use it
    compile nothing)."""
    monkeypatch.setattr(_fastpath, "cpp_compiler", lambda: "c++")


def write_index(cache: Path, index: Any) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / _fastpath._INDEX).write_text(json.dumps(index))


#: An index entry as signalprop wrote them before it kept measurements.
OLD_ENTRY = {"seconds": 65.0, "when": "2026-11-30T12:00:00+00:00"}


# ---------------------------------------------------------------- the rule, simulated
@pytest.mark.usefixtures("compiler")
def test_where_compiling_saves_twice_the_constants_estimate_the_rule_now_compiles(
    cache: Path,
) -> None:
    """The issue's case: the 100-layer ReLU net, cached, 3,436 steps. On the constants
    alone the rule stays eager (the issue's words). On a machine twice as slow as the
    rule's, where each step, eager and compiled, takes twice as long and so compiling
    saves twice the estimate, it compiles: from the eager time timed in the run (the
    compiled step assumed as much faster as on the rule's machine), and from the
    compiled step's time the index holds. And on the issue's own figures (eager 96
    steps/s, compiled 140 steps/s)."""
    layers, flatten = planned(relu_100())
    x = torch.zeros(32, 28, 28)
    key = _fastpath.architecture_key(layers, flatten, 0.0, x)
    write_index(cache, {key: OLD_ENTRY})
    assert choose_path(layers, flatten, 0.0, x, 3436) == (
        "fast",
        "compiling would take ≈ 6.3 s from the on-disk cache, more than the ≈ 5.6 s it saves "
        "over 3,436 steps; assumed (the rule's constants): the step times (none timed here), "
        "loading ≈ 6.3 s",
    )
    eager = 2 * _fastpath._eager_per_step(layers)  # 2 x 7.07 ms
    compiled = eager - 2 * _fastpath._saved_per_step(layers)  # 2 x (7.07 - 1.62) ms
    assert choose_path(layers, flatten, 0.0, x, 3436, eager=EagerTiming(eager, 20)) == (
        "compiled",
        "compiling, ≈ 6.3 s from the on-disk cache, saves ≈ 11 s over 3,436 steps; measured: "
        "eager 14.1 ms/step (the median of 20 steps); assumed (the rule's constants): the "
        "compiled step 23% faster, loading ≈ 6.3 s",
    )
    _fastpath._remember_speed(key, compiled, 20)
    assert choose_path(layers, flatten, 0.0, x, 3436, eager=EagerTiming(eager, 20)) == (
        "compiled",
        "compiling, ≈ 6.3 s from the on-disk cache, saves ≈ 11 s over 3,436 steps; measured: "
        "eager 14.1 ms/step (the median of 20 steps), compiled 10.9 ms/step last time; "
        "assumed (the rule's constants): loading ≈ 6.3 s",
    )
    _fastpath._remember_speed(key, 1 / 140, 20)
    path, why = choose_path(layers, flatten, 0.0, x, 3436, eager=EagerTiming(1 / 96, 20))
    assert path == "compiled" and why.startswith("compiling, ≈ 6.3 s from the on-disk cache, ")
    assert "measured: eager 10.4 ms/step (the median of 20 steps), compiled 7.14 ms/step" in why


@pytest.mark.usefixtures("compiler")
def test_on_a_faster_machine_the_rule_stays_eager_where_its_constants_would_compile(
    cache: Path,
) -> None:
    """A machine twice as fast as the rule's saves half as much per step: a run the
    constants would compile for stays eager there, and one twice as long compiles."""
    layers, flatten = planned(net(*["tanh"] * 8))
    x = torch.zeros(32, 8, 8)
    cold = _fastpath.COLD_COMPILE[0] + _fastpath.COLD_COMPILE[1] * len(layers)
    pays = math.ceil(cold / _fastpath._saved_per_step(layers)) + 1
    fast = EagerTiming(_fastpath._eager_per_step(layers) / 2, 20)
    assert choose_path(layers, flatten, 0.0, x, pays)[0] == "compiled"
    path, why = choose_path(layers, flatten, 0.0, x, pays, eager=fast)
    assert path == "fast" and why.startswith("compiling would take ≈ 7.4 s the first time, ")
    assert why.endswith(
        "; assumed (the rule's constants): the compiled step 35% faster, compiling ≈ 7.4 s"
    )
    assert choose_path(layers, flatten, 0.0, x, 2 * pays, eager=fast)[0] == "compiled"


@pytest.mark.usefixtures("compiler")
def test_a_measured_load_and_a_compiled_step_no_faster_decide_over_the_constants(
    cache: Path,
) -> None:
    """A load measured at 0.5 s pays after fewer steps than WARM_COMPILE's (1.4 s for
    this net); a compiled step timed no faster than the eager one is never chosen."""
    layers, flatten = planned(net(*["tanh"] * 8))
    x = torch.zeros(32, 8, 8)
    key = _fastpath.architecture_key(layers, flatten, 0.0, x)
    write_index(cache, {key: OLD_ENTRY})
    per_step = _fastpath._saved_per_step(layers)
    steps = math.ceil(0.5 / per_step) + 1  # pays for 0.5 s, not for the warm constant
    assert choose_path(layers, flatten, 0.0, x, steps)[0] == "fast"
    _fastpath._remember_load(key, 0.5)
    assert choose_path(layers, flatten, 0.0, x, steps) == (
        "compiled",
        f"compiling, ≈ 0.5 s from the on-disk cache, saves ≈ 0.5 s over {steps:,} steps; "
        "measured: loading 0.5 s last time; assumed (the rule's constants): the step times "
        "(none timed here)",
    )
    _fastpath._remember_speed(key, 0.0021, 20)
    assert choose_path(layers, flatten, 0.0, x, 10**9, eager=EagerTiming(0.002, 20)) == (
        "fast",
        "the compiled step was no faster than the eager one here; measured: eager 2 ms/step "
        "(the median of 20 steps), compiled 2.1 ms/step last time, loading 0.5 s last time",
    )


@pytest.mark.usefixtures("compiler")
def test_the_background_rule_counts_the_eager_steps_at_their_measured_speed(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    """A run the compile does not pay for has another process compile it for the next
    runs when it lasts FOR_LATER_RUNS seconds or more: on a machine ten times slower
    than the rule's, a run of a tenth of the steps the constants want lasts that long."""
    monkeypatch.setattr(_fastpath, "COLD_COMPILE", (10**4, 10**4))  # never pays in a run
    layers, flatten = planned(net(*["tanh"] * 8))
    x = torch.zeros(32, 8, 8)
    eager = _fastpath.EAGER_PER_LAYER * len(layers)
    steps = math.ceil(_fastpath.FOR_LATER_RUNS / eager / 10) + 1
    assert choose_path(layers, flatten, 0.0, x, steps, free_core=True)[0] == "fast"
    path, why = choose_path(
        layers, flatten, 0.0, x, steps, free_core=True, eager=EagerTiming(10 * eager, 20)
    )
    assert path == "background" and "for the next runs" in why
    assert "measured: eager 6.3 ms/step (the median of 20 steps)" in why


# ---------------------------------------------------------------- timing the run
@pytest.mark.usefixtures("compiler", "cache")
def test_the_rule_takes_the_median_eager_step_after_the_first_leaving_out_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first full batch, short batches and steps a Monitor records are not timed;
    the median of the next 20 full batches is (four slow steps move it not), and the
    rule then weighs the steps left."""
    machine = Machine(monkeypatch, eager=5.0)
    asked: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def rule(*args: Any, **kwargs: Any) -> tuple[str, str]:
        asked.append((args, kwargs))
        return "fast", "chosen"

    monkeypatch.setattr(_fastpath, "choose_path", rule)
    x, y = data(32)
    trainer = AutoDenseStackTrainer(net("tanh", "tanh"), 0.01, 0.0, x, y, 1000,
                                    run_steps=1000, free_core=False)  # fmt: skip
    recorded = SimpleNamespace(scheduled=True, fast_begin=lambda rows, x: False)
    unrecorded = SimpleNamespace(scheduled=False, fast_begin=lambda rows, x: False)
    trainer.step(x, y)  # the first: 5 s, not timed
    times = [0.010] * 15 + [3.0] * 4 + [0.011]
    for i, seconds in enumerate(times):
        machine.eager = 7.0
        trainer.step(x[:5], y[:5])  # a short batch
        machine.eager = 9.0
        trainer.step(x, y, recorded)  # a step a Monitor records
        machine.eager = seconds
        trainer.step(x, y, unrecorded if i % 2 else None)
        assert (trainer.path is None) == (i < len(times) - 1)
    ((args, kwargs),) = asked
    assert kwargs["eager"].steps == 20  # the clock's sums round: 1e-15 relative
    assert kwargs["eager"].seconds == pytest.approx(0.010, rel=1e-12)
    assert args[4] == 1000 - 41  # the full batches left: 1 + 20 recorded + 20 timed taken
    assert trainer.describe() == "fast (chosen)"


def test_a_run_that_ends_before_its_steps_are_timed_says_so() -> None:
    """A run stopped after its first epoch (10 full batches of 30), and a run whose every
    step a Monitor records (the compiled step would not have run either)."""
    history = fit(
        net("tanh"), data(320), None, epochs=3, progress=False,
        callbacks=[lambda epoch, logs: True],
    )  # fmt: skip
    assert history.path == (
        "fast (the run ended after 10 full batches, before the rule had timed the 20 eager "
        "steps it chooses on)"
    )
    model = net("tanh")
    with sp.Monitor(model, every=1) as monitor:
        history = fit(model, data(320), None, epochs=3, progress=False, monitor=monitor)
    assert history.path == (
        "fast (the run ended after 30 full batches, 30 of them recorded by a Monitor (those "
        "are not timed), before the rule had timed the 20 eager steps it chooses on)"
    )


# ---------------------------------------------------------------- the index
@pytest.mark.usefixtures("new_process")
def test_the_index_keeps_what_each_run_measured_for_the_next(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    """On a machine with 10 ms eager steps and 4 ms compiled ones: a run of a new
    architecture times 20 eager steps, compiles (3 s), then times 20 compiled steps and
    notes them in the index beside the compile. The next run, in a new process, decides
    on them, loads the step (0.5 s there) and notes the load and its own compiled time,
    keeping the rest; the run after that decides on all of it."""
    machine = Machine(monkeypatch, eager=0.010, compiled=0.004, first=3.0)
    x, y = data(32 * 32)
    layers, flatten = planned(net("tanh", "tanh"))
    key = _fastpath.architecture_key(layers, flatten, 0.0, x[:32])
    history = fit(net("tanh", "tanh"), (x, y), None, epochs=2, lr=0.01, progress=False,
                  compile_for=10**6)  # fmt: skip
    assert history.path.startswith("compiled (compiling, ≈ 3.5 s the first time, saves ≈ ")
    assert history.path.endswith(
        "; measured: eager 10 ms/step (the median of 20 steps); assumed (the rule's "
        "constants): the compiled step 32% faster, compiling ≈ 3.5 s)"
    )
    entry = _fastpath._read_index()[key]
    assert (entry["seconds"], entry["step_seconds"], entry["steps_timed"]) == (3.0, 0.004, 20)
    assert "load_seconds" not in entry

    monkeypatch.setattr(_fastpath, "_SEEN", set())  # a new process: nothing compiled here
    monkeypatch.setattr(_fastpath, "_TIMED_HERE", set())
    machine.first, machine.compiled = 0.5, 0.005
    history = fit(net("tanh", "tanh"), (x, y), None, epochs=2, lr=0.01, progress=False,
                  compile_for=10**4)  # fmt: skip
    assert history.path.startswith("compiled (compiling, ≈ 1.2 s from the on-disk cache, ")
    assert history.path.endswith(
        "; measured: eager 10 ms/step (the median of 20 steps), compiled 4 ms/step last "
        "time; assumed (the rule's constants): loading ≈ 1.2 s)"
    )
    entry = _fastpath._read_index()[key]
    assert (entry["seconds"], entry["load_seconds"], entry["step_seconds"]) == (3.0, 0.5, 0.005)
    monkeypatch.setattr(_fastpath, "_SEEN", set())  # the run after, in another new process
    assert choose_path(layers, flatten, 0.0, x[:32], 120, eager=EagerTiming(0.01, 20)) == (
        "compiled",
        "compiling, ≈ 0.5 s from the on-disk cache, saves ≈ 0.6 s over 120 steps; measured: "
        "eager 10 ms/step (the median of 20 steps), compiled 5 ms/step last time, loading "
        "0.5 s last time",
    )


@pytest.mark.usefixtures("compiler")
@pytest.mark.parametrize(
    "entry",
    [
        OLD_ENTRY,
        {"seconds": 1.0, "step_seconds": "fast", "load_seconds": -2.0},
        {"step_seconds": None, "load_seconds": True},
        {"step_seconds": math.nan, "load_seconds": math.inf},
        [1, 2],
    ],
)
def test_an_index_without_usable_measurements_leaves_the_rule_on_its_constants(
    cache: Path, entry: Any
) -> None:
    """An entry from before measurements were kept, or a damaged one: the architecture
    is cached, and the rule assumes the constants for what is not measured in the run;
    noting a measurement keeps what the entry held (a damaged entry is replaced)."""
    layers, flatten = planned(net("tanh", "tanh"))
    x = torch.zeros(32, 8, 8)
    key = _fastpath.architecture_key(layers, flatten, 0.0, x)
    write_index(cache, {key: entry, "other": OLD_ENTRY})
    path, why = choose_path(layers, flatten, 0.0, x, 100, eager=EagerTiming(0.001, 20))
    assert path == "fast" and why.endswith(
        "; measured: eager 1 ms/step (the median of 20 steps); assumed (the rule's "
        "constants): the compiled step 32% faster, loading ≈ 1.2 s"
    )
    _fastpath._remember_speed(key, 0.0005, 20)
    index = _fastpath._read_index()
    assert index["other"] == OLD_ENTRY and index[key]["step_seconds"] == 0.0005
    if isinstance(entry, dict):
        kept = {k: v for k, v in entry.items() if k != "step_seconds"}
        assert {k: index[key][k] for k in kept} == kept


@pytest.mark.usefixtures("compiler")
def test_an_unreadable_index_is_an_empty_one_and_an_unwritable_cache_keeps_nothing(
    monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path
) -> None:
    layers, flatten = planned(net("tanh", "tanh"))
    x = torch.zeros(32, 8, 8)
    key = _fastpath.architecture_key(layers, flatten, 0.0, x)
    cache.mkdir(parents=True)
    (cache / _fastpath._INDEX).write_text("{not json")
    assert "the first time" in choose_path(layers, flatten, 0.0, x, 100)[1]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(blocker / "inductor"))
    _fastpath._remember_speed(key, 0.004, 20)  # no error: the run goes on
    _fastpath._remember_load(key, 0.5)
    assert _fastpath._read_index() == {}
    path, why = choose_path(layers, flatten, 0.0, x, 100, eager=EagerTiming(0.001, 20))
    assert path == "fast" and "the first time" in why and "last time" not in why
