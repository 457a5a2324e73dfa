"""A hand-written training step for plain stacks of dense layers (the fast path).

The chapter's experiments train deep, narrow dense nets with small batches,
where eager autograd spends its time on per-operation overhead rather than
arithmetic. For a model that is a sequence of dense layers with elementwise
activations, trained by SGD (with or without momentum) on cross-entropy,
:class:`DenseStackTrainer` runs the forward pass, the backward pass and the
update by hand:

* every backward is the kernel autograd itself calls (``elu_backward``,
  ``threshold_backward``, ...) on the tensors autograd would save, applied
  in place where autograd's saved tensors allow (ReLU, logistic, tanh), so
  no more memory is kept than autograd keeps;
* each layer's weights are updated as soon as its gradient is known, after
  the gradient for the layer below has been taken with the old weights;
* there is no graph, no hooks and no optimizer bookkeeping.

The arithmetic is autograd's and ``torch.optim.SGD``'s, operation for
operation (the tests check losses and weights over 100 steps for every
activation). :func:`plan` says why a model
does not qualify, and :func:`signalprop.train.fit` then uses autograd.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signalprop import activations as _activations
from signalprop._model import activation_kind as _activation_kind

__all__ = [
    "AutoDenseStackTrainer",
    "CompiledDenseStackTrainer",
    "DenseStackTrainer",
    "EagerTiming",
    "choose_path",
    "compile_cache_dir",
    "compile_lock",
    "compile_offline",
    "plan",
    "release_compile_lock",
]

_aten = torch.ops.aten
# PyTorch's fused backward kernels, called directly (the overloads skip the packet lookup).
_ELU_BACKWARD: Callable[..., Tensor] = _aten.elu_backward.default
_THRESHOLD_BACKWARD: Callable[..., Tensor] = _aten.threshold_backward.default
_LEAKY_BACKWARD: Callable[..., Tensor] = _aten.leaky_relu_backward.default
_SIGMOID_BACKWARD: Callable[..., Tensor] = _aten.sigmoid_backward.default
_TANH_BACKWARD: Callable[..., Tensor] = _aten.tanh_backward.default
_GELU_BACKWARD: Callable[..., Tensor] = _aten.gelu_backward.default
_SILU_BACKWARD: Callable[..., Tensor] = _aten.silu_backward.default
_MISH_BACKWARD: Callable[..., Tensor] = _aten.mish_backward.default
_SOFTPLUS_BACKWARD: Callable[..., Tensor] = _aten.softplus_backward.default
_RRELU_NOISE: Callable[..., Tensor] = _aten.rrelu_with_noise.default
_RRELU_BACKWARD: Callable[..., Tensor] = _aten.rrelu_with_noise_backward.default
_PRELU: Callable[..., Tensor] = _aten._prelu_kernel.default
_PRELU_BACKWARD: Callable[..., tuple[Tensor, Tensor]] = _aten._prelu_kernel_backward.default
_NLL_BACKWARD: Callable[..., Tensor] = _aten.nll_loss_backward.default
_LOG_SOFTMAX_BACKWARD: Callable[..., Tensor] = _aten._log_softmax_backward_data.default


#: Activations the fast path applies in place on the pre-activation.
_IN_PLACE = ("relu", "sigmoid", "tanh")

#: The loss's own gradient, d loss / d loss.
_ONE = torch.ones(())


def _weight(module: nn.Module | None) -> Tensor:
    weight = getattr(module, "weight", None)
    assert isinstance(weight, Tensor)
    return weight


@dataclass
class _Activation:
    """One layer's activation: kind, arguments, and its module (for PReLU's slope)."""

    kind: str
    module: nn.Module | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def forward(self, z: Tensor, training: bool) -> tuple[Tensor, Tensor | None]:
        """The activation of ``z`` and what the backward needs besides z and the output.

        Activations whose backward works from the output (ReLU, logistic, tanh)
        run in place on ``z``, as autograd's saved tensors allow.
        """
        kind = self.kind
        if kind == "linear":
            return z, None
        if kind == "relu":
            return torch.relu_(z), None
        if kind == "sigmoid":
            return torch.sigmoid_(z), None
        if kind == "tanh":
            return torch.tanh_(z), None
        if kind == "leaky_relu":
            return F.leaky_relu(z, self.args["alpha"]), None
        if kind == "elu":
            return F.elu(z, self.args["alpha"]), None
        if kind == "selu":
            return torch.selu(z), None
        if kind == "gelu":
            return F.gelu(z, approximate=self.args["approximate"]), None
        if kind == "silu":
            return F.silu(z), None
        if kind == "mish":
            return F.mish(z), None
        if kind == "softplus":
            return F.softplus(z, self.args["beta"], self.args["threshold"]), None
        if kind == "prelu":
            return _PRELU(z, _weight(self.module).detach()), None
        if kind == "rrelu":
            noise = torch.empty_like(z)
            lower, upper = self.args["lower"], self.args["upper"]
            return _RRELU_NOISE(z, noise, lower, upper, training, None), noise
        raise AssertionError(kind)  # pragma: no cover (plan() admits only the kinds above)

    def backward(
        self, grad: Tensor, z: Tensor, a: Tensor, extra: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """The gradient w.r.t. the pre-activation, by the kernel autograd uses, and
        the gradient w.r.t. the activation's own parameter (PReLU's slope), if any."""
        kind = self.kind
        if kind == "linear":
            return grad, None
        if kind == "relu":
            return _THRESHOLD_BACKWARD(grad, a, 0), None
        if kind == "sigmoid":
            return _SIGMOID_BACKWARD(grad, a), None
        if kind == "tanh":
            return _TANH_BACKWARD(grad, a), None
        if kind == "leaky_relu":
            return _LEAKY_BACKWARD(grad, z, self.args["alpha"], False), None
        if kind == "elu":
            return _ELU_BACKWARD(grad, self.args["alpha"], 1.0, 1.0, False, z), None
        if kind == "selu":
            alpha, scale = _activations.SELU_ALPHA, _activations.SELU_SCALE
            return _ELU_BACKWARD(grad, alpha, scale, 1.0, False, z), None
        if kind == "gelu":
            return _GELU_BACKWARD(grad, z, approximate=self.args["approximate"]), None
        if kind == "silu":
            return _SILU_BACKWARD(grad, z), None
        if kind == "mish":
            return _MISH_BACKWARD(grad, z), None
        if kind == "softplus":
            beta, threshold = self.args["beta"], self.args["threshold"]
            return _SOFTPLUS_BACKWARD(grad, z, beta, threshold), None
        if kind == "rrelu":
            assert extra is not None
            lower, upper = self.args["lower"], self.args["upper"]
            return _RRELU_BACKWARD(grad, z, extra, lower, upper, True, False), None
        if kind == "prelu":
            weight = _weight(self.module).detach()
            result, weight_grad = _PRELU_BACKWARD(grad, z, weight)
            slope = weight_grad.sum().reshape(1) if weight.numel() == 1 else weight_grad.sum(0)
            return result, slope
        raise AssertionError(kind)  # pragma: no cover


@dataclass
class _Layer:
    weight: nn.Parameter
    bias: nn.Parameter | None
    activation: _Activation

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


def _activation_of(module: nn.Module) -> _Activation | str:
    """The fast-path description of an activation module, or why it has none."""
    name = _activations.name_of(module)
    if name is None:
        return f"activation {type(module).__name__} has no hand-written backward"
    name = {"logistic": "sigmoid", "swish": "silu"}.get(name, name)
    if name == "leaky_relu":
        return _Activation(name, module, {"alpha": float(module.negative_slope)})  # type: ignore[arg-type]
    if name == "elu":
        return _Activation(name, module, {"alpha": float(module.alpha)})  # type: ignore[arg-type]
    if name == "gelu":
        return _Activation(name, module, {"approximate": str(module.approximate)})
    if name == "softplus":
        args = {"beta": float(module.beta), "threshold": float(module.threshold)}  # type: ignore[arg-type]
        return _Activation(name, module, args)
    if name == "rrelu":
        args = {"lower": float(module.lower), "upper": float(module.upper)}  # type: ignore[arg-type]
        return _Activation(name, module, args)
    if name == "prelu":
        weight = module.weight
        if not isinstance(weight, Tensor) or weight.dim() != 1:
            return "PReLU without a 1-D weight"
        return _Activation(name, module)
    if name == "softmax":
        return "softmax inside the stack"
    return _Activation(name, module)


def plan(model: nn.Module) -> tuple[list[_Layer], bool] | str:
    """The model as dense layers for the fast path, or the reason it is not one.

    Qualifies: an ``nn.Sequential`` (signalprop's included) of an optional
    leading ``Flatten``, then :class:`~signalprop.layers.Dense` layers and/or
    ``nn.Linear`` layers each optionally followed by an activation module,
    optionally ending with a softmax (whose input is then the logits), all
    float32. Returns ``(layers, flatten_first)``.
    """
    if not isinstance(model, nn.Sequential):
        return f"the model is a {type(model).__name__}, not an nn.Sequential"
    children = list(model.children())
    flatten = False
    if children and isinstance(children[0], nn.Flatten):
        if (children[0].start_dim, children[0].end_dim) != (1, -1):
            return "Flatten with other dimensions than (1, -1)"
        flatten = True
        children = children[1:]
    if children and isinstance(children[-1], nn.Softmax):
        children = children[:-1]  # the loss is taken on its input, as fit() does
    layers: list[_Layer] = []
    index = 0
    while index < len(children):
        module = children[index]
        if getattr(module, "_signalprop_dense", False):
            activation_module = module.activation
            assert isinstance(activation_module, nn.Module)
            last = index == len(children) - 1
            if isinstance(activation_module, nn.Softmax) and last:
                activation: _Activation | str = _Activation("linear")
            else:
                activation = _activation_of(activation_module)
            if isinstance(activation, str):
                return activation
            layers.append(_Layer(module.weight, module.bias, activation))  # type: ignore[arg-type]
            index += 1
            continue
        if type(module) is nn.Linear:
            follow = children[index + 1] if index + 1 < len(children) else None
            if (
                follow is not None
                and not isinstance(follow, nn.Linear)
                and not getattr(follow, "_signalprop_dense", False)
            ):
                activation = _activation_of(follow)
                if isinstance(activation, str):
                    return activation
                index += 2
            else:
                activation = _Activation("linear")
                index += 1
            layers.append(_Layer(module.weight, module.bias, activation))  # type: ignore[arg-type]
            continue
        if isinstance(module, nn.Identity) or (isinstance(module, nn.Dropout) and module.p == 0):
            index += 1
            continue
        return f"layer {type(module).__name__} has no hand-written backward"
    if not layers:
        return "the model has no dense layers"
    for layer in layers:
        parameters = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in parameters):
            return "parameters that are not float32 on the CPU"
    for previous, following in itertools.pairwise(layers):
        if previous.out_features != following.in_features:
            return "layer sizes do not chain"
    return layers, flatten


class DenseStackTrainer:
    """SGD on cross-entropy for a model :func:`plan` accepts, by hand.

    Args:
        model: The model; its parameters are updated in place.
        lr: Learning rate.
        momentum: SGD momentum (PyTorch's convention: v ← μv + g, w ← w − lr·v).

    Examples:
        >>> import torch, signalprop as sp
        >>> model = sp.Sequential([sp.Dense(8, "selu"), sp.Dense(3)], input_shape=(4,))
        >>> trainer = DenseStackTrainer(model, lr=0.1)
        >>> loss, correct = trainer.step(torch.randn(16, 4), torch.randint(0, 3, (16,)))
    """

    def __init__(self, model: nn.Module, lr: float, momentum: float = 0.0) -> None:
        planned = plan(model)
        if isinstance(planned, str):
            raise ValueError(f"the fast path cannot train this model: {planned}")
        self.model = model
        self.layers, self.flatten = planned
        self.lr = lr
        self.momentum = momentum
        self._velocity: list[tuple[Tensor, Tensor | None]] = []
        if momentum:
            self._velocity = [
                (
                    torch.zeros_like(layer.weight),
                    None if layer.bias is None else torch.zeros_like(layer.bias),
                )
                for layer in self.layers
            ]
        self._prelu_velocity: dict[int, Tensor] = {}
        self._watched_rows: list[tuple[str, str, str | None, nn.Parameter, bool]] | None = None

    def _update(self, index: int, layer: _Layer, weight_grad: Tensor, grad: Tensor) -> None:
        """SGD on one layer, with the gradients computed as autograd computes them.

        W's gradient is gᵀa, contiguous in W's layout, as ``addmm``'s backward forms
        it for ``F.linear``'s transposed weight (see
        :meth:`step`), and the update is ``torch.optim.SGD``'s: w ← w − lr·g,
        or v ← μv + g, w ← w − lr·v.
        """
        with torch.no_grad():
            if not self.momentum:
                layer.weight.add_(weight_grad, alpha=-self.lr)
                if layer.bias is not None:
                    layer.bias.add_(grad.sum(0), alpha=-self.lr)
                return
            velocity, bias_velocity = self._velocity[index]
            velocity.mul_(self.momentum).add_(weight_grad)
            layer.weight.add_(velocity, alpha=-self.lr)
            if layer.bias is not None:
                assert bias_velocity is not None
                bias_velocity.mul_(self.momentum).add_(grad.sum(0))
                layer.bias.add_(bias_velocity, alpha=-self.lr)

    def _update_slope(self, index: int, activation: _Activation, weight_grad: Tensor) -> None:
        weight = _weight(activation.module)
        with torch.no_grad():
            if self.momentum:
                velocity = self._prelu_velocity.setdefault(index, torch.zeros_like(weight))
                velocity.mul_(self.momentum).add_(weight_grad)
                weight.add_(velocity, alpha=-self.lr)
            else:
                weight.add_(weight_grad, alpha=-self.lr)

    def watched_layers(self) -> list[tuple[str, str, str | None, nn.Parameter, bool]]:
        """Each layer as a :class:`~signalprop.Monitor` row: name, type, activation
        kind, weight, and whether an activation module is applied."""
        owners = {
            id(module.weight): (name, module)
            for name, module in self.model.named_modules()
            if isinstance(getattr(module, "weight", None), nn.Parameter)
        }
        rows = []
        for layer in self.layers:
            name, module = owners[id(layer.weight)]
            activation = layer.activation.module
            kind = _activation_kind(activation) if activation is not None else None
            rows.append((name, type(module).__name__, kind, layer.weight, activation is not None))
        return rows

    def step(self, x: Tensor, y: Tensor, monitor: Any = None) -> tuple[Tensor, Tensor]:
        """One SGD step on a batch; returns the mean loss and the number of correct guesses.

        Each layer's weights are updated as soon as its gradient is known,
        after the gradient for the layer below has been taken with the old
        weights. A :class:`~signalprop.Monitor` passed as ``monitor`` is fed
        this step's own tensors on the steps it records.
        """
        training = self.model.training
        if monitor is not None and self._watched_rows is None:
            self._watched_rows = self.watched_layers()
        watch = monitor is not None and monitor.fast_begin(self._watched_rows, x)
        with torch.no_grad():
            h = x.reshape(x.shape[0], -1) if self.flatten else x
            inputs: list[Tensor] = []
            saved: list[tuple[Tensor, Tensor, Tensor | None]] = []
            for index, layer in enumerate(self.layers):
                inputs.append(h)
                z = F.linear(h, layer.weight, layer.bias)
                if watch:
                    monitor.fast_layer(index, z, layer.activation.kind in _IN_PLACE)
                a, extra = layer.activation.forward(z, training)
                if watch and layer.activation.module is not None:
                    monitor.fast_activation(index, a)
                saved.append((z, a, extra))
                h = a
            log_probs = torch.log_softmax(h, dim=1)
            loss = F.nll_loss(log_probs, y)
            correct = (h.argmax(dim=1) == y).sum()
            if not torch.isfinite(loss):
                return loss, correct  # as fit() does with autograd: no step on a NaN
            total_weight = torch.tensor(float(len(y)))
            grad = _NLL_BACKWARD(_ONE, log_probs, y, None, 1, -100, total_weight)
            grad = _LOG_SOFTMAX_BACKWARD(grad, log_probs, 1, log_probs.dtype)
            for index in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[index]
                z, a, extra = saved[index]
                grad, slope_grad = layer.activation.backward(grad, z, a, extra)
                below = grad.mm(layer.weight) if index > 0 else None
                weight_grad = grad.t().mm(inputs[index])
                self._update(index, layer, weight_grad, grad)
                if watch:
                    velocity = self._velocity[index][0] if self.momentum else None
                    monitor.fast_gradients(index, grad, weight_grad, self.lr, velocity)
                if slope_grad is not None:
                    self._update_slope(index, layer.activation, slope_grad)
                if below is not None:
                    grad = below
        return loss, correct


class CompiledDenseStackTrainer:
    """The fast path with the whole step compiled by ``torch.compile``.

    The whole step — forward, backward and update — is one compiled graph:
    inductor fuses each layer's activation, its derivative and the weight
    update into loops of its own and calls the matrix products directly from
    a C++ wrapper, so the step runs without Python or dispatcher overhead
    between operations. The arithmetic is the eager fast path's up to
    float32 rounding (fused elementwise code may round differently).

    Compiling a 100-layer net takes about a minute, once per architecture and
    batch size (inductor caches it on disk), and a C++ compiler; batches of another size (an
    epoch's last) run on the eager fast path. PReLU (a learned slope) and
    RReLU (random slopes) are not compiled: such models run eagerly. If
    compiling fails, the trainer keeps the reason in :attr:`failure` (one line)
    and runs eagerly. While another process compiles the same architecture
    (it holds :func:`compile_lock`), the steps run eagerly and the step is
    loaded once that compile is done. :meth:`describe` says what ran.

    The compile cache's index notes what this trainer measured: how long
    loading the step from the cache took, and the compiled step's median time
    over ``TIMED_STEPS`` steps after its first (:func:`_remember`);
    :func:`choose_path` decides the next runs on them.

    ``eager``: the eager fast path's trainer to fall back on and share the
    velocities with, if it has trained already (made here otherwise).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        momentum: float = 0.0,
        *,
        eager: DenseStackTrainer | None = None,
    ) -> None:
        _use_compile_cache()  # before inductor is first used: it sets its own default
        self.eager = DenseStackTrainer(model, lr, momentum) if eager is None else eager
        self.model = model
        self.note = ""
        #: Why compiling failed, in one line, if it did (the steps then ran eagerly).
        self.failure: str | None = None
        layers = self.eager.layers
        self._step: Callable[..., tuple[Tensor, Tensor]] | None = None
        if any(layer.activation.kind in ("prelu", "rrelu") for layer in layers):
            self.note = "PReLU and RReLU are not compiled"
        else:
            try:
                self._step = _compiled_step(
                    [layer.activation for layer in layers],
                    [layer.bias is not None for layer in layers],
                    self.eager.flatten,
                    bool(momentum),
                )
            except Exception as error:  # torch.compile itself (an unusable cache folder)
                self._fail(_one_line(error))
        #: Seconds the first compiled step took (compiling included), once it ran.
        self.compile_seconds: float | None = None
        self._weights = [layer.weight.detach() for layer in layers]
        self._biases = [
            layer.bias.detach() if layer.bias is not None else torch.empty(0) for layer in layers
        ]
        if momentum:
            self._velocities = [v for v, _ in self.eager._velocity]
            self._bias_velocities = [
                b if b is not None else torch.empty(0) for _, b in self.eager._velocity
            ]
        else:
            self._velocities = self._bias_velocities = []
        self._shape: torch.Size | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._errors: IO[str] | None = None
        #: Steps taken on the eager fast path while the step compiled (in the background,
        #: or in another process that held the architecture's compile lock).
        self.eager_steps = 0
        #: Whether another process was compiling this architecture when this one wanted it.
        self.waited_for_another = False
        #: The background compile to start once another process has released its lock
        #: without leaving the step in the cache (its key and description).
        self._pending: tuple[str, str] | None = None
        #: The compile lock this process holds while compiling in the foreground.
        self._lock: int | None = None
        #: The architecture key of the compiled step's batches (one shape).
        self._key: str | None = None
        #: What the first compiled step does: "compile", "load" (from the on-disk cache)
        #: or "seen" (compiled in this process already).
        self._first = "compile"
        #: The compiled steps' times, while they are timed (None once done, or not to be).
        self._step_times: list[float] | None = []
        self._untimed = UNTIMED_STEPS

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.note = f"compiling failed: {reason}"
        self._step = None

    def compile_in_background(self, x: Tensor, y: Tensor) -> None:
        """Compile the step for batches shaped like ``(x, y)`` in another process, on the
        second core, while :meth:`step` trains on the eager fast path.

        Compiling is mostly Python (tracing, code generation): on a thread of
        this process it would fight the training for the interpreter lock and
        slow it to a crawl. The other process (:func:`compile_offline`, one
        thread) fills the on-disk cache; the first step after it is done loads
        the step from there, in seconds.

        One compile per architecture at a time, across processes: this process
        takes the architecture's compile lock (:func:`compile_lock`) and hands
        it to the compiling process, which holds it until it ends. If another
        process holds it (it is compiling the same step), none is started:
        :meth:`step` trains eagerly until that lock is free, then loads the step
        from the cache, or, if the other compile ended without it, starts this
        one's own.
        """
        if self._step is None:
            return
        self._shape = x.shape
        description = json.dumps(
            {
                "layers": _layer_spec(self.eager.layers),
                "flatten": self.eager.flatten,
                "batch": list(x.shape),
                "lr": self.eager.lr,
                "momentum": self.eager.momentum,
            }
        )  # fmt: skip
        # The key the compiling process (one thread) notes in the index.
        key = architecture_key(
            self.eager.layers, self.eager.flatten, self.eager.momentum, x, threads=1
        )
        lock = compile_lock(key)
        if lock is None:
            self.waited_for_another = True
            self._pending = key, description
            return
        if key in _read_index():  # compiled meanwhile: the first compiled step loads it
            release_compile_lock(lock)
            return
        self._start_compiling(description, lock)

    def _start_compiling(self, description: str, lock: int) -> None:
        """Start the compiling process, which inherits ``lock`` (this process lets go of it);
        one that cannot start is a failed compile."""
        self._errors = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed when it ends)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _OFFLINE, description],
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                stdout=subprocess.DEVNULL,
                stderr=self._errors,
                pass_fds=(lock,) if lock >= 0 else (),
            )
        except OSError as error:
            self._errors.close()
            self._errors = None
            self._fail(_one_line(error))
        finally:
            release_compile_lock(lock)

    def _another_done(self) -> bool:
        """Whether the process that held this architecture's compile lock has let go; if
        it left no compiled step in the cache, this process starts its own compile."""
        assert self._pending is not None
        key, description = self._pending
        lock = compile_lock(key)
        if lock is None:
            return False
        self._pending = None
        if key in _read_index():
            release_compile_lock(lock)  # compiled: the next compiled step loads it
            return True
        self.waited_for_another = False  # that compile failed or was stopped: compile here
        self._start_compiling(description, lock)
        return False

    def _offline_done(self) -> bool:
        """Whether the compiling process has ended (and how it went, noted once)."""
        process = self._process
        assert process is not None
        if process.poll() is None:
            return False
        self._process = None
        if process.returncode != 0 and self._errors is not None:
            self._errors.seek(0)
            last = self._errors.read().strip().splitlines()[-1:]
            self._fail(
                last[0][:200] if last else f"the compiling process exited {process.returncode}"
            )
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        return True

    def step(self, x: Tensor, y: Tensor, monitor: Any = None) -> tuple[Tensor, Tensor]:
        """One SGD step; batches of another shape than the first run eagerly, and so do
        the steps a :class:`~signalprop.Monitor` records (it reads the eager step's tensors)
        and those taken while the step compiles in the background."""
        if (self._process is not None and not self._offline_done()) or (
            self._pending is not None and not self._another_done()
        ):
            self.eager_steps += 1
            return self.eager.step(x, y, monitor)
        if self._step is None or (monitor is not None and monitor.scheduled):
            return self.eager.step(x, y, monitor)
        if self._shape is None:
            self._shape = x.shape
        if x.shape != self._shape:
            return self.eager.step(x, y)
        first = self.compile_seconds is None
        if first:
            if self._key is None:  # asked on every step while another process compiles
                self._key = architecture_key(
                    self.eager.layers, self.eager.flatten, self.eager.momentum, x
                )
            key = self._key
            if not self._may_compile(key):
                self.eager_steps += 1
                return self.eager.step(x, y, monitor)
        timing = not first and self._step_times is not None
        start = _clock() if first or timing else 0.0
        try:
            with torch.no_grad():
                loss, correct = self._step(
                    x,
                    y,
                    self._weights,
                    self._biases,
                    self._velocities,
                    self._bias_velocities,
                    self.eager.lr,
                    self.eager.momentum,
                )
        except Exception as error:  # inductor cannot compile here (no compiler, no cache)
            self._fail(_one_line(error))
            return self.eager.step(x, y)
        finally:
            if self._lock is not None:
                release_compile_lock(self._lock)
                self._lock = None
        if first:
            self.compile_seconds = _clock() - start
            if self._first == "compile":
                _remember_compile(key, self.compile_seconds)
            elif self._first == "load":
                _remember_load(key, self.compile_seconds)
            _SEEN.add(key)
            if key in _TIMED_HERE:
                self._step_times = None
        elif timing:
            self._time(_clock() - start)
        return loss, correct

    def _time(self, seconds: float) -> None:
        """Count a compiled step's time; note the median of ``TIMED_STEPS`` in the index."""
        times = self._step_times
        assert times is not None and self._key is not None
        if self._untimed:
            self._untimed -= 1
            return
        times.append(seconds)
        if len(times) == TIMED_STEPS:
            _remember_speed(self._key, statistics.median(times), TIMED_STEPS)
            _TIMED_HERE.add(self._key)
            self._step_times = None

    def _may_compile(self, key: str) -> bool:
        """Whether this process may compile ``key`` now: it has, or the on-disk cache has
        it (a load, unguarded), or it takes the compile lock (held until the step ran).
        False while another process holds the lock: that one is compiling it."""
        if key in _SEEN:
            self._first = "seen"
            return True
        lock = compile_lock(key)
        if lock is None:
            self.waited_for_another = True
            return False
        if key in _read_index():
            release_compile_lock(lock)
            self._first = "load"
        else:
            self._lock = lock
            self._first = "compile"
        return True

    def describe(self, why: str) -> str:
        """What ran, for :attr:`signalprop.train.History.path`: ``compiled (why)`` when
        the compiled step ran (after how many eager steps), else ``fast (...)`` and why
        not. ``why`` is why the compiled path was chosen."""
        if self.compile_seconds is not None:
            if not self.eager_steps:
                return f"compiled ({why})"
            who = "another process compiled it" if self.waited_for_another else "it compiled"
            return f"compiled ({why}); the first {self.eager_steps:,} steps eager, while {who}"
        if self.note:
            return f"fast ({self.note}; trained on the fast path)"
        if self.eager_steps:
            who = "another process was compiling it and " if self.waited_for_another else ""
            return f"fast ({why}); {who}not ready before the end: the next run finds it cached"
        return f"fast ({why}; no step ran compiled)"


