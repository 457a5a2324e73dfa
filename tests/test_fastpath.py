"""The fast training path: same numbers as autograd, and autograd for everything else."""

from __future__ import annotations

import contextlib
import copy
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import signalprop as sp
from signalprop._fastpath import DenseStackTrainer, plan
from signalprop.train import fit

ACTIVATIONS = [
    "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu", "elu", "selu",
    "gelu", "silu", "mish", "softplus", "linear",
]  # fmt: skip


def data(n: int = 3200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, 8, generator=generator), torch.randint(
        0, 10, (n,), generator=generator
    )


def net(activation, depth: int = 8, seed: int = 0) -> sp.Sequential:
    torch.manual_seed(seed)
    name = activation if isinstance(activation, str) else "relu"
    init = sp.init.MATCHING.get(name, "he_normal")
    hidden = [
        sp.Dense(
            48,
            copy.deepcopy(activation) if isinstance(activation, nn.Module) else activation,
            kernel_initializer=init,
        )
        for _ in range(depth)
    ]
    return sp.Sequential(
        [sp.layers.Flatten(), *hidden, sp.Dense(10, "softmax")], input_shape=(8, 8)
    )


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """PyTorch on ``count`` intra-op threads inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_both(model: nn.Module, momentum: float) -> tuple[nn.Module, nn.Module, dict, dict]:
    """100 steps of fit() on each path from the same weights and seed, on one thread: the
    condition under which they agree bit for bit (fit's fast path always trains on one;
    autograd on the caller's count, whose matrix products round otherwise on two)."""
    other = copy.deepcopy(model)
    x, y = data()
    settings = {"epochs": 1, "lr": 0.01, "momentum": momentum, "seed": 3, "progress": False}
    with threads(1):
        fast = fit(model, (x, y), (x[:256], y[:256]), path="fast", **settings)
        slow = fit(other, (x, y), (x[:256], y[:256]), path="autograd", **settings)
    return model, other, fast.to_dict(), slow.to_dict()


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fast_path_matches_autograd_over_100_steps(activation: str, momentum: float) -> None:
    """Same losses and weights as autograd + torch.optim.SGD after 100 steps, bit for bit
    on one thread: the fast path calls the kernels autograd calls, in the same order."""
    fast_model, slow_model, fast, slow = train_both(net(activation), momentum)
    assert fast["path"].startswith("fast") and slow["path"].startswith("autograd")
    assert fast["steps"] == slow["steps"] == 100
    assert fast["loss"] == slow["loss"] and fast["val_loss"] == slow["val_loss"]
    for p, q in zip(fast_model.parameters(), slow_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_fast_path_trains_on_one_thread_whatever_the_caller_set() -> None:
    """fit's fast path sets one thread for the run (and restores the caller's): from the
    same weights, a caller on two threads gets the one-thread numbers bit for bit."""
    model = net("selu")
    other = copy.deepcopy(model)
    x, y = data(640)
    histories = []
    for count, trained in ((2, model), (1, other)):
        with threads(count):
            histories.append(
                fit(trained, (x, y), None, epochs=1, lr=0.01, progress=False, path="fast")
            )
            assert torch.get_num_threads() == count
    assert histories[0].loss == histories[1].loss
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)


def test_per_channel_prelu_and_plain_torch_stacks_take_the_fast_path() -> None:
    fast_model, slow_model, fast, slow = train_both(net(sp.layers.PReLU(48)), 0.0)
    assert fast["path"].startswith("fast")
    for p, q in zip(fast_model.parameters(), slow_model.parameters(), strict=True):
        assert torch.equal(p, q)
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10)
    )
    fast_model, slow_model, fast, slow = train_both(plain, 0.9)
    assert fast["path"].startswith("fast")
    assert fast["loss"] == slow["loss"]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Dropout(0.5), nn.Linear(10, 10)),
            "Dropout",
        ),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10), nn.Linear(10, 10)),
            "BatchNorm1d",
        ),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Hardswish(), nn.Linear(10, 10)),
            "Hardswish",
        ),
        (nn.Sequential(nn.Flatten(1, 2), nn.Linear(64, 10)), "Flatten"),
        (nn.Linear(64, 10), "not an nn.Sequential"),
    ],
)
def test_other_models_fall_back_to_autograd_and_say_why(model: nn.Module, reason: str) -> None:
    assert reason in str(plan(model))
    x, y = data(64)
    x = x.reshape(64, 64) if isinstance(model, nn.Linear) else x
    history = fit(model, (x, y), None, epochs=1, progress=False)
    assert history.path.startswith("autograd (") and reason in history.path
    with pytest.raises(ValueError, match=re.escape("The 'path' parameter of fit")):
        fit(model, (x, y), None, epochs=1, progress=False, path="fast")


def test_other_optimizers_and_dtypes_fall_back() -> None:
    x, y = data(64)
    assert "SGD" in fit(net("relu"), (x, y), None, epochs=1, optimizer="adam", progress=False).path
    model = net("relu").double()
    assert "float64" in fit(model, (x.double(), y), None, epochs=1, progress=False).path
    assert (
        fit(net("relu"), (x, y), None, epochs=1, progress=False, path="autograd").path
        == "autograd (asked for)"
    )


