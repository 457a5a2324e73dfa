"""fit(): the training loop's numbers, reproducibility, stopping and errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import signalprop as sp
from signalprop.train import evaluate, fit


def blobs(n: int = 600, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable Gaussian blobs: a net must learn them in a few epochs."""
    generator = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, 8, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    return centers[y] + torch.randn(n, 8, generator=generator), y


def small_net(seed: int = 1, activation: str = "selu", softmax: bool = True) -> sp.Sequential:
    torch.manual_seed(seed)
    layers = [sp.Dense(32, activation, kernel_initializer="lecun_normal") for _ in range(3)]
    layers.append(sp.Dense(4, "softmax" if softmax else None))
    return sp.Sequential(layers, input_shape=(8,))


def test_fit_learns_and_records_every_epoch() -> None:
    x, y = blobs()
    history = fit(
        small_net(), (x[:500], y[:500]), (x[500:], y[500:]), epochs=4, lr=0.05, progress=False
    )
    assert history.epoch == [1, 2, 3, 4]
    assert len(history.loss) == len(history.val_accuracy) == len(history.epoch_time) == 4
    assert history.loss[-1] < history.loss[0]
    assert history.val_accuracy[-1] > 0.9  # separable blobs: far above chance (0.25)
    assert history.steps == 4 * math.ceil(500 / 32)
    assert history.stopped is None


def test_training_loss_is_cross_entropy_on_logits() -> None:
    """The mean epoch loss equals a recomputation when lr is 0 (the model never changes)."""
    x, y = blobs(200)
    model = small_net()
    history = fit(model, (x, y), None, epochs=1, lr=1e-30, progress=False)
    with torch.no_grad():
        expected = nn.functional.nll_loss(torch.log(model(x)), y).item()
    assert history.loss[0] == pytest.approx(expected, rel=1e-5)
    loss, accuracy = evaluate(model, (x, y))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert accuracy == pytest.approx((model(x).argmax(1) == y).float().mean().item())


def test_logits_and_softmax_models_train_identically() -> None:
    """A final softmax is handled by taking the loss on its input: same numbers as logits."""
    x, y = blobs()
    with_softmax = fit(small_net(softmax=True), (x, y), None, epochs=2, lr=0.05, progress=False)
    without = fit(small_net(softmax=False), (x, y), None, epochs=2, lr=0.05, progress=False)
    assert with_softmax.loss == pytest.approx(without.loss, rel=1e-5)


def test_same_seed_same_history_and_callers_rng_untouched() -> None:
    x, y = blobs()
    models = [small_net(activation="rrelu") for _ in range(3)]
    state = torch.get_rng_state()
    runs = [
        fit(model, (x, y), (x[:100], y[:100]), epochs=2, lr=0.05, seed=7, progress=False)
        for model in models[:2]
    ]
    assert torch.equal(torch.get_rng_state(), state)  # fit forks the global RNG
    first, second = (run.to_dict() for run in runs)
    first.pop("epoch_time"), second.pop("epoch_time")
    assert first == second
    other = fit(models[2], (x, y), None, epochs=2, lr=0.05, seed=8, progress=False)
    assert other.loss != first["loss"]


def test_non_finite_loss_stops_with_a_record_not_a_crash() -> None:
    x, y = blobs()
    history = fit(small_net(), (x, y), None, epochs=3, lr=1e6, progress=False)
    assert history.stopped is not None
    assert history.stopped["reason"] == "non-finite loss"
    assert history.stopped["epoch"] == 1 and history.stopped["step"] >= 1
    assert history.epoch == []  # the epoch did not finish
    assert any(f["kind"] == "non_finite" for f in history.stopped["findings"])


def test_diagnose_snapshots_and_callbacks() -> None:
    x, y = blobs()
    seen = []

    def stop_after_two(epoch: int, logs: dict[str, float]) -> bool:
        seen.append((epoch, sorted(logs)))
        return epoch == 2

    history = fit(
        small_net(),
        (x, y),
        (x[:50], y[:50]),
        epochs=5,
        lr=0.05,
        progress=False,
        diagnose_at=(0, 2),
        callbacks=[stop_after_two],
    )
    assert sorted(history.diagnostics) == [0, 2]
    assert history.diagnostics[0]["batch_size"] == 256
    assert history.stopped == {"reason": "stopped by a callback", "epoch": 2}
    assert seen[0] == (1, ["accuracy", "loss", "val_accuracy", "val_loss"])
    assert len(history.epoch) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "The 'epochs' parameter of fit must be an integer >= 1. Got 0 instead."),
        ({"epochs": 1, "lr": 0}, "The 'lr' parameter of fit must be a finite real number > 0"),
        ({"epochs": 1, "optimizer": "sgdd"}, "Did you mean 'sgd'?"),
        ({"epochs": 1, "batch_size": 0}, "The 'batch_size' parameter of fit must be"),
        ({"epochs": 1, "optimizer": "adam", "momentum": 0.9}, "The 'momentum' parameter of fit"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, message) -> None:
    x, y = blobs(50)
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(small_net(), (x, y), None, progress=False, **kwargs)


def test_fit_rejects_bad_data() -> None:
    x, y = blobs(50)
    with pytest.raises(ValueError, match=re.escape("The 'train' parameter of fit must be")):
        fit(small_net(), (x, y[:10]), None, epochs=1, progress=False)
    with pytest.raises(ValueError, match="integer class labels"):
        fit(small_net(), (x, y.float()), None, epochs=1, progress=False)
    with pytest.raises(ValueError, match=re.escape("The 'valid' parameter of fit must be")):
        fit(small_net(), (x, y), x, epochs=1, progress=False)  # type: ignore[arg-type]


def test_subnormals_are_flushed_only_while_training() -> None:
    x, y = blobs(64)
    seen = []

    def probe(epoch: int, logs: dict[str, float]) -> None:
        seen.append((torch.tensor([1e-39]) * 1.0).item())

    fit(small_net(), (x, y), None, epochs=1, progress=False, callbacks=[probe])
    assert seen == [0.0]  # flushed inside fit
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0  # and restored after
    fit(
        small_net(), (x, y), None, epochs=1, progress=False, callbacks=[probe], flush_denormal=False
    )
    assert seen[-1] != 0.0