#: Inductor options for the compiled step: a C++ wrapper around the kernels instead of a
#: Python one, 13 % faster for the 100-layer net when measured with two graphs (5.35
#: against 6.15 ms per step), at the price of a longer compile (about 65 s against 27 s).
_OPTIONS: dict[str, Any] = {"cpp_wrapper": True}


#: In the compiled step, ELU and SELU run in place and take their derivative from
#: their output (α·scale·e^z = a + α·scale where z ≤ 0), which saves an exponential
#: per element; eagerly, the fast path follows autograd and uses the input.
_FROM_RESULT = ("elu", "selu")


def _elu_constants(activation: _Activation) -> tuple[float, float]:
    if activation.kind == "selu":
        return _activations.SELU_ALPHA, _activations.SELU_SCALE
    return float(activation.args["alpha"]), 1.0


def _elu_family_forward(activation: _Activation, z: Tensor) -> Tensor:
    if activation.kind == "selu":
        return torch.selu_(z)
    return F.elu_(z, _elu_constants(activation)[0])


def _elu_family_backward(activation: _Activation, grad: Tensor, a: Tensor) -> Tensor:
    alpha, scale = _elu_constants(activation)
    return grad * torch.where(a > 0, scale, a + alpha * scale)


def _compiled_step(
    activations: list[_Activation], has_bias: list[bool], flatten: bool, momentum: bool
) -> Callable[..., tuple[Tensor, Tensor]]:
    """One compiled graph for a whole step: forward, backward and update.

    A non-finite loss must leave the weights as they were (as with autograd,
    where fit() stops before the step), without a Python branch between a
    forward graph and a backward one: every update is ``torch.where(ok, new,
    old)``, which inductor fuses into the update's own loop.
    """
    count = len(activations)

    def step(
        x: Tensor,
        y: Tensor,
        weights: list[Tensor],
        biases: list[Tensor],
        velocities: list[Tensor],
        bias_velocities: list[Tensor],
        lr: float,
        mu: float,
    ) -> tuple[Tensor, Tensor]:
        h = x.reshape(x.shape[0], -1) if flatten else x
        inputs: list[Tensor] = []
        saved: list[tuple[Tensor, Tensor]] = []
        for i in range(count):
            inputs.append(h)
            z = F.linear(h, weights[i], biases[i] if has_bias[i] else None)
            if activations[i].kind in _FROM_RESULT:
                a = _elu_family_forward(activations[i], z)
            else:
                a, _ = activations[i].forward(z, True)  # in place only where z is not needed
            saved.append((z, a))
            h = a
        log_probs = torch.log_softmax(h, dim=1)
        loss = F.nll_loss(log_probs, y)
        correct = (h.argmax(dim=1) == y).sum()
        ok = torch.isfinite(loss)
        classes = log_probs.shape[1]
        grad = (log_probs.exp() - F.one_hot(y, classes).to(log_probs.dtype)) / log_probs.shape[0]
        for i in range(count - 1, -1, -1):
            z, a = saved[i]
            if activations[i].kind in _FROM_RESULT:
                grad = _elu_family_backward(activations[i], grad, a)
            else:
                grad, _ = activations[i].backward(grad, z, a, None)
            below = grad.mm(weights[i]) if i > 0 else grad
            weight_grad = grad.t().mm(inputs[i])
            if momentum:
                velocity = velocities[i]
                velocity.copy_(torch.where(ok, velocity * mu + weight_grad, velocity))
                weight_grad = velocity
            weights[i].copy_(torch.where(ok, weights[i] - lr * weight_grad, weights[i]))
            if has_bias[i]:
                bias_grad = grad.sum(0)
                if momentum:
                    bias_velocity = bias_velocities[i]
                    bias_velocity.copy_(
                        torch.where(ok, bias_velocity * mu + bias_grad, bias_velocity)
                    )
                    bias_grad = bias_velocity
                biases[i].copy_(torch.where(ok, biases[i] - lr * bias_grad, biases[i]))
            grad = below
        return loss, correct

    # One code object per architecture: torch.compile keeps its compiled graphs per code
    # object, at most 8 of them, and a study trains more architectures in one process.
    key = _process_key(activations, has_bias, flatten, momentum)
    compiled = _COMPILED.get(key)
    if compiled is None:
        code = step.__code__.replace(co_name=f"signalprop_step_{len(_COMPILED)}")
        fresh = types.FunctionType(code, step.__globals__, code.co_name, None, step.__closure__)
        compiled = torch.compile(fresh, dynamic=False, fullgraph=True, options=_OPTIONS)
        _COMPILED[key] = compiled
    return compiled


