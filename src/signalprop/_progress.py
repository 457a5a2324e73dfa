"""Progress of long work, wherever it runs: a bar on a terminal, plain lines otherwise.

A bar (tqdm) needs a terminal; in a log file, a CI job or a notebook's captured
stderr it would be silent or garbled. So :class:`Progress` draws a bar when
stderr is a terminal and otherwise prints one line at each tenth of the work,
and :func:`say` prints a summary line (an epoch's numbers) in both cases.
:class:`TimeLeft` estimates the time left of jobs of unequal sizes (a study's runs).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping
from typing import Any

__all__ = ["Progress", "TimeLeft", "say"]


def say(text: str) -> None:
    """One line on stderr, above a bar if one is drawn.

    tqdm is asked only when a bar is on screen: its lock is a multiprocessing
    semaphore, made at first use, and a study's worker process killed while holding
    one (a cancelled run) leaves multiprocessing's "leaked semaphore" warning behind.
    """
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    if getattr(tqdm, "_instances", None):
        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


class Progress:
    """Counts ``total`` steps of work called ``description``.

    Args:
        total: Steps in all.
        description: What the work is, e.g. ``"epoch 2/5"``.
        enabled: False shows nothing at all.
    """

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.description = description
        self.enabled = enabled
        self.terminal = enabled and sys.stderr.isatty()
        self.bar: Any = None  # no tqdm off a terminal: see say()
        if self.terminal:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=description, leave=False)
        self.done = 0
        self._next_line = self.total // 10 or 1

    @property
    def drawing(self) -> bool:
        """Whether a bar is drawn (postfix numbers are worth computing)."""
        return self.terminal

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
        if self.enabled and not self.terminal and self.done >= self._next_line:
            if self.done < self.total:
                say(f"{self.description}: {self.done}/{self.total}")
            self._next_line += self.total // 10 or 1

    def set_postfix(self, **values: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TimeLeft:
    """The time left of jobs of unequal sizes, from the wall times of those finished.

    Counting jobs misleads when they differ in size: a study that runs its small nets
    first finds them quick and promises a short wait. Here each job has a size (jobs
    of one size take about the same time) and an expected cost (any unit, comparable
    across sizes). A job yet to finish is expected to take the mean wall time of the
    finished jobs of its size; a size none of whose jobs has finished is scaled from
    the timed ones by cost (seconds per unit of cost, pooled over the finished jobs).
    With ``parallel`` jobs at once the total is shared among them, but is never less
    than the longest job left. Jobs running are counted whole (their progress is not
    known here), which errs on the long side by at most a job per parallel slot.

    Args:
        jobs: ``key -> (size, cost)`` for every job to do.
        parallel: Jobs run at once.

    Example:
        >>> left = TimeLeft({"a": ("small", 1.0), "b": ("big", 4.0), "c": ("big", 4.0)})
        >>> left.finished("a", 10.0)
        >>> left.left()
        (80.0, 1)
        >>> left.finished("b", 30.0)
        >>> left.left()
        (30.0, 0)
    """

    def __init__(self, jobs: Mapping[Hashable, tuple[Hashable, float]], parallel: int = 1) -> None:
        self.pending = dict(jobs)
        self.parallel = max(1, parallel)
        self.times: dict[Hashable, list[float]] = {}  # size -> wall times of its finished jobs
        self.timed_cost = 0.0
        self.timed_seconds = 0.0

    def finished(self, job: Hashable, seconds: float | None) -> None:
        """Job ``job`` is done, in ``seconds`` of its own (None: untimed, e.g. it failed)."""
        size, cost = self.pending.pop(job)
        if seconds is not None and seconds > 0:
            self.times.setdefault(size, []).append(seconds)
            self.timed_cost += cost
            self.timed_seconds += seconds

    def left(self) -> tuple[float, int] | None:
        """``(seconds left, sizes left that no finished job has timed)``; None before any
        job has been timed (or when none is left)."""
        if not self.pending or self.timed_cost <= 0:
            return None
        per_cost = self.timed_seconds / self.timed_cost
        expected = []
        untimed = set()
        for size, cost in self.pending.values():
            times = self.times.get(size)
            if times:
                expected.append(sum(times) / len(times))
            else:
                expected.append(cost * per_cost)
                untimed.add(size)
        return max(sum(expected) / self.parallel, max(expected)), len(untimed)
