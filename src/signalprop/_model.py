"""Reading a model: its weight layers and the activations on either side of each.

``diagnose``, ``autoinit``, the self-normalization check and the mean-field
verdict ask this module what a model is made of; none of them walks the model
on its own. For every weight layer (``nn.Linear``, ``nn.Conv*``,
:class:`~signalprop.layers.Dense`, Hugging Face's ``Conv1D``,
``nn.MultiheadAttention``: :func:`is_weight_layer`) it finds:

* the *producer*: the activation whose output the layer reads (or the
  model's input, or nothing known: another weight layer, a normalization, a
  sum);
* the *consumer*: the activation applied to the layer's output.

Both come from a torch.fx trace that keeps activations and Dense layers whole,
so activations called as functions in ``forward`` (``torch.tanh(self.fc(x))``,
``x.relu()``) count; modules a signal passes through unchanged in scale
(dropout, flatten, reshapes, permutes) are looked through, and so is one normalization
layer between a weight layer and its activation (kept as the layer's ``norm``).
A module called more than once is one layer (its ``calls`` counted).
Activations are PyTorch's and signalprop's modules and any parameter-free
elementwise module (:func:`activation_kind`). Modules with a weight the reader
cannot read (``nn.Bilinear``, LoRA adapters, recurrent layers) are listed with
the reason (:func:`refusal`).

A model torch.fx cannot trace (every Hugging Face model: their forward indexes
and assigns into tensors) is read from its modules instead, each module's
children in the order its ``forward``'s source calls them, and says so.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import operator
import re
import textwrap
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import torch
from torch import Tensor, nn

from signalprop import _stats
from signalprop import activations as _activations
from signalprop.activations import activation_key
from signalprop.init import compute_fans, fans_for, is_hf_conv1d

__all__ = [
    "EMBEDDINGS",
    "TRANSPARENT",
    "ModelView",
    "ResidualBranch",
    "WeightLayer",
    "activation_key",
    "activation_kind",
    "buffers_kept",
    "find_residual_branches",
    "hidden_modules",
    "is_keras",
    "is_norm",
    "is_transparent",
    "is_weight_layer",
    "layer_bias_split",
    "layer_fans",
    "layer_scales",
    "layer_weight",
    "read_model",
    "reads_keras",
    "refusal",
    "trace",
    "unit_axis",
    "unread",
]

#: Modules a signal passes through unchanged in scale.
TRANSPARENT = (nn.Dropout, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten)


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Put the model's buffers (e.g. BatchNorm statistics) back as they were on exit:
    the measuring passes of diagnose, the Monitor and the residual stream leave none moved."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                if buffer.shape == value.shape:
                    buffer.copy_(value)


def is_transparent(module: nn.Module) -> bool:
    """Whether a signal passes ``module`` unchanged in scale: :data:`TRANSPARENT`, or a
    module marked ``_signalprop_transparent`` (the Keras twin's layout permutes)."""
    return isinstance(module, TRANSPARENT) or _flag(module, "_signalprop_transparent")


#: Tensor methods that are activations: ``x.relu()``.
METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "relu_": "relu"}
#: Functions and tensor methods that only reshape or move axes (a permute changes the
#: layout, not the scale: Keras's channels-last convolutions, ``x.permute(0, 3, 1, 2)``).
SHAPE_FUNCTIONS = (
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.permute,
    torch.movedim,
    torch.moveaxis,
    torch.transpose,
    torch.swapaxes,
    torch.swapdims,
)
SHAPE_METHODS = {
    "view",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "permute",
    "movedim",
    "moveaxis",
    "transpose",
    "swapaxes",
    "swapdims",
}

Activation = nn.Module | Callable[[Tensor], Tensor]


def is_keras(model: object) -> bool:
    """Whether ``model`` is a Keras model (any version, any backend), without importing Keras.

    Examples:
        >>> import torch, signalprop as sp
        >>> sp.keras.is_keras(torch.nn.Linear(2, 2))
        False
    """
    return any(
        cls.__module__.split(".")[0] in ("keras", "tf_keras")
        or cls.__module__.startswith("tensorflow.python.keras")
        for cls in type(model).__mro__
    )


P = ParamSpec("P")
R = TypeVar("R")


#: The Keras reader (:func:`signalprop._keras_twin.twin`), registered by that module,
#: which sits above this one: the model reader imports nothing above itself.
_KERAS_READER: Callable[..., Any] | None = None


