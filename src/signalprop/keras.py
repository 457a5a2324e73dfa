"""Keras 3 models on the PyTorch backend: diagnosed, checked and initialized as they are.

With ``KERAS_BACKEND=torch`` a Keras 3 model is a ``torch.nn.Module``, but its
layers are not torch modules and a ``Dense`` applies its activation inside its
``call``: there is nothing for signalprop's hooks to see. This module reads such
a model into its **twin**, the equivalent :class:`~signalprop.Sequential` with
the same weights (Keras keeps a kernel as ``(in, out)``, PyTorch as ``(out,
in)``: the twin's weight is the kernel transposed), and the tools work on the
twin, so their numbers are those of the same net written with signalprop:

* ``sp.diagnose`` and ``sp.check_self_normalizing`` — on the twin, whose layers
  carry the Keras layers' names (AlphaDropout is accepted, plain Dropout flagged);
* ``sp.autoinit`` — the new weights written back with ``kernel.assign``, so the
  model stays a Keras model that trains with ``model.fit`` and saves;
* ``sp.keras.Monitor`` — the training monitor as a Keras callback,
  ``model.fit(..., callbacks=[sp.keras.Monitor(every=16)])``: the twin's rows,
  fed by the Keras model's own tensors (each ``Dense``'s ``activation`` is
  wrapped for the fit, to see its pre-activation).

They take a Keras model as Keras users hold it (:func:`signalprop._model.reads_keras`):
``inputs`` and ``targets`` as NumPy arrays or tensors (cast to the model's dtype,
integer labels to int64), a float64 model (``keras.config.set_floatx("float64")``)
read into a float64 twin, and an unbuilt ``keras.Sequential`` (no input shape)
built from the batch, or refused in one line saying how to build it when there
is none. A model on another backend (TensorFlow, JAX), or a Keras 2 /
``tf.keras`` one, gets one error saying how to switch. This is the only module
that imports Keras (the ``keras`` extra).

Read: ``Sequential`` models and functional models that are one chain, of
``Dense``, ``Conv1D``/``Conv2D``/``Conv3D`` (groups included) and
``DepthwiseConv1D``/``DepthwiseConv2D`` (with their ``activation=``; a kernel
``(*k, in, out)`` is permuted to PyTorch's ``(out, in, *k)``), ``Activation``,
``ReLU``, ``LeakyReLU``, ``PReLU``, ``ELU``, ``Softmax``, ``Flatten``,
``Dropout``, ``AlphaDropout`` and ``InputLayer``. Any other layer is named in a
``ValueError`` (separable and transposed convolutions among them). From a
convolution on, the twin's signal stays channels first through the activation
layers and convolutions that follow; it goes back to Keras's channels-last
layout only before a ``Flatten``, ``Dense``, ``Softmax`` or ``PReLU`` and at the
output. So a convolution reads, for every tool, as feeding its activation
(its own ``activation=`` or the next layer), as the same net written in PyTorch:
``autoinit`` gives a ReLU convolution He's σ_w² = 2.

Examples:
    ```python
    import os
    os.environ['KERAS_BACKEND'] = 'torch'   # before Keras is imported
    import keras, torch, signalprop as sp

    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation='selu', kernel_initializer='lecun_normal'),
        keras.layers.Dense(10, activation='softmax'),
    ])
    x = torch.randn(256, 28, 28)
    print(sp.diagnose(model, x))   # its rows named as the Keras layers
    sp.autoinit(model, x)          # written back with kernel.assign
    model.fit(x_train, y_train, callbacks=[sp.keras.Monitor(every=16)])
    ```
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from signalprop._keras_twin import SWITCH, KerasTwin, _from_keras, is_depthwise, twin
from signalprop._model import activation_kind, is_dense, is_keras, is_weight_layer
from signalprop._stats import alive_units
from signalprop._validation import check_int, invalid_parameter
from signalprop.diagnostics import Thresholds
from signalprop.monitor import Monitor as SignalpropMonitor
from signalprop.monitor import MonitorHistory, NonFiniteEvent, TimedFinding

__all__ = ["KerasTwin", "is_keras", "twin"]  # and Monitor, made on first use


class _Restore:
    """A handle that puts a Keras layer's own activation function back."""

    def __init__(self, layer: Any, function: Any) -> None:
        self.layer, self.function = layer, function

    def remove(self) -> None:
        object.__setattr__(self.layer, "activation", self.function)


