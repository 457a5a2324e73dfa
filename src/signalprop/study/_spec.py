"""Study specifications: presets and grid files, checked and expanded into runs.

A specification is JSON: ``name``, ``description``, ``defaults`` (settings
shared by every run), and ``runs`` (explicit runs) and/or ``grid`` (lists of
values whose product gives runs), ``seeds`` and ``goals``. Every key and setting,
with its meaning, values and default, is in :data:`signalprop.study.TOP_LEVEL` and
:data:`signalprop.study.SETTINGS` (:mod:`._settings`), which ``signalprop study
--help`` and ``docs/study-grid.md`` show.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, check_option, check_real, invalid_parameter
from signalprop.data import TRAIN_IMAGES
from signalprop.study._settings import MODELS, REQUIRED, SETTINGS, TOP_LEVEL
from signalprop.train import MOMENTUM_OPTIMIZERS, OPTIMIZERS

__all__ = [
    "PRESET_NAMES",
    "RunConfig",
    "StudySpec",
    "activation_key",
    "cycle_of",
    "describe_activation",
    "expand",
    "layer_activations",
    "load_spec",
]

PRESET_NAMES = (
    "autoinit",
    "autoinit-100",
    "autoinit-zoo",
    "chapter11",
    "he-vs-glorot",
    "quick",
    "ranking",
    "residual",
    "trainable-depth",
)
"""The built-in studies, for `signalprop study --preset NAME` and `load_spec(NAME)`.

Examples:
    >>> from signalprop.study import PRESET_NAMES
    >>> PRESET_NAMES[:4]
    ('autoinit', 'autoinit-100', 'autoinit-zoo', 'chapter11')