def register_keras_reader(reader: Callable[..., Any]) -> None:
    """Set the function that reads a Keras model into its PyTorch twin."""
    global _KERAS_READER
    _KERAS_READER = reader


def reads_keras(*, write_back: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let a tool that takes a torch model take a Keras 3 model too, as Keras users hold it.

    A Keras model (first argument) is read into its twin by
    :func:`signalprop.keras.twin` (an unbuilt one built from the tool's
    ``inputs``), the tool's ``inputs`` and ``targets`` (NumPy arrays, tensors,
    tuples of them) are converted to tensors in the twin's dtype (integer labels
    to int64), the tool runs on the twin, and with ``write_back`` the twin's
    weights go back into the Keras layers.
    """

    def wrap(tool: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(tool)

        @functools.wraps(tool)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if not args or not is_keras(args[0]):
                return tool(*args, **kwargs)
            if _KERAS_READER is None:  # signalprop's __init__ imports the reader
                raise RuntimeError("import signalprop first: it registers the Keras reader")
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:  # the tool itself says what is wrong
                return tool(*args, **kwargs)
            batch = bound.arguments.get("inputs")
            read = _KERAS_READER(args[0], example=batch, caller=tool.__name__)
            for name in ("inputs", "targets"):
                if name in bound.arguments:
                    bound.arguments[name] = read.tensors(bound.arguments[name])
            bound.arguments[next(iter(signature.parameters))] = read.model
            result = tool(*bound.args, **bound.kwargs)
            if write_back:
                read.write_back()
            return result

        return run

    return wrap


def _has(module: nn.Module, name: str) -> bool:
    """``hasattr(module, name)`` without the ``AttributeError`` that ``nn.Module``
    raises and formats for a missing name: the reader asks every module of a model
    a few such questions, and a miss costs microseconds."""
    if type(module).__getattr__ is not nn.Module.__getattr__:  # e.g. a wrapper forwarding
        return hasattr(module, name)
    return (
        name in module.__dict__
        or name in module._parameters
        or name in module._buffers
        or name in module._modules
        or hasattr(type(module), name)
    )


def _flag(module: nn.Module, name: str) -> bool:
    """``bool(getattr(module, name, False))``, a miss answered as :func:`_has` does."""
    return _has(module, name) and bool(getattr(module, name, False))


def is_weight_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer whose weight acts as a dense or convolutional map
    with known fans: ``nn.Linear``, ``nn.Conv*``, :class:`~signalprop.layers.Dense`,
    Hugging Face's ``Conv1D`` (GPT-2) and ``nn.MultiheadAttention``.

    ``nn.MultiheadAttention`` is one layer: its forward uses ``out_proj``'s weight
    without calling ``out_proj`` as a module (hooks on it never run), so its
    output, after the output projection, is measured on the attention module, and
    its weight is the input projection's (:func:`layer_weight`).
    """
    return (
        isinstance(module, nn.Linear | nn.modules.conv._ConvNd | nn.MultiheadAttention)
        or _flag(module, "_signalprop_dense")
        or is_hf_conv1d(module)
    )


def layer_weight(module: nn.Module) -> Tensor | None:
    """The weight whose scale is a weight layer's: ``module.weight``, or
    ``nn.MultiheadAttention``'s input projection (``in_proj_weight``, or the
    query's ``q_proj_weight`` when the projections are separate)."""
    weight: object = getattr(module, "weight", None)
    if isinstance(module, nn.MultiheadAttention):
        packed: object = module.in_proj_weight
        weight = packed if packed is not None else module.q_proj_weight
    return weight if isinstance(weight, Tensor) else None


def layer_bias(module: nn.Module) -> Tensor | None:
    """The bias that goes with :func:`layer_weight` (``in_proj_bias`` for attention)."""
    bias = (
        module.in_proj_bias
        if isinstance(module, nn.MultiheadAttention)
        else getattr(module, "bias", None)
    )
    return bias if isinstance(bias, Tensor) else None


def out_in_weight(module: nn.Module) -> Tensor | None:
    """The layer's weight laid out ``(out, in, *k)``, as a unit's sum over its inputs
    reads it: Hugging Face's ``Conv1D`` ``(in, out)`` and an ungrouped transposed
    convolution ``(in, out, *k)`` transposed; None where no such view exists
    (a grouped transposed convolution)."""
    weight = layer_weight(module)
    if weight is None:
        return None
    if is_hf_conv1d(module):
        return weight.t()
    if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
        return weight.transpose(0, 1) if module.groups == 1 else None
    return weight


