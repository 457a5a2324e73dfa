"""``signalprop propagate``: the data-free depth experiment."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, check_option
from signalprop.cli._common import (
    PROG,
    Config,
    made_by,
    refuse_beyond_memory,
    writable_directory,
)

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "propagate"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    prop = subparsers.add_parser(
        NAME, help="the data-free depth experiment: signal and gradient per layer"
    )
    prop.add_argument(
        "--activation",
        default="selu",
        help=f"elementwise activation, one of {', '.join(_activations.elementwise_names())} "
        "(default selu)",
    )
    prop.add_argument(
        "--init",
        default="lecun_normal",
        help=f"initializer, one of {', '.join(_init.names())} (default lecun_normal)",
    )
    prop.add_argument("--depth", type=int, default=1000, help="number of layers (default 1000)")
    prop.add_argument("--width", type=int, default=100, help="units per layer (default 100)")
    prop.add_argument("--batch", type=int, default=500, help="inputs (default 500)")
    prop.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    prop.add_argument("--report", metavar="DIR", help="write a Markdown report and figure here")
    return prop


def config(args: argparse.Namespace) -> Config:
    caller = f"{PROG} propagate"
    _activations.check_elementwise(args.activation, param="--activation", caller=caller)
    check_option(args.init, _init.names(), param="--init", caller=caller)
    options = {
        "activation": args.activation,
        "init": args.init,
        "depth": check_int(args.depth, param="depth", caller=PROG, low=1),
        "width": check_int(args.width, param="width", caller=PROG, low=1),
        "batch": check_int(args.batch, param="batch", caller=PROG, low=2),
        "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
        "report": args.report,
    }
    from signalprop.propagate import memory_needed

    refuse_beyond_memory(
        memory_needed(options["depth"], options["width"], options["batch"]),
        f"propagate: --depth {options['depth']} --width {options['width']} "
        f"--batch {options['batch']} needs, as depth × (width² + 4·batch·width) × 4 bytes,",
        "make them smaller",
    )
    return Config(NAME, options)


def run(options: dict[str, Any]) -> int:
    from signalprop.plots import plot_layers
    from signalprop.propagate import propagate

    directory = writable_directory(options["report"], "--report") if options["report"] else None
    result = propagate(
        options["activation"],
        options["init"],
        options["depth"],
        options["width"],
        options["batch"],
        options["seed"],
        progress=True,
    )
    print(result)
    if directory is not None:
        plot_layers(result).savefig(directory / "propagate.png", dpi=110)
        (directory / "propagate.json").write_text(json.dumps(result.to_dict()) + "\n")
        (directory / "propagate.md").write_text(
            f"# propagate: {result.activation} + {result.init}\n\n"
            f"{result.depth} layers of {result.width} units, batch {result.batch}, "
            f"seed {result.seed}; standardized random inputs, no data.\n\n"
            f"```\n{result.table()}\n```\n\n![per-layer statistics](propagate.png)\n\n"
            f"{made_by()}\n"
        )
        print(f"report written to {directory}/propagate.md")
    return 0
