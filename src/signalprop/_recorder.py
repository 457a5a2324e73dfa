"""Hooks that record per-layer statistics during one forward and one backward pass.

The instrument of :func:`~signalprop.diagnose`, and of the
:class:`~signalprop.Monitor`'s replay that localizes a NaN; what it measures is
computed by :mod:`signalprop._stats`.

A *row* is one measured layer: a weight layer (``nn.Linear``, ``nn.Conv*``,
:class:`~signalprop.layers.Dense`, Hugging Face's ``Conv1D``,
``nn.MultiheadAttention``; see :func:`signalprop._model.is_weight_layer`) together
with the activation module that consumes its output, or an activation module
on its own when no weight layer feeds it directly. Activation modules are
PyTorch's, signalprop's, and any parameter-free elementwise module
(:func:`signalprop.activations.probe`: Hugging Face's ``GELUActivation``, …).
Rows are named as in ``model.named_modules()`` (``"3"``, ``"features.0"``); a
module called more than once gets ``"name#2"``, ….

A normalization (:func:`signalprop._model.is_norm`) or a pass-through module
(dropout, flatten) between a weight layer and its activation does not split the
row: Linear → BatchNorm1d → ReLU is one row for the Linear with the ReLU's
statistics, and its ``"pre"`` is what the ReLU reads (the norm's output, and the
gradient with respect to it), not the Linear's raw output. A weight layer whose
output no activation reads keeps its own output as ``"pre"``.
``nn.MultiheadAttention`` is one row: its ``"pre"`` is its attention output
(after its output projection), its weight the input projection's.

Forward statistics are computed inside the hooks, when each tensor is fresh
(so in-place activations such as ``nn.ReLU(inplace=True)`` do not corrupt
them); gradients are caught by tensor hooks, which see the gradient of the
tensor as it was when recorded. Statistics stay as 0-d tensors until the end,
when they are turned into floats at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from torch import Tensor, nn

from signalprop._model import (
    EMBEDDINGS,
    activation_kind,
    hidden_modules,
    is_dense,
    is_norm,
    is_transparent,
    is_weight_layer,
    layer_weight,
    unit_axis,
)
from signalprop._stats import (
    DYING,
    SATURATING,
    Moments,
    Norm,
    alive_units,
    moments,
    norm_of,
    saturated_count,
    similarity,
)

__all__ = ["OutputMap", "Recorder", "Row", "call_name"]


@dataclass
class Row:
    """What the hooks saw of one layer; tensors until :meth:`Recorder.finish`."""

    name: str
    layer_type: str
    module: nn.Module | None = None  # the weight layer, if any
    activation: str | None = None  # registry name of its activation, if seen
    moments: dict[str, Moments] = field(default_factory=dict)  # "pre", "act"
    stats: dict[str, Tensor] = field(default_factory=dict)  # fractions
    grads: dict[str, Norm] = field(default_factory=dict)  # "pre", "out"
    hooks: dict[str, Any] = field(default_factory=dict)  # the gradient hooks, by key


V = TypeVar("V")


class OutputMap(Generic[V]):
    """Values keyed by a tensor's identity *and version*: a tensor changed in place
    since it was recorded (``out += identity`` in torchvision's residual blocks) is no
    longer the output it was, and is not matched to that output's row."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[V, int]] = {}

    def put(self, tensor: Tensor, value: V) -> None:
        self._items[id(tensor)] = (value, tensor._version)

    def get(self, tensor: Tensor, *, any_version: bool = False) -> V | None:
        """The value for ``tensor`` as recorded (``any_version``: even if changed since)."""
        item = self._items.get(id(tensor))
        if item is None or (not any_version and item[1] != tensor._version):
            return None
        return item[0]

    def pop(self, tensor: Tensor, *, any_version: bool = False) -> V | None:
        value = self.get(tensor, any_version=any_version)
        self._items.pop(id(tensor), None)
        return value

    def clear(self) -> None:
        self._items.clear()


def call_name(
    names: dict[nn.Module, str], calls: dict[str, int], module: nn.Module, new_call: bool
) -> str:
    """A row's name for a call of ``module`` in a forward pass: its name in the model
    (its class's for a module the model does not name, "(model)" for the model), with
    ``#N`` from its second call on. ``calls`` counts each name's calls in the pass:
    ``new_call`` counts one more; otherwise the name is the latest call's."""
    base = names.get(module, type(module).__name__) or "(model)"
    count = calls.get(base, 0) + 1 if new_call else calls.get(base, 1)
    if new_call:
        calls[base] = count
    return base if count == 1 else f"{base}#{count}"


class Recorder:
    """Installs the hooks on a model and collects :class:`Row` records."""

    def __init__(self, model: nn.Module, saturation_margin: float) -> None:
        self.model = model
        self.saturation_margin = saturation_margin
        self.rows: list[Row] = []
        self.input_moments: Moments | None = None
        self._names = {module: name for name, module in model.named_modules()}
        self._calls: dict[str, int] = {}
        self._open_dense: dict[nn.Module, Row] = {}
        self._pending: dict[nn.Module, list[tuple[Row, str]]] = {}
        self._by_output: OutputMap[Row] = OutputMap()
        self._relayed: set[int] = set()  # outputs of a norm or pass-through in _by_output
        self._handles: list[Any] = []
        self._keep: list[Tensor] = []  # keeps matched outputs alive so ids stay unique
        self._kinds: dict[nn.Module, str] = {}  # each hooked activation's, read once

    # ----------------------------------------------------------------- hooks
    @contextlib.contextmanager
    def installed(self) -> Iterator[Recorder]:
        """Install every hook; remove them all on exit, also when the body raises."""
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._on_model_input))
            hidden = hidden_modules(self.model)
            for module in self.model.modules():
                if module in hidden:
                    continue
                if is_dense(module):
                    self._handles.append(module.register_forward_pre_hook(self._on_dense_input))
                    self._handles.append(module.register_forward_hook(self._on_dense_output))
                elif is_weight_layer(module) or isinstance(module, EMBEDDINGS):
                    # An embedding's output is the first signal of a token-id model.
                    self._handles.append(module.register_forward_hook(self._on_weight_output))
                elif (kind := activation_kind(module)) is not None:
                    self._kinds[module] = kind
                    self._handles.append(
                        module.register_forward_pre_hook(self._on_activation_input)
                    )
                    self._handles.append(module.register_forward_hook(self._on_activation))
                elif is_norm(module) or is_transparent(module):
                    self._handles.append(module.register_forward_hook(self._on_relay))
            yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            self._by_output.clear()
            self._relayed.clear()
            self._pending.clear()
            self._keep.clear()

    def _new_row(self, module: nn.Module, weight_module: nn.Module | None) -> Row:
        name = call_name(self._names, self._calls, module, new_call=True)
        row = Row(name=name, layer_type=type(module).__name__, module=weight_module)
        self.rows.append(row)
        return row

    def _on_model_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        # Token ids and masks are not a signal: only floating-point inputs have statistics.
        if (
            self.input_moments is None
            and args
            and isinstance(args[0], Tensor)
            and args[0].is_floating_point()
        ):
            self.input_moments = moments(args[0])

    def _watch(self, row: Row, key: str, tensor: Tensor) -> None:
        earlier = row.hooks.pop(key, None)
        if earlier is not None:  # "pre" moved on from a layer's output to its norm's
            earlier.remove()
        if tensor.requires_grad:
            row.hooks[key] = tensor.register_hook(  # type: ignore[no-untyped-call]
                lambda grad: row.grads.__setitem__(key, norm_of(grad))
            )

    def _record_pre(self, row: Row, z: Tensor) -> None:
        row.moments["pre"] = moments(z)
        self._watch(row, "pre", z)

    def _record_activation_input(self, row: Row, kind: str, z: Tensor) -> None:
        """Statistics of the pre-activation that need it fresh, before an in-place op."""
        if kind in DYING and z.numel() and z.dim() >= 1:
            row.stats["dead"] = 1.0 - alive_units(z, unit_axis(row.module)).float().mean()
            if z.dim() > 1 and z.shape[0] > 1:
                row.stats["similarity"] = similarity(z)

    def _record_activation(self, row: Row, kind: str, y: Tensor) -> None:
        row.activation = kind
        y_data = y.detach()
        row.moments["act"] = moments(y_data)
        if kind in SATURATING:
            row.stats["saturated"] = saturated_count(y_data, kind, self.saturation_margin) / max(
                1, y_data.numel()
            )
        self._watch(row, "out", y)

    def _on_weight_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, tuple) and output:  # nn.MultiheadAttention: (output, weights)
            output = output[0]
        if not isinstance(output, Tensor) or not output.is_floating_point():
            return
        row = self._new_row(module, module)
        self._record_pre(row, output)
        self._by_output.put(output, row)
        self._keep.append(output)

    def _on_relay(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """A norm or pass-through module: its output belongs to the row of its input."""
        if not args or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
            return
        row = self._by_output.get(args[0])
        if row is not None and output is not args[0]:
            self._by_output.put(output, row)
            self._relayed.add(id(output))
            self._keep.append(output)

    def _on_dense_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._open_dense[module] = self._new_row(module, module)

    def _on_dense_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        row = self._open_dense.pop(module, None)
        if row is not None and isinstance(output, Tensor):
            self._by_output.put(output, row)
            self._keep.append(output)

    def _on_activation_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Match the activation to its row and record the pre-activation while it is fresh.

        This runs before the activation, so ``nn.ReLU(inplace=True)`` has not yet
        overwritten its input.
        """
        if not args or not isinstance(args[0], Tensor):
            return
        z = args[0]
        kind = self._kinds.get(module) or activation_kind(module) or "other"
        dense_row = next(
            (
                row
                for dense, row in reversed(self._open_dense.items())
                if dense.activation is module
            ),
            None,
        )
        if dense_row is not None:
            row = dense_row
            self._record_pre(row, z)
        else:
            matched = self._by_output.pop(z)
            if matched is None:
                row = self._new_row(module, None)
                self._record_pre(row, z)
            else:
                row = matched
                if id(z) in self._relayed:  # through a norm: "pre" is what the activation reads
                    self._record_pre(row, z)
        self._record_activation_input(row, kind, z)
        self._pending.setdefault(module, []).append((row, kind))

    def _on_activation(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        pending = self._pending.get(module)
        if not pending:
            return
        row, kind = pending.pop()
        if isinstance(output, Tensor):
            self._record_activation(row, kind, output)

    # ---------------------------------------------------------------- result
    def weight_parameters(self) -> list[Tensor]:
        """The weights of recorded rows, for one ``torch.autograd.grad`` call."""
        seen: dict[int, Tensor] = {}
        for row in self.rows:
            weight = layer_weight(row.module) if row.module is not None else None
            if isinstance(weight, Tensor) and weight.requires_grad:
                seen.setdefault(id(weight), weight)
        return list(seen.values())
