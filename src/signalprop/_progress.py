"""Progress of long work, wherever it runs: a bar on a terminal, plain lines otherwise.

A bar (tqdm) needs a terminal; in a log file, a CI job or a notebook's captured
stderr it would be silent or garbled. So :class:`Progress` draws a bar when
stderr is a terminal and otherwise prints one line at each tenth of the work,
and :func:`say` prints a summary line (an epoch's numbers) in both cases.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress", "say"]


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
