"""Reading a model: its weight layers and the activations on either side of each.

``diagnose``, ``autoinit``, the self-normalization check and the mean-field
verdict ask this module what a model is made of; none of them walks the model
on its own. For every weight layer (``nn.Linear``, ``nn.Conv*``,
:class:`~signalprop.layers.Dense`) it finds:

* the *producer*: the activation whose output the layer reads (or the
  model's input, or nothing known: another weight layer, a normalization, a
  sum);
* the *consumer*: the activation applied to the layer's output.

Both come from a torch.fx trace that keeps activations and Dense layers whole,
so activations called as functions in ``forward`` (``torch.tanh(self.fc(x))``,
``x.relu()``) count; modules a signal passes through unchanged in scale
(dropout, flatten, reshapes) are looked through. A model torch.fx cannot
trace is read in module registration order instead, and says so.
"""

from __future__ import annotations

import functools
import operator
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import torch
from torch import Tensor, nn

from signalprop import activations as _activations
from signalprop.activations import activation_key

__all__ = [
    "TRANSPARENT",
    "ModelView",
    "ResidualBranch",
    "WeightLayer",
    "activation_key",
    "activation_kind",
    "find_residual_branches",
    "is_keras",
    "is_weight_layer",
    "read_model",
    "reads_keras",
    "trace",
]

#: Modules a signal passes through unchanged in scale.
TRANSPARENT = (nn.Dropout, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten)
#: Tensor methods that are activations: ``x.relu()``.
METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "relu_": "relu"}
#: Functions and tensor methods that only reshape.
SHAPE_FUNCTIONS = (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze)
SHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous"}

Activation = nn.Module | Callable[[Tensor], Tensor]


def is_keras(model: object) -> bool:
    """Whether ``model`` is a Keras model (any version, any backend), without importing Keras."""
    return any(
        cls.__module__.split(".")[0] in ("keras", "tf_keras")
        or cls.__module__.startswith("tensorflow.python.keras")
        for cls in type(model).__mro__
    )


P = ParamSpec("P")
R = TypeVar("R")


#: The Keras reader (:func:`signalprop._keras_twin.twin`), registered by that module,
#: which sits above this one: the model reader imports nothing above itself.
_KERAS_READER: Callable[[Any], Any] | None = None


def register_keras_reader(reader: Callable[[Any], Any]) -> None:
    """Set the function that reads a Keras model into its PyTorch twin."""
    global _KERAS_READER
    _KERAS_READER = reader


