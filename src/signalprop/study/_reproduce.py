"""Reproducing a study: some of its recorded runs trained again, and every epoch's
numbers compared with the record.

A study run is a pure function of its configuration, the data, the path
:func:`signalprop.fit` trained it on and the number of PyTorch threads
(:func:`~signalprop.study._runner.training_path`): on the same machine with the
same libraries, a rerun repeats it bit for bit, and JSON keeps every float as it
was. So the default tolerance is zero. A deep net trained with plain SGD
amplifies any rounding difference (one ulp in a step becomes percents of accuracy
within an epoch on the 100-layer nets), so no small tolerance would tell "the
same run" from "another": a difference at all means other code, data, libraries
or another machine, and the comparison says where.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signalprop._provenance import versions
from signalprop._validation import check_int, check_real
from signalprop.study._report import normalized
from signalprop.study._runner import (
    MONITOR_DIR,
    RESULTS,
    SPEC,
    execute,
    read_results,
)
from signalprop.study._spec import RunConfig, describe_autoinit

__all__ = ["QUANTITIES", "Reproduction", "Rerun", "reproduce", "spread"]

#: What is compared: each epoch's training and validation numbers, the steps taken,
#: and diagnose's per-layer statistics before training and after it.
QUANTITIES = (
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "steps",
    "layers at init",
    "layers after training",
)
#: The paths a record can name (the first word of ``history["path"]``).
PATHS = ("autograd", "fast", "compiled")


def spread(count: int, runs: int) -> list[int]:
    """``runs`` indices of ``count`` items, the first and the last and evenly between.

    Example:
        >>> spread(12, 2), spread(12, 4), spread(3, 5)
        ([0, 11], [0, 4, 7, 11], [0, 1, 2])
    """
    if runs >= count:
        return list(range(count))
    if runs == 1:
        return [0]
    # floor(x + 1/2), not round(): banker's rounding sends 1.5 and 2.5 to one index.
    return [int(i * (count - 1) / (runs - 1) + 0.5) for i in range(runs)]


@dataclass
class Rerun:
    """One recorded run and the same run trained again.

    Attributes:
        record: The run's record (as :func:`signalprop.study.read_results` gives it).
        again: The rerun's record.
        path: The training path the rerun was asked to take: the record's.
        differences: Per quantity of :data:`QUANTITIES`, the largest absolute
            difference (``inf`` when they cannot be compared: a different number of
            epochs or layers, a number against NaN).
        notes: Why this rerun may not repeat the record exactly, if anything says so.
    """

    record: dict[str, Any]
    again: dict[str, Any]
    path: str
    differences: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def largest(self) -> float:
        return max(self.differences.values())

    @property
    def name(self) -> str:
        """The run's label, else its readable name, autoinit included, without the seed."""
        config = self.record["config"]
        if config.get("label"):
            return str(config["label"])
        run = RunConfig.from_dict(config)
        name = run.name.rsplit(", seed", 1)[0]
        if run.autoinit is not None and run.model == "mlp":
            name += f" + autoinit ({describe_autoinit(run.autoinit)})"
        return name


@dataclass
class Reproduction:
    """What :func:`reproduce` found: the reruns and the tolerance they were held to.

    Examples:
        ```python
        from signalprop.study import reproduce

        found = reproduce("docs/results/he-vs-glorot", runs=2)
        found.agrees       # every difference within the tolerance (0: bit for bit)
        found.largest()    # per quantity, the largest absolute difference
        ```
    """

    directory: Path
    finished: int
    chosen: list[int]
    reruns: list[Rerun]
    tolerance: float

    def largest(self) -> dict[str, float]:
        """Per quantity, the largest absolute difference over the reruns."""
        return {q: max(r.differences[q] for r in self.reruns) for q in QUANTITIES}

    @property
    def agrees(self) -> bool:
        """Whether every difference is within the tolerance."""
        return all(value <= self.tolerance for value in self.largest().values())


def _difference(recorded: Any, again: Any) -> float:
    """The largest absolute difference of two numbers, or of two lists of them; NaN
    against NaN and None against None agree, anything else unmatched is ``inf``."""
    if isinstance(recorded, list) or isinstance(again, list):
        if not (isinstance(recorded, list) and isinstance(again, list)):
            return math.inf
        if len(recorded) != len(again):
            return math.inf
        return max((_difference(a, b) for a, b in zip(recorded, again, strict=True)), default=0.0)
    if recorded is None or again is None:
        return 0.0 if recorded is again else math.inf
    a, b = float(recorded), float(again)
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    if a == b:  # equal infinities too
        return 0.0
    return abs(a - b)


def _layers_difference(recorded: dict[str, Any], again: dict[str, Any]) -> float:
    keys = (set(recorded) | set(again)) - {"name"}
    return max((_difference(recorded.get(k), again.get(k)) for k in keys), default=0.0)


