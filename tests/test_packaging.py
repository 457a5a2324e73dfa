"""What the build reads from pyproject.toml: the version, written once in
``signalprop.__version__`` (which ``signalprop --version`` prints: test_cli_hostile), and
the ``signalprop`` command.

Building and installing the wheel itself is tools/wheel_smoke.py's work (minutes: not for
this suite).
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path
from typing import Any

import pytest

import signalprop as sp
from signalprop.cli import main

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    """The project's metadata as setuptools works it out for a build."""
    from setuptools.config.pyprojecttoml import read_configuration

    return dict(read_configuration(PYPROJECT)["project"])


def test_the_build_reads_the_version_from_the_package(project):
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert "version" not in declared and "version" in declared["dynamic"]
    assert project["version"] == sp.__version__


def test_the_installed_metadata_has_the_package_version():
    installed = importlib.metadata.version("signalprop")
    assert installed == sp.__version__, "stale metadata: pip install -e '.[dev]' again"


def test_the_signalprop_command_is_the_cli(project):
    target = project["scripts"]["signalprop"]
    command = importlib.metadata.EntryPoint("signalprop", target, "console_scripts")
    assert command.load() is main
