"""Which code made a result: the signalprop version and git commit, and the libraries'
versions, recorded with every study run and stated at the end of every report."""

from __future__ import annotations

import functools
import platform
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signalprop import __version__


def versions() -> dict[str, str]:
    """The library versions a result was produced with, and the git commit of the
    signalprop that trained it (see :func:`source_commit`)."""
    return {
        "signalprop": __version__,
        "commit": source_commit(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


#: What :func:`source_commit` says when signalprop does not run from a git checkout.
UNKNOWN_COMMIT = "unknown"
#: Appended to the commit when signalprop's own files differ from it.
DIRTY = "-dirty"
#: What a report says of a record written before records named their commit.
NOT_RECORDED = "not recorded"


@functools.cache
def source_commit() -> str:
    """The git commit of the signalprop code running here (:func:`commit_of` its
    package directory), asked once per process: the code a process runs is the code
    it imported."""
    return commit_of(Path(__file__).resolve().parent)


def commit_of(package: Path) -> str:
    """The git commit of the code in ``package`` (a directory holding an
    ``__init__.py``): its full hash, with ``"-dirty"`` appended when the directory's
    files differ from that commit (changed, staged or new files in it; results
    written elsewhere in the checkout do not count), or ``"unknown"`` when
    ``__init__.py`` is not a file tracked by a git checkout (an installed wheel) or
    git cannot say.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    # A package inside a checkout but not tracked by it (a virtual environment kept in
    # a repository) has no commit of its own.
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return UNKNOWN_COMMIT
    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".")
    if head is None or status is None:
        return UNKNOWN_COMMIT
    return head.strip() + (DIRTY if status.strip() else "")


def _short(commit: str) -> str:
    """A commit as the report shows it: 12 hex digits, and ``-dirty`` said in words
    (:data:`UNKNOWN_COMMIT` and :data:`NOT_RECORDED` are short enough to pass whole)."""
    dirty = commit.endswith(DIRTY)
    return commit.removesuffix(DIRTY)[:12] + (" with uncommitted changes" if dirty else "")


def code_line(records: list[dict[str, Any]]) -> str:
    """Which signalprop made the runs (version and git commit, each with its number of
    runs when they differ) and the other libraries' versions, as one sentence."""
    codes = Counter(
        (
            r.get("versions", {}).get("signalprop", "(version not recorded)"),
            r.get("versions", {}).get("commit", NOT_RECORDED),
        )
        for r in records
    )
    made = [
        f"signalprop {version}, commit {_short(commit)}"
        + (f" ({count} run{'s' * (count != 1)})" if len(codes) > 1 else "")
        for (version, commit), count in sorted(codes.items(), key=lambda kv: -kv[1])
    ]
    others: dict[str, list[str]] = defaultdict(list)
    for record in records:
        for key, value in record.get("versions", {}).items():
            if key not in ("signalprop", "commit") and value not in others[key]:
                others[key].append(value)
    text = "Made by " + "; ".join(made)
    if len(codes) > 1:
        text += " (the runs were made by different code)"
    if others:
        text += ". Versions: " + ", ".join(f"{k} {' / '.join(v)}" for k, v in others.items())
    return text + "."