#: Layers that turn token ids into the first signal: measured like a weight layer.
EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def unit_axis(module: nn.Module | None) -> int:
    """The dimension of a layer's output that indexes its units (for
    :func:`signalprop._stats.alive_units`): a convolution's channels (1), any other
    layer's features (-1, whatever token or position dimensions come before); 1 when
    the layer is not known (``module`` None)."""
    return -1 if module is not None and not isinstance(module, nn.modules.conv._ConvNd) else 1


def layer_fans(module: nn.Module) -> tuple[int, int]:
    """Fan-in and fan-out of a weight layer: :func:`signalprop.init.fans_for`, or from
    :func:`layer_weight`'s shape (:func:`signalprop.init.compute_fans`) for a type it
    does not know."""
    try:
        return fans_for(module)
    except ValueError:
        weight = layer_weight(module)
        assert weight is not None
        return compute_fans(weight.shape)


def layer_scales(module: nn.Module) -> dict[str, float]:
    """:func:`signalprop._stats.weight_scales` of a weight layer's weight, bias and fans."""
    weight = layer_weight(module)
    assert weight is not None
    fan_in, fan_out = layer_fans(module)
    return _stats.weight_scales(weight, layer_bias(module), fan_in, fan_out)


def layer_bias_split(module: nn.Module) -> tuple[float, float]:
    """:func:`signalprop._stats.bias_split` of a weight layer's bias and its weight laid
    out ``(out, in, *k)`` (:func:`out_in_weight`)."""
    return _stats.bias_split(out_in_weight(module), layer_bias(module))


#: What the reader does not read, by type, and why (see :func:`refusal`).
REFUSED: dict[type[nn.Module], str] = {
    nn.Bilinear: (
        "a bilinear form x1ᵀ·W·x2 (weight (out, in1, in2)): its output's scale is the "
        "product of two inputs', which no fan-in sets"
    ),
    nn.RNNBase: (
        "a recurrent layer: its weights act once per time step, and the mean-field "
        "theory of a feed-forward stack does not describe the recurrence"
    ),
    nn.RNNCellBase: (
        "a recurrent cell: its weights act once per time step, and the mean-field "
        "theory of a feed-forward stack does not describe the recurrence"
    ),
}
#: Why a LoRA-style adapter is not read.
LORA_REASON = (
    "a LoRA adapter: its output base(x) + B(A(x))·scale is a layer plus a low-rank "
    "update, whose scale no one weight sets; neither part is read (merge the adapter "
    "into the layer first, e.g. peft's merge_and_unload())"
)


def refusal(module: nn.Module) -> str | None:
    """Why the reader does not read ``module`` although it holds a weight (None: it does,
    or it holds none): ``nn.Bilinear``, recurrent layers, and LoRA-style adapters
    (peft's ``LoraLayer``, or any module with ``lora_A`` and ``lora_B``)."""
    for kind, reason in REFUSED.items():
        if isinstance(module, kind):
            return reason
    if (_has(module, "lora_A") and _has(module, "lora_B")) or any(
        cls.__name__ == "LoraLayer" for cls in type(module).__mro__
    ):
        return LORA_REASON
    return None


