"""Study specifications: presets and grid files, checked and expanded into runs.

A specification is JSON: ``name``, ``description``, ``defaults`` (settings
shared by every run), and ``runs`` (explicit runs) and/or ``grid`` (lists of
values whose product gives runs). A run's settings:

=================  ===========================================================
``activation``     activation name (see ``signalprop.activations.names()``)
``activation_args``  its arguments, e.g. ``{"alpha": 0.2}``
``init``           initializer name, or ``"matching"`` for the activation's own
``init_args``      its arguments, e.g. ``{"scale": 2.0, "mode": "fan_avg"}``
``bias_var``       biases drawn from N(0, bias_var) instead of zeros (σ_b²), default 0
``autoinit``       run :func:`signalprop.autoinit` after drawing: ``"analytic"`` or
                   ``"data"`` (the variance criterion, as before criteria existed), or
                   an object of its arguments, e.g. ``{"criterion": "critical",
                   "distribution": "orthogonal"}`` (``mode`` analytic unless given; data
                   mode on the first 1,024 training images)
``depth``          hidden layers: 300 units, then ``depth - 1`` of 100 (the chapter's)
``hidden``         or the hidden widths themselves, e.g. ``[300, 100]``
``epochs``         epochs of training
``batch_size``     default 32
``optimizer``      ``"sgd"`` (default), ``"adam"``, ``"nadam"``, ``"rmsprop"``
``lr``             learning rate, default 1e-3
``momentum``       default 0
``validation``     validation images (the first of the training file), default 5000
``standardize``    standardize pixels with the training part's statistics
``train_size``     use only the first N training images (after the split)
``seed``           seeds weights, shuffling and random layers, default 0
``label``          a name for reports (not part of the run's identity)
``reference``      published numbers to compare with (not part of the identity)
=================  ===========================================================

Runs of a grid with identical settings are run once (the logistic's and
tanh's matching initializer is ``glorot_uniform``, so ``init: ["matching",
"glorot_uniform"]`` names their runs twice); two identical explicit runs
are an error. A top-level ``seeds`` list repeats every run with each seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, check_option, check_real, invalid_parameter
from signalprop.train import OPTIMIZERS

__all__ = ["PRESET_NAMES", "RunConfig", "StudySpec", "expand", "load_spec"]

PRESET_NAMES = (
    "autoinit",
    "autoinit-100",
    "chapter11",
    "he-vs-glorot",
    "quick",
    "ranking",
    "trainable-depth",
)

DEFAULTS: dict[str, Any] = {
    "activation_args": {},
    "init_args": {},
    "autoinit": None,
    "bias_var": 0.0,
    "batch_size": 32,
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.0,
    "validation": 5000,
    "standardize": False,
    "train_size": None,
    "seed": 0,
    "label": None,
    "reference": None,
}
KEYS = {"activation", "init", "depth", "hidden", "epochs", *DEFAULTS}


@dataclass(frozen=True)
class RunConfig:
    """One training run of a study, fully specified."""

    activation: str
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

    def identity(self) -> dict[str, Any]:
        """The settings that define the run (everything but label and reference)."""
        data = asdict(self)
        for key in ("label", "reference", "init_choice"):
            data.pop(key)
        for key, unset in (("init_args", {}), ("autoinit", None), ("bias_var", 0.0)):
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
        args = ",".join(f"{k}={v}" for k, v in sorted(self.activation_args.items()))
        activation = f"{self.activation}({args})" if args else self.activation
        return f"{activation} + {self.init}, {self.depth} hidden, seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data


@dataclass(frozen=True)
class StudySpec:
    """A named list of runs."""

    name: str
    description: str
    runs: list[RunConfig]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "runs": [{"run_id": run.run_id, **run.to_dict()} for run in self.runs],
        }


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
AUTOINIT_KEYS = ("bias_var", "criterion", "distribution", "mode")


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
    if value.get("bias_var") is not None:
        filled["bias_var"] = check_real(
            value["bias_var"], param="autoinit.bias_var", caller=caller, low=0
        )
    return filled


def describe_autoinit(autoinit: str | dict[str, Any]) -> str:
    """``"critical, orthogonal"``: the criterion, then what differs from the defaults of
    the object form (truncated normal, analytic); the string form as it is."""
    if isinstance(autoinit, str):
        return autoinit
    parts = [str(autoinit.get("criterion", "variance"))]
    if autoinit.get("distribution", "truncated_normal") != "truncated_normal":
        parts.append(str(autoinit["distribution"]))
    if autoinit.get("mode", "analytic") != "analytic":
        parts.append(str(autoinit["mode"]))
    return ", ".join(parts)


def _run(settings: dict[str, Any], source: str) -> RunConfig:
    unknown = sorted(set(settings) - KEYS)
    if unknown:
        raise _fail(source, f"unknown setting(s) {unknown}; valid: {sorted(KEYS)}")
    merged = {**DEFAULTS, **settings}
    caller = source
    for required in ("activation", "init", "epochs"):
        if required not in merged:
            raise _fail(source, f"a run needs {required!r}")
    if ("depth" in merged) == ("hidden" in merged):
        raise _fail(source, "a run needs exactly one of 'depth' and 'hidden'")
    activation = merged["activation"]
    if not isinstance(activation, str):
        raise invalid_parameter("activation", caller, "an activation name", activation)
    args = _built(_activations.create, "activation", activation, merged, source)
    init_choice = merged["init"]
    init_name = _init.MATCHING.get(activation, "") if init_choice == "matching" else init_choice
    if not isinstance(init_name, str) or not init_name:
        raise invalid_parameter("init", caller, "an initializer name or 'matching'", init_choice)
    init_args = _built(_init.create, "init", init_name, merged, source)
    auto = _autoinit_setting(merged["autoinit"], caller)
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
    train_size = merged["train_size"]
    return RunConfig(
        activation=activation,
        init=init_name,
        hidden=hidden,
        epochs=check_int(merged["epochs"], param="epochs", caller=caller, low=1),
        activation_args=dict(args),
        init_args=dict(init_args),
        autoinit=auto,
        bias_var=check_real(merged["bias_var"], param="bias_var", caller=caller, low=0),
        batch_size=check_int(merged["batch_size"], param="batch_size", caller=caller, low=1),
        optimizer=optimizer,
        lr=check_real(merged["lr"], param="lr", caller=caller, low=0, low_inclusive=False),
        momentum=check_real(merged["momentum"], param="momentum", caller=caller, low=0),
        validation=check_int(merged["validation"], param="validation", caller=caller, low=0),
        standardize=bool(merged["standardize"]),
        train_size=None
        if train_size is None
        else check_int(train_size, param="train_size", caller=caller, low=1),
        seed=check_int(merged["seed"], param="seed", caller=caller, low=0),
        init_choice=str(init_choice),
        label=merged["label"],
        reference=merged["reference"],
    )


def expand(raw: Any, source: str = "study") -> StudySpec:
    """Check a specification (parsed JSON) and expand it into its runs.

    Raises:
        ValueError: Naming ``source`` and what is wrong.
    """
    if not isinstance(raw, dict):
        raise _fail(source, "a study file must hold a JSON object")
    allowed = {"name", "description", "defaults", "runs", "grid", "seeds"}
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
        name=str(name), description=str(raw.get("description", "")), runs=list(unique.values())
    )


def load_spec(preset_or_path: str) -> StudySpec:
    """A preset by name (see :data:`PRESET_NAMES`) or a JSON grid file by path.

    Raises:
        ValueError: For an unknown preset, a missing or malformed file.
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