"""

#: The settings' defaults, and the settings themselves: see :mod:`._settings`.
DEFAULTS: dict[str, Any] = {k: s.default for k, s in SETTINGS.items() if s.default is not REQUIRED}
KEYS = set(SETTINGS)
RESIDUAL_MODELS = ("residual_mlp", "resnet")

#: The key of the object form of ``activation``: hidden layer i takes entry i mod its length.
CYCLE = "cycle"
#: The ``init`` of a cycle whose layers each take their own activation's matching initializer.
MATCHING = "matching"

#: A run's activation: a name, or ``{"cycle": [entry, ...]}`` with each entry a name or
#: ``{"name": ..., **arguments}``.
Activation = str | dict[str, Any]


def cycle_of(activation: Activation) -> list[tuple[str, dict[str, Any]]] | None:
    """A cycle's entries as ``(name, arguments)``; None for a single activation.

    Examples:
        >>> cycle_of({"cycle": ["relu", {"name": "leaky_relu", "alpha": 0.1}]})
        [('relu', {}), ('leaky_relu', {'alpha': 0.1})]
    """
    if isinstance(activation, str):
        return None
    entries: list[tuple[str, dict[str, Any]]] = []
    for entry in activation[CYCLE]:
        if isinstance(entry, str):
            entries.append((entry, {}))
        else:
            entries.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
    return entries


def activation_key(activation: Activation) -> str:
    """A string that tells runs' activations apart and sorts them: a name as it is, a
    cycle by its label (see :func:`describe_activation`)."""
    return activation if isinstance(activation, str) else describe_activation(activation)


def layer_activations(
    activation: Activation, activation_args: dict[str, Any], depth: int
) -> list[tuple[str, dict[str, Any]]]:
    """Each hidden layer's activation as ``(name, arguments)``, a cycle's in turn."""
    cycle = cycle_of(activation)
    if cycle is None:
        assert isinstance(activation, str)
        return [(activation, dict(activation_args))] * depth
    return [cycle[i % len(cycle)] for i in range(depth)]


def describe_activation(
    activation: Activation,
    activation_args: dict[str, Any] | None = None,
    shown: Callable[[str], str] = str,
) -> str:
    """A label: ``"elu (alpha 0.5)"``, or ``"cycle(gelu, tanh, leaky_relu 0.1)"`` (an
    entry's one argument by its value alone); ``shown`` turns a name into its display.
    """
    cycle = cycle_of(activation)
    if cycle is None:
        assert isinstance(activation, str)
        args = ", ".join(f"{k} {v}" for k, v in sorted((activation_args or {}).items()))
        return shown(activation) + (f" ({args})" if args else "")
    parts = []
    for name, entry_args in cycle:
        if len(entry_args) == 1:  # "leaky_relu 0.1"
            parts.append(f"{shown(name)} {next(iter(entry_args.values()))}")
        elif entry_args:
            pairs = ", ".join(f"{k} {v}" for k, v in sorted(entry_args.items()))
            parts.append(f"{shown(name)} ({pairs})")
        else:
            parts.append(shown(name))
    return f"cycle({', '.join(parts)})"


@dataclass(frozen=True)
class RunConfig:
    """One training run of a study, fully specified.

    Examples:
        >>> from signalprop.study import load_spec
        >>> run = load_spec('chapter11').runs[0]
        >>> run.activation, run.init, len(run.hidden), run.epochs
        ('leaky_relu', 'he_normal', 2, 10)
    """

    activation: Activation
    init: str
    hidden: tuple[int, ...]
    epochs: int
    activation_args: dict[str, Any] = field(default_factory=dict)
    init_args: dict[str, Any] = field(default_factory=dict)
    autoinit: str | dict[str, Any] | None = None
    bias_var: float = 0.0
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.0
    validation: int = 5000
    standardize: bool = False
    train_size: int | None = None
    seed: int = 0
    init_choice: str = ""  # "matching" when the init was chosen by the activation
    label: str | None = None
    reference: dict[str, Any] | None = None
    model: str = "mlp"
    blocks: int | None = None

    def identity(self) -> dict[str, Any]:
        """The settings that define the run (everything but label and reference)."""
        data = asdict(self)
        for key in ("label", "reference", "init_choice"):
            data.pop(key)
        for key, unset in (
            ("init_args", {}),
            ("autoinit", None),
            ("bias_var", 0.0),
            ("model", "mlp"),
            ("blocks", None),
        ):
            if data[key] == unset:  # settings added later stay out of older runs' identity
                data.pop(key)
        data["hidden"] = list(self.hidden)
        return data

    @property
    def run_id(self) -> str:
        """A short stable hash of :meth:`identity`: rerunning skips finished ids."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def depth(self) -> int:
        return len(self.hidden)

    @property
    def name(self) -> str:
        """A readable one-line name."""
        activation = describe_activation(self.activation, self.activation_args)
        if self.model != "mlp":
            return (
                f"{self.model} {self.blocks} blocks × {self.hidden[0]} + {self.init}"
                + (" + autoinit" if self.autoinit is not None else "")
                + f", seed {self.seed}"
            )
        return f"{activation} + {self.init}, {self.depth} hidden, seed {self.seed}"

    def hidden_activations(self) -> list[tuple[str, dict[str, Any]]]:
        """Each hidden layer's activation as ``(name, arguments)``."""
        return layer_activations(self.activation, self.activation_args, self.depth)

    def hidden_initializers(self) -> list[tuple[str, dict[str, Any]]]:
        """Each hidden layer's initializer as ``(name, arguments)``: with ``"matching"``
        (a cycle's), its own activation's textbook initializer."""
        if self.init != MATCHING:
            return [(self.init, dict(self.init_args))] * self.depth
        return [(_init.MATCHING[name], {}) for name, _ in self.hidden_activations()]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The run a record's ``config`` describes (:meth:`to_dict`'s inverse).

        A setting the record lacks takes its default: records written before the
        setting existed (seed 0 of the first chapter11 study has no ``init_args``
        or ``autoinit``) describe the run the default gives, which keeps their
        :attr:`run_id` (:meth:`identity` leaves defaults out). Whether it does is
        the caller's check.

        Raises:
            ValueError: For a setting this version does not know, or a missing
                ``activation``, ``init``, ``hidden`` or ``epochs``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"a run configuration with unknown setting(s) {unknown}")
        missing = [k for k in ("activation", "init", "hidden", "epochs") if k not in data]
        if missing:
            raise ValueError(f"a run configuration without {missing}")
        return cls(**{**data, "hidden": tuple(data["hidden"])})


@dataclass(frozen=True)
class StudySpec:
    """A named list of runs, and the goals its report checks (if any).

    Examples:
        >>> from signalprop.study import load_spec
        >>> spec = load_spec('ranking')
        >>> spec.name, len(spec.runs)
        ('ranking', 84)
    """

    name: str
    description: str
    runs: list[RunConfig]
    goals: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.goals is not None:
            data["goals"] = self.goals
        data["runs"] = [{"run_id": run.run_id, **run.to_dict()} for run in self.runs]
        return data


