"""``Monitor``: per-layer statistics over a whole training run, cheap enough to leave on."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor, nn

from signalprop._model import (
    EMBEDDINGS,
    activation_kind,
    buffers_kept,
    hidden_modules,
    is_dense,
    is_keras,
    is_norm,
    is_transparent,
    is_weight_layer,
    layer_bias,
    layer_fans,
    layer_weight,
    unit_axis,
)
from signalprop._recorder import OutputMap, Recorder, call_name
from signalprop._stats import (
    DYING,
    SATURATING,
    Workspace,
    alive_units,
    change_norms,
    dead_of_flags,
    finite_flags,
    mean_std,
    mean_std_of_packed,
    moments,
    norm_of,
    norms_by_id,
    packed_moments,
    packed_squares,
    rms_of_squares,
    saturated_count,
    squared_norms,
    update_ratio,
)
from signalprop._validation import check_int, external_stacklevel, invalid_parameter
from signalprop.diagnostics import (
    Finding,
    Thresholds,
    bias_splits,
    phase_applies,
    phase_finding,
)
from signalprop.monitor._history import (
    QUANTITIES,
    LayerInfo,
    MonitorHistory,
    NonFiniteEvent,
    Record,
    TimedFinding,
    record_line,
)

__all__ = ["Monitor"]

#: Modules whose forward pass draws random numbers: a replay restores the RNG first.
RANDOM = (nn.Dropout, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU, nn.Dropout1d)
#: Rows absent from a record: a weight quantity that does not apply.
ABSENT = -1.0


def _tensors(output: Any, depth: int = 0) -> list[Tensor]:
    """The floating-point tensors of a model's output (a tensor, tuple, list or dict)."""
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if depth > 3:
        return []
    items = output.values() if isinstance(output, dict) else output
    if isinstance(output, dict | list | tuple):
        return [t for item in items for t in _tensors(item, depth + 1)]
    return []


def _batch_size(args: tuple[Any, ...]) -> int:
    """The batch size of a model's inputs: the first dimension of the first tensor."""
    for arg in args:
        if isinstance(arg, Tensor):
            return int(arg.shape[0]) if arg.dim() else 1
        if isinstance(arg, dict | list | tuple):
            found = _batch_size(tuple(arg.values() if isinstance(arg, dict) else arg))
            if found:
                return found
    return 0


def _sgd_updates(optimizer: torch.optim.Optimizer | None) -> dict[int, tuple[float, str]] | None:
    """How a plain ``torch.optim.SGD`` moves each weight, if that is what ``optimizer`` is.

    Returns ``{id(param): (lr, source)}``: the update is ``-lr * param.grad`` or, with
    momentum, ``-lr * state["momentum_buffer"]``, so its norm needs no copy of the
    weights. None for any other optimizer, or SGD with weight decay, Nesterov
    momentum or ``maximize``: the update is then measured from a copy.
    """
    if optimizer is None or type(optimizer) is not torch.optim.SGD:
        return None
    updates: dict[int, tuple[float, str]] = {}
    for group in optimizer.param_groups:
        if group.get("weight_decay") or group.get("nesterov") or group.get("maximize"):
            return None
        source = "momentum_buffer" if group.get("momentum") else "grad"
        for param in group["params"]:
            updates[id(param)] = (float(group["lr"]), source)
    return updates


