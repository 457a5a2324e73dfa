"""Where the tests find the real Fashion-MNIST, and the mark for tests that need it.

The copy is read from ``$SIGNALPROP_DATA`` (the project's data-directory setting) or, by
default, the workplace's read-only copy next to the repository. Outside CI a test that
needs it is skipped when it is missing; under ``CI=true`` a missing copy fails the whole
run at its start (tests/conftest.py), so CI never passes with the data tests skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get("SIGNALPROP_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"
)
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no Fashion-MNIST copy at {DATA}")