def _fail(source: str, message: str) -> ValueError:
    return ValueError(f"{source}: {message}")


def _built(
    create: Any, kind: str, name: str, merged: dict[str, Any], source: str
) -> dict[str, Any]:
    """Check ``<kind>_args`` by building the named object with them; return the arguments."""
    args = merged[f"{kind}_args"]
    if not isinstance(args, dict):
        raise invalid_parameter(f"{kind}_args", source, "an object of arguments", args)
    try:
        create(name, **args)
    except (TypeError, ValueError) as error:
        raise _fail(source, f"{kind} {name!r}: {error}") from None
    return args


#: Keys of the object form of the ``autoinit`` setting.
AUTOINIT_KEYS = ("bias_var", "criterion", "distribution", "mode", "residual")


def _autoinit_setting(value: Any, caller: str) -> str | dict[str, Any] | None:
    """``None``, ``"analytic"``/``"data"``, or a checked object with every default filled in.

    The defaults are written into the run's identity, so that a later change of
    autoinit's default criterion never makes an old run look like a new one.
    """
    if value is None or value in ("analytic", "data"):
        return value  # type: ignore[no-any-return]
    if not isinstance(value, dict):
        raise invalid_parameter(
            "autoinit", caller, "null, 'analytic', 'data' or an object of arguments", value
        )
    if not value:
        return {}  # autoinit's own defaults, whatever they are when the run trains
    from signalprop.autoinit import (
        CRITERIA,
        DEFAULT_CRITERION,
        DEFAULT_DISTRIBUTION,
        DISTRIBUTIONS,
    )

    unknown = sorted(set(value) - set(AUTOINIT_KEYS))
    if unknown:
        raise invalid_parameter(
            "autoinit", caller, f"an object with keys among {list(AUTOINIT_KEYS)}", unknown
        )
    filled = {
        "mode": value.get("mode", "analytic"),
        "criterion": value.get("criterion", DEFAULT_CRITERION),
        "distribution": value.get("distribution", DEFAULT_DISTRIBUTION),
    }
    check_option(filled["mode"], ("analytic", "data"), param="autoinit.mode", caller=caller)
    check_option(filled["criterion"], CRITERIA, param="autoinit.criterion", caller=caller)
    check_option(
        filled["distribution"], DISTRIBUTIONS, param="autoinit.distribution", caller=caller
    )
    if "residual" in value:  # kept out of older runs' identity when not given
        from signalprop._residual import RESIDUAL_CRITERIA

        check_option(value["residual"], RESIDUAL_CRITERIA, param="autoinit.residual", caller=caller)
        filled["residual"] = value["residual"]
    if value.get("bias_var") is not None:
        filled["bias_var"] = check_real(
            value["bias_var"], param="autoinit.bias_var", caller=caller, low=0
        )
    return filled


def describe_autoinit(autoinit: str | dict[str, Any]) -> str:
    """``"critical, orthogonal"``: the criterion, then what differs from the defaults of
    the object form (truncated normal, analytic); the string form as it is; ``{}``
    (autoinit's own defaults) ``"defaults"``."""
    if isinstance(autoinit, str):
        return autoinit
    if not autoinit:
        return "defaults"
    parts = [str(autoinit.get("criterion", "variance"))]
    if autoinit.get("distribution", "truncated_normal") != "truncated_normal":
        parts.append(str(autoinit["distribution"]))
    if autoinit.get("mode", "analytic") != "analytic":
        parts.append(str(autoinit["mode"]))
    return ", ".join(parts)


def _checked_activation(value: Any, merged: dict[str, Any], caller: str, source: str) -> Activation:
    """A name as it is, or a checked cycle in its one form: ``{"cycle": [entry, ...]}``,
    each entry a name, or ``{"name": ..., **arguments}`` when it has arguments."""
    if isinstance(value, str):
        return value
    expected = (
        "an activation name or {'cycle': [...]} of activation names or objects of a name "
        "and its arguments"
    )
    if (
        not isinstance(value, dict)
        or set(value) != {CYCLE}
        or not isinstance(value[CYCLE], list)
        or not value[CYCLE]
    ):
        raise invalid_parameter("activation", caller, expected, value)
    if merged["activation_args"]:
        raise _fail(
            source,
            "'activation_args' is for one activation: give a cycle entry's arguments in the "
            "entry, e.g. {'name': 'leaky_relu', 'alpha': 0.1}",
        )
    entries: list[str | dict[str, Any]] = []
    for entry in value[CYCLE]:
        if isinstance(entry, str):
            name, args = entry, {}
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name, args = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        else:
            raise invalid_parameter(
                "activation.cycle",
                caller,
                "activation names or objects of a name and its arguments",
                entry,
            )
        try:
            _activations.create(name, **args)
        except (TypeError, ValueError) as error:
            raise _fail(source, f"activation cycle entry {name!r}: {error}") from None
        _activations.check_elementwise(name, param="activation.cycle", caller=caller)
        entries.append({"name": name, **args} if args else name)
    return {CYCLE: entries}