def unread(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(name, type, reason)`` of each module :func:`refusal` refuses, outermost only
    (an adapter's inner layers are not listed again)."""
    found: list[tuple[str, str, str]] = []
    inside: set[nn.Module] = set()
    for name, module in model.named_modules():
        if module in inside:
            continue
        reason = refusal(module)
        if reason is not None:
            found.append((name or "(model)", type(module).__name__, reason))
            inside.update(module.modules())
    return found


def hidden_modules(model: nn.Module) -> set[nn.Module]:
    """Modules not measured on their own: those inside a refused module (a LoRA
    adapter's base layer and its ``lora_A``/``lora_B``) and those inside a weight layer
    that is not a Dense layer (``nn.MultiheadAttention``'s ``out_proj``)."""
    hidden: set[nn.Module] = set()
    for module in model.modules():
        if module in hidden:
            continue
        if refusal(module) is not None:
            hidden.update(module.modules())
        elif is_weight_layer(module) and not is_dense(module):
            hidden.update(m for m in module.modules() if m is not module)
    return hidden


#: PyTorch's normalization layers: BatchNorm*, InstanceNorm* (``_NormBase``), LayerNorm,
#: GroupNorm, RMSNorm, LocalResponseNorm, CrossMapLRN2d.
NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
)
#: A class name that says "normalization" (``LlamaRMSNorm``, ``T5LayerNorm``,
#: ``FrozenBatchNorm2d``, timm's ``LayerNorm2d``), not "normal"/"normalize".
_NORM_NAME = re.compile(r"Norm(?!al)")


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer.

    PyTorch's own (:data:`NORMS`) by type; a look-alike from another library
    (Hugging Face's ``T5LayerNorm``/``LlamaRMSNorm``, timm's ``LayerNorm2d``,
    torchvision's ``FrozenBatchNorm2d``) by its class name: a class in its MRO
    whose name contains ``Norm`` (not ``Normal``), with no child modules, that
    is neither a weight layer nor an activation. Such a module rescales every
    signal it reads to a fixed scale, so the weight layer before it no longer
    sets its consumer's pre-activation scale.
    """
    if isinstance(module, NORMS):
        return True
    if is_weight_layer(module) or next(module.children(), None) is not None:
        return False
    return any(_NORM_NAME.search(cls.__name__) for cls in type(module).__mro__[:-1])


def is_dense(module: nn.Module) -> bool:
    """Whether ``module`` is a :class:`~signalprop.layers.Dense` (it applies its own activation)."""
    return _flag(module, "_signalprop_dense")


def activation_kind(module: nn.Module) -> str | None:
    """Registry name of an activation module, ``"other"`` for another, else None.

    Known by type: signalprop's and PyTorch's activation modules (PyTorch's
    that are not in the registry are ``"other"``). Any other module without
    parameters, buffers or children that is not a normalization or a
    pass-through (dropout, flatten) is evaluated once by
    :func:`signalprop.activations.probe`: an elementwise one (Hugging Face's
    ``GELUActivation``, ``NewGELUActivation``, timm's GELU, a user's class around
    ``torch.tanh``) is an activation, named by what it computes.
    """
    name = _activations.name_of(module)
    if name is not None:
        return "sigmoid" if name == "logistic" else name
    if type(module).__module__ == "torch.nn.modules.activation":
        return None if isinstance(module, nn.MultiheadAttention) else "other"
    if (
        type(module).__module__.startswith("torch.nn.")
        or is_transparent(module)
        or is_weight_layer(module)
        or is_norm(module)
    ):
        return None
    return _activations.probe(module)


class _Tracer(torch.fx.Tracer):
    """A torch.fx tracer that keeps activation modules and Dense layers whole.

    PyTorch's tracer only keeps ``torch.nn`` modules as leaves; signalprop's
    activations (subclasses defined elsewhere) would be traced through into
    anonymous function calls.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if activation_kind(m) is not None or is_dense(m) or is_norm(m) or is_transparent(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _signature(model: nn.Module) -> tuple[object, ...]:
    """What a reading of ``model`` depends on: its modules (the same objects), their
    training flags (a forward may branch on them) and its ``forward``."""
    modules = list(model.modules())
    return (
        *(id(m) for m in modules),
        *(m.training for m in modules),
        id(type(model).forward),
        id(model.__dict__.get("forward")),
    )


#: trace's answers, per model, with the signature they were read under: diagnose, the
#: residual finder and the stream measurement each ask on every call.
_TRACES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[object, ...], torch.fx.Graph | None]] = (
    weakref.WeakKeyDictionary()
)


def trace(model: nn.Module) -> torch.fx.Graph | None:
    """The model's torch.fx graph, activations and Dense layers as leaves (None: untraceable).

    The graph is kept while :func:`_signature` stays the same; callers read it and
    never change it.
    """
    signature = _signature(model)
    cached = _TRACES.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    try:
        graph: torch.fx.Graph | None = _Tracer().trace(model)
    except Exception:  # any model torch.fx cannot trace
        graph = None
    _TRACES[model] = (signature, graph)
    return graph


@dataclass
class WeightLayer:
    """One weight layer and its neighbours.

    Attributes:
        name: Its name in ``model.named_modules()`` (``"(model)"`` for the model itself).
        module: The layer.
        producer: The activation whose output it reads (None: the model's
            input when ``reads_data``, else nothing known).
        reads_data: Whether its input is the model's input.
        consumer: The activation applied to its output (a Dense layer's own),
            None when there is none. A normalization between the two is
            looked through: Linear → BatchNorm1d → ReLU has the ReLU as consumer.
        norm: The normalization layer (see :func:`is_norm`) between the layer
            and its consumer (or, with no consumer, the one its output goes
            through first), None when there is none. With a norm, the weights'
            scale does not set the consumer's pre-activation scale: the norm does.
        calls: How many times the forward pass calls the module (a module called
            twice is listed once, with the neighbours of its first call).
    """

    name: str
    module: nn.Module
    producer: Activation | None
    reads_data: bool
    consumer: Activation | None
    norm: nn.Module | None = None
    calls: int = 1


@dataclass
class ModelView:
    """What :func:`read_model` found.

    Attributes:
        layers: The weight layers in the order the forward pass runs them
            (registration order for an untraceable model).
        traced: Whether a torch.fx trace succeeded.
        plain: Whether the model is one chain of weight layers and
            elementwise activations (no branch, no other operation): the
            architecture the mean-field theory describes.
        notes: What a user should know about the reading (an untraceable
            model, modules not read).
        skipped: ``(name, type, reason)`` of each module with a weight that is
            not read (see :func:`refusal`); a note names each too.
    """

    layers: list[WeightLayer]
    traced: bool
    plain: bool
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def _own_activation(module: nn.Module) -> Activation | None:
    """A Dense layer's activation, None for the identity."""
    activation = getattr(module, "activation", None)
    if isinstance(activation, nn.Module) and not isinstance(activation, nn.Identity):
        return activation
    return None


def _node_activation(model: nn.Module, node: torch.fx.Node) -> Activation | None:
    """The activation a graph node applies, if it is one."""
    if node.op == "call_module":
        module = model.get_submodule(str(node.target))
        return module if activation_kind(module) is not None else None
    if node.op == "call_function" and callable(node.target):
        module_for = _activations.get(node.target)
        return None if isinstance(module_for, _activations.Lambda) else module_for
    if node.op == "call_method" and node.target in METHODS:
        return _activations.get(METHODS[str(node.target)])
    return None


def _passes_through(model: nn.Module, node: torch.fx.Node) -> bool:
    """Whether a node leaves the signal's scale alone (dropout, flatten, reshapes)."""
    if node.op == "call_module":
        module = model.get_submodule(str(node.target))
        return is_transparent(module)
    if node.op == "call_function":
        return node.target in SHAPE_FUNCTIONS
    if node.op == "call_method":
        return node.target in SHAPE_METHODS
    return False


def _norm_at(model: nn.Module, node: torch.fx.Node) -> nn.Module | None:
    """The normalization module a graph node calls, if it calls one."""
    if node.op != "call_module":
        return None
    module = model.get_submodule(str(node.target))
    return module if is_norm(module) else None


def _consumer(model: nn.Module, node: torch.fx.Node) -> tuple[Activation | None, nn.Module | None]:
    """The activation a node's output flows into alone, and the norm on the way (if any).

    Transparent nodes and one normalization are looked through; a branch (the
    output used twice) or any other operation ends the search.
    """
    user = node
    norm: nn.Module | None = None
    while len(user.users) == 1:
        (user,) = user.users
        if _passes_through(model, user):
            continue
        found = _norm_at(model, user)
        if found is not None and norm is None:
            norm = found
            continue
        return _node_activation(model, user), norm
    return None, norm


def _producer(model: nn.Module, node: torch.fx.Node) -> tuple[Activation | None, bool]:
    source = node.args[0] if node.args else None
    while isinstance(source, torch.fx.Node):
        if source.op == "placeholder":
            return None, True
        if source.op == "call_module":
            module = model.get_submodule(str(source.target))
            if is_dense(module):
                return _own_activation(module), False
        if _passes_through(model, source):
            source = source.args[0] if source.args else None
            continue
        return _node_activation(model, source), False
    return None, False


def _is_plain(model: nn.Module, graph: torch.fx.Graph) -> bool:
    placeholders = 0
    for node in graph.nodes:
        if node.op == "placeholder":
            placeholders += 1
            continue
        if node.op == "output":
            continue
        if len(node.users) != 1:
            return False
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            known = is_weight_layer(module) or activation_kind(module) is not None
            if not known and not is_transparent(module):
                return False
        elif not (_node_activation(model, node) is not None or _passes_through(model, node)):
            return False
    return placeholders == 1


#: What read_model found, per model, with the modules it was read from: reading means
#: tracing, and diagnose asks again on every call (each epoch, in fit's snapshots).
_READ: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[object, ...], ModelView]] = (
    weakref.WeakKeyDictionary()
)