def test_diagnose_and_evaluation_work_on_a_fast_trained_model() -> None:
    model = net("selu")
    x, y = data()
    history = fit(
        model, (x, y), (x[:256], y[:256]), epochs=1, lr=0.01, progress=False, diagnose_at=(1,)
    )
    assert history.path.startswith("fast")
    report = sp.diagnose(model, x[:256].flatten(1).reshape(256, 8, 8), y[:256])
    assert report.layers and all(layer.finite for layer in report.layers)
    assert history.diagnostics[1]["layers"]


def test_non_finite_loss_stops_before_the_step() -> None:
    model = net("relu")
    x, y = data()
    history = fit(model, (x, y), None, epochs=1, lr=1e6, progress=False)
    assert history.path.startswith("fast")
    assert history.stopped is not None and history.stopped["reason"] == "non-finite loss"
    trainer = DenseStackTrainer(net("relu"), lr=0.1)
    bad = x[:32].clone()
    bad[0, 0, 0] = float("nan")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss, _ = trainer.step(bad, y[:32])
    assert not torch.isfinite(loss)
    for p, q in zip(before, trainer.model.parameters(), strict=True):
        assert torch.equal(p, q)  # no update from a NaN loss


def test_trainer_refuses_models_it_cannot_train() -> None:
    with pytest.raises(ValueError, match="the fast path cannot train this model"):
        DenseStackTrainer(nn.Conv2d(1, 1, 3), lr=0.1)


def test_compiled_fast_path_matches_the_eager_one() -> None:
    """torch.compile fuses the elementwise work, so rounding may differ: 1e-5 relative."""
    model = net("selu", depth=3)
    other = copy.deepcopy(model)
    x, y = data(1000)  # 31 full batches and one of 8, which runs eagerly
    compiled = fit(model, (x, y), None, epochs=1, lr=0.01, progress=False, path="compiled")
    eager = fit(other, (x, y), None, epochs=1, lr=0.01, progress=False, path="fast")
    assert compiled.path.startswith("compiled") and eager.path.startswith("fast")
    torch.testing.assert_close(compiled.loss, eager.loss, rtol=1e-5, atol=0)
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    prelu = fit(net("prelu", depth=2), (x, y), None, epochs=1, progress=False, path="compiled")
    assert prelu.path == "fast (PReLU and RReLU are not compiled; trained on the fast path)"


