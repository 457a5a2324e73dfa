"""Under CI=true the suite refuses to start without the data or a dev extra, instead of
skipping the tests that need them and passing untested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _data_dir import needs_data

ROOT = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on one quick test of this suite, in a child process with ``env``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_ci_guard.py::test_a_quick_test",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_quick_test() -> None:
    assert True  # what the child processes run


def test_ci_without_the_data_fails_at_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    run = _pytest(tmp_path, CI="true", SIGNALPROP_DATA=str(missing))
    assert run.returncode == 4, run.stdout + run.stderr  # pytest's usage error
    assert f"no Fashion-MNIST copy at {missing}" in run.stderr
    outside_ci = _pytest(tmp_path, CI="false", SIGNALPROP_DATA=str(missing))
    assert outside_ci.returncode == 0, outside_ci.stdout + outside_ci.stderr


@needs_data
def test_ci_with_the_data_runs(tmp_path: Path) -> None:
    run = _pytest(tmp_path, CI="true")
    assert run.returncode == 0, run.stdout + run.stderr
