"""What a study file may say: its top-level keys and every run setting, each with its
meaning, its allowed values and its default, in one place.

The specification reader takes its list of settings and their defaults from here;
``signalprop study --help`` and ``docs/study-grid.md`` are written from here
(:func:`settings_text`, :func:`settings_markdown`), so that what users read is what
the reader accepts.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODELS",
    "REQUIRED",
    "SETTINGS",
    "TOP_LEVEL",
    "Setting",
    "settings_markdown",
    "settings_text",
]

#: The default of a setting a run must give (or that only some runs need).
REQUIRED: Any = object()

#: The ``model`` setting's kinds; the residual ones are built by the study's runner from
#: :mod:`signalprop.examples`.
MODELS = ("mlp", "residual_mlp", "resnet")


@dataclass(frozen=True)
class Setting:
    """One key of a study file.

    Attributes:
        meaning: What it does.
        values: The values it takes, in words (a function: read from a registry).
        default: Its value when not given; :data:`REQUIRED` for none.
        shown: The default in words, where its value would not say it.

    Examples:
        >>> from signalprop.study import Setting
        >>> Setting("the learning rate", "a number > 0", 1e-3).shown_default()
        '0.001'
    """

    meaning: str
    values: str | Callable[[], str]
    default: Any = REQUIRED
    shown: str = ""

    def allowed(self) -> str:
        """:attr:`values` as text."""
        return self.values() if callable(self.values) else self.values

    def shown_default(self) -> str:
        """The default as a study file writes it ("" when there is none)."""
        if self.shown:
            return self.shown
        return "" if self.default is REQUIRED else json.dumps(self.default, ensure_ascii=False)


def _listed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


# The registries' names are read when the help is written (the registries import torch).
def _activation_values() -> str:
    from signalprop import activations

    return f"one of {_listed(activations.elementwise_names())}, or a cycle"


def _init_values() -> str:
    from signalprop import init

    return f"one of {_listed(init.names())}, matching"


def _optimizer_values() -> str:
    from signalprop.train import OPTIMIZERS

    return f"one of {_listed(OPTIMIZERS)}"


def _autoinit_values() -> str:
    from signalprop._residual import RESIDUAL_CRITERIA
    from signalprop.autoinit import CRITERIA, DISTRIBUTIONS

    return (
        'null, "analytic", "data", or an object of mode ("analytic" or "data"), criterion '
        f"({_listed(CRITERIA)}), distribution ({_listed(DISTRIBUTIONS)}), residual "
        f"({_listed(RESIDUAL_CRITERIA)}), bias_var (≥ 0)"
    )


TOP_LEVEL: dict[str, Setting] = {
    "name": Setting("the study's name, in its report", "a string", REQUIRED, "the file's name"),
    "description": Setting("what the study measures, shown in its report", "a string", "", "empty"),
    "defaults": Setting(
        "settings shared by every run (below), overridden by a run's or the grid's own",
        "an object of settings",
        {},
    ),
    "grid": Setting(
        "lists of values whose every combination is a run, the last key varying fastest; "
        "runs of identical settings are run once (tanh's matching initializer is "
        'glorot_uniform, so "init": ["matching", "glorot_uniform"] names its run twice)',
        "an object of settings to non-empty lists of values",
    ),
    "runs": Setting(
        "explicit runs, each the defaults plus its own settings; two identical explicit "
        "runs are an error",
        "a list of objects of settings",
        [],
    ),
    "seeds": Setting(
        "repeat every run with each seed, as the grid's last (innermost) setting; name "
        '"seed" first in the grid instead to run one seed of every configuration before '
        "the next",
        "a non-empty list of integers ≥ 0",
        REQUIRED,
        "none: each run's seed setting",
    ),
    "goals": Setting(
        "what each cell should reach, checked by the report: accuracy (final accuracy "
        "at least this), accuracy_of (an activation's own threshold), not_below_baseline "
        "(not below the textbook pairing by more than the seeds' spread), and for "
        "residual models accuracy_of_blocks (autoinit's accuracy per number of blocks, "
        '{"16": 0.85}) and growth_tolerance (the stream\'s measured growth within this '
        "fraction of the mean field's prediction)",
        '{"accuracy": 0.8, "accuracy_of": {"sigmoid": 0.75}, "not_below_baseline": true, '
        '"accuracy_of_blocks": {"16": 0.85}, "growth_tolerance": 0.1}, any of them',
        None,
        "none: no goals",
    ),
}
"""The top-level keys of a study file.