def test_compiled_step_with_momentum_and_a_nan_batch() -> None:
    """Momentum matches the eager fast path; a NaN batch leaves every weight as it was."""
    from signalprop._fastpath import CompiledDenseStackTrainer

    model = net("elu", depth=2)
    other = copy.deepcopy(model)
    compiled = CompiledDenseStackTrainer(model, lr=0.01, momentum=0.9)
    eager = DenseStackTrainer(other, lr=0.01, momentum=0.9)
    x, y = data(1600)
    for step in range(50):
        xb, yb = x[step * 32 : (step + 1) * 32], y[step * 32 : (step + 1) * 32]
        torch.testing.assert_close(
            compiled.step(xb, yb)[0], eager.step(xb, yb)[0], rtol=1e-5, atol=0
        )
    assert compiled.note == ""
    before = [p.detach().clone() for p in model.parameters()]
    bad = x[:32].clone()
    bad[0, 0, 0] = float("nan")
    loss, _ = compiled.step(bad, y[:32])
    assert not torch.isfinite(loss)
    for p, q in zip(before, model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_compiled_fast_path_with_every_activation_it_compiles() -> None:
    """One net with a layer of each activation the compiled path accepts: one compile
    covers them all. Losses and weights as the eager fast path, up to fused rounding."""
    names = [
        n
        for n in sp.activations.names()
        if n not in ("softmax", "prelu", "rrelu", "logistic", "swish")  # eager-only or aliases
    ]
    torch.manual_seed(7)
    hidden = [sp.Dense(32, name, kernel_initializer="glorot_uniform") for name in names]
    model = sp.Sequential(
        [sp.layers.Flatten(), *hidden, sp.Dense(10, "softmax")], input_shape=(8, 8)
    )
    other = copy.deepcopy(model)
    x, y = data(640)
    compiled = fit(model, (x, y), None, epochs=1, lr=0.01, progress=False, path="compiled")
    eager = fit(other, (x, y), None, epochs=1, lr=0.01, progress=False, path="fast")
    assert compiled.path.startswith("compiled") and eager.path.startswith("fast")
    assert {"linear", "tanh", "gelu", "mish", "softplus", "leaky_relu"} <= set(names)
    torch.testing.assert_close(compiled.loss, eager.loss, rtol=1e-5, atol=0)
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_auto_compiles_only_when_the_run_pays_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The rule of choose_path, on its documented estimates: a short run stays eager, a long
    one compiles, a cached architecture costs the warm estimate, no compiler means eager."""
    import json

    from signalprop import _fastpath

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    planned = _fastpath.plan(net("tanh", depth=8))
    assert not isinstance(planned, str)
    layers, flatten = planned
    x = torch.randn(32, 8, 8)
    cold = _fastpath.COLD_COMPILE[0] + _fastpath.COLD_COMPILE[1] * len(layers)
    pays = math.ceil(cold / _fastpath._saved_per_step(layers))
    path, why = _fastpath.choose_path(layers, flatten, 0.0, x, pays - 1)
    assert path == "fast" and "the first time" in why and f"{pays - 1:,} steps" in why
    path, why = _fastpath.choose_path(layers, flatten, 0.0, x, pays)
    assert path == "compiled" and "the first time" in why
    # With a core free, another process compiles while this one trains eagerly, when the
    # steps left after it save more than loading the result costs.
    path, why = _fastpath.choose_path(layers, flatten, 0.0, x, pays - 1, free_core=True)
    assert path == "background" and "second core" in why
    assert _fastpath.choose_path(layers, flatten, 0.0, x, 10, free_core=True)[0] == "fast"
    # A long run the compile does not pay for compiles it for the next runs.
    later = math.ceil(_fastpath.FOR_LATER_RUNS / (_fastpath.EAGER_PER_LAYER * len(layers)))
    cheap = _fastpath.COLD_COMPILE
    monkeypatch.setattr(_fastpath, "COLD_COMPILE", (cheap[0] * 100, cheap[1] * 100))
    path, why = _fastpath.choose_path(layers, flatten, 0.0, x, later, free_core=True)
    assert path == "background" and "for the next runs" in why
    assert _fastpath.choose_path(layers, flatten, 0.0, x, later - 1, free_core=True)[0] == "fast"
    monkeypatch.setattr(_fastpath, "COLD_COMPILE", cheap)
    key = _fastpath.architecture_key(layers, flatten, 0.0, x)
    (tmp_path / _fastpath._INDEX).write_text(json.dumps({key: {"seconds": 1.0}}))
    warm = _fastpath.WARM_COMPILE[0] + _fastpath.WARM_COMPILE[1] * len(layers)
    steps = math.ceil(warm / _fastpath._saved_per_step(layers))
    path, why = _fastpath.choose_path(layers, flatten, 0.0, x, steps)
    assert path == "compiled" and "on-disk cache" in why
    monkeypatch.setattr(_fastpath, "cpp_compiler", lambda: None)
    assert _fastpath.choose_path(layers, flatten, 0.0, x, 10**9) == (
        "fast",
        "no C++ compiler for torch.compile",
    )
    history = fit(net("tanh", depth=8), data(320), None, epochs=1, progress=False)
    assert history.path.startswith("fast (") and "no C++ compiler" in history.path


def test_the_chapters_layer_shapes_are_bit_equal_to_autograd() -> None:
    """784 -> 300 -> 100 -> 10, as in the chapter: every weight gradient formed as
    autograd forms it (a transposed product differed from it on the 100 -> 10 layer)."""
    torch.manual_seed(0)
    model = sp.Sequential(
        [sp.layers.Flatten(), sp.Dense(300, "selu"), sp.Dense(100, "selu"), sp.Dense(10)],
        input_shape=(28, 28),
    )
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32 * 10, 28, 28, generator=generator)
    y = torch.randint(0, 10, (32 * 10,), generator=generator)
    trainer = DenseStackTrainer(model, lr=0.01)
    optimizer = torch.optim.SGD(other.parameters(), lr=0.01)
    with threads(1):  # bit for bit on one thread (see train_both)
        for step in range(10):
            xb, yb = x[step * 32 : (step + 1) * 32], y[step * 32 : (step + 1) * 32]
            trainer.step(xb, yb)
            optimizer.zero_grad()
            nn.functional.cross_entropy(other(xb), yb).backward()
            optimizer.step()
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
def test_a_mixed_stack_with_non_zero_biases_matches_autograd(momentum: float) -> None:
    """Each layer its own activation (every one the fast path knows, PReLU and RReLU
    included) and biases far from zero, as autoinit writes for non-zero-mean activations:
    the fast path takes it, with autograd's losses and weights after 100 steps."""
    names = [n for n in ACTIVATIONS if n != "linear"] + ["logistic", "swish"]
    torch.manual_seed(5)
    hidden = [sp.Dense(32, name, kernel_initializer=sp.init.MATCHING[name]) for name in names]
    model = sp.Sequential(
        [sp.layers.Flatten(), *hidden, sp.Dense(10, "softmax")], input_shape=(8, 8)
    )
    with torch.no_grad():
        for layer in hidden:
            layer.bias.uniform_(-0.5, 0.5)
    fast_model, slow_model, fast, slow = train_both(model, momentum)
    assert fast["path"].startswith("fast") and slow["path"].startswith("autograd")
    assert fast["loss"] == slow["loss"]  # bit for bit, on one thread (see train_both)
    for p, q in zip(fast_model.parameters(), slow_model.parameters(), strict=True):
        assert torch.equal(p, q)
