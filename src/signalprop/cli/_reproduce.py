"""``signalprop reproduce``: a study's recorded runs trained again and compared with the
record, epoch by epoch."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signalprop._validation import check_int, check_real
from signalprop.cli._common import PROG, Config, UsageError, text_table

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers
    from signalprop.study import Reproduction

NAME = "reproduce"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    command = subparsers.add_parser(
        NAME,
        help="train some of a study's recorded runs again and compare every epoch's numbers",
        description="Train RUNS of the study's finished runs again (the first, the last "
        "and evenly between, in its grid's order), each on the training path and thread "
        "count its record names, in a temporary folder (DIR is only read), and compare "
        "every epoch's loss and accuracies, the steps taken and the per-layer statistics "
        "with the record.",
        epilog="exit status: 0 when every difference is within the tolerance, 1 when one "
        "is not, 2 for a usage error. The tolerance is 0: on the machine and libraries "
        "that made the record a run repeats bit for bit, and a deep net amplifies any "
        "rounding difference, so any difference means other code, data or libraries.",
    )
    command.add_argument("directory", metavar="DIR", help="a study's results directory")
    command.add_argument(
        "--runs", type=int, default=2, help="how many runs to train again (default 2)"
    )
    command.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="largest absolute difference that agrees (default 0: bit for bit)",
    )
    command.add_argument(
        "--data-dir", metavar="DIR", help="Fashion-MNIST files (default: $SIGNALPROP_DATA or cache)"
    )
    return command


def config(args: argparse.Namespace) -> Config:
    directory = Path(args.directory)
    if not (directory / "results.jsonl").is_file():
        raise UsageError(f"reproduce: {str(directory)!r} holds no results.jsonl")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UsageError(f"reproduce: --data-dir {args.data_dir!r} is not a directory")
    caller = f"{PROG} reproduce"
    return Config(
        NAME,
        {
            "directory": directory,
            "runs": check_int(args.runs, param="--runs", caller=caller, low=1),
            "tolerance": check_real(args.tolerance, param="--tolerance", caller=caller, low=0),
            "data_dir": args.data_dir,
        },
    )


def run(options: dict[str, Any]) -> int:
    """Train the runs again and print the comparison; 0 when it agrees, else 1."""
    from signalprop.study import reproduce

    directory = options["directory"]
    try:
        found = reproduce(
            directory,
            options["runs"],
            data_dir=options["data_dir"],
            tolerance=options["tolerance"],
        )
    except FileNotFoundError as error:
        raise UsageError(f"reproduce: {str(error).splitlines()[0]}") from None
    print(table(found))
    if found.agrees:
        return 0
    print(
        f"{PROG}: reproduce: the runs differ from the record by more than {found.tolerance:g}",
        file=sys.stderr,
    )
    return 1


def _number(value: float) -> str:
    if value == 0:
        return "0"
    return "not comparable" if math.isinf(value) else f"{value:.3g}"


def table(found: Reproduction) -> str:
    """The reruns as a text table, each run's largest difference per quantity, the
    largest per quantity over all, and the verdict."""
    quantities = list(found.largest())
    header = ["run", "seed", "path", "epochs", "val. accuracy: recorded / again", *quantities]
    rows = [header]
    for index, rerun in zip(found.chosen, found.reruns, strict=True):
        config = rerun.record["config"]
        recorded, again = rerun.record["history"], rerun.again["history"]
        final = " / ".join(
            f"{h['val_accuracy'][-1]:.4f}" if h.get("val_accuracy") else "—"
            for h in (recorded, again)
        )
        rows.append(
            [
                f"{index + 1}. {rerun.name}",
                str(config["seed"]),
                rerun.path,
                f"{len(recorded.get('loss', []))} / {len(again.get('loss', []))}",
                final,
                *(_number(rerun.differences[q]) for q in quantities),
            ]
        )
    lines = text_table(rows, rule=True).splitlines()
    for index, rerun in zip(found.chosen, found.reruns, strict=True):
        lines += [f"note on run {index + 1}: {note}" for note in rerun.notes]
    largest = found.largest()
    lines.append(
        "largest absolute difference per quantity: "
        + ", ".join(f"{q} {_number(v)}" for q, v in largest.items())
    )
    verdict = "agree" if found.agrees else "differ"
    lines.append(
        f"{verdict}: tolerance {found.tolerance:g}"
        + (" (bit for bit)" if found.tolerance == 0 else "")
    )
    return "\n".join(lines)
