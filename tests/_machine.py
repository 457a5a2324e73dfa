"""A simulated machine for the tests of ``fit(path="auto")``'s rule: step times given,
not measured, so that no test depends on how fast the machine running it is."""

from __future__ import annotations

from typing import Any

import pytest

from signalprop import _fastpath
from signalprop._fastpath import DenseStackTrainer


class Machine:
    """The fast path's clock (``_fastpath._clock``) on a machine whose steps take the
    times given: it moves only when a step runs, by ``eager`` seconds for an eager step,
    ``compiled`` for a compiled one, and ``first`` for a compiled trainer's first call of
    its step (its compile, or its load from the on-disk cache). The steps themselves
    run for real; set the times between steps to change the machine."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        eager: float,
        compiled: float = 1.0,
        first: float = 1.0,
    ) -> None:
        self.eager, self.compiled, self.first = eager, compiled, first
        self.now = 0.0
        monkeypatch.setattr(_fastpath, "_clock", lambda: self.now)
        eager_step = DenseStackTrainer.step

        def step(trainer: DenseStackTrainer, *args: Any, **kwargs: Any) -> Any:
            self.now += self.eager
            return eager_step(trainer, *args, **kwargs)

        monkeypatch.setattr(DenseStackTrainer, "step", step)
        make = _fastpath._compiled_step

        def compiled_step(*args: Any) -> Any:  # one per compiled trainer
            function = make(*args)
            calls = 0

            def timed(*step_args: Any) -> Any:
                nonlocal calls
                result = function(*step_args)
                self.now += self.first if calls == 0 else self.compiled
                calls += 1
                return result

            return timed

        monkeypatch.setattr(_fastpath, "_compiled_step", compiled_step)