Examples:
    >>> from signalprop.study import TOP_LEVEL
    >>> list(TOP_LEVEL)[:4]
    ['name', 'description', 'defaults', 'grid']
"""

SETTINGS: dict[str, Setting] = {
    "activation": Setting(
        "the hidden layers' activation; or a cycle, hidden layer i taking entry i mod its "
        'length: {"cycle": ["gelu", "tanh", {"name": "leaky_relu", "alpha": 0.1}]} (an '
        "entry is a name, or an object of a name and its arguments)",
        _activation_values,
    ),
    "activation_args": Setting(
        "the activation's arguments, e.g. {\"alpha\": 0.2} (a cycle's are in its entries)",
        "an object of arguments the activation takes",
        {},
    ),
    "init": Setting(
        "the hidden layers' weight initializer; \"matching\" picks the activation's own "
        "(he_normal for the ReLU family, lecun_normal for SELU, glorot_uniform for tanh and "
        "the logistic...; on a cycle, each layer its own activation's); the output layer is "
        "always glorot_uniform",
        _init_values,
    ),
    "init_args": Setting(
        'the initializer\'s arguments, e.g. {"scale": 2.0, "mode": "fan_avg"}',
        "an object of arguments the initializer takes",
        {},
    ),
    "bias_var": Setting(
        "the hidden biases are drawn from N(0, bias_var) (σ_b²) instead of zeros",
        "a number ≥ 0",
        0.0,
    ),
    "autoinit": Setting(
        'run signalprop.autoinit after drawing the weights: "analytic" or "data" (the '
        "variance criterion), or an object of its arguments, e.g. "
        '{"criterion": "critical", "distribution": "orthogonal"} (mode analytic unless '
        "given, the other defaults written into the run; data mode on the first 1,024 "
        "training images); {} calls it with its defaults at the time the run trains "
        "(the result records them); null: no autoinit",
        _autoinit_values,
        None,
    ),
    "depth": Setting(
        "the number of hidden layers: the first of 300 units, then depth - 1 of 100 "
        "(the chapter's nets: depth 100 is 300, then 99 layers of 100); a run gives "
        "depth or hidden",
        "an integer ≥ 1",
    ),
    "hidden": Setting(
        "or the hidden layers' widths themselves, e.g. [300, 100]",
        "a non-empty list of integers ≥ 1",
    ),
    "epochs": Setting("epochs of training", "an integer ≥ 1"),
    "batch_size": Setting(
        "examples per training step", "an integer from 1 to the run's training images", 32
    ),
    "optimizer": Setting("the training's optimizer", _optimizer_values, "sgd"),
    "lr": Setting("the learning rate", "a number > 0", 1e-3),
    "momentum": Setting("the optimizer's momentum (sgd and rmsprop only)", "a number ≥ 0", 0.0),
    "validation": Setting(
        "validation images, the first of the training file (the rest train the net)",
        "an integer from 0 to 59,999",
        5000,
    ),
    "standardize": Setting(
        "standardize each pixel with its mean and std over the training images (else "
        "pixels / 255, in [0, 1])",
        "true or false",
        False,
    ),
    "train_size": Setting(
        "train on only the first N training images (after the validation split); null: all of them",
        "null or an integer from 1 to 60,000 - validation",
        None,
    ),
    "seed": Setting("seeds the weights, the shuffling and random layers", "an integer ≥ 0", 0),
    "model": Setting(
        'the network: "mlp", the dense net of depth/hidden; "residual_mlp", Flatten → '
        "Linear(784, width) → blocks × (x + fc2(relu(fc1(x)))) → Linear(width, 10) "
        '(signalprop.examples.ResidualMLP); "resnet", signalprop.examples.SmallResNet: '
        "two stages of blocks basic blocks, width then 2·width channels. The residual "
        'kinds take blocks and width instead of depth/hidden, activation "relu" and init '
        "\"pytorch_default\" (their modules' own), and record the residual stream's "
        "growth at initialization, measured and predicted by the mean field",
        "one of " + ", ".join(MODELS),
        "mlp",
    ),
    "blocks": Setting(
        "residual blocks (residual_mlp) or blocks per stage (resnet)", "an integer ≥ 1"
    ),
    "width": Setting(
        "the residual kinds' width (units, or the first stage's channels)", "an integer ≥ 1"
    ),
    "label": Setting(
        "a name for the run in reports (not part of the run's identity)", "a string", None
    ),
    "reference": Setting(
        "published numbers to compare with in the report (not part of the identity), "
        'e.g. {"val_accuracy": 0.8218}',
        "an object",
        None,
    ),
}
"""Every setting of a run, in the order the help lists them.