def _process_key(
    activations: list[_Activation], has_bias: list[bool], flatten: bool, momentum: bool
) -> str:
    return json.dumps(
        [[a.kind, sorted(a.args.items())] for a in activations] + [has_bias, flatten, momentum],
        default=str,
    )


#: What the compiling process runs (see :meth:`CompiledDenseStackTrainer.compile_in_background`).
_OFFLINE = (
    "import sys; from signalprop._fastpath import compile_offline; compile_offline(sys.argv[1])"
)


def compile_offline(description: str) -> None:
    """Compile the step a JSON ``description`` gives into the on-disk cache.

    Run by the process :meth:`CompiledDenseStackTrainer.compile_in_background`
    starts: the layers (sizes, bias, activation), flatten, batch shape, and the
    learning rate and momentum (constants of the compiled graph), on weights of
    zeros, with one thread as the training uses. A failure ends the process with
    status 1 and its reason in one line, the last on stderr (the trainer reports it).
    """
    try:
        _compile_offline(description)
    except Exception as error:
        print(f"\n{_one_line(error)}", file=sys.stderr)
        raise SystemExit(1) from None


def _compile_offline(description: str) -> None:
    spec = json.loads(description)
    torch.set_num_threads(1)
    _use_compile_cache()
    layers = [
        _Layer(
            nn.Parameter(torch.zeros(n_out, n_in)),
            nn.Parameter(torch.zeros(n_out)) if bias else None,
            _Activation(kind, None, dict(args)),
        )
        for n_in, n_out, bias, kind, args in spec["layers"]
    ]
    momentum = float(spec["momentum"])
    weights = [layer.weight.detach() for layer in layers]
    biases = [layer.bias.detach() if layer.bias is not None else torch.empty(0) for layer in layers]
    velocities = [torch.zeros_like(w) for w in weights] if momentum else []
    bias_velocities = [torch.zeros_like(b) for b in biases] if momentum else []
    x = torch.zeros(spec["batch"])
    y = torch.zeros(spec["batch"][0], dtype=torch.long)
    step = _compiled_step(
        [layer.activation for layer in layers],
        [layer.bias is not None for layer in layers],
        bool(spec["flatten"]),
        bool(momentum),
    )
    start = time.perf_counter()
    with torch.no_grad():
        step(x, y, weights, biases, velocities, bias_velocities, float(spec["lr"]), momentum)
    key = architecture_key(layers, bool(spec["flatten"]), momentum, x)
    _remember_compile(key, time.perf_counter() - start)