def _biases(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Each weight layer's bias, by the layer's name."""
    found = []
    for name, module in model.named_modules():
        if is_weight_layer(module):
            bias = layer_bias(module)
            if isinstance(bias, Tensor) and bias.numel():
                found.append((name, bias))
    return found


def _check_owns(optimizer: torch.optim.Optimizer, model: nn.Module, caller: str) -> None:
    """Refuse an optimizer that updates none of the model's trainable parameters: its
    ``step`` would end steps in which the model never changes, and the records of
    such a run would read healthy."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    owned = [p for group in optimizer.param_groups for p in group["params"]]
    if trainable and not any(id(p) in trainable for p in owned):
        raise invalid_parameter(
            "optimizer",
            caller,
            "an optimizer over the model's parameters",
            f"a {type(optimizer).__name__} over {len(owned)} other tensor(s)",
            hint="Build it from this model: torch.optim.SGD(model.parameters(), lr=...).",
        )


def _distributed() -> tuple[int, int]:
    """``(rank, world size)`` under ``torch.distributed``, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Monitor:
    """Per-layer statistics over a training run, findings with a time, and NaNs localized.

    On every ``every``-th training step it records, per layer, what
    :func:`~signalprop.diagnose` measures on one batch: the pre-activation and
    activation mean and std, the saturated and dead fractions, the gradient
    RMS with respect to the pre-activations and to the weight, the weight's
    norm and the update-to-weight ratio of the step. The layers are hooked for
    those steps only; in between, the model's own two hooks run. On *every*
    step it checks the model's output and inputs and the lowest layer's bias
    (or weight) gradient for NaN or Inf, and localizes the first one to a
    layer, a pass and a step (see :attr:`events`).

    Use it around any training loop::

        with sp.Monitor(model, every=16, log="runs/a/monitor.jsonl") as monitor:
            for x, y in batches:
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
                monitor.step()          # or Monitor(..., optimizer=optimizer)
        print(monitor.summary())        # "layers 30–37 (8 layers): units died between …"

    or pass it to :func:`~signalprop.train.fit` (``fit(..., monitor=monitor)``),
    which feeds it from its fast path too, with the same numbers.

    Forward passes with gradients disabled (validation) are not recorded; in a
    step with several forward passes, the first is. Call :meth:`step` after
    ``optimizer.step()`` and before the gradients are zeroed.

    Under ``torch.distributed`` (DDP, torchrun), each process reduces its own
    batch; one ``all_reduce`` of a packed buffer per monitored step (SUM for
    sums and counts, and a second for maxima) combines them into the
    statistics of the whole batch, and only rank 0 writes. The pre-activation
    gradients are those of the mean loss over the whole batch, as DDP's
    averaged weight gradients are. Every process must call :meth:`step` once
    per step.

    Args:
        model: The model (or its ``DistributedDataParallel`` wrapper).
        every: Record every ``every``-th step (steps 1, 1 + every, …), ≥ 1.
        thresholds: When a measurement becomes a finding (``diagnose``'s).
        optimizer: If given, :meth:`step` runs after each ``optimizer.step()``.
        log: A JSON Lines file for this run alone: one header line, then a line
            per record, each flushed as it is made (a killed run keeps them all).
            A file that already holds something (a run before, killed or not) is
            refused unless ``overwrite=True``: a log is never appended to.
            Read it back with :func:`~signalprop.monitor.read_log`.
        overwrite: Replace a ``log`` that already holds something.
        tensorboard: A directory for TensorBoard event files (needs the
            ``tensorboard`` extra): per-layer scalars of every quantity and
            histograms of weights and activations.
        histograms_every: Monitored steps between TensorBoard histograms.
        save_batches: A directory where the batch in which a NaN or Inf first
            appears is saved (``torch.save``), or None.

    A full or read-only disk met while training (``OSError`` writing the log,
    the TensorBoard files or a saved batch) stops that output with one warning
    naming the path and the error; the records go on in memory
    (:attr:`history`) and the training goes on.

    Raises:
        ValueError: On an invalid argument, an unwritable ``log``, a ``log``
            that already holds a run (without ``overwrite=True``), or a model
            with no layer to monitor.

    Examples:
        >>> import torch, signalprop as sp
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2)
        ... )
        >>> _ = torch.nn.init.normal_(model[0].weight, std=10.0)   # saturates the sigmoid
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with sp.Monitor(model, every=1, optimizer=opt) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
        ...         loss.backward()
        ...         opt.step()   # the Monitor records after each step
        ...
        >>> [finding.kind for finding in monitor.findings()]
        ['saturation', 'mean_shift']
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 16,
        thresholds: Thresholds | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        log: str | Path | None = None,
        tensorboard: str | Path | None = None,
        histograms_every: int = 10,
        save_batches: str | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        caller = "Monitor"
        if not isinstance(overwrite, bool):
            raise invalid_parameter("overwrite", caller, "True or False", overwrite)
        if is_keras(model):
            raise invalid_parameter(
                "model",
                caller,
                "a PyTorch nn.Module",
                f"a Keras model ({type(model).__name__})",
                hint="Monitor a Keras model with its callback: "
                "model.fit(..., callbacks=[sp.keras.Monitor(every=16)]).",
            )
        if not isinstance(model, nn.Module):
            raise invalid_parameter("model", caller, "an nn.Module", type(model).__name__)
        self.every = check_int(every, param="every", caller=caller, low=1)
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        if not isinstance(self.thresholds, Thresholds):
            raise invalid_parameter("thresholds", caller, "a Thresholds or None", thresholds)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise invalid_parameter(
                "optimizer", caller, "a torch.optim.Optimizer or None", type(optimizer).__name__
            )
        self.histograms_every = check_int(
            histograms_every, param="histograms_every", caller=caller, low=1
        )
        inner = getattr(model, "module", model) if type(model).__name__ in _WRAPPERS else model
        self.model: nn.Module = inner
        self._names = {module: name for name, module in inner.named_modules()}
        self._hidden = hidden_modules(inner)
        self._weight_modules = [
            m
            for m in inner.modules()
            if (is_weight_layer(m) or isinstance(m, EMBEDDINGS)) and m not in self._hidden
        ]
        activations = [  # an nn.Identity ("linear") measures nothing of its own
            m
            for m in inner.modules()
            if m not in self._hidden and activation_kind(m) not in (None, "softmax", "linear")
        ]
        if not self._weight_modules and not activations:
            raise invalid_parameter(
                "model",
                caller,
                "a model with layers to monitor (nn.Linear, nn.Conv*, Dense, nn.Embedding "
                "or activation modules)",
                type(model).__name__,
            )
        if optimizer is not None:
            _check_owns(optimizer, inner, caller)
        # Per record, each layer's σ_b², for the mean-field phase (plain dense stacks only).
        self._bias_vars: dict[int, dict[str, float]] = {}
        self._biases = _biases(inner) if phase_applies(inner) else []
        # What the biases cancel (autoinit's centring), as at the start of the run.
        self._splits = bias_splits(inner) if self._biases else {}
        self._bias_norms: list[Tensor] = []
        self._verdicts: dict[int, Finding | None] = {}  # by record step, drawn when asked
        self.rank, self.world_size = _distributed()
        #: The records and events so far.
        self.history = MonitorHistory(every=self.every, world_size=self.world_size)
        self.steps = 0
        self._log_path = None if log is None else Path(log)
        self._log: IO[str] | None = None
        self._overwrite = overwrite
        self._save_dir = None if save_batches is None else Path(save_batches)
        self._tensorboard: Any = None
        self._tensorboard_dir = None if tensorboard is None else Path(tensorboard)
        self._handles: list[Any] = []
        self._layer_hooks: list[tuple[nn.Module, bool, Any]] = []
        self._layer_handles: list[Any] = []
        self._kinds: dict[nn.Module, str | None] = {}
        self._closed = False
        self._random = any(isinstance(m, RANDOM) for m in inner.modules())
        self._dense_of = self._dense_owners(inner)
        # Per-step state.
        self._scheduled = True  # the step in progress is a monitored one
        self._recording = False  # inside the forward pass of a monitored step
        self._recorded = False  # that forward pass is done
        self._replaying = False
        self._checked = False  # the step's output and gradient were checked for NaN
        self._finite = True  # the last check found every value finite
        self._inputs: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})
        self._outputs: list[Tensor] = []
        self._rng: Tensor | None = None
        self._calls: dict[str, int] = {}
        self._by_output: OutputMap[int] = OutputMap()
        self._relayed: set[int] = set()  # outputs of a norm or pass-through in _by_output
        self._pre_hooks: dict[int, Any] = {}  # row -> the hook catching its "pre" gradient
        self._retained: dict[int, Tensor] = {}  # row -> a "pre" that keeps its own gradient
        self._keep: list[Tensor] = []
        self._pre: dict[int, Tensor] = {}
        self._act: dict[int, Tensor] = {}
        self._alive: dict[int, Tensor] = {}
        self._grad: dict[int, Tensor] = {}
        self._weight_grad: dict[int, Tensor] = {}
        self._snapshot: list[Tensor] = []
        self._snapshot_params: list[Tensor] = []
        self._weight_norms: dict[int, Tensor] = {}  # id(weight) -> norm at the forward pass
        self._optimizer = optimizer
        self._sgd: dict[int, tuple[float, str]] | None = None  # read at the recorded forward
        self._fast_updates: dict[int, tuple[float, Tensor]] = {}
        self._bottom_hook: Any = None
        # Layout: rows found in the first monitored forward pass, then fixed.
        self._layers: list[LayerInfo] = []
        self._index: dict[str, int] = {}
        self._row_weight: list[Tensor | None] = []
        self._row_module: list[nn.Module | None] = []
        self._row_kind: list[str | None] = []
        self._frozen = False
        self._weight_layout: tuple[int, list[tuple[int, Tensor]], list[tuple[int, int]]] | None
        self._weight_layout = None  # (rows, owned, copies) of _weight_rows
        self._workspace: Workspace = {}  # the packed reductions' buffers
        if self.rank == 0:
            self._open_outputs(tensorboard)
        try:
            self._install(inner, optimizer)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ set-up
    def _open_outputs(self, tensorboard: str | Path | None) -> None:
        if self._log_path is not None:
            try:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self._open_log(self._log_path, self._overwrite)
            except OSError as error:
                raise invalid_parameter(
                    "log",
                    "Monitor",
                    "a file path that can be written",
                    str(self._log_path),
                    hint=f"({error.strerror or error})",
                ) from None
        if self._save_dir is not None:
            try:
                self._save_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise invalid_parameter(
                    "save_batches",
                    "Monitor",
                    "a directory that can be written",
                    str(self._save_dir),
                    hint=f"({error.strerror or error})",
                ) from None
        if tensorboard is not None:
            from signalprop.monitor._tensorboard import TensorBoardLog

            try:
                Path(tensorboard).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise invalid_parameter(
                    "tensorboard",
                    "Monitor",
                    "a directory that can be written",
                    str(tensorboard),
                    hint=f"({error.strerror or error})",
                ) from None
            self._tensorboard = TensorBoardLog(tensorboard)

    @staticmethod
    def _open_log(path: Path, overwrite: bool) -> IO[str]:
        """The log opened for this run alone: a file holding anything is replaced only
        with ``overwrite``, never appended to (two runs in one log cannot be told apart
        once a killed run's cut line is glued to the next one's header)."""
        if overwrite:
            return path.open("w", encoding="utf-8")
        try:
            return path.open("x", encoding="utf-8")
        except FileExistsError:
            size = path.stat().st_size if path.is_file() else None
            if size != 0:  # a run, something else, or not a file at all
                what = "a directory" if path.is_dir() else f"{size:,} bytes"
                raise invalid_parameter(
                    "log",
                    "Monitor",
                    "a path that holds no run yet",
                    str(path),
                    hint=f"It already exists ({what}): a Monitor log is never appended "
                    "to. Pass overwrite=True to replace it, or another path.",
                ) from None
            return path.open("w", encoding="utf-8")  # an empty file: nothing to lose

    def _disk_failed(self, output: str, path: Path | None, error: OSError) -> None:
        """Stop writing ``output`` after ``error`` (a full or read-only disk), with one
        warning; the records go on in memory and the training goes on."""
        reason = error.strerror or str(error) or type(error).__name__
        warnings.warn(
            f"Monitor: could not write the {output} {str(path)!r} ({reason}); it stops "
            "here, the monitor keeps recording in memory (monitor.history) and the "
            "training goes on. Free space or choose a writable path for the next run.",
            RuntimeWarning,
            stacklevel=external_stacklevel(),
        )

    def _stop_log(self, error: OSError) -> None:
        log, self._log = self._log, None
        if log is not None:
            with contextlib.suppress(OSError):  # its buffer could not be written either
                log.close()
        self._disk_failed("log", self._log_path, error)

    def _stop_tensorboard(self, error: OSError) -> None:
        board, self._tensorboard = self._tensorboard, None
        board.abort()  # the same disk: said once below
        self._disk_failed("TensorBoard files in", self._tensorboard_dir, error)

    @staticmethod
    def _dense_owners(model: nn.Module) -> dict[nn.Module, nn.Module]:
        """Each Dense layer's activation module -> the Dense, where the module is its own."""
        owners: dict[nn.Module, list[nn.Module]] = {}
        for module in model.modules():
            if is_dense(module):
                owners.setdefault(module.activation, []).append(module)  # type: ignore[arg-type]
        return {act: dense[0] for act, dense in owners.items() if len(dense) == 1}

    def _install(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        add = self._handles.append
        add(model.register_forward_pre_hook(self._on_begin, with_kwargs=True))
        add(model.register_forward_hook(self._on_end, with_kwargs=True))
        shared_dense = [
            m for m in model.modules() if is_dense(m) and m.activation not in self._dense_of
        ]
        if shared_dense:
            raise invalid_parameter(
                "model",
                "Monitor",
                "Dense layers that each own their activation module",
                ", ".join(self._names[m] or "(model)" for m in shared_dense[:3]),
                hint="(build each Dense with its own activation)",
            )
        # The layers' hooks are attached for the forward passes a record is made of
        # only: PyTorch takes a slower path through a module that has any hook, 3.7 µs
        # a call here, which on a 100-layer net would cost 3 % on every other step.
        hooks = self._layer_hooks
        for module in model.modules():
            if module in self._hidden:
                continue
            if module in self._dense_of:
                dense = self._dense_of[module]
                self._kinds[module] = activation_kind(module)
                if activation_kind(module) is not None and getattr(module, "inplace", False):
                    hooks.append((module, True, partial(self._on_dense_pre, dense)))
                hooks.append((module, False, partial(self._on_dense_act, dense)))
            elif is_dense(module):
                continue  # measured through its activation's hook
            elif is_weight_layer(module) or isinstance(module, EMBEDDINGS):
                hooks.append((module, False, self._on_weight_output))
            elif activation_kind(module) not in (None, "softmax"):
                self._kinds[module] = activation_kind(module)
                if getattr(module, "inplace", False):
                    hooks.append((module, True, self._on_activation_input))
                hooks.append((module, False, self._on_activation))
            elif is_norm(module) or is_transparent(module):
                hooks.append((module, False, self._on_relay))
        if optimizer is not None:
            add(optimizer.register_step_post_hook(lambda *_: self.step()))

    def _attach(self) -> None:
        """Hook the layers for one recorded forward pass."""
        if self._layer_handles:
            return  # still attached: every=1, or a forward pass that raised
        for module, before, hook in self._layer_hooks:
            if before:
                self._layer_handles.append(module.register_forward_pre_hook(hook))
            else:
                self._layer_handles.append(module.register_forward_hook(hook))

    def _detach(self) -> None:
        for handle in self._layer_handles:
            handle.remove()
        self._layer_handles.clear()

    # ------------------------------------------------------------ rows
    def _row(self, module: nn.Module, weight_module: nn.Module | None) -> int:
        """The row index of this call of ``module`` in the step (-1: not in the layout)."""
        name = call_name(self._names, self._calls, module, new_call=True)
        index = self._index.get(name)
        if index is not None:
            return index
        if self._frozen:
            return -1
        fan_in = fan_out = None
        numel = 0
        weight = layer_weight(weight_module) if weight_module is not None else None
        if isinstance(weight, Tensor) and not isinstance(
            weight, nn.parameter.UninitializedParameter
        ):
            fans = layer_fans(weight_module)  # type: ignore[arg-type]
            fan_in, fan_out, numel = float(fans[0]), float(fans[1]), weight.numel()
        else:
            weight = None
        layer_type = type(weight_module if weight_module is not None else module).__name__
        # The activation's kind is learnt when the activation runs (_set_kind).
        self._layers.append(LayerInfo(name, layer_type, None, fan_in, fan_out, numel))
        self._row_weight.append(weight)
        self._row_module.append(weight_module if weight is not None else None)
        self._row_kind.append(None)
        self._index[name] = len(self._layers) - 1
        return len(self._layers) - 1

    def _set_kind(self, index: int, kind: str) -> None:
        if not self._frozen and self._row_kind[index] in (None, "linear"):
            self._row_kind[index] = kind
            info = self._layers[index]
            self._layers[index] = LayerInfo(
                info.name, info.layer_type, kind, info.fan_in, info.fan_out, info.weight_numel
            )

    def _record_pre(self, index: int, z: Tensor, retain: bool = False) -> None:
        self._pre[index] = z  # no detach: reduced under no_grad
        self._watch_pre(index, z, retain)

    def _watch_pre(self, index: int, z: Tensor, retain: bool = False) -> None:
        """Catch dL/dz for row ``index`` (replacing the hook of an earlier "pre": a
        layer's output when a norm then feeds the activation).

        ``retain``: nothing changes ``z`` in place (a Dense layer's own activation
        that is not in place reads it), so ``z`` keeps its gradient itself, which
        costs the backward pass no Python call (read back in :meth:`step`)."""
        earlier = self._pre_hooks.pop(index, None)
        if earlier is not None:
            earlier.remove()
        self._retained.pop(index, None)
        if retain and z.grad_fn is not None:
            z.retain_grad()
            self._retained[index] = z
        elif z.grad_fn is not None:
            # The node that made z receives dL/dz: a hook on it costs half a tensor hook,
            # and still sees the gradient at z when an in-place activation follows.
            self._pre_hooks[index] = z.grad_fn.register_prehook(partial(self._on_grad_of, index))
        elif z.requires_grad:
            self._pre_hooks[index] = z.register_hook(partial(self._on_grad, index))  # type: ignore[no-untyped-call]

    def _record_act(self, index: int, kind: str, a: Tensor) -> None:
        self._set_kind(index, kind)
        z = self._pre.get(index)
        if kind in DYING and z is not None and z.numel():
            self._alive[index] = alive_units(z, unit_axis(self._row_module[index]))
        self._act[index] = a

    def _on_grad_of(self, index: int, grads: tuple[Tensor | None, ...]) -> None:
        if grads and grads[0] is not None:
            self._grad[index] = grads[0]

    def _on_grad(self, index: int, grad: Tensor) -> None:
        self._grad[index] = grad

    # ------------------------------------------------------------ hooks
    def _on_begin(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._closed or self._replaying or not torch.is_grad_enabled():
            return
        self._inputs = (args, kwargs)
        self._checked = False
        if self._random:
            self._rng = torch.get_rng_state()
        if self._scheduled and not self._recorded:
            self._recording = True
            self._calls.clear()
            self._attach()
            self._sgd = self._plain_sgd()
            self._snapshot_weights(copy=self._sgd is None)
            self._snapshot_biases()

    def _on_end(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        if self._closed or self._replaying or not torch.is_grad_enabled():
            return
        self._outputs = _tensors(output)
        if self._recording:
            if self.every > 1:  # recording every step: the hooks stay for the next one
                self._detach()
            self._recording = False
            self._recorded = True
            self._by_output.clear()
            self._relayed.clear()
            self._pre_hooks.clear()
            self._keep.clear()
            if self._bottom_hook is None:
                self._watch_bottom()

    def _on_dense_pre(self, dense: nn.Module, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._recording and args and isinstance(args[0], Tensor):
            index = self._row(dense, dense)
            if index >= 0:
                self._record_pre(index, args[0].clone())

    def _on_dense_act(
        self, dense: nn.Module, module: nn.Module, args: tuple[Any, ...], output: Any
    ) -> None:
        if not self._recording or not isinstance(output, Tensor):
            return
        kind = self._kinds[module] or "other"
        if getattr(module, "inplace", False):
            index = self._index.get(self._current_name(dense), -1)
        else:
            index = self._row(dense, dense)
            if index >= 0 and args and isinstance(args[0], Tensor):
                # A linear Dense's output may be changed in place by an activation next.
                self._record_pre(index, args[0], retain=kind != "linear")
        if index >= 0:
            self._record_act(index, kind, output)
            if kind == "linear":  # an activation module next is this layer's, as in diagnose
                self._by_output.put(output, index)
                self._keep.append(output)

    def _current_name(self, module: nn.Module) -> str:
        return call_name(self._names, self._calls, module, new_call=False)

    def _on_weight_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, tuple) and output:  # nn.MultiheadAttention: (output, weights)
            output = output[0]
        if not self._recording or not isinstance(output, Tensor):
            return
        if not output.is_floating_point():
            return
        index = self._row(module, module)
        if index >= 0:
            self._record_pre(index, output)
            self._by_output.put(output, index)
            self._keep.append(output)  # keeps the id unique until the forward pass ends

    def _on_activation_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """An in-place activation: copy its input first, as it is about to be overwritten."""
        if not self._recording or not args or not isinstance(args[0], Tensor):
            return
        z = args[0]
        index = self._by_output.get(z)
        if index is None:
            index = self._row(module, None)
            self._by_output.put(z, index)
            self._keep.append(z)
        elif id(z) in self._relayed and index >= 0:  # through a norm: catch dL/dz here
            self._relayed.discard(id(z))
            self._watch_pre(index, z)
        if index >= 0:
            self._pre[index] = z.detach().clone()

    def _on_relay(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """A norm or pass-through module: its output belongs to the row of its input,
        and the activation that reads it reads the row's pre-activation."""
        if not self._recording or not args or not isinstance(output, Tensor):
            return
        z = args[0]
        index = self._by_output.get(z) if isinstance(z, Tensor) else None
        if index is not None and output is not z:
            self._by_output.put(output, index)
            self._relayed.add(id(output))
            self._keep.append(output)

    def _on_activation(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._recording or not args or not isinstance(output, Tensor):
            return
        z = args[0]
        if not isinstance(z, Tensor):
            return
        # An in-place activation has changed its input since its pre-hook matched it.
        index = self._by_output.pop(z, any_version=bool(getattr(module, "inplace", False)))
        if index is None:
            index = self._row(module, None)
            if index >= 0:
                self._record_pre(index, z)
        elif id(z) in self._relayed and index >= 0:  # through a norm: "pre" is what it reads
            self._record_pre(index, z)
        if index >= 0:
            self._record_act(index, self._kinds[module] or "other", output)

    # ------------------------------------------------------------ weights
    def _snapshot_weights(self, copy: bool) -> None:
        """The weights' norms before the step's update, and a copy of them when the
        update cannot be read from the optimizer (``copy``)."""
        params: list[Tensor] = []
        for module in self._weight_modules:
            weight = layer_weight(module)
            if isinstance(weight, nn.Parameter) and not isinstance(
                weight, nn.parameter.UninitializedParameter
            ):
                params.append(weight)
        with torch.no_grad():
            if copy:
                if [id(p) for p in params] != [id(p) for p in self._snapshot_params]:
                    self._snapshot = [
                        torch.empty_like(p, memory_format=torch.contiguous_format) for p in params
                    ]
                self._snapshot_params = params
                torch._foreach_copy_(self._snapshot, params)
            else:
                self._snapshot_params = []
            self._weight_norms = norms_by_id(params)

    def _plain_sgd(self) -> dict[int, tuple[float, str]] | None:
        """How each weight's update is read, if the optimizer is plain SGD (see
        :func:`_sgd_updates`); None: from a copy of the weights."""
        return _sgd_updates(self._optimizer)

    def watch_optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Say which optimizer updates the weights (as ``Monitor(optimizer=...)`` does,
        without calling :meth:`step` from it). A plain SGD's update is read from its
        gradient or momentum buffer instead of from a copy of the weights."""
        self._optimizer = optimizer

    def _watch_bottom(self) -> None:
        """Check the lowest weight layer's gradient for NaN/Inf each step, as soon as it is
        made: a NaN or Inf of the backward pass flows down to it from wherever it began."""
        index = next(
            (i for i, w in enumerate(self._row_weight) if w is not None and w.requires_grad), None
        )
        if index is None:
            return
        weight = self._row_weight[index]
        assert weight is not None
        row_module = self._row_module[index]
        bias = layer_bias(row_module) if row_module is not None else None
        # The bias's gradient sums the pre-activations' gradients: 300 numbers to check, not
        # 235,000, and non-finite whenever any of them is.
        watched = bias if isinstance(bias, nn.Parameter) and bias.requires_grad else weight
        self._bottom_hook = watched.register_post_accumulate_grad_hook(  # type: ignore[no-untyped-call]
            self._on_bottom_grad
        )
        self._handles.append(self._bottom_hook)

    def _on_bottom_grad(self, param: Tensor) -> None:
        if self._closed or self._replaying or self._checked:
            return
        self._checked = True
        # The inputs are checked too: an Inf input can leave the output and the bias
        # gradient finite, and put Inf into the lowest weight's gradient.
        args, kwargs = self._inputs
        watched = self._outputs + _tensors(args) + _tensors(kwargs)
        if param.grad is not None:
            watched.append(param.grad)
        flags = finite_flags(watched)
        if all(flags):
            self._finite = True
        elif self._finite:
            self._finite = False
            outputs_finite = all(flags[: len(self._outputs)])
            self._add_event(self._locate(self.steps + 1, outputs_finite=outputs_finite))

    def _check_output(self) -> None:
        """At the end of a step whose gradient was not checked: the output only."""
        if all(finite_flags(self._outputs)):
            self._finite = True
        elif self._finite:
            self._finite = False
            self._add_event(self._locate(self.steps, outputs_finite=False))

    # ------------------------------------------------------------ non-finite values
    def _locate(
        self,
        step: int,
        *,
        outputs_finite: bool,
        replay: bool = True,
        grads: dict[int, Tensor] | None = None,
        targets: Tensor | None = None,
    ) -> NonFiniteEvent:
        """Where a NaN or Inf of step ``step`` first appeared.

        The forward pass is replayed on the step's inputs with per-layer checks
        (``replay``: the weights are not yet updated); the lowest layer with a
        non-finite value is the culprit. If the forward pass is finite, the
        highest layer whose weight gradient (``grads``, else ``.grad``) is not
        is where the backward pass made it: from there it flows down.
        """
        args, kwargs = self._inputs
        batch_file = self._save_batch(step, args, kwargs, targets)
        if any(not bool(torch.isfinite(t).all()) for t in _tensors(args) + _tensors(kwargs)):
            message = f"the inputs of step {step:,} contain NaN or Inf"
            return NonFiniteEvent(step, "forward", None, message, batch_file)
        if replay:
            culprit = self._replay_forward(args, kwargs)
            if culprit is not None:
                name, cause = culprit
                message = (
                    f"NaN or Inf first appears in the forward pass of step {step:,} "
                    f"at layer {name}{cause}"
                )
                return NonFiniteEvent(step, "forward", name, message, batch_file)
        if not outputs_finite:
            message = (
                f"the output of step {step:,} is not finite, but no monitored layer's is: "
                "the operation after the last layer made it"
            )
            return NonFiniteEvent(step, "forward", None, message, batch_file)
        origin: str | None = None
        for index in range(len(self._layers) - 1, -1, -1):
            weight = self._row_weight[index]
            grad = grads.get(index) if grads is not None else None
            if grads is None and weight is not None:
                grad = weight.grad
            if grad is not None and not bool(torch.isfinite(grad).all()):
                origin = self._layers[index].name
                break
        where = f"at layer {origin}" if origin else "below the monitored layers"
        message = (
            f"the forward pass of step {step:,} is finite, but NaN or Inf first appears "
            f"in the backward pass {where}"
        )
        return NonFiniteEvent(step, "backward", origin, message, batch_file)

    def _replay_forward(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, str] | None:
        """The first layer with a non-finite value in a replay of the forward pass."""
        recorder = Recorder(self.model, self.thresholds.saturation_margin)
        self._replaying = True
        try:
            with (
                torch.random.fork_rng(devices=[]),
                torch.no_grad(),
                buffers_kept(self.model),
                recorder.installed(),
            ):
                if self._rng is not None:
                    torch.set_rng_state(self._rng)
                self.model(*args, **kwargs)
        finally:
            self._replaying = False
        for row in recorder.rows:
            if not all(mean_std(m)[2] for m in row.moments.values()):
                weight = layer_weight(row.module) if row.module is not None else None
                cause = ""
                if isinstance(weight, Tensor) and not bool(torch.isfinite(weight).all()):
                    cause = " (its weights are not finite: an earlier update made them so)"
                return row.name, cause
        return None

    def _save_batch(
        self, step: int, args: tuple[Any, ...], kwargs: dict[str, Any], targets: Tensor | None
    ) -> str | None:
        if self._save_dir is None or self.rank != 0:
            return None
        path = self._save_dir / f"nonfinite-step{step}.pt"
        batch: dict[str, Any] = {"step": step, "args": args, "kwargs": kwargs}
        if targets is not None:
            batch["targets"] = targets
        try:
            torch.save(batch, path)
        except OSError as error:
            self._save_dir = None
            self._disk_failed("batch", path, error)
            return None
        return str(path)

    def _add_event(self, event: NonFiniteEvent) -> None:
        self.history.events.append(event)
        if self.rank != 0:
            return
        self._write({"kind": "non_finite"} | event.to_dict())
        if self._tensorboard is not None:
            try:
                self._tensorboard.event(event)
            except OSError as error:
                self._stop_tensorboard(error)

    # ------------------------------------------------------------ the fast path
    @property
    def scheduled(self) -> bool:
        """Whether the step in progress is one the monitor records."""
        return self._scheduled

    def fast_begin(
        self, layers: list[tuple[str, str, str | None, nn.Parameter, bool]], x: Tensor
    ) -> bool:
        """Called by :func:`~signalprop.train.fit`'s fast path before each step.

        ``layers`` are ``(name, layer type, activation kind, weight, has an
        activation module)``; returns whether this step is recorded, and if
        so the fast path hands over its tensors.
        """
        if not self._layers:
            for name, layer_type, kind, weight, _ in layers:
                fans = (float(weight.shape[1]), float(weight.shape[0]))
                self._layers.append(LayerInfo(name, layer_type, kind, *fans, weight.numel()))
                self._row_weight.append(weight)
                self._row_module.append(None)
                self._row_kind.append(kind)
                self._index[name] = len(self._layers) - 1
        self._inputs = ((x,), {})
        self._checked = True  # fit checks the loss and the weights of every step itself
        if not self._scheduled:
            return False
        # The fast path hands its updates over, and changes the weights as it goes.
        self._sgd = None
        self._snapshot_weights(copy=False)
        self._snapshot_biases()
        self._recorded = True
        return True

    def fast_layer(self, index: int, z: Tensor, in_place: bool) -> None:
        """Layer ``index``'s pre-activation (copied when the activation overwrites it)."""
        z = z.clone() if in_place else z
        self._pre[index] = z
        if self._row_kind[index] in DYING:
            self._alive[index] = alive_units(z, unit_axis(self._row_module[index]))

    def fast_activation(self, index: int, a: Tensor) -> None:
        """Layer ``index``'s activation."""
        self._act[index] = a

    def fast_gradients(
        self, index: int, grad: Tensor, weight_grad: Tensor, lr: float, update: Tensor | None
    ) -> None:
        """Layer ``index``'s gradients w.r.t. its pre-activation and its weight, and the
        update ``-lr * update`` (``update`` None: the weight gradient itself)."""
        self._grad[index] = grad
        self._weight_grad[index] = weight_grad.contiguous()  # .grad's layout: same rounding
        self._fast_updates[index] = (lr, self._weight_grad[index] if update is None else update)

    def loss_not_finite(self, x: Tensor, y: Tensor) -> None:
        """``fit`` met a non-finite loss on ``(x, y)`` before updating: find where it began."""
        if self._finite:
            self._finite = False
            self._inputs = ((x,), {})
            self._add_event(self._locate(self.steps + 1, outputs_finite=False, targets=y))

    def fast_end(self, x: Tensor, y: Tensor) -> None:
        """After a fast-path step on ``(x, y)``: a NaN or Inf gradient of its backward pass
        shows first in the lowest weight, which the update has just changed; the highest
        layer with non-finite weights is where it began."""
        lowest = next((w for w in self._row_weight if w is not None), None)
        if self._finite and lowest is not None and not all(finite_flags([lowest])):
            self._finite = False
            self._inputs = ((x,), {})
            weights = {i: w for i, w in enumerate(self._row_weight) if w is not None}
            self._add_event(
                self._locate(
                    self.steps + 1, outputs_finite=True, replay=False, grads=weights, targets=y
                )
            )

    # ------------------------------------------------------------ the step
    def step(self) -> None:
        """End a training step: count it, and on a monitored step make its record.

        Call after ``optimizer.step()`` (and before the gradients are zeroed).
        """
        if self._closed:
            raise RuntimeError("this Monitor is closed: make a new one to monitor again")
        if self._retained:
            for index, z in self._retained.items():
                if z.grad is not None:
                    self._grad[index] = z.grad
            self._retained = {}
        if (
            self._scheduled
            and self._recorded
            and not self._grad
            and any(z.requires_grad for z in self._pre.values())
        ):
            self._clear_step()
            self._recorded = self._recording = False
            raise RuntimeError(
                "Monitor.step() was called after a forward pass whose backward pass never "
                "reached the model's layers: call it once per training step, after "
                "loss.backward() and optimizer.step() (or give Monitor(optimizer=...), "
                "which calls it for you)"
            )
        if not self._checked and self._outputs:
            self._check_output()
        self._outputs = []
        self.steps += 1
        if self._scheduled:
            self._finish_record(self.steps)
        self._scheduled = self.steps % self.every == 0
        self._recorded = False
        self._recording = False

    def _finish_record(self, step: int) -> None:
        if not self._layers:
            self._clear_step()
            return
        self._frozen = True
        rows = len(self._layers)
        # Everything stays on the model's device until the one read back below.
        device = next(iter(self._pre.values()), torch.empty(0)).device
        saturated = torch.zeros(2, rows, dtype=torch.float64, device=device)
        alive_rows = sorted(self._alive)
        with torch.no_grad():
            for index, a in self._act.items():
                kind = self._row_kind[index]
                if kind in SATURATING:
                    margin = self.thresholds.saturation_margin
                    saturated[0, index] = saturated_count(a, kind, margin)
                    saturated[1, index] = float(a.numel())
            batch = float(_batch_size(self._inputs[0]))
            # Pre-activations and activations of one shape are reduced together.
            both = dict(self._pre)
            both.update((rows + i, a) for i, a in self._act.items())
            # On a CPU the stacks are kept from record to record (see _stats.stacked).
            workspace = self._workspace if device.type == "cpu" else None
            moments = packed_moments(both, 2 * rows, device, workspace).reshape(4, 2, rows)
            sums = torch.cat(
                [
                    moments.transpose(0, 1).reshape(-1),  # 4 rows of "pre", then of "act"
                    packed_squares(self._grad, rows, device, workspace).reshape(-1),
                    saturated.reshape(-1),
                    torch.tensor([batch], dtype=torch.float64, device=device),
                ]
            )
            maxima = torch.cat(
                [self._alive[i].reshape(-1).to(torch.float64) for i in alive_rows]
                + [self._weight_quantities(rows, device).reshape(-1)]
            )
        if self.world_size > 1:
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)
            torch.distributed.all_reduce(maxima, op=torch.distributed.ReduceOp.MAX)
        values = torch.cat([sums, maxima]).tolist()  # the one read back to the host
        self._redo_overflowed(values, rows)
        sizes = [self._alive[i].numel() for i in alive_rows]
        activations = self._act
        self._clear_step()
        self._make_record(step, rows, values, sizes, alive_rows, activations)

    def _redo_overflowed(self, values: list[float], rows: int) -> None:
        """Rows whose float32 sums came out NaN or Inf, summed again in float64 in place.

        The packed sums square float32 values: a finite signal past ~1e19 (a run
        blowing up) overflows them, and its std would read NaN, as if the layer
        held NaN. Summed in float64, as ``diagnose`` sums, a finite layer stays
        finite and only a layer that holds NaN or Inf reads so. Runs only on such
        rows (and in one process: summed over processes, the local tensors no
        longer give the record's sums).
        """
        if self.world_size > 1 or all(map(math.isfinite, values[: 10 * rows])):
            return
        for start, tensors in ((0, self._pre), (4 * rows, self._act)):
            for index, x in tensors.items():
                at = [start + k * rows + index for k in (1, 2, 3)]
                if all(math.isfinite(values[i]) for i in at):
                    continue
                total, norm, n = moments(x)
                s1, s2 = total.item(), norm.item() ** 2
                mean = s1 / n if n else 0.0
                values[at[0]], values[at[1]], values[at[2]] = s1, s2 - s1 * mean, s1 * mean
        for index, g in self._grad.items():
            where = 9 * rows + index  # the sum of squares, after the counts
            if not math.isfinite(values[where]):
                values[where] = norm_of(g)[0].item() ** 2

    def _weight_quantities(self, rows: int, device: torch.device) -> Tensor:
        """Per row: the squared norms of the weight gradient, of the weight before the
        update and of the update; ABSENT where there is no weight or gradient.

        The update is read from a plain SGD's gradient or momentum buffer (or the
        fast path's), else from a copy of the weights taken before it. On a CPU,
        reading every weight again is most of what a monitored step costs.
        """
        out = torch.full((3, rows), ABSENT, dtype=torch.float64, device=device)
        owned, copies = self._weight_rows()
        # Gradients, and the tensors whose norm times lr is the update.
        grads: list[tuple[int, Tensor]] = []
        steps: list[tuple[int, float, Tensor]] = []
        weight_grads, fast, sgd = self._weight_grad, self._fast_updates, self._sgd
        state = self._optimizer.state if self._optimizer is not None else {}
        for index, weight in owned:
            grad = weight_grads.get(index) if weight_grads else None
            grad = weight.grad if grad is None else grad
            if grad is not None and not grad.is_sparse:
                grads.append((index, grad))
            update = fast.get(index) if fast else None
            if update is None and sgd is not None and id(weight) in sgd:
                lr, source = sgd[id(weight)]
                tensor = weight.grad if source == "grad" else state.get(weight, {}).get(source)
                update = None if tensor is None else (lr, tensor)
            if update is not None:
                steps.append((index, *update))
        # One norm pass over each tensor: plain SGD's step is the gradient itself.
        norms = norms_by_id([t for _, t in grads] + [t for _, _, t in steps])
        if grads:
            where = [index for index, _ in grads]
            out[0, where] = squared_norms([norms[id(t)] for _, t in grads])
        if steps:
            where = [index for index, _, _ in steps]
            lengths = [norms[id(t)] for _, _, t in steps]
            out[2, where] = squared_norms(lengths, [lr for _, lr, _ in steps])
        elif self._snapshot_params:
            row_of = {id(w): i for i, w in owned}
            changes = change_norms(self._snapshot, self._snapshot_params)
            for position, param in enumerate(self._snapshot_params):
                if id(param) in row_of:
                    out[2, row_of[id(param)]] = changes[position].square()
        norms_before = self._weight_norms
        before = [(i, norms_before[id(w)]) for i, w in owned if id(w) in norms_before]
        if before:
            out[1, [i for i, _ in before]] = squared_norms([norm for _, norm in before])
        if copies:  # a layer called twice: its later rows repeat its first
            out[:, [i for i, _ in copies]] = out[:, [first for _, first in copies]]
        return out

    def _weight_rows(self) -> tuple[list[tuple[int, Tensor]], list[tuple[int, int]]]:
        """The rows that own their weight (its first row), and ``(row, first row)`` of the
        rest: a layer called twice. Worked out once the layout is fixed."""
        if self._weight_layout is not None and self._weight_layout[0] == len(self._row_weight):
            return self._weight_layout[1], self._weight_layout[2]
        first_row: dict[int, int] = {}
        owned: list[tuple[int, Tensor]] = []
        copies: list[tuple[int, int]] = []
        for index, weight in enumerate(self._row_weight):
            if weight is None:
                continue
            first = first_row.setdefault(id(weight), index)
            if first == index:
                owned.append((index, weight))
            else:
                copies.append((index, first))
        self._weight_layout = (len(self._row_weight), owned, copies)
        return owned, copies

    def _make_record(
        self,
        step: int,
        rows: int,
        values: list[float],
        alive_sizes: list[int],
        alive_rows: list[int],
        activations: dict[int, Tensor],
    ) -> None:
        data = np.asarray(values, dtype=np.float64)
        at = 0

        def take(n: int) -> np.ndarray:
            nonlocal at
            at += n
            return data[at - n : at]

        pre = [take(rows) for _ in range(4)]
        act = [take(rows) for _ in range(4)]
        grad_n, grad_sq = take(rows), take(rows)
        sat_count, sat_n = take(rows), take(rows)
        batch = int(take(1)[0])
        alive = [take(n) for n in alive_sizes]
        grad_weight, weight_sq, update_sq = take(rows), take(rows), take(rows)
        numel = np.array([layer.weight_numel for layer in self._layers], dtype=np.float64)
        scale = 1.0 / (self.world_size * self.world_size)  # the local means' gradients, see doc

        with np.errstate(divide="ignore", invalid="ignore"):
            columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            pre_mean, pre_std = mean_std_of_packed(*pre)
            act_mean, act_std = mean_std_of_packed(*act)
            columns["pre_mean"] = (pre_mean, pre[0] > 0)
            columns["pre_std"] = (pre_std, pre[0] > 0)
            columns["act_mean"] = (act_mean, act[0] > 0)
            columns["act_std"] = (act_std, act[0] > 0)
            columns["saturated"] = (sat_count / sat_n, sat_n > 0)
            columns["grad_pre_rms"] = (rms_of_squares(grad_sq, grad_n, scale), grad_n > 0)
            has_grad = (grad_weight != ABSENT) & (numel > 0)
            columns["grad_weight_rms"] = (rms_of_squares(grad_weight, numel), has_grad)
            norm = np.sqrt(weight_sq)
            has_weight = weight_sq != ABSENT
            columns["weight_norm"] = (norm, has_weight)
            ratio = update_ratio(update_sq, weight_sq)
            # Unknown for a weight of norm zero (no scale to compare with); NaN weights or
            # updates give NaN, recorded and drawn as such rather than left out.
            known_ratio = has_weight & (update_sq != ABSENT) & (norm != 0)
            columns["update_ratio"] = (ratio, known_ratio)
            dead = np.full(rows, np.nan)
            present = np.zeros(rows, dtype=bool)
            for index, flags in zip(alive_rows, alive, strict=True):
                if len(flags):
                    dead[index] = dead_of_flags(flags)
                    present[index] = True
            # A layer holding NaN or Inf has no dead fraction: NaN (drawn as such), not
            # the 0 % its non-finite units would read as (they are not counted dead).
            dead[(pre[0] > 0) & ~np.isfinite(pre_std)] = np.nan
            columns["dead"] = (dead, present)
        record: dict[str, list[float | None]] = {}
        for quantity in QUANTITIES:
            value, known = columns[quantity]
            record[quantity] = [
                v if k else None for v, k in zip(value.tolist(), known.tolist(), strict=True)
            ]
        self._store(Record(step, batch, record), activations)

    def _store(self, entry: Record, act: dict[int, Tensor]) -> None:
        """Keep a record, and on rank 0 write it out."""
        if not self.history.layers:
            self.history.layers = list(self._layers)
            if self.rank == 0:
                started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                self._write(self.history.header(self.thresholds) | {"started": started})
        self.history.records.append(entry)
        if self._bias_norms:
            self._keep_bias_vars(entry.step)
        if self.rank != 0:
            return
        if self._log is not None:
            self._write_line(record_line(entry))
        if self._tensorboard is not None:
            names = self.history.names
            try:
                self._tensorboard.record(names, entry)
                if (len(self.history.records) - 1) % self.histograms_every == 0:
                    weights = {i: w for i, w in enumerate(self._row_weight) if w is not None}
                    self._tensorboard.histograms(entry.step, "weights", weights, names)
                    self._tensorboard.histograms(entry.step, "activations", act, names)
            except OSError as error:
                self._stop_tensorboard(error)

    def _snapshot_biases(self) -> None:
        """The biases' norms before the step's update, as the weights' (a plain dense
        stack's only: the mean-field phase needs them). One fused norm, no sync."""
        if self._biases:
            norms = norms_by_id(bias for _, bias in self._biases)
            self._bias_norms = [norms[id(bias)] for _, bias in self._biases]

    def _keep_bias_vars(self, step: int) -> None:
        """The record's σ_b² per layer, from :meth:`_snapshot_biases`."""
        squares = squared_norms(self._bias_norms).tolist()
        self._bias_norms = []
        self._bias_vars[step] = {
            name: square / bias.numel()
            for (name, bias), square in zip(self._biases, squares, strict=True)
        }

    def _clear_step(self) -> None:
        """Forget the step's tensors."""
        self._pre, self._act, self._alive, self._grad = {}, {}, {}, {}
        self._retained = {}
        self._weight_grad = {}
        self._fast_updates = {}
        self._weight_norms = {}

    def _write(self, data: dict[str, Any]) -> None:
        self._write_line(json.dumps(data))

    def _write_line(self, line: str) -> None:
        """Write one line to the log and flush it: a killed run keeps every line written.
        On a full or read-only disk the log stops here, with one warning."""
        if self._log is not None:
            try:
                self._log.write(line + "\n")
                self._log.flush()
            except OSError as error:
                self._stop_log(error)

    # ------------------------------------------------------------ results
    @property
    def events(self) -> list[NonFiniteEvent]:
        """Where NaN or Inf first appeared (one event per stretch of non-finite steps)."""
        return self.history.events

    def findings(self) -> list[TimedFinding]:
        """``diagnose``'s findings over the recorded steps, each with when it began."""
        return self.history.findings(self.thresholds, self._phase())

    def summary(self) -> str:
        """Events and findings over time, as text."""
        return self.history.summary(self.thresholds, self._phase())

    def _phase(self) -> Callable[[Record], list[Finding]]:
        """``diagnose``'s mean-field ``ordered``/``chaotic`` finding at a record: σ_w²
        from the record's weight norms, σ_b² from the biases' norms taken with them
        (kept beside the record for a plain dense stack, the only model the verdict
        speaks of), the input mean the biases cancel (autoinit's centring) as at the
        start of the run. Drawn when the findings are asked for, never while
        training; each record's once (a verdict costs ~6 ms on a 100-layer net)."""
        verdicts = self._verdicts

        def phase(record: Record) -> list[Finding]:
            scales = self._bias_vars.get(record.step)
            if scales is None:
                return []
            if record.step not in verdicts:
                rows = record.layer_stats(self.history.layers)
                measured = {
                    r.name: (r.weight_scale_fan_in, scales[r.name])
                    for r in rows
                    if r.weight_scale_fan_in is not None and r.name in scales
                }
                names = [r.name for r in rows if r.has_weight]
                verdicts[record.step] = phase_finding(self.model, measured, names, self._splits)
            found = verdicts[record.step]
            return [] if found is None else [found]

        return phase

    def close(self) -> None:
        """Remove every hook and close the log files (the monitor's history stays)."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._clear_step()
        self._keep.clear()
        self._snapshot = []
        self._workspace = {}
        self.history.steps = self.steps
        if self.rank == 0 and (self._log is not None or self._tensorboard is not None):
            summary = self.summary()
            self._write(
                {
                    "kind": "end",
                    "steps": self.steps,
                    "findings": [f.to_dict() for f in self.findings()],
                }
            )
            if self._tensorboard is not None:
                try:
                    self._tensorboard.close(self.steps, summary)
                except OSError as error:
                    self._stop_tensorboard(error)
                self._tensorboard = None
        if self._log is not None:
            try:
                self._log.close()
            except OSError as error:
                self._stop_log(error)
            self._log = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"Monitor(every={self.every}, layers={len(self._layers)}, steps={self.steps}, "
            f"records={len(self.history.records)}, {state})"
        )


#: Wrappers whose ``.module`` is the model: DDP and DataParallel.
_WRAPPERS = ("DistributedDataParallel", "DataParallel")