class _TwinMonitor(SignalpropMonitor):
    """A :class:`signalprop.Monitor` fed by a Keras model through its twin.

    The rows, names, fans and activation kinds are the twin's, whose weights
    are views of the Keras variables (``twin(share=True)``): weight norms, the
    update read from a copy of them, and the replay that localizes a NaN all
    see the Keras weights. The Keras model itself hands over its tensors: its
    own hooks give the step's inputs and output, each ``Dense``'s and
    convolution's ``activation`` is wrapped to see its pre-activation, the
    activation layers are hooked, and the weight gradients are the Keras
    variables' (viewed in PyTorch's layout before they are read).
    """

    def __init__(self, read: KerasTwin, model: Any, **options: Any) -> None:
        self._read = read
        self._keras_model = model
        self.active = False  # inside a training batch: the only forward passes to see
        super().__init__(read.model, **options)

    def _install(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        keras_model = self._keras_model
        add = self._handles.append
        add(keras_model.register_forward_pre_hook(self._keras_begin, with_kwargs=True))
        add(keras_model.register_forward_hook(self._keras_end, with_kwargs=True))
        layers = {layer.name: layer for layer in keras_model.layers}
        children = dict(model.named_children())
        for name, module in children.items():
            layer = layers[self._read.names[name]]
            kind = activation_kind(module)
            if is_dense(module):
                act = getattr(module, "activation")  # noqa: B009
                self._kinds[act] = activation_kind(act)
                self._wrap(layer, partial(self._dense_activation, module, act))
            elif is_weight_layer(module):  # a convolution, its own activation "_activation"
                act = children.get(name + "_activation")
                if act is None:  # "linear": its output is what the next layer reads
                    self._wrap(layer, partial(self._conv_output, module))
                else:
                    self._kinds[act] = activation_kind(act)
                    self._wrap(layer, partial(self._conv_activation, module, act))
            elif kind not in (None, "softmax") and not name.endswith("_activation"):
                self._kinds[module] = kind
                add(layer.register_forward_hook(partial(self._activation_layer, module)))

    def _wrap(self, layer: Any, record: Any) -> None:
        function: Callable[[Tensor], Tensor] = layer.activation

        @functools.wraps(function)  # Keras serializes it as the function it wraps
        def activation(z: Tensor) -> Tensor:
            a = function(z)
            if self._recording:
                record(z, a)
            return a

        object.__setattr__(layer, "activation", activation)  # no Keras tracking
        self._handles.append(_Restore(layer, function))

    def _keras_begin(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.active:
            self._on_begin(model, args[:1], {})  # the twin replays on (x,) alone

    def _keras_end(
        self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        if self.active:
            self._on_end(model, args[:1], {}, output)

    def _dense_activation(self, dense: nn.Module, act: nn.Module, z: Tensor, a: Tensor) -> None:
        self._on_dense_act(dense, act, (z,), a)

    def _conv_activation(self, conv: nn.Module, act: nn.Module, z: Tensor, a: Tensor) -> None:
        self._on_weight_output(conv, (), z)
        self._on_activation(act, (z,), a)

    def _record_act(self, index: int, kind: str, a: Tensor) -> None:
        """As the base class, with a unit found along a Keras tensor's last axis: Keras's
        convolutions are channels last (the twin's rows, channels first, agree)."""
        super()._record_act(index, kind, a)
        z = self._pre.get(index)
        if index in self._alive and z is not None and z.dim() > 2:
            self._alive[index] = alive_units(z, unit=-1)

    def _conv_output(self, conv: nn.Module, z: Tensor, a: Tensor) -> None:
        self._on_weight_output(conv, (), a)

    def _activation_layer(self, module: nn.Module, layer: Any, args: Any, output: Any) -> None:
        if self._recording and args:
            self._on_activation(module, (args[0],), output)

    def _view_gradients(self) -> None:
        """The Keras kernels' gradients as the twin weights' ``.grad``, in PyTorch's layout."""
        for module, layer in self._read.weighted:
            grad = layer.kernel.value.grad
            weight = getattr(module, "weight")  # noqa: B009
            weight.grad = None if grad is None else _from_keras(grad, is_depthwise(layer))

    def _watch_bottom(self) -> None:
        if not self._read.weighted:
            return
        layer = self._read.weighted[0][1]
        watched = (layer.bias if layer.bias is not None else layer.kernel).value
        if watched.requires_grad:
            self._bottom_hook = watched.register_post_accumulate_grad_hook(self._on_bottom_grad)
            self._handles.append(self._bottom_hook)

    def _locate(self, step: int, **options: Any) -> NonFiniteEvent:
        self._view_gradients()  # a NaN's origin is read from them
        return super()._locate(step, **options)

    def _plain_sgd(self) -> dict[int, tuple[float, str]] | None:
        """Keras's plain SGD (a constant learning rate, no momentum, decay or clipping)
        updates by lr × the gradient: the update is read from it, not from a copy."""
        import keras

        optimizer: Any = getattr(self._keras_model, "optimizer", None)
        if type(optimizer).__name__ != "SGD" or type(optimizer).__module__.split(".")[0] != "keras":
            return None
        plain = (
            not float(optimizer.momentum)
            and not optimizer.nesterov
            and not optimizer.weight_decay
            and optimizer.clipnorm is None
            and optimizer.clipvalue is None
            and optimizer.global_clipnorm is None
            and not optimizer.use_ema
            and isinstance(getattr(optimizer, "_learning_rate", None), keras.Variable)
        )
        if not plain:
            return None
        lr = float(optimizer.learning_rate)
        return {id(getattr(m, "weight")): (lr, "grad") for m, _ in self._read.weighted}  # noqa: B009

    def step(self) -> None:
        recorded = self._scheduled and not self._closed
        if recorded:
            self._view_gradients()
        super().step()
        if recorded:
            for module, _ in self._read.weighted:
                getattr(module, "weight").grad = None  # noqa: B009


#: The Keras model each open monitor watches: a new one closes the old (a fit that raised
#: never reached ``on_train_end``).
_OPEN: weakref.WeakKeyDictionary[Any, _TwinMonitor] = weakref.WeakKeyDictionary()


def _monitor_callback() -> type:
    """:class:`Monitor`, made when first asked for: its base class is Keras's."""
    try:
        import keras
    except ImportError as error:  # no Keras, or Keras on a backend that is not installed
        raise ImportError(
            f"sp.keras.Monitor needs Keras 3 ({error}): pip install 'signalprop[keras]'; {SWITCH}"
        ) from None

    class Monitor(keras.callbacks.Callback):  # type: ignore[misc]
        """signalprop's training monitor as a Keras callback.

        ``model.fit(x, y, callbacks=[sp.keras.Monitor(every=16, log="monitor.jsonl")])``
        records, every ``every``-th training batch and per layer, what
        :class:`signalprop.Monitor` records for a PyTorch model (the same
        rows, named after the Keras layers, and the same numbers as on the
        model's signalprop twin), checks every batch for NaN or Inf and
        localizes it, and writes the same log and TensorBoard files. The
        weight-update ratio is read from a copy of the weights, so any Keras
        optimizer works.

        One ``fit`` per callback (a record's step counts that fit's batches);
        needs ``jit_compile=False`` (the torch backend's default). After the
        fit, :attr:`history`, :meth:`findings` and :meth:`summary` are those of
        :class:`signalprop.Monitor`.

        Args:
            every, thresholds, log, overwrite, tensorboard, histograms_every, save_batches:
                As for :class:`signalprop.Monitor` (a ``log`` that holds a run is
                refused unless ``overwrite=True``).
        """

        def __init__(
            self,
            every: int = 16,
            thresholds: Thresholds | None = None,
            *,
            log: str | Path | None = None,
            overwrite: bool = False,
            tensorboard: str | Path | None = None,
            histograms_every: int = 10,
            save_batches: str | Path | None = None,
        ) -> None:
            super().__init__()
            caller = "sp.keras.Monitor"
            if not isinstance(overwrite, bool):
                raise invalid_parameter("overwrite", caller, "True or False", overwrite)
            check_int(every, param="every", caller=caller, low=1)
            check_int(histograms_every, param="histograms_every", caller=caller, low=1)
            if thresholds is not None and not isinstance(thresholds, Thresholds):
                raise invalid_parameter("thresholds", caller, "a Thresholds or None", thresholds)
            self._options: dict[str, Any] = {
                "every": every,
                "thresholds": thresholds,
                "log": log,
                "overwrite": overwrite,
                "tensorboard": tensorboard,
                "histograms_every": histograms_every,
                "save_batches": save_batches,
            }
            self.monitor: _TwinMonitor | None = None

        def on_train_begin(self, logs: Any = None) -> None:
            if self.monitor is not None:
                raise ValueError(
                    "this sp.keras.Monitor has monitored a fit already: make a new one for "
                    "each fit (its history, log and findings are those of one run)"
                )
            model = self.model
            if getattr(model, "jit_compile", False):
                raise ValueError(
                    "sp.keras.Monitor needs jit_compile=False in model.compile: a compiled "
                    "step hides the layers' tensors"
                )
            stale = _OPEN.pop(model, None)
            if stale is not None:
                stale.close()
            self.monitor = _TwinMonitor(twin(model, share=True), model, **self._options)
            _OPEN[model] = self.monitor

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if self.monitor is not None:
                self.monitor.active = True

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.monitor is not None and self.monitor.active:
                self.monitor.active = False
                self.monitor.step()

        def on_train_end(self, logs: Any = None) -> None:
            if self.monitor is not None:
                _OPEN.pop(self.model, None)
                self.monitor.close()

        def _monitor(self) -> SignalpropMonitor:
            if self.monitor is None:
                raise RuntimeError("this sp.keras.Monitor has not seen a fit yet")
            return self.monitor

        @property
        def history(self) -> MonitorHistory:
            """The records and events (:class:`signalprop.monitor.MonitorHistory`)."""
            return self._monitor().history

        @property
        def events(self) -> list[NonFiniteEvent]:
            """Where NaN or Inf first appeared."""
            return self._monitor().events

        def findings(self) -> list[TimedFinding]:
            """``diagnose``'s findings over the recorded steps, each with when it began."""
            return self._monitor().findings()

        def summary(self) -> str:
            """Events and findings over time, as text."""
            return self._monitor().summary()

    Monitor.__module__ = __name__
    return Monitor


def __getattr__(name: str) -> Any:
    if name == "Monitor":  # made on first use: importing signalprop never imports Keras
        globals()["Monitor"] = monitor = _monitor_callback()
        return monitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
