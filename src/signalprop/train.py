"""A small, explicit training loop for the studies: ``fit(model, train, valid, ...)``.

Shuffled mini-batches from in-memory tensors, cross-entropy, accuracy,
validation every epoch, optional :func:`~signalprop.diagnose` snapshots, a
progress bar, and a :class:`History` of plain numbers. A non-finite loss
stops the run with a record of when and where (a diagnosis of the batch that
blew up), not a crash. The same seed gives the same history on the same
machine.

Examples:
    >>> import torch, signalprop as sp
    >>> model = sp.Sequential([sp.Dense(16, "selu"), sp.Dense(3)], input_shape=(4,))
    >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> history = fit(model, (x, y), None, epochs=2, progress=False)
    >>> len(history.loss)
    2
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signalprop import _cancel
from signalprop._progress import Progress, say
from signalprop._validation import check_int, check_option, check_real, invalid_parameter

if TYPE_CHECKING:
    from signalprop.monitor import Monitor

__all__ = ["History", "evaluate", "fit"]

#: Optimizer names and their classes; ``momentum`` applies to SGD and RMSprop.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "nadam": torch.optim.NAdam,
    "rmsprop": torch.optim.RMSprop,
}
#: The optimizers that take ``momentum``; the others refuse a non-zero one.
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")

Callback = Callable[[int, dict[str, float]], bool | None]
Data = tuple[Tensor, Tensor]


@dataclass
class History:
    """What :func:`fit` measured, one entry per finished epoch.

    Attributes:
        epoch: Epoch numbers, from 1.
        loss, accuracy: Mean training loss and accuracy over each epoch.
        val_loss, val_accuracy: On the validation set after each epoch (empty
            without one).
        epoch_time: Wall time of each epoch in seconds (training only).
        steps: Optimizer steps taken in all.
        stopped: ``None`` if every epoch ran; else why and where training
            stopped (``{"reason", "epoch", "step", ...}``).
        diagnostics: Epoch -> ``Report.to_dict()`` of the snapshots taken
            (epoch 0 is before training).
        path: The training path that ran, and why: ``"autograd (why)"``,
            ``"fast (why)"`` (``"fast (compiling failed: reason; trained on the
            fast path)"`` when a compile failed), or ``"compiled (why)"``, followed
            by ``"; the first N steps eager, while ..."`` when the compiled step
            took over during the run. With ``path="auto"``, ``why`` ends with the
            numbers the rule weighed that were measured on this machine
            (``"measured: eager 10.4 ms/step (the median of 20 steps), compiled
            7.14 ms/step last time"``) and those it assumed (``"assumed (the
            rule's constants): ..."``).

    Examples:
        >>> import torch, signalprop as sp
        >>> from signalprop.train import fit
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
        >>> model = sp.Sequential(
        ...     [sp.Dense(32, 'selu', kernel_initializer='lecun_normal'), sp.Dense(3)],
        ...     input_shape=(20,),
        ... )
        >>> history = fit(model, (x, y), None, epochs=2, path='fast', progress=False)
        >>> history.epoch, len(history.loss)
        ([1, 2], 2)
    """

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    steps: int = 0
    stopped: dict[str, Any] | None = None
    diagnostics: dict[int, dict[str, Any]] = field(default_factory=dict)
    path: str = "autograd"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serializable; diagnostics keyed by epoch as strings)."""
        data = asdict(self)
        data["diagnostics"] = {str(k): v for k, v in self.diagnostics.items()}
        return data


def _output_logits(model: nn.Module) -> nn.Module | None:
    """The model's final softmax module, if its output is probabilities."""
    modules = list(model.modules())
    last = modules[-1] if modules else None
    return last if isinstance(last, nn.Softmax) else None


@contextlib.contextmanager
def _logits_of(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Capture the input of a final softmax, so the loss is computed on logits.

    Cross-entropy on logits equals the negative log-likelihood of the softmax
    output without the precision lost by taking the log of a probability.
    """
    captured: dict[str, Tensor] = {}
    softmax = _output_logits(model)
    if softmax is None:
        yield captured
        return

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        captured["logits"] = args[0]

    handle = softmax.register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _loss_and_correct(
    output: Tensor, captured: dict[str, Tensor], y: Tensor
) -> tuple[Tensor, Tensor]:
    logits = captured.pop("logits", output)
    loss = F.cross_entropy(logits, y)
    correct = (output.argmax(dim=1) == y).sum()
    return loss, correct


def evaluate(model: nn.Module, data: Data, *, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``, in eval mode, no gradients.

    The model's training mode is restored afterwards.

    Examples:
        >>> import torch, signalprop as sp
        >>> from signalprop.train import evaluate
        >>> model = sp.Sequential([sp.Dense(3)], input_shape=(20,))
        >>> loss, accuracy = evaluate(model, (torch.randn(100, 20), torch.randint(0, 3, (100,))))
        >>> 0 <= accuracy <= 1
        True
    """
    x, y = data
    if len(x) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64)
    total_correct = 0
    try:
        with torch.no_grad(), _logits_of(model) as captured:
            for start in range(0, len(x), batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                loss, correct = _loss_and_correct(model(xb), captured, yb)
                total_loss += loss.double() * len(xb)
                total_correct += int(correct)
    finally:
        model.train(was_training)
    return float(total_loss) / len(x), total_correct / len(x)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """PyTorch on one intra-op thread inside the block."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _flushing_denormals(enabled: bool) -> Iterator[None]:
    """Flush subnormal floats to zero inside the block (PyTorch's default is off)."""
    if not enabled or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _check_data(data: Any, param: str) -> Data:
    if (
        not isinstance(data, tuple | list)
        or len(data) != 2
        or not all(isinstance(t, Tensor) for t in data)
    ):
        raise invalid_parameter(
            param, "fit", "a pair of tensors (inputs, targets)", type(data).__name__
        )
    x, y = data
    if len(x) != len(y):
        raise invalid_parameter(
            param, "fit", "inputs and targets of the same length", f"{len(x)} and {len(y)}"
        )
    if y.is_floating_point():
        raise invalid_parameter(param, "fit", "integer class labels as targets", str(y.dtype))
    return x, y


def _make_optimizer(
    model: nn.Module, optimizer: str | torch.optim.Optimizer, lr: float, momentum: float
) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    name = check_option(optimizer, OPTIMIZERS, param="optimizer", caller="fit")
    kwargs: dict[str, Any] = {"lr": lr}
    if name in MOMENTUM_OPTIMIZERS:
        kwargs["momentum"] = momentum
    elif momentum:
        raise invalid_parameter("momentum", "fit", f"0 with optimizer {name!r}", momentum)
    return OPTIMIZERS[name](model.parameters(), **kwargs)


def _choose_path(
    model: nn.Module,
    path: str,
    optimizer: str | torch.optim.Optimizer,
    x: Tensor,
    lr: float,
    momentum: float,
    batch_size: int,
    steps: int,
    y: Tensor,
    compile_for: int,
    free_core: bool,
) -> tuple[Any, Callable[[], str]]:
    """The fast-path trainer (or None), and what says which path ran and why (asked during
    the run and at its end: a compiled or ``"auto"`` trainer knows only then)."""
    from signalprop._fastpath import (
        AutoDenseStackTrainer,
        CompiledDenseStackTrainer,
        DenseStackTrainer,
        plan,
    )

    def saying(text: str) -> Callable[[], str]:
        return lambda: text

    if path == "autograd":
        return None, saying("autograd (asked for)")
    reason = None
    planned = None
    if optimizer != "sgd":
        reason = "the optimizer is not plain SGD"
    elif x.dtype != torch.float32:
        reason = f"the inputs are {x.dtype}, not float32"
    else:
        planned = plan(model)
        if isinstance(planned, str):
            reason = planned
    if reason is not None or planned is None or isinstance(planned, str):
        reason = reason or "the model does not qualify"
        if path in ("fast", "compiled"):
            raise invalid_parameter("path", "fit", "'auto' or 'autograd' here", path, hint=reason)
        return None, saying(f"autograd ({reason})")
    if path == "auto":
        with _one_thread():  # as the fast paths train (see fit): keys and timings are theirs
            auto = AutoDenseStackTrainer(
                model, lr, momentum, x[:batch_size], y[:batch_size], max(steps, compile_for),
                run_steps=steps, free_core=free_core,
            )  # fmt: skip
        return auto, auto.describe
    if path == "compiled":
        compiled = CompiledDenseStackTrainer(model, lr, momentum)
        return compiled, lambda: compiled.describe("asked for")
    return DenseStackTrainer(model, lr, momentum), saying("fast (asked for)")


def _stopped_line(stopped: dict[str, Any], epochs: int, steps_per_epoch: int) -> str:
    """The one line :func:`fit` prints when it ends early: when and why.

    Examples:
        >>> stopped = {"reason": "non-finite loss", "epoch": 2, "step": 7, "loss": math.nan}
        >>> print(_stopped_line(stopped, 5, 100))  # doctest: +NORMALIZE_WHITESPACE
        stopped early at epoch 2/5, step 7/100: the loss was nan (non-finite), no step
        taken on it; history.stopped holds a diagnosis of the batch
        >>> _stopped_line({"reason": "stopped by a callback", "epoch": 3}, 5, 100)
        'stopped early after epoch 3/5: a callback asked to stop'
    """
    if stopped["reason"] == "non-finite loss":
        return (
            f"stopped early at epoch {stopped['epoch']}/{epochs}, step {stopped['step']}/"
            f"{steps_per_epoch}: the loss was {stopped['loss']} (non-finite), no step taken on "
            "it; history.stopped holds a diagnosis of the batch"
        )
    return f"stopped early after epoch {stopped['epoch']}/{epochs}: a callback asked to stop"


def fit(
    model: nn.Module,
    train: Data,
    valid: Data | None,
    *,
    epochs: int,
    batch_size: int = 32,
    optimizer: str | torch.optim.Optimizer = "sgd",
    lr: float = 1e-3,
    momentum: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    diagnose_at: Sequence[int] = (),
    diagnose_batch: int = 256,
    path: str = "auto",
    flush_denormal: bool = True,
    monitor: Monitor | None = None,
    compile_for: int = 0,
) -> History:
    """Train ``model`` on in-memory tensors and return its :class:`History`.

    Each epoch shuffles the training set (a generator seeded from ``seed``),
    takes mini-batches of ``batch_size``, minimizes cross-entropy (on the
    logits when the model ends with a softmax), then evaluates on ``valid``.
    Random layers (dropout, RReLU) draw from PyTorch's global generator,
    seeded with ``seed`` inside a fork of its state, so the caller's random
    state is untouched and the same seed gives the same history.

    Args:
        model: Any ``nn.Module`` mapping inputs to class scores or probabilities.
        train: ``(inputs, integer labels)``.
        valid: The same for validation, or ``None``.
        epochs: Number of epochs, ≥ 1.
        batch_size: Mini-batch size, ≥ 1.
        optimizer: ``"sgd"``, ``"adam"``, ``"nadam"``, ``"rmsprop"`` or an optimizer.
        lr: Learning rate, > 0.
        momentum: Momentum for SGD and RMSprop.
        seed: Seeds the shuffling and random layers.
        progress: Show progress: a bar on a terminal, a line at each tenth of an
            epoch otherwise, and one line per epoch with its numbers in both cases;
            a run that ends early says in one line when and why (a non-finite loss
            at epoch E, step N; a callback). Without progress, only
            ``history.stopped`` says so.
        callbacks: ``callback(epoch, logs) -> stop?`` after each epoch, with
            ``logs`` holding loss, accuracy, val_loss, val_accuracy.
        diagnose_at: Epochs after which to record a :func:`~signalprop.diagnose`
            snapshot on the first ``diagnose_batch`` training examples (0:
            before training).
        diagnose_batch: Examples in a snapshot.
        path: ``"auto"`` trains plain stacks of dense layers with SGD on the
            hand-written fast path (:mod:`signalprop._fastpath`, the same
            arithmetic as autograd), compiled by ``torch.compile`` when that
            pays off for this run (the rule, from measurements, is
            :func:`signalprop._fastpath.choose_path`'s: a C++ compiler, and the
            time saved over the run's full batches covers the compile time,
            a few seconds for an architecture in the on-disk cache), and
            anything else with autograd. ``"autograd"`` always uses autograd;
            ``"fast"`` insists on the eager fast path and ``"compiled"`` on the
            compiled one (equal to it up to float32 rounding), and both raise
            if the model does not qualify. With ``"auto"`` the first 21 full
            batches train on the eager fast path, timed: the rule weighs this
            machine's eager step time, and the compiled step's time and load
            time that earlier runs here noted in the compile cache's index.
            ``history.path`` says which path ran, and why, and says so when a
            compile failed and the run trained on the eager fast path.
            Compiled steps are cached on disk in
            :func:`signalprop._fastpath.compile_cache_dir`; one process at a
            time compiles an architecture (a lock per architecture there),
            others train eagerly meanwhile and then load it.
        flush_denormal: Flush subnormal floats (below 1.2e-38) to zero while
            training, as TensorFlow does on CPUs. A deep net whose gradients
            vanish otherwise spends most of its time on subnormal arithmetic
            (a 100-layer logistic net trains about 3x slower); the values
            flushed are far below anything that changes a weight.
        compile_for: With ``path="auto"``, the steps that will share this run's
            compiled step if they are more than this run's own (a study's runs of
            one architecture in one process).
        monitor: A :class:`~signalprop.Monitor` of ``model`` to feed each step
            (on the fast paths too, from their own tensors: the numbers are
            autograd's). It is left open: close it, or use it as a context
            manager, when done.

    Returns:
        The :class:`History`; ``history.stopped`` says if and why it ended early.

    Examples:
        >>> import torch, signalprop as sp
        >>> from signalprop.train import fit
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
        >>> model = sp.Sequential(
        ...     [sp.Dense(32, 'selu', kernel_initializer='lecun_normal'), sp.Dense(3)],
        ...     input_shape=(20,),
        ... )
        >>> valid = (x[:64], y[:64])
        >>> history = fit(model, (x, y), valid, epochs=2, lr=0.01, path='fast', progress=False)
        >>> len(history.val_accuracy), history.path.split(' ')[0]
        (2, 'fast')
    """
    caller = "fit"
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", caller, "an nn.Module", type(model).__name__)
    x_train, y_train = _check_data(train, "train")
    valid_data = None if valid is None else _check_data(valid, "valid")
    epochs = check_int(epochs, param="epochs", caller=caller, low=1)
    batch_size = check_int(batch_size, param="batch_size", caller=caller, low=1)
    lr = check_real(lr, param="lr", caller=caller, low=0.0, low_inclusive=False)
    momentum = check_real(momentum, param="momentum", caller=caller, low=0.0)
    seed = check_int(seed, param="seed", caller=caller, low=0)
    snapshots = {check_int(e, param="diagnose_at", caller=caller, low=0) for e in diagnose_at}
    diagnose_batch = check_int(diagnose_batch, param="diagnose_batch", caller=caller, low=1)
    check_option(path, ("auto", "autograd", "compiled", "fast"), param="path", caller=caller)
    compile_for = check_int(compile_for, param="compile_for", caller=caller, low=0)
    if monitor is not None:
        from signalprop.monitor import Monitor

        if not isinstance(monitor, Monitor):
            raise invalid_parameter("monitor", caller, "a signalprop.Monitor or None", monitor)
        if monitor.model is not model and monitor.model is not getattr(model, "module", None):
            raise invalid_parameter(
                "monitor", caller, "a Monitor of the model being trained", repr(monitor)
            )
    full_batches = epochs * (len(x_train) // batch_size)  # an epoch's last runs eagerly
    # The fast paths train on one thread: their operations are too small to share, and
    # with two the 100-layer SELU net ran at half speed after its first epoch (measured;
    # the flushing of subnormals, set per thread, is the likely cause, not verified). A
    # second core is left for compiling the step in the background.
    free_core = torch.get_num_threads() >= 2 and (os.cpu_count() or 1) >= 2
    trainer, describe = _choose_path(
        model, path, optimizer, x_train, lr, momentum, batch_size, full_batches, y_train,
        compile_for, free_core,
    )  # fmt: skip
    # The fast path updates the weights itself: an optimizer is only built for autograd.
    opt = _make_optimizer(model, optimizer, lr, momentum) if trainer is None else None
    if monitor is not None and opt is not None:
        monitor.watch_optimizer(opt)

    from signalprop.diagnostics import diagnose

    history = History(path=describe())
    probe = (x_train[:diagnose_batch], y_train[:diagnose_batch])
    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    shuffler = torch.Generator().manual_seed(seed)
    with (
        torch.random.fork_rng(devices=[]),
        _logits_of(model) as captured,
        _flushing_denormals(flush_denormal),
        _one_thread() if trainer is not None else contextlib.nullcontext(),
    ):
        torch.manual_seed(seed)
        if 0 in snapshots:
            history.diagnostics[0] = diagnose(model, probe[0], probe[1]).to_dict()
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=shuffler)
            total_loss = torch.zeros((), dtype=torch.float64)
            total_correct = torch.zeros((), dtype=torch.int64)
            start = time.perf_counter()
            bar = Progress(steps_per_epoch, f"epoch {epoch}/{epochs}", enabled=progress)
            try:
                for step in range(steps_per_epoch):
                    _cancel.check()  # a study's driver that stopped stops its Dask runs
                    index = order[step * batch_size : (step + 1) * batch_size]
                    xb, yb = x_train[index], y_train[index]
                    if trainer is not None:
                        loss, correct = trainer.step(xb, yb, monitor)
                    else:
                        assert opt is not None
                        opt.zero_grad(set_to_none=True)
                        loss, correct = _loss_and_correct(model(xb), captured, yb)
                    if not torch.isfinite(loss):
                        if monitor is not None:
                            monitor.loss_not_finite(xb, yb)
                        report = diagnose(model, xb, yb)
                        history.stopped = {
                            "reason": "non-finite loss",
                            "epoch": epoch,
                            "step": step + 1,
                            "loss": float(loss.detach()),
                            "findings": [f.__dict__ for f in report.findings],
                        }
                        if progress:
                            say(_stopped_line(history.stopped, epochs, steps_per_epoch))
                        break
                    if opt is not None:
                        loss.backward()
                        opt.step()
                    elif monitor is not None:
                        monitor.fast_end(xb, yb)
                    if monitor is not None:
                        monitor.step()
                    history.steps += 1
                    total_loss += loss.detach().double() * len(xb)
                    total_correct += correct
                    if step % 50 == 0 and bar.drawing:
                        seen = min(n, (step + 1) * batch_size)
                        bar.set_postfix(
                            loss=f"{float(total_loss) / seen:.4f}",
                            accuracy=f"{int(total_correct) / seen:.4f}",
                        )
                    bar.update(1)
            finally:
                bar.close()
            if history.stopped is not None:
                break
            history.epoch_time.append(time.perf_counter() - start)
            history.epoch.append(epoch)
            history.loss.append(float(total_loss) / n)
            history.accuracy.append(int(total_correct) / n)
            logs = {"loss": history.loss[-1], "accuracy": history.accuracy[-1]}
            if valid_data is not None:
                val_loss, val_accuracy = evaluate(model, valid_data)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_accuracy)
                logs.update(val_loss=val_loss, val_accuracy=val_accuracy)
            if progress:  # one line per epoch, on a terminal or not (Keras's verbose=2)
                say(
                    f"epoch {epoch}/{epochs}: "
                    + ", ".join(f"{key} {value:.4f}" for key, value in logs.items())
                    + f" ({history.epoch_time[-1]:.1f} s)"
                )
            if epoch in snapshots:
                history.diagnostics[epoch] = diagnose(model, probe[0], probe[1]).to_dict()
            if any(callback(epoch, logs) for callback in callbacks):
                history.stopped = {"reason": "stopped by a callback", "epoch": epoch}
                if progress:
                    say(_stopped_line(history.stopped, epochs, steps_per_epoch))
                break
    history.path = describe()
    return history
