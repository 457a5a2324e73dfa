"""A study file's keys and settings are documented where users look, from the one place
they are defined (signalprop.study.SETTINGS and TOP_LEVEL): ``signalprop study --help``
and docs/study-grid.md, which must be current."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from signalprop import activations, init
from signalprop.cli import main
from signalprop.study import SETTINGS, TOP_LEVEL, expand, settings_markdown
from signalprop.study._settings import REQUIRED, WRITE_DOCS
from signalprop.study._spec import GOAL_KEYS
from signalprop.train import OPTIMIZERS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "study-grid.md"


def test_the_docs_page_is_current() -> None:
    assert DOCS.read_text(encoding="utf-8") == settings_markdown(), (
        f"docs/study-grid.md is out of date: rewrite it with {WRITE_DOCS}"
    )


@pytest.fixture(scope="module")
def help_text() -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main(["study", "--help"])
    assert exit_.value.code == 0
    return " ".join(out.getvalue().split())  # the epilog's lines joined


def test_help_lists_every_key_with_its_meaning_values_and_default(help_text: str) -> None:
    for key, setting in {**TOP_LEVEL, **SETTINGS}.items():
        first_words = " ".join(setting.meaning.split()[:4])
        assert f" {key} {first_words}" in help_text, key
        assert " ".join(setting.allowed().split()) in help_text, key
        if setting.shown_default():
            assert f"Default: {setting.shown_default()}." in help_text, key
    for name in [*activations.elementwise_names(), *init.names(), *OPTIMIZERS]:
        assert f" {name}," in help_text or f" {name}." in help_text, name


def test_the_reader_takes_exactly_these_settings_with_these_defaults() -> None:
    spec = expand({"runs": [{"activation": "relu", "init": "he_normal", "depth": 3, "epochs": 1}]})
    (run,) = spec.runs
    fields = {f.name for f in dataclasses.fields(run)}
    for key, setting in SETTINGS.items():
        if setting.default is not REQUIRED and key in fields:
            assert getattr(run, key) == setting.default, key
    with pytest.raises(ValueError, match="unknown setting"):
        expand({"runs": [{"activation": "relu", "init": "he_normal", "depth": 3, "epochs": 1,
                          "dropout": 0.1}]})  # fmt: skip
    with pytest.raises(ValueError, match="unknown key"):
        expand({"runs": [], "schedule": 1})
    assert all(goal in TOP_LEVEL["goals"].meaning for goal in GOAL_KEYS)


def test_what_the_help_says_of_depth_and_matching_is_what_runs_get() -> None:
    assert "300 units, then depth - 1 of 100" in SETTINGS["depth"].meaning
    runs = expand(
        {
            "defaults": {"epochs": 1, "init": "matching"},
            "grid": {"activation": ["relu", "selu", "tanh", "sigmoid"], "depth": [4]},
        }
    ).runs
    assert all(run.hidden == (300, 100, 100, 100) for run in runs)
    said = SETTINGS["init"].meaning
    for run in runs:
        assert f"{run.init} for" in said
    assert [run.init for run in runs] == [
        "he_normal",
        "lecun_normal",
        "glorot_uniform",
        "glorot_uniform",
    ]