#: Keys of a specification's ``goals`` object (see the module's docstring).
GOAL_KEYS = (
    "accuracy",
    "accuracy_of",
    "accuracy_of_blocks",
    "growth_tolerance",
    "not_below_baseline",
)


def _goals(value: Any, source: str) -> dict[str, Any] | None:
    """The ``goals`` object, checked: thresholds in [0, 1], activation names known."""
    if value is None:
        return None
    caller = source
    if not isinstance(value, dict) or set(value) - set(GOAL_KEYS):
        raise invalid_parameter(
            "goals", caller, f"an object with keys among {list(GOAL_KEYS)}", value
        )
    goals: dict[str, Any] = {}
    if "accuracy" in value:
        goals["accuracy"] = check_real(
            value["accuracy"], param="goals.accuracy", caller=caller, low=0, high=1
        )
    of = value.get("accuracy_of", {})
    if not isinstance(of, dict):
        raise invalid_parameter(
            "goals.accuracy_of", caller, "an object of activation names and accuracies", of
        )
    for name, threshold in of.items():
        if name not in _activations.names():
            raise invalid_parameter(
                "goals.accuracy_of", caller, f"keys among {_activations.names()}", name
            )
        goals.setdefault("accuracy_of", {})[name] = check_real(
            threshold, param="goals.accuracy_of", caller=caller, low=0, high=1
        )
    blocks = value.get("accuracy_of_blocks", {})
    if not isinstance(blocks, dict):
        raise invalid_parameter(
            "goals.accuracy_of_blocks", caller, "an object of block counts and accuracies", blocks
        )
    for count, threshold in blocks.items():
        if not str(count).isdigit() or int(count) < 1:
            raise invalid_parameter(
                "goals.accuracy_of_blocks",
                caller,
                "block counts (positive integers) as keys",
                count,
            )
        goals.setdefault("accuracy_of_blocks", {})[str(count)] = check_real(
            threshold, param="goals.accuracy_of_blocks", caller=caller, low=0, high=1
        )
    if "growth_tolerance" in value:
        goals["growth_tolerance"] = check_real(
            value["growth_tolerance"], param="goals.growth_tolerance", caller=caller, low=0
        )
    if "not_below_baseline" in value:
        if not isinstance(value["not_below_baseline"], bool):
            raise invalid_parameter(
                "goals.not_below_baseline", caller, "true or false", value["not_below_baseline"]
            )
        goals["not_below_baseline"] = value["not_below_baseline"]
    return goals


def _sizes(merged: dict[str, Any], optimizer: str, caller: str) -> dict[str, Any]:
    """``validation``, ``train_size``, ``batch_size`` and ``momentum``, checked against
    each other, the data and the optimizer: what the runner and :func:`signalprop.fit`
    would refuse only when the run starts (every run of a grid failing, one after the
    other) is refused here, before anything trains.

    The runner validates on the first ``validation`` of the
    :data:`~signalprop.data.TRAIN_IMAGES` training images and trains on the first
    ``train_size`` of the rest (all of them without it).
    """
    validation = check_int(merged["validation"], param="validation", caller=caller, low=0)
    if validation >= TRAIN_IMAGES:
        raise invalid_parameter(
            "validation",
            caller,
            f"smaller than the {TRAIN_IMAGES:,} Fashion-MNIST training images (the "
            "validation images are taken from them, and the rest train the network)",
            validation,
        )
    available = TRAIN_IMAGES - validation
    train_size = merged["train_size"]
    if train_size is not None:
        train_size = check_int(train_size, param="train_size", caller=caller, low=1)
        if train_size > available:
            raise invalid_parameter(
                "train_size",
                caller,
                f"at most the {available:,} training images left beside the {validation:,} "
                f"validation images ({TRAIN_IMAGES:,} in all)",
                train_size,
            )
    size = available if train_size is None else train_size
    batch_size = check_int(merged["batch_size"], param="batch_size", caller=caller, low=1)
    if batch_size > size:
        raise invalid_parameter(
            "batch_size", caller, f"at most the run's {size:,} training images", batch_size
        )
    momentum = check_real(merged["momentum"], param="momentum", caller=caller, low=0)
    if momentum and optimizer not in MOMENTUM_OPTIMIZERS:
        raise invalid_parameter(
            "momentum",
            caller,
            f"0 with optimizer {optimizer!r} (momentum is for {list(MOMENTUM_OPTIMIZERS)})",
            momentum,
        )
    return {
        "validation": validation,
        "train_size": train_size,
        "batch_size": batch_size,
        "momentum": momentum,
    }


