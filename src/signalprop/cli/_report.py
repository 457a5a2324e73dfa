"""``signalprop report``: the Markdown report of a study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signalprop.cli._common import Config, UsageError

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "report"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    report = subparsers.add_parser(NAME, help="write the Markdown report of a study")
    report.add_argument("directory", metavar="DIR", help="a study's results directory")
    return report


def config(args: argparse.Namespace) -> Config:
    directory = Path(args.directory)
    if not (directory / "results.jsonl").exists():
        raise UsageError(f"report: {str(directory)!r} holds no results.jsonl")
    return Config(NAME, {"directory": args.directory})


def run(options: dict[str, Any]) -> int:
    from signalprop.study import write_report

    print(f"report written to {write_report(options['directory'])}")
    return 0
