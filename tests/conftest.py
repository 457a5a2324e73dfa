"""Settings shared by every test."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tests' tensors are too small to gain from more, and on a
    shared 2-core machine a second spinning thread makes a 1000-layer propagate 7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