def differences(recorded: dict[str, Any], again: dict[str, Any]) -> dict[str, float]:
    """Per quantity of :data:`QUANTITIES`, the largest absolute difference between two
    records of one run."""
    found = {
        q: _difference(recorded["history"].get(q, []), again["history"].get(q, []))
        for q in QUANTITIES[:4]
    }
    found["steps"] = _difference(recorded["history"].get("steps"), again["history"].get("steps"))
    for when, quantity in (("start", "layers at init"), ("end", "layers after training")):
        found[quantity] = _layers_difference(
            recorded.get("layers", {}).get(when, {}), again.get("layers", {}).get(when, {})
        )
    return found


def _path(record: dict[str, Any]) -> str:
    """The path the record's run trained on (the first word of ``history.path``)."""
    named = str(record["history"].get("path", "autograd")).split(" ", 1)[0]
    return named if named in PATHS else "autograd"


def _notes(record: dict[str, Any], path: str) -> list[str]:
    """What says, before training, that the rerun may not repeat the record exactly."""
    notes = []
    if path == "compiled":
        notes.append(
            "trained on the compiled step, after eager steps whose number fit does not "
            "take: repeated with path='compiled' from the first step"
        )
    now = versions()
    if "commit" not in record.get("versions", {}):
        notes.append(f"the record names no commit; this is {now['commit']}")
    for library, version in record.get("versions", {}).items():
        if library in now and now[library] != version:
            notes.append(f"recorded with {library} {version}, now {now[library]}")
    return notes


def _in_grid_order(results: list[dict[str, Any]], directory: Path) -> list[dict[str, Any]]:
    """The finished runs in the specification's order (``spec.json``), then any other."""
    spec_path = directory / SPEC
    order: dict[str, int] = {}
    if spec_path.exists():
        runs = json.loads(spec_path.read_text(encoding="utf-8")).get("runs", [])
        order = {run.get("run_id"): index for index, run in enumerate(runs)}
    indexed = list(enumerate(results))
    indexed.sort(key=lambda item: (order.get(item[1]["run_id"], len(order)), item[0]))
    return [record for _, record in indexed]


def finished_runs(directory: str | Path) -> list[dict[str, Any]]:
    """A study's finished runs in today's record format, in its grid's order."""
    directory = Path(directory)
    kept, _ = normalized([r for r in read_results(directory) if not r.get("error")])
    return _in_grid_order(kept, directory)


def reproduce(
    directory: str | Path,
    runs: int = 2,
    *,
    data_dir: str | None = None,
    tolerance: float = 0.0,
    echo: Callable[[str], None] = print,
) -> Reproduction:
    """Train ``runs`` of a study's recorded runs again and compare them with the record.

    The runs are chosen by :func:`spread` over the study's finished runs in its grid's
    order (``spec.json``): the first, the last and evenly between. Each is trained as
    the runner trained it (:func:`~signalprop.study.execute`) on the path its record
    names and with its number of threads, with anything it writes (a Monitor's log)
    in a temporary folder: the study's folder is only read.

    Args:
        directory: The study's folder (its ``results.jsonl``).
        runs: How many runs to train again (all of them if the study has fewer).
        data_dir: Fashion-MNIST directory (default: ``SIGNALPROP_DATA`` or the cache).
        tolerance: The largest absolute difference that counts as agreement (see the
            module's docstring for why it is 0 by default).
        echo: Where the runs chosen and a line per finished rerun go.

    Raises:
        ValueError: When the folder holds no finished run.

    Examples:
        ```python
        from signalprop.study import reproduce

        found = reproduce("docs/results/chapter11", runs=2, data_dir="../shared/data/fashion-mnist")
        print(found.agrees, found.largest()["val_accuracy"])
        ```
    """
    runs = check_int(runs, param="runs", caller="reproduce", low=1)
    tolerance = check_real(tolerance, param="tolerance", caller="reproduce", low=0)
    directory = Path(directory)
    finished = finished_runs(directory)
    if not finished:
        raise ValueError(f"{directory}: no finished runs in {RESULTS} to reproduce")
    chosen = spread(len(finished), runs)
    echo(
        f"reproducing {len(chosen)} of the {len(finished)} finished runs of {directory} "
        f"(runs {', '.join(str(i + 1) for i in chosen)} in the grid's order), in a "
        "temporary folder"
    )
    reruns = []
    for index, rerun in zip(chosen, _reruns([finished[i] for i in chosen], data_dir), strict=True):
        reruns.append(rerun)
        echo(
            f"[{len(reruns)}/{len(chosen)}] run {index + 1} of {len(finished)}, {rerun.name}, "
            f"seed {rerun.record['config']['seed']}: largest difference {rerun.largest:g}"
        )
    return Reproduction(directory, len(finished), chosen, reruns, tolerance)


def _reruns(records: list[dict[str, Any]], data_dir: str | None) -> Iterator[Rerun]:
    with tempfile.TemporaryDirectory(prefix="signalprop-reproduce-") as temporary:
        for record in records:
            config = RunConfig.from_dict(record["config"])
            path = _path(record)
            monitor = None
            if record.get("monitor"):
                logs = Path(temporary) / MONITOR_DIR
                logs.mkdir(exist_ok=True)
                monitor = (str(logs), int(record["monitor"]["every"]))
            again = execute(
                config, data_dir, int(record.get("threads", 1)), monitor=monitor, path=path
            )
            yield Rerun(record, again, path, differences(record, again), _notes(record, path))