Examples:
    >>> from signalprop.study import SETTINGS
    >>> SETTINGS["depth"].meaning[:30]
    'the number of hidden layers: t'
    >>> SETTINGS["lr"].shown_default()
    '0.001'
"""


def _rows(settings: dict[str, Setting]) -> list[tuple[str, str, str, str]]:
    return [(k, s.meaning, s.allowed(), s.shown_default()) for k, s in settings.items()]


#: The command that writes ``docs/study-grid.md``.
WRITE_DOCS = (
    'python -c "from signalprop.study import settings_markdown; '
    "print(settings_markdown(), end='')\" > docs/study-grid.md"
)


def settings_text(width: int = 79) -> str:
    """The settings for ``signalprop study --help``: each key, then what it means, its
    values and its default, indented beneath.

    Examples:
        >>> from signalprop.study import settings_text
        >>> settings_text().splitlines()[0]
        "a study file's keys:"
    """
    lines: list[str] = []
    for title, settings in (
        ("a study file's keys", TOP_LEVEL),
        ("a run's settings (in defaults, grid lists, runs)", SETTINGS),
    ):
        lines.append(("\n" if lines else "") + f"{title}:")
        for key, meaning, values, default in _rows(settings):
            text = f"{meaning}. Values: {values}." + (f" Default: {default}." if default else "")
            lines.append(
                textwrap.fill(
                    text,
                    width=width,
                    initial_indent=f"  {key:<16}",
                    subsequent_indent=" " * 18,
                    break_on_hyphens=False,
                )
            )
    return "\n".join(lines)


def settings_markdown() -> str:
    """``docs/study-grid.md``: the study file's keys and settings as Markdown tables.

    Examples:
        >>> from signalprop.study import settings_markdown
        >>> settings_markdown().splitlines()[0]
        '# Study grid files'
    """

    def table(settings: dict[str, Setting]) -> list[str]:
        def cell(text: str) -> str:
            return text.replace("|", "\\|")

        out = ["| key | meaning | values | default |", "|---|---|---|---|"]
        for key, meaning, values, default in _rows(settings):
            words = settings[key].shown  # a default in words is not code
            shown = cell(default) if words else f"`{cell(default)}`" if default else "(none)"
            out.append(f"| `{key}` | {cell(meaning)} | {cell(values)} | {shown} |")
        return out

    return "\n".join(
        [
            "# Study grid files",
            "",
            f"<!-- Written from signalprop.study.SETTINGS by: {WRITE_DOCS}\n"
            "     tests/test_study_settings.py checks it is current. -->",
            "",
            "`signalprop study --preset FILE.json` runs the study a JSON file describes "
            "(`signalprop study --help` lists the same). A run is the `defaults`, then the "
            "grid's or the run's own settings; every combination of the `grid`'s lists is a "
            "run.",
            "",
            '```json\n{"name": "depths", "defaults": {"epochs": 1, "standardize": true},\n'
            ' "grid": {"activation": ["selu", "tanh"], "init": ["matching"], '
            '"depth": [20, 50]},\n "seeds": [0, 1]}\n```',
            "",
            "## The file's keys",
            "",
            *table(TOP_LEVEL),
            "",
            "## A run's settings",
            "",
            *table(SETTINGS),
            "",
        ]
    )
