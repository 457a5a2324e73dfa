"""Settings shared by every test."""

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from _data_dir import DATA

#: The dev extras every test file counts on; outside CI a missing one skips its tests.
EXTRAS = ("keras", "transformers", "tensorboard", "distributed", "scipy", "griffe")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``CI=true`` nothing the suite needs may be missing: a data folder or a dev
    extra that is not there would skip its tests and let the run pass untested."""
    if os.environ.get("CI", "").lower() != "true":
        return
    if not DATA.is_dir():
        raise pytest.UsageError(
            f"CI=true but no Fashion-MNIST copy at {DATA}: the data tests would be skipped; "
            "set SIGNALPROP_DATA to the data folder"
        )
    missing = [name for name in EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        raise pytest.UsageError(
            f"CI=true but {', '.join(missing)} not installed: their tests would be skipped; "
            'install the dev extras (pip install -e ".[dev]")'
        )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tests' tensors are too small to gain from more, and on a
    shared 2-core machine a second spinning thread makes a 1000-layer propagate 7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty compile cache of the test's own: every architecture is new in it, and
    nothing is compiled into the per-user cache."""
    folder = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return folder