def reads_keras(*, write_back: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let a tool that takes a torch model take a Keras 3 model too.

    A Keras model (first argument) is read into its twin by
    :func:`signalprop.keras.twin`, the tool runs on the twin, and with
    ``write_back`` the twin's weights go back into the Keras layers.
    """

    def wrap(tool: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(tool)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if not args or not is_keras(args[0]):
                return tool(*args, **kwargs)
            if _KERAS_READER is None:  # signalprop's __init__ imports the reader
                raise RuntimeError("import signalprop first: it registers the Keras reader")
            read = _KERAS_READER(args[0])
            result = tool(read.model, *args[1:], **kwargs)  # type: ignore[arg-type]
            if write_back:
                read.write_back()
            return result

        return run

    return wrap


def is_weight_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer whose weight's fans are known."""
    return isinstance(module, nn.Linear | nn.modules.conv._ConvNd) or getattr(
        module, "_signalprop_dense", False
    )


def is_dense(module: nn.Module) -> bool:
    """Whether ``module`` is a :class:`~signalprop.layers.Dense` (it applies its own activation)."""
    return bool(getattr(module, "_signalprop_dense", False))


def activation_kind(module: nn.Module) -> str | None:
    """Registry name of an activation module, ``"other"`` for PyTorch's others, else None."""
    name = _activations.name_of(module)
    if name is not None:
        return "sigmoid" if name == "logistic" else name
    if type(module).__module__ == "torch.nn.modules.activation" and not isinstance(
        module, nn.MultiheadAttention
    ):
        return "other"
    return None


class _Tracer(torch.fx.Tracer):
    """A torch.fx tracer that keeps activation modules and Dense layers whole.

    PyTorch's tracer only keeps ``torch.nn`` modules as leaves; signalprop's
    activations (subclasses defined elsewhere) would be traced through into
    anonymous function calls.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if activation_kind(m) is not None or is_dense(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> torch.fx.Graph | None:
    """The model's torch.fx graph, activations and Dense layers as leaves (None: untraceable)."""
    try:
        return _Tracer().trace(model)
    except Exception:  # any model torch.fx cannot trace
        return None


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
            None when there is none.
    """

    name: str
    module: nn.Module
    producer: Activation | None
    reads_data: bool
    consumer: Activation | None


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
    """

    layers: list[WeightLayer]
    traced: bool
    plain: bool
    notes: list[str] = field(default_factory=list)


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
        return isinstance(module, TRANSPARENT) or getattr(module, "_signalprop_transparent", False)
    if node.op == "call_function":
        return node.target in SHAPE_FUNCTIONS
    if node.op == "call_method":
        return node.target in SHAPE_METHODS
    return False


def _consumer(model: nn.Module, node: torch.fx.Node) -> Activation | None:
    user = node
    while len(user.users) == 1:
        (user,) = user.users
        if _passes_through(model, user):
            continue
        return _node_activation(model, user)
    return None


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
            if not known and not isinstance(module, TRANSPARENT):
                return False
        elif not (_node_activation(model, node) is not None or _passes_through(model, node)):
            return False
    return placeholders == 1


#: What read_model found, per model, with the modules it was read from: reading means
#: tracing, and diagnose asks again on every call (each epoch, in fit's snapshots).
_READ: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], ModelView]] = (
    weakref.WeakKeyDictionary()
)


def read_model(model: nn.Module) -> ModelView:
    """The weight layers of ``model`` with the activations before and after each.

    The result is kept while the model's modules stay the same objects (any
    module added, removed or replaced, or a new ``forward`` bound on the
    instance, reads it again).
    """
    signature = (
        *(id(m) for m in model.modules()),
        id(type(model).forward),
        id(model.__dict__.get("forward")),
    )
    cached = _READ.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    view = _read(model)
    _READ[model] = (signature, view)
    return view


def _read(model: nn.Module) -> ModelView:
    names = {module: name for name, module in model.named_modules()}
    graph = trace(model)
    if graph is not None:
        layers = []
        for node in graph.nodes:
            if node.op != "call_module":
                continue
            module = model.get_submodule(str(node.target))
            if not is_weight_layer(module):
                continue
            producer, reads_data = _producer(model, node)
            consumer = _own_activation(module) if is_dense(module) else _consumer(model, node)
            layers.append(
                WeightLayer(names.get(module) or "(model)", module, producer, reads_data, consumer)
            )
        if not any(node.op == "call_module" for node in graph.nodes) and is_weight_layer(model):
            layers = [WeightLayer("(model)", model, None, True, _own_activation(model))]
        return ModelView(layers, traced=True, plain=_is_plain(model, graph))
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    layers = []
    for index, (name, module) in enumerate(leaves):
        if not is_weight_layer(module):
            continue
        before_activation: Activation | None = None
        reads_data = True
        for _, before in reversed(leaves[:index]):
            if isinstance(before, TRANSPARENT):
                continue
            reads_data = False
            if is_dense(before):
                before_activation = _own_activation(before)
            elif activation_kind(before) is not None:
                before_activation = before
            break
        after_activation: Activation | None = None
        if is_dense(module):
            after_activation = _own_activation(module)
        else:
            for _, following in leaves[index + 1 :]:
                if isinstance(following, TRANSPARENT):
                    continue
                if activation_kind(following) is not None:
                    after_activation = following
                break
        layers.append(
            WeightLayer(name or "(model)", module, before_activation, reads_data, after_activation)
        )
    return ModelView(
        layers,
        traced=False,
        plain=False,
        notes=["torch.fx could not trace the model: activations found by module order"],
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

    Example:
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
    return branches, None