def read_model(model: nn.Module) -> ModelView:
    """The weight layers of ``model`` with the activations before and after each.

    The result is kept while the model's modules stay the same objects (any
    module added, removed or replaced, a training flag changed, or a new
    ``forward`` bound on the instance, reads it again).
    """
    signature = _signature(model)
    cached = _READ.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    view = _read(model)
    _READ[model] = (signature, view)
    return view


#: _source_order's answers, per class.
_SOURCE_ORDER: dict[type, tuple[str, ...]] = {}


def _source_order(cls: type[nn.Module]) -> tuple[str, ...]:
    """The attributes of ``self`` that ``cls.forward`` names, in the order it first
    uses them (a call after its arguments; empty when the source cannot be read)."""
    if cls not in _SOURCE_ORDER:
        _SOURCE_ORDER[cls] = _read_source_order(cls)
    return _SOURCE_ORDER[cls]


def _read_source_order(cls: type[nn.Module]) -> tuple[str, ...]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls.forward)))
    except (OSError, TypeError, SyntaxError):
        return ()
    function = tree.body[0] if tree.body else None
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) or not function.args.args:
        return ()
    me = function.args.args[0].arg
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call):  # a call runs after its arguments: fc2(act(fc1(x)))
            for argument in (*node.args, *(keyword.value for keyword in node.keywords)):
                visit(argument)
            visit(node.func)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == me:
                found.append(node.attr)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    for statement in function.body:
        visit(statement)
    return tuple(dict.fromkeys(found))


