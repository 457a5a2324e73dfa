"""``signalprop plot``: the activation functions, or a Monitor log's heatmaps."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from signalprop import activations as _activations
from signalprop.cli._common import Config, UsageError, writable_directory

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "plot"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    plot = subparsers.add_parser(
        NAME,
        help="draw figures",
        epilog="examples:\n  signalprop plot activations --out figures\n"
        "  signalprop plot monitor runs/a/monitor.jsonl --out figures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument(
        "what",
        choices=["activations", "monitor"],
        help="activations: the activation functions; monitor: a Monitor log's per-layer "
        "heatmaps over the steps",
    )
    plot.add_argument("log", nargs="?", help="the Monitor's JSON Lines log (plot monitor)")
    plot.add_argument("--out", metavar="DIR", required=True, help="directory for the PNG files")
    return plot


def config(args: argparse.Namespace) -> Config:
    if args.what == "monitor" and args.log is None:
        raise UsageError("plot monitor: give the Monitor's log file: plot monitor LOG --out DIR")
    if args.what != "monitor" and args.log is not None:
        raise UsageError(f"plot {args.what}: takes no log file (got {args.log!r})")
    return Config(NAME, {"what": args.what, "out": args.out, "log": args.log})


def run(options: dict[str, Any]) -> int:
    from signalprop.plots import plot_activations

    if options["what"] == "monitor":
        return _plot_monitor(options["log"], options["out"])
    directory = writable_directory(options["out"], "--out")
    asymptotes = {"elu": -1.0, "selu": -_activations.SELU_SCALE * _activations.SELU_ALPHA}
    figure = plot_activations(_activations.curves(), asymptotes=asymptotes)
    path = directory / "activations.png"
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")
    return 0


def _plot_monitor(log: str, out: str) -> int:
    """Heatmaps of a Monitor log, one PNG per quantity recorded, and its findings."""
    from signalprop.monitor import read_log
    from signalprop.plots import MONITOR_PANELS, plot_monitor

    try:
        history = read_log(log)
    except ValueError:
        raise UsageError(
            f"plot monitor: {log!r} is not a Monitor log (signalprop.Monitor(log=...))"
        ) from None
    directory = writable_directory(out, "--out")
    for quantity in MONITOR_PANELS:
        if any(v is not None for record in history.records for v in record.values[quantity]):
            path = directory / f"monitor-{quantity}.png"
            plot_monitor(history, [quantity]).savefig(path, dpi=110)
            print(f"wrote {path}")
    path = directory / "monitor.png"
    plot_monitor(history).savefig(path, dpi=110)
    print(f"wrote {path}")
    print(history.summary())
    return 0
