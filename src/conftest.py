"""The docstrings' examples run as the tests do (tests/conftest.py): on one intra-op
thread, since on a shared 2-core machine a second spinning thread makes their small
tensor operations several times slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