#: The compiled steps of this process, by architecture (activations, biases, flatten,
#: momentum): a study compiles each architecture once per worker process.
_COMPILED: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {}
#: The architectures (shapes included) this process has run compiled.
_SEEN: set[str] = set()


# ---------------------------------------------------------------- which path
def compile_cache_dir() -> Path:
    """Where compiled steps are kept between processes: inductor's on-disk caches.

    ``$TORCHINDUCTOR_CACHE_DIR`` if set, else ``inductor`` in signalprop's
    per-user cache folder (``~/.cache/signalprop/inductor``, see
    :func:`signalprop.data.user_cache`). Deleting it only costs compile time.
    """
    from signalprop.data import user_cache

    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or user_cache() / "inductor")


def _use_compile_cache() -> None:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))


#: The file in :func:`compile_cache_dir` where signalprop notes what it compiled, and how
#: long that took: an architecture found there compiles from inductor's cache.
_INDEX = "signalprop-compiled.json"


def _layer_spec(layers: list[_Layer]) -> list[list[Any]]:
    """Each layer as ``[in, out, has bias, activation kind, activation args]`` (JSON)."""
    return [
        [layer.in_features, layer.out_features, layer.bias is not None,
         layer.activation.kind, layer.activation.args]
        for layer in layers
    ]  # fmt: skip