def _leaves_in_call_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules a signal meets, for a model torch.fx cannot trace, best guessed.

    Each module's children are taken in the order its ``forward``'s source names
    them (``self.fc1``, ``self.act``, ``self.fc2``), the others after them in
    registration order: Hugging Face's ViT registers its MLP's activation before
    its two layers, and calls it between them. A weight layer, a refused module
    and a module without children are leaves; a module reached twice counts once.
    """
    names = {module: name for name, module in model.named_modules()}
    leaves: list[tuple[str, nn.Module]] = []
    seen: set[nn.Module] = set()

    def walk(module: nn.Module) -> None:
        if module in seen:
            return
        seen.add(module)
        children = dict(module.named_children())
        if not children or is_weight_layer(module) or refusal(module) is not None:
            leaves.append((names.get(module, ""), module))
            return
        order = [name for name in _source_order(type(module)) if name in children]
        order += [name for name in children if name not in order]
        for name in order:
            walk(children[name])

    walk(model)
    return leaves


def _read(model: nn.Module) -> ModelView:
    names = {module: name for name, module in model.named_modules()}
    skipped = unread(model)
    notes = [f"not read: {name} ({kind}): {reason}" for name, kind, reason in skipped]
    hidden = hidden_modules(model)
    graph = trace(model)
    if graph is not None:
        layers: list[WeightLayer] = []
        seen: dict[nn.Module, WeightLayer] = {}
        for node in graph.nodes:
            if node.op != "call_module":
                continue
            module = model.get_submodule(str(node.target))
            if not is_weight_layer(module) or module in hidden:
                continue
            if module in seen:  # a shared module: one layer, its calls counted
                seen[module].calls += 1
                continue
            producer, reads_data = _producer(model, node)
            if is_dense(module):
                consumer, norm = _own_activation(module), None
            else:
                consumer, norm = _consumer(model, node)
            layer = WeightLayer(
                names.get(module) or "(model)", module, producer, reads_data, consumer, norm
            )
            seen[module] = layer
            layers.append(layer)
        if not any(node.op == "call_module" for node in graph.nodes) and is_weight_layer(model):
            layers = [WeightLayer("(model)", model, None, True, _own_activation(model))]
        return ModelView(
            layers, traced=True, plain=_is_plain(model, graph), notes=notes, skipped=skipped
        )
    leaves = _leaves_in_call_order(model)
    layers = []
    for index, (name, module) in enumerate(leaves):
        if not is_weight_layer(module) or module in hidden:
            continue
        before_activation: Activation | None = None
        reads_data = True
        for _, before in reversed(leaves[:index]):
            if is_transparent(before):
                continue
            reads_data = False
            if is_dense(before):
                before_activation = _own_activation(before)
            elif activation_kind(before) is not None:
                before_activation = before
            break
        after_activation: Activation | None = None
        norm = None
        if is_dense(module):
            after_activation = _own_activation(module)
        else:
            # Registration order does not show a residual sum: a norm counts as the
            # layer's only when an activation follows it (Linear, BatchNorm, ReLU).
            candidate: nn.Module | None = None
            for _, following in leaves[index + 1 :]:
                if is_transparent(following):
                    continue
                if is_norm(following) and candidate is None:
                    candidate = following
                    continue
                if activation_kind(following) is not None:
                    after_activation, norm = following, candidate
                break
        layers.append(
            WeightLayer(
                name or "(model)", module, before_activation, reads_data, after_activation, norm
            )
        )
    return ModelView(
        layers,
        traced=False,
        plain=False,
        notes=[
            "torch.fx could not trace the model: activations found by the order each "
            "module's forward names its children (registration order where it does not)",
            *notes,
        ],
        skipped=skipped,
    )


#: Graph operations that sum a residual branch into its stream: ``x + f(x)``, ``x += f(x)``,
#: ``torch.add(x, f(x))``, ``x.add(f(x))``.
_ADDS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
#: Modules that set their output's scale whatever their input's: a branch ending in one
#: adds the variance its affine weight gives (``γ² + β²``).
NORMALIZATIONS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class ResidualBranch:
    """One residual block ``y = skip + branch`` found in a model's graph.

    Attributes:
        add: The graph node that sums the branch into the stream.
        steps: The branch's modules and functions from its input to the add, as
            ``(kind, name, object)``: ``"layer"`` (a weight layer), ``"norm"`` (a
            normalization), ``"activation"`` (an elementwise activation), ``"scale"``
            (a multiplication by a constant or a one-element parameter: ReZero's α).
        layers: Names of the branch's weight layers, bottom to top.
        last: The branch's last weight layer (its output goes to the add).
        norm: The normalization between ``last`` and the add (ResNet's BN2), if any:
            its affine weight, not ``last``, sets the branch's scale.
        projection: The weight layer on the skip path (a 1×1 conv or Linear
            projection), None for an identity skip.
        skip_steps: The skip path's steps (empty for an identity skip).
        post: The activation applied to the sum (post-activation blocks,
            ``relu(x + f(x))``), None for a pre-activation ("full") block.
        source: The graph node the block reads (the stream entering it).
        output: The graph node of the stream leaving the block (the add, or ``post``'s).
    """

    add: torch.fx.Node
    steps: list[tuple[str, str, Any]]
    layers: list[str]
    last: nn.Module
    norm: nn.Module | None
    projection: str | None
    skip_steps: list[tuple[str, str, Any]]
    post: Activation | None
    source: torch.fx.Node
    output: torch.fx.Node


def _ancestors(node: torch.fx.Node) -> set[torch.fx.Node]:
    seen: set[torch.fx.Node] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        for parent in current.all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _skip_source(
    model: nn.Module, skip: torch.fx.Node, ancestors: set[torch.fx.Node]
) -> tuple[torch.fx.Node, str | None, list[tuple[str, str, Any]]] | None:
    """Where a skip path starts in the branch's ancestry: the node itself (identity), or
    the input of a projection (a weight layer, optionally followed by a normalization);
    with the projection's name and its steps (as :func:`_branch_steps` gives them)."""
    if skip in ancestors:
        return skip, None, []
    node, projection = skip, None
    steps: list[tuple[str, str, Any]] = []
    for _ in range(4):  # projection: [norm ∘] weight layer, through transparent modules
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            if is_weight_layer(module):
                if projection is not None:
                    return None
                projection = str(node.target)
                steps.append(("layer", projection, module))
            elif isinstance(module, NORMALIZATIONS):
                steps.append(("norm", str(node.target), module))
            elif not _passes_through(model, node):
                return None
        elif not _passes_through(model, node):
            return None
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node):
            return None
        if source in ancestors and projection is not None:
            return source, projection, steps[::-1]
        node = source
    return None


def _is_scalar(model: nn.Module, value: Any) -> bool:
    if isinstance(value, int | float):
        return True
    if isinstance(value, torch.fx.Node) and value.op == "get_attr":
        attribute = model.get_parameter(str(value.target)) if value.target else None
        return isinstance(attribute, Tensor) and attribute.numel() == 1
    return False


def _branch_steps(
    model: nn.Module, end: torch.fx.Node, source: torch.fx.Node
) -> list[tuple[str, str, Any]] | None:
    """The branch's steps from ``source`` to ``end``, along each node's main input; None
    when the path holds an operation the mean field cannot follow."""
    steps: list[tuple[str, str, Any]] = []
    node = end
    while node is not source:
        following: Any = node.args[0] if node.args else None
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            if is_weight_layer(module):
                steps.append(("layer", str(node.target), module))
                if is_dense(module) and _own_activation(module) is not None:
                    steps.insert(-1, ("activation", str(node.target), _own_activation(module)))
            elif isinstance(module, NORMALIZATIONS):
                steps.append(("norm", str(node.target), module))
            elif activation_kind(module) is not None:
                steps.append(("activation", str(node.target), module))
            elif not _passes_through(model, node):
                return None
        elif node.op in ("call_function", "call_method") and node.target in (
            operator.mul,
            torch.mul,
            "mul",
        ):
            left, right = node.args[0], node.args[1]
            if _is_scalar(model, left):
                left, right = right, left
            if not _is_scalar(model, right) or not isinstance(left, torch.fx.Node):
                return None
            steps.append(("scale", node.name, _scalar_value(model, right)))
            following = left
        elif _node_activation(model, node) is not None:
            steps.append(("activation", node.name, _node_activation(model, node)))
        elif not _passes_through(model, node):
            return None
        if not isinstance(following, torch.fx.Node):
            return None
        node = following
    steps.reverse()
    return steps


def _scalar_value(model: nn.Module, value: Any) -> float:
    if isinstance(value, torch.fx.Node):
        return float(model.get_parameter(str(value.target)).detach().item())
    return float(value)


#: find_residual_branches's answers, per model and the graph they were read from.
_BRANCHES: weakref.WeakKeyDictionary[nn.Module, tuple[torch.fx.Graph, list[ResidualBranch]]] = (
    weakref.WeakKeyDictionary()
)


def find_residual_branches(model: nn.Module) -> tuple[list[ResidualBranch], str | None]:
    """The residual blocks of ``model``, in forward order, and a note when none can be read.

    A block is a sum (``+``, ``+=``, ``torch.add``, ``.add``) of two graph values
    where one (the *skip*) is the other's ancestor (an identity skip) or a
    projection (a weight layer, optionally normalized) of one of its ancestors,
    and the other (the *branch*) reaches the sum from there through weight
    layers, normalizations, elementwise activations and multiplications by
    constants only. A sum whose branch holds anything else (attention's softmax,
    a product of two signals) or no weight layer is not a residual block here.

    Models torch.fx cannot trace are not read: the result is ``([], note)`` with
    the note saying so (module order cannot tell a branch from its skip).

    Examples:
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)
        ...     def forward(self, x):
        ...         return x + self.fc2(torch.relu(self.fc1(x)))
        >>> branches, note = find_residual_branches(nn.Sequential(Block(), Block()))
        >>> [(b.layers, b.projection, b.post) for b in branches]
        [(['0.fc1', '0.fc2'], None, None), (['1.fc1', '1.fc2'], None, None)]
    """
    graph = trace(model)
    if graph is None:
        return [], "torch.fx could not trace the model: its residual branches were not found"
    cached = _BRANCHES.get(model)
    if cached is not None and cached[0] is graph:  # the same graph: the same blocks
        return list(cached[1]), None
    branches: list[ResidualBranch] = []
    for node in graph.nodes:
        is_add = (node.op == "call_function" and node.target in _ADDS) or (
            node.op == "call_method" and node.target in _ADD_METHODS
        )
        if not is_add or len(node.args) < 2:
            continue
        left, right = node.args[0], node.args[1]
        if not (isinstance(left, torch.fx.Node) and isinstance(right, torch.fx.Node)):
            continue
        found = None
        for skip, branch in ((left, right), (right, left)):
            ancestors = _ancestors(branch)
            start = _skip_source(model, skip, ancestors)
            if start is None:
                continue
            steps = _branch_steps(model, branch, start[0])
            if steps and any(kind == "layer" for kind, _, _ in steps):
                found = (start, steps)
                break
        if found is None:
            continue
        (source, projection, skip_steps), steps = found
        layer_steps = [(name, module) for kind, name, module in steps if kind == "layer"]
        last_index = max(i for i, (kind, _, _) in enumerate(steps) if kind == "layer")
        norm = next((m for kind, _, m in steps[last_index:] if kind == "norm"), None)
        output, post = node, None
        if len(node.users) == 1:
            (user,) = node.users
            post = _node_activation(model, user)
            if post is not None:
                output = user
        branches.append(
            ResidualBranch(
                add=node,
                steps=steps,
                layers=[name for name, _ in layer_steps],
                last=layer_steps[-1][1],
                norm=norm,
                projection=projection,
                skip_steps=skip_steps,
                post=post,
                source=source,
                output=output,
            )
        )
    _BRANCHES[model] = (graph, list(branches))
    return branches, None