def _run(settings: dict[str, Any], source: str) -> RunConfig:
    unknown = sorted(set(settings) - KEYS)
    if unknown:
        raise _fail(source, f"unknown setting(s) {unknown}; valid: {sorted(KEYS)}")
    merged = {**DEFAULTS, **settings}
    caller = source
    for required in ("activation", "init", "epochs"):
        if required not in merged:
            raise _fail(source, f"a run needs {required!r}")
    check_option(merged["model"], MODELS, param="model", caller=caller)
    if ("depth" in merged) == ("hidden" in merged) and merged["model"] not in RESIDUAL_MODELS:
        raise _fail(source, "a run needs exactly one of 'depth' and 'hidden'")
    activation = _checked_activation(merged["activation"], merged, caller, source)
    if isinstance(activation, str):
        args = _built(_activations.create, "activation", activation, merged, source)
        # A hidden layer's activation: softmax would make a deep net train to chance.
        _activations.check_elementwise(activation, caller=caller)
    else:
        args = {}
    init_choice = merged["init"]
    cycle = cycle_of(activation)
    if cycle is not None and init_choice == MATCHING:
        unmatched = sorted({name for name, _ in cycle} - set(_init.MATCHING))
        if unmatched:
            raise invalid_parameter(
                "activation",
                caller,
                f"a cycle of activations with a matching initializer {sorted(_init.MATCHING)} "
                "when init is 'matching'",
                unmatched,
            )
        if merged["init_args"]:
            raise _fail(
                source,
                "'init_args' cannot go with init 'matching' on a cycle: each layer takes its "
                "own activation's initializer as it is",
            )
        init_name, init_args = MATCHING, {}
    else:
        init_name = (
            _init.MATCHING.get(activation, "")
            if init_choice == MATCHING and isinstance(activation, str)
            else init_choice
        )
        if not isinstance(init_name, str) or not init_name:
            raise invalid_parameter(
                "init", caller, "an initializer name or 'matching'", init_choice
            )
        init_args = _built(_init.create, "init", init_name, merged, source)
    auto = _autoinit_setting(merged["autoinit"], caller)
    model = merged["model"]
    blocks = None
    if model in RESIDUAL_MODELS:
        for forbidden in ("depth", "hidden"):
            if forbidden in merged:
                raise _fail(
                    source, f"model {model!r} takes 'blocks' and 'width', not {forbidden!r}"
                )
        for required in ("blocks", "width"):
            if required not in merged:
                raise _fail(source, f"model {model!r} needs {required!r}")
        if activation != "relu" or init_name != "pytorch_default" or init_args:
            raise _fail(
                source,
                f"model {model!r} has its own ReLU and PyTorch's default initialization: "
                "give activation 'relu' and init 'pytorch_default'",
            )
        blocks = check_int(merged["blocks"], param="blocks", caller=caller, low=1)
        merged["hidden"] = [check_int(merged["width"], param="width", caller=caller, low=1)]
    elif "blocks" in merged or "width" in merged:
        raise _fail(source, "'blocks' and 'width' are for the residual models (see 'model')")
    if "depth" in merged:
        depth = check_int(merged["depth"], param="depth", caller=caller, low=1)
        hidden = (300,) + (100,) * (depth - 1)
    else:
        widths = merged["hidden"]
        if not isinstance(widths, list) or not widths:
            raise invalid_parameter("hidden", caller, "a non-empty list of widths", widths)
        hidden = tuple(check_int(w, param="hidden", caller=caller, low=1) for w in widths)
    optimizer = merged["optimizer"]
    if optimizer not in OPTIMIZERS:
        raise invalid_parameter("optimizer", caller, f"one of {sorted(OPTIMIZERS)}", optimizer)
    sizes = _sizes(merged, optimizer, caller)
    return RunConfig(
        activation=activation,
        init=init_name,
        hidden=hidden,
        epochs=check_int(merged["epochs"], param="epochs", caller=caller, low=1),
        activation_args=dict(args),
        init_args=dict(init_args),
        autoinit=auto,
        bias_var=check_real(merged["bias_var"], param="bias_var", caller=caller, low=0),
        optimizer=optimizer,
        lr=check_real(merged["lr"], param="lr", caller=caller, low=0, low_inclusive=False),
        standardize=bool(merged["standardize"]),
        seed=check_int(merged["seed"], param="seed", caller=caller, low=0),
        **sizes,
        init_choice=str(init_choice),
        label=merged["label"],
        reference=merged["reference"],
        model=model,
        blocks=blocks,
    )