def architecture_key(
    layers: list[_Layer], flatten: bool, momentum: float, x: Tensor, *, threads: int | None = None
) -> str:
    """What a compiled step depends on: layers, activations, momentum or not, batch shape,
    torch, and threads (``threads``, else this process's)."""
    description = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if threads is None else threads,
        "options": _OPTIONS,
        "flatten": flatten,
        "momentum": bool(momentum),
        "batch": list(x.shape),
        "layers": _layer_spec(layers),
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_index() -> dict[str, Any]:
    """The index: architecture key -> its entry (see :func:`_remember`)."""
    try:
        data = json.loads((compile_cache_dir() / _INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _remember_compile(key: str, seconds: float) -> None:
    """Note that ``key`` is compiled, and how long that took."""
    _remember(key, seconds=round(seconds, 2), when=_now())


def _remember_speed(key: str, step_seconds: float, steps: int) -> None:
    """Note the compiled step's time measured here: the median of ``steps`` steps."""
    _remember(key, step_seconds=float(f"{step_seconds:.4g}"), steps_timed=steps, timed=_now())


def _remember_load(key: str, seconds: float) -> None:
    """Note how long loading ``key``'s step from the on-disk cache took here."""
    _remember(key, load_seconds=round(seconds, 2), loaded=_now())


def _remember(key: str, **fields: Any) -> None:
    """Set ``fields`` in ``key``'s entry of the index, keeping the others (an unwritable
    cache is not an error).

    An entry (a key is in the index once its step is in inductor's cache):
    ``seconds`` and ``when``, the compile that put it there; ``step_seconds``
    and ``steps_timed``, the compiled step's median time over that many
    steps, ``timed`` when; ``load_seconds``, its last load from the cache,
    ``loaded`` when. Older indexes hold only the first two: the rule then
    assumes its constants.
    """
    index = _read_index()
    entry = index.get(key)
    index[key] = {**(entry if isinstance(entry, dict) else {}), **fields}
    folder = compile_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{_INDEX}.{os.getpid()}"
        temporary.write_text(json.dumps(index, indent=1), encoding="utf-8")
        temporary.replace(folder / _INDEX)
    except OSError:
        pass


#: The folder in :func:`compile_cache_dir` with one lock file per architecture key.
_LOCKS = "locks"


def compile_lock(key: str) -> int | None:
    """Take the lock on compiling architecture ``key``, without waiting.

    One compile per architecture at a time, across processes: whichever
    process compiles a step (a foreground compile, or the process
    :meth:`CompiledDenseStackTrainer.compile_in_background` starts) holds an
    exclusive ``flock`` on ``<compile_cache_dir()>/locks/<key>.lock`` while it
    compiles. The lock belongs to the open file: the kernel releases it when
    its holder dies, however it dies, and a child process that inherits the
    file holds it until it ends.

    Returns:
        The open file descriptor that holds the lock (let go of it with
        :func:`release_compile_lock`); ``None`` if another process holds it (it
        is compiling this step); ``-1`` if no lock can be had here (a cache
        folder that cannot be written, a platform without ``flock``): the
        compile goes ahead unguarded, as before locks.
    """
    try:
        import fcntl  # POSIX only; imported here so that the package imports everywhere
    except ImportError:  # pragma: no cover (not on the platforms tested)
        return -1
    folder = compile_cache_dir() / _LOCKS
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # a file system without locks
        os.close(fd)
        return -1
    return fd


def release_compile_lock(lock: int) -> None:
    """Let go of a lock :func:`compile_lock` returned (-1: there was none)."""
    if lock >= 0:
        os.close(lock)


def _one_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}"[:200] if lines else type(error).__name__


def cpp_compiler() -> str | None:
    """The C++ compiler ``torch.compile`` would use on this CPU, or None."""
    _use_compile_cache()  # before inductor is imported: it sets its own default
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return str(get_cpp_compiler())
    except Exception:  # no compiler found (inductor raises its own error types)
        return None


#: The rule's constants: this project's machine (2 cores, gcc 12.2, torch 2.13.0 CPU, one
#: thread), 2026-11-30, ``benchmarks/train_speed.py``. Compiling the step of a stack of L
#: dense layers took about COLD[0] + COLD[1]·L seconds the first time (3 s for 3 layers,
#: 65–68 s for 101), and WARM[0] + WARM[1]·L in a new process that found it in the on-disk
#: cache (6.2 s for 101 layers); nothing in a process that compiled it already.
COLD_COMPILE = (1.5, 0.66)
WARM_COMPILE = (1.0, 0.052)
#: What each step of the compiled graph saved per layer over the eager fast path at batch
#: 32: 16 µs with ReLU (100-layer net; 20 µs on the 300-100 net), 30 µs with SELU, whose
#: exponentials the compiled step fuses and takes from the output. Rectifiers and the
#: identity save the first, every other activation the second.
SAVED_PER_LAYER = {"relu": 16e-6, "leaky_relu": 16e-6, "linear": 16e-6}
SAVED_PER_LAYER_OTHER = 30e-6
#: A compile in another process, beside a training one, took this much longer than alone
#: (the 100-layer SELU net: about 97 s against 68 s, with the process's start).
BACKGROUND_SLOWER = 1.45
#: A run at least this long (seconds, eagerly) that a compile would not pay for still has
#: another process compile its step on a free core, for the next runs of the architecture.
FOR_LATER_RUNS = 30.0
#: What an eager fast-path step took per layer at batch 32 (82 µs with SELU, 70 µs with
#: ReLU on the 100-layer nets): the smaller is the rule's when no step was timed.
EAGER_PER_LAYER = 70e-6
#: SELU's 82 µs, for the other activations than the rectifiers and the identity: on that
#: machine the compiled step took 30/82 = 37 % less time than the eager one with SELU, and
#: 16/70 = 23 % less with ReLU. The rule expects that fraction of an eager step timed
#: elsewhere when the compiled step has not been timed there.
EAGER_PER_LAYER_OTHER = 82e-6

#: ``fit(path="auto")`` times the eager fast path before it chooses: it lets the first
#: ``UNTIMED_STEPS`` full batches pass (the first allocates what the next ones reuse) and
#: takes the median time of the next ``TIMED_STEPS`` (a median: a step slowed by another
#: process moves it little). The compiled step is timed alike after the step that
#: compiled or loaded it, and its median kept in the index (:func:`_remember`).
UNTIMED_STEPS = 1
TIMED_STEPS = 20

#: The clock the steps are timed on (the tests give another: a simulated machine).
_clock: Callable[[], float] = time.perf_counter

#: The architectures whose compiled step this process has timed (once per process).
_TIMED_HERE: set[str] = set()


def _saved_per_step(layers: list[_Layer]) -> float:
    return sum(
        SAVED_PER_LAYER.get(layer.activation.kind, SAVED_PER_LAYER_OTHER) for layer in layers
    )


def _eager_per_step(layers: list[_Layer]) -> float:
    """The eager step's time on the rule's machine, per activation (see EAGER_PER_LAYER_OTHER)."""
    return sum(
        EAGER_PER_LAYER if layer.activation.kind in SAVED_PER_LAYER else EAGER_PER_LAYER_OTHER
        for layer in layers
    )


@dataclass(frozen=True)
class EagerTiming:
    """The eager fast path's step time measured in this run: ``seconds``, the median of
    ``steps`` steps."""

    seconds: float
    steps: int


def _measured(entry: Any, name: str) -> float | None:
    """A measured time from an index entry: a positive finite number, else None (an
    older index without it, or a damaged one)."""
    value = entry.get(name) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.0f} s" if abs(seconds) >= 10 else f"{seconds:.1f} s"


