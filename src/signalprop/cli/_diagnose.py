"""``signalprop diagnose``: diagnose a built-in example network."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from signalprop._validation import check_int, check_option
from signalprop.cli._common import (
    PROG,
    Config,
    UsageError,
    fitting_batch,
    made_by,
    writable_directory,
)
from signalprop.examples import EXAMPLES

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "diagnose"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    diag = subparsers.add_parser(NAME, help="diagnose a built-in example network (see --list)")
    diag.add_argument("--preset", help=f"example network: one of {sorted(EXAMPLES)}")
    diag.add_argument("--list", action="store_true", help="list the example networks")
    diag.add_argument("--batch", type=int, default=256, help="inputs (default 256)")
    diag.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    diag.add_argument("--report", metavar="DIR", help="write a Markdown report and figure here")
    return diag


def config(args: argparse.Namespace) -> Config:
    if args.list:
        return Config(NAME, {"list": True})
    if args.preset is None:
        raise UsageError(f"diagnose: give --preset, one of {sorted(EXAMPLES)} (or --list)")
    check_option(args.preset, EXAMPLES, param="--preset", caller=f"{PROG} diagnose")
    options = {
        "list": False,
        "preset": args.preset,
        "batch": fitting_batch(args.batch, args.preset, "diagnose", low=1),
        "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
        "report": args.report,
    }
    return Config(NAME, options)


def run(options: dict[str, Any]) -> int:
    if options["list"]:
        from signalprop.examples import describe

        for name in EXAMPLES:
            print(f"{name:16s} {describe(name)}")
        return 0
    from signalprop.diagnostics import diagnose
    from signalprop.examples import build_example, describe
    from signalprop.plots import plot_layers

    directory = writable_directory(options["report"], "--report") if options["report"] else None
    name = options["preset"]
    model, inputs, labels = build_example(name, batch=options["batch"], seed=options["seed"])
    report = diagnose(model, inputs, labels)
    title = f"{name}: {describe(name)}"
    print(title)
    print(
        f"(standardized random inputs, random labels, batch {options['batch']}, "
        f"seed {options['seed']})\n"
    )
    print(report)
    if directory is not None:
        plot_layers(report).savefig(directory / "layers.png", dpi=110)
        (directory / "report.json").write_text(json.dumps(report.to_dict()) + "\n")
        (directory / "report.md").write_text(
            f"# diagnose: {title}\n\nStandardized random inputs (batch {options['batch']}, "
            f"seed {options['seed']}) with random labels.\n\n{report.to_markdown()}\n"
            f"![per-layer statistics](layers.png)\n\n{made_by()}\n"
        )
        print(f"\nreport written to {directory}/report.md")
    return 0