def expand(raw: Any, source: str = "study") -> StudySpec:
    """Check a specification (parsed JSON) and expand it into its runs.

    Raises:
        ValueError: Naming ``source`` and what is wrong.

    Examples:
        >>> from signalprop.study import expand
        >>> grid = {'name': 'mine', 'defaults': {'epochs': 1},
        ...         'grid': {'activation': ['selu', 'relu'], 'init': ['matching'],
        ...                  'depth': [5, 10]}}
        >>> spec = expand(grid)
        >>> len(spec.runs), spec.runs[0].init
        (4, 'lecun_normal')
    """
    if not isinstance(raw, dict):
        raise _fail(source, "a study file must hold a JSON object")
    allowed = set(TOP_LEVEL)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(source, f"unknown key(s) {unknown}; valid: {sorted(allowed)}")
    name = raw.get("name", Path(source).stem)
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail(source, "'defaults' must be an object")
    runs: list[RunConfig] = []
    explicit = raw.get("runs", [])
    if not isinstance(explicit, list):
        raise _fail(source, "'runs' must be a list of objects")
    seeds = raw.get("seeds", [None])
    if not isinstance(seeds, list) or not seeds:
        raise _fail(source, "'seeds' must be a non-empty list of integers")
    for index, settings in enumerate(explicit):
        if not isinstance(settings, dict):
            raise _fail(source, f"runs[{index}] must be an object")
        for seed in seeds:
            extra = {} if seed is None else {"seed": seed}
            runs.append(_run({**defaults, **settings, **extra}, f"{source}: runs[{index}]"))
    grid = raw.get("grid")
    if grid is not None:
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise _fail(source, "'grid' must map settings to non-empty lists of values")
        keys = list(grid)
        if "seed" not in grid and seeds != [None]:
            keys.append("seed")
            grid = {**grid, "seed": seeds}
        for values in itertools.product(*(grid[k] for k in keys)):
            settings = {**defaults, **dict(zip(keys, values, strict=True))}
            runs.append(_run(settings, f"{source}: grid {dict(zip(keys, values, strict=True))}"))
    if not runs:
        raise _fail(source, "the study has no runs: give 'runs' or 'grid'")
    unique: dict[str, RunConfig] = {}
    for run in runs:  # a grid may name one run twice: tanh's matching init is glorot_uniform
        unique.setdefault(run.run_id, run)
    if len(unique) < len(runs) and explicit and grid is None:
        raise _fail(source, "two runs have identical settings")
    return StudySpec(
        name=str(name),
        description=str(raw.get("description", "")),
        runs=list(unique.values()),
        goals=_goals(raw.get("goals"), source),
    )


def load_spec(preset_or_path: str) -> StudySpec:
    """A preset by name (see :data:`PRESET_NAMES`) or a JSON grid file by path.

    Raises:
        ValueError: For an unknown preset, a missing or malformed file.

    Examples:
        >>> from signalprop.study import load_spec
        >>> load_spec('quick').name
        'quick'
    """
    if preset_or_path in PRESET_NAMES:
        text = (
            resources.files("signalprop.study") / "presets" / f"{preset_or_path}.json"
        ).read_text(encoding="utf-8")
        return expand(json.loads(text), preset_or_path)
    path = Path(preset_or_path)
    if path.suffix != ".json" and not path.exists():
        raise invalid_parameter(
            "preset", "study", f"one of {list(PRESET_NAMES)} or a .json grid file", preset_or_path
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{path}: cannot read the grid file: {error.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    return expand(raw, str(path))