def _settled(
    layers: list[_Layer], flatten: bool, momentum: float, x: Tensor
) -> tuple[str, str] | None:
    """The path when no timing could change it, and why; else None."""
    if any(layer.activation.kind in ("prelu", "rrelu") for layer in layers):
        return "fast", "PReLU and RReLU are not compiled"
    if architecture_key(layers, flatten, momentum, x) in _SEEN:
        return "compiled", "compiled in this process already"
    if cpp_compiler() is None:
        return "fast", "no C++ compiler for torch.compile"
    return None


def choose_path(
    layers: list[_Layer],
    flatten: bool,
    momentum: float,
    x: Tensor,
    steps: int,
    *,
    free_core: bool = False,
    eager: EagerTiming | None = None,
) -> tuple[str, str]:
    """``"compiled"``, ``"background"`` or ``"fast"`` for a model :func:`plan` accepts,
    and why.

    The rule, from the numbers measured on this machine where there are some,
    else from the constants above. The eager fast path when there is no C++
    compiler or a layer has PReLU or RReLU (not compiled). Else:

    * the eager step takes ``eager.seconds`` (timed in this run), else
      ``EAGER_PER_LAYER`` per layer;
    * each compiled step saves the eager step's time less the compiled step's
      time the index holds for the architecture (timed in an earlier run here),
      else, with a timed eager step, the fraction of it the compiled step saved
      on the rule's machine (``SAVED_PER_LAYER`` of ``EAGER_PER_LAYER``, per
      activation), else ``SAVED_PER_LAYER`` per layer;
    * compiling costs nothing if this process compiled the architecture
      already; if the on-disk cache has it (:func:`compile_cache_dir`), the
      load time the index holds (measured in an earlier run here), else
      ``WARM_COMPILE``; otherwise ``COLD_COMPILE``.

    Then:

    * ``"compiled"`` (compile first) when the time saved over the run's
      ``steps`` full batches covers that compile time;
    * ``"background"`` when it does not, the architecture is not cached and a
      core is free (``free_core``): another process compiles it while this one
      trains eagerly, then this one loads it from the cache (``WARM_COMPILE``) —
      chosen when the steps left after that save more than the loading costs,
      or when the run is at least ``FOR_LATER_RUNS`` seconds long: then the
      compile is for the next runs of the architecture (the process goes on
      after this run ends);
    * ``"fast"`` otherwise (and whenever the compiled step was timed no faster
      than the eager one here). The eager fast path is faster than autograd on
      every stack measured (``benchmarks/train_speed.py``: 1.28× on the
      300-100 net, 1.33–1.58× on the 100-layer nets).

    ``why`` ends with which numbers were measured here and which assumed.

    Args:
        layers, flatten: What :func:`plan` returned.
        momentum: SGD's momentum.
        x: One full batch (its shape is part of what is compiled).
        steps: Full batches the run will train (or all runs that will share the
            compiled step, for a study).
        free_core: Whether a core is idle while this run trains.
        eager: The eager step's time, as timed in this run, if it was.
    """
    settled = _settled(layers, flatten, momentum, x)
    if settled is not None:
        return settled
    count = len(layers)
    entry = _read_index().get(architecture_key(layers, flatten, momentum, x))
    cached = entry is not None
    measured: list[str] = []
    assumed: list[str] = []
    if eager is None:
        eager_step = EAGER_PER_LAYER * count
        per_step = _saved_per_step(layers)
        assumed.append("the step times (none timed here)")
    else:
        eager_step = eager.seconds
        measured.append(f"eager {_ms(eager_step)}/step (the median of {eager.steps} steps)")
        compiled_step = _measured(entry, "step_seconds")
        if compiled_step is not None:
            per_step = eager_step - compiled_step
            measured.append(f"compiled {_ms(compiled_step)}/step last time")
        else:
            fraction = _saved_per_step(layers) / _eager_per_step(layers)
            per_step = eager_step * fraction
            assumed.append(f"the compiled step {fraction:.0%} faster")
    warm = WARM_COMPILE[0] + WARM_COMPILE[1] * count
    load = _measured(entry, "load_seconds")
    if cached and load is not None:
        warm = load
        measured.append(f"loading {load:.1f} s last time")
    cost = warm if cached else COLD_COMPILE[0] + COLD_COMPILE[1] * count
    if not measured or not measured[-1].startswith("loading"):
        assumed.append(f"{'loading' if cached else 'compiling'} ≈ {_s(cost)}")
    basis = "".join(
        f"; {label}: {', '.join(items)}"
        for label, items in (("measured", measured), ("assumed (the rule's constants)", assumed))
        if items
    )
    if per_step <= 0:
        return "fast", f"the compiled step was no faster than the eager one here{basis}"
    saved = steps * per_step
    where = "from the on-disk cache" if cached else "the first time"
    if saved >= cost:
        return "compiled", (
            f"compiling, ≈ {_s(cost)} {where}, saves ≈ {_s(saved)} over {steps:,} steps{basis}"
        )
    if free_core and not cached:
        # Another process compiles while this one trains eagerly, then this one loads it
        # from the cache (the warm cost): it pays if the steps left after that save more.
        eager_steps = cost * BACKGROUND_SLOWER / eager_step
        left = (steps - eager_steps) * per_step
        if left >= warm:
            return "background", (
                f"compiled by another process on the second core, ≈ {_s(cost)}, while "
                f"this one trains eagerly; saves ≈ {_s(left)} over the steps after that"
                f"{basis}"
            )
        if steps * eager_step >= FOR_LATER_RUNS:
            return "background", (
                f"compiling, ≈ {_s(cost)}, would not pay in this run: another process "
                f"compiles it on the second core for the next runs, which load it in seconds"
                f"{basis}"
            )
    return "fast", (
        f"compiling would take ≈ {_s(cost)} {where}, more than the ≈ {_s(saved)} "
        f"it saves over {steps:,} steps{basis}"
    )


class AutoDenseStackTrainer:
    """``fit(path="auto")``'s trainer for a model :func:`plan` accepts: it times its
    first eager steps, then chooses its path by :func:`choose_path` on that time.

    The first ``UNTIMED_STEPS + TIMED_STEPS`` full batches train on the eager
    fast path (at most what the compiled step would have saved on 21 steps,
    a few hundredths of a second on the 100-layer nets); the median time
    of the last ``TIMED_STEPS`` of them (steps a Monitor records are left out:
    its work is in them) is this machine's eager step. ``choose_path`` weighs
    it, with what the index measured of the compiled step here, over the
    ``steps`` left: the next step compiles (or loads) the compiled step,
    another process compiles it, or the run stays eager. A run with too few
    full batches to be timed, and a path no timing could change (PReLU, no C++
    compiler, compiled in this process already), are chosen at once.

    Args:
        model, lr, momentum: As :class:`DenseStackTrainer`'s.
        x, y: One full batch.
        steps: Full batches the compiled step would serve (the run's, or a study's).
        run_steps: Full batches of this run.
        free_core: Whether a core is idle while this run trains.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        momentum: float,
        x: Tensor,
        y: Tensor,
        steps: int,
        *,
        run_steps: int,
        free_core: bool,
    ) -> None:
        self.eager = DenseStackTrainer(model, lr, momentum)
        #: The compiled step's trainer, once the path chosen is "compiled" or "background".
        self.compiled: CompiledDenseStackTrainer | None = None
        #: The path chosen (None until then), and why.
        self.path: str | None = None
        self.why = ""
        self._batch = x, y
        self._steps = steps
        self._free_core = free_core
        self._taken = 0  # full batches trained
        self._recorded = 0  # of which a Monitor recorded (not timed)
        self._times: list[float] = []
        settled = _settled(self.eager.layers, self.eager.flatten, momentum, x)
        if settled is not None:
            self._take(*settled)
        elif run_steps < UNTIMED_STEPS + TIMED_STEPS + 1:
            self._take(*self._choose(steps, None))

    def _choose(self, steps: int, eager: EagerTiming | None) -> tuple[str, str]:
        x = self._batch[0]
        layers, flatten, momentum = self.eager.layers, self.eager.flatten, self.eager.momentum
        return choose_path(layers, flatten, momentum, x, steps, free_core=self._free_core,
                           eager=eager)  # fmt: skip

    def _take(self, path: str, why: str) -> None:
        self.path, self.why = path, why
        if path in ("compiled", "background"):
            eager = self.eager
            self.compiled = CompiledDenseStackTrainer(eager.model, eager.lr, eager.momentum,
                                                      eager=eager)  # fmt: skip
            if path == "background" and self.compiled.note == "":
                self.compiled.compile_in_background(*self._batch)

    def step(self, x: Tensor, y: Tensor, monitor: Any = None) -> tuple[Tensor, Tensor]:
        """One SGD step, on the path chosen, or eagerly (and timed) until it is."""
        if self.compiled is not None:
            return self.compiled.step(x, y, monitor)
        if self.path is not None:
            return self.eager.step(x, y, monitor)
        full = x.shape == self._batch[0].shape
        recorded = full and getattr(monitor, "scheduled", False)
        self._recorded += recorded
        timed = full and self._taken >= UNTIMED_STEPS and not recorded
        start = _clock() if timed else 0.0
        result = self.eager.step(x, y, monitor)
        if timed:
            self._times.append(_clock() - start)
        self._taken += full
        if len(self._times) == TIMED_STEPS:
            timing = EagerTiming(statistics.median(self._times), TIMED_STEPS)
            self._take(*self._choose(max(self._steps - self._taken, 0), timing))
        return result

    def describe(self) -> str:
        """What ran, for :attr:`signalprop.train.History.path` (see
        :meth:`CompiledDenseStackTrainer.describe`)."""
        if self.compiled is not None:
            return self.compiled.describe(self.why)
        if self.path is not None:
            return f"fast ({self.why})"
        recorded = (
            f", {self._recorded:,} of them recorded by a Monitor (those are not timed)"
            if self._recorded
            else ""
        )
        return (
            f"fast (the run ended after {self._taken:,} full batches{recorded}, before the "
            f"rule had timed the {TIMED_STEPS} eager steps it chooses on)"
        )
