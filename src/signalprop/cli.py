"""The ``signalprop`` command line: a thin layer over the library.

``build_parser()`` describes the commands, ``config_from_args()`` turns parsed
arguments into a checked :class:`Config` (pure: no output, no files),
``run(config)`` does the work and ``main(argv)`` ties them together and turns
user errors into one line on stderr and exit status 2.

    signalprop propagate --activation selu --init lecun_normal --depth 1000
    signalprop plot activations --out DIR
    signalprop diagnose --preset chapter-selu --report DIR
    signalprop study --preset chapter11 --out DIR [--jobs 2]
    signalprop report DIR
    signalprop gain [ACTIVATION] [--param alpha=0.2]
    signalprop autoinit --preset torch-default-relu --report DIR
    signalprop phase --activation tanh --out DIR [--width 100] [--param alpha=0.2]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import sys
import tempfile
import textwrap
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import UnknownArgumentsError, check_int, check_option
from signalprop.autoinit import CRITERIA as AUTOINIT_CRITERIA
from signalprop.autoinit import DISTRIBUTIONS as AUTOINIT_DISTRIBUTIONS
from signalprop.examples import EXAMPLES

__all__ = ["Config", "UsageError", "build_parser", "config_from_args", "main", "run"]

PROG = "signalprop"
EXAMPLES_TEXT = """examples:
  signalprop propagate --activation selu --init lecun_normal --depth 1000
  signalprop diagnose --preset chapter-relu --report reports/chapter-relu/
  signalprop autoinit --preset torch-default-tanh --criterion critical
  signalprop phase --activation tanh --out figures/phase-tanh/
  signalprop gain leaky_relu --param alpha=0.2
  signalprop study --preset quick --out runs/quick --jobs 2
  signalprop report runs/quick

'signalprop COMMAND --help' describes each command."""


def _study_epilog() -> str:
    from signalprop.study._spec import KEYS

    settings = textwrap.fill(", ".join(sorted(KEYS)), width=76, subsequent_indent="  ")
    return (
        'A grid file is a JSON object: {"name": ..., "description": ..., "defaults": '
        '{SETTING: VALUE},\n"grid": {SETTING: [VALUES]} (every combination is a run), '
        '"runs": [{SETTING: VALUE}],\n"seeds": [0, 1, 2]}. Settings:\n  '
        + settings
        + '\nexample: {"defaults": {"epochs": 1, "standardize": true},\n'
        '          "grid": {"activation": ["selu", "tanh"], "init": ["matching"], '
        '"depth": [20, 50]}}\n'
        "exit status: 0 when at least one run finished (failed ones are listed in the "
        "report),\n1 when every run failed, 2 for a usage error, 130 when interrupted, 143 "
        "when terminated"
    )


def _version() -> str:
    from signalprop import __version__

    return __version__


class UsageError(Exception):
    """A mistake of the user's: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{command}: {message}" if command else message)


@dataclass(frozen=True)
class Config:
    """A checked command: its name and its options."""

    command: str
    options: dict[str, Any] = field(default_factory=dict)


def _study_presets() -> tuple[str, ...]:
    from signalprop.study import PRESET_NAMES

    return PRESET_NAMES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(
        prog=PROG,
        description="Make deep neural networks trainable.",
        epilog=EXAMPLES_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    prop = commands.add_parser(
        "propagate", help="the data-free depth experiment: signal and gradient per layer"
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

    plot = commands.add_parser(
        "plot",
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

    diag = commands.add_parser("diagnose", help="diagnose a built-in example network (see --list)")
    diag.add_argument("--preset", help=f"example network: one of {sorted(EXAMPLES)}")
    diag.add_argument("--list", action="store_true", help="list the example networks")
    diag.add_argument("--batch", type=int, default=256, help="inputs (default 256)")
    diag.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    diag.add_argument("--report", metavar="DIR", help="write a Markdown report and figure here")
    study = commands.add_parser(
        "study",
        help="run a grid of training runs on Fashion-MNIST (resumable)",
        epilog=_study_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    study.add_argument(
        "--preset",
        required=True,
        help=f"one of {', '.join(_study_presets())}, or a JSON grid file",
    )
    study.add_argument("--out", metavar="DIR", required=True, help="results directory")
    study.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    study.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    study.add_argument(
        "--data-dir", metavar="DIR", help="Fashion-MNIST files (default: $SIGNALPROP_DATA or cache)"
    )
    study.add_argument("--no-report", action="store_true", help="do not write the report after")
    study.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="train the runs on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://HOST:8786; needs signalprop[dask])",
    )
    study.add_argument(
        "--cluster",
        metavar="local:N",
        help="start a local Dask cluster of N single-threaded worker processes for the runs "
        "(on 127.0.0.1, over TLS, no HTTP port)",
    )
    study.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the --cluster's Dask dashboard on 127.0.0.1:8787",
    )
    tls = study.add_argument_group(
        "TLS", "certificates for a --scheduler tls://HOST:PORT (see the README's Security)"
    )
    tls.add_argument("--tls-ca-file", metavar="FILE", help="the certificate authority (PEM)")
    tls.add_argument("--tls-cert", metavar="FILE", help="this client's certificate (PEM)")
    tls.add_argument("--tls-key", metavar="FILE", help="this client's private key (PEM)")
    tls.add_argument(
        "--security",
        metavar="FILE",
        help="or a Dask configuration file (YAML) naming them under distributed.comm.tls",
    )
    study.add_argument(
        "--monitor",
        type=int,
        nargs="?",
        const=16,
        metavar="EVERY",
        help="watch every run with signalprop.Monitor, recording every EVERY steps (16): "
        "logs in OUT/monitor/, heatmaps in the report",
    )
    study.add_argument(
        "--no-download", action="store_true", help="never download missing data files"
    )

    gain_parser = commands.add_parser(
        "gain", help="the variance-preserving gain of an activation, computed numerically"
    )
    gain_parser.add_argument(
        "activation", nargs="?", help="activation name (default: a table of all)"
    )
    gain_parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument of the activation, e.g. --param alpha=0.2",
    )

    auto = commands.add_parser(
        "autoinit", help="re-initialize an example network and diagnose it before and after"
    )
    auto.add_argument(
        "--preset",
        required=True,
        help=f"example network: one of {sorted(_autoinit_presets())}",
    )
    auto.add_argument("--mode", choices=["analytic", "data"], default="analytic")
    auto.add_argument(
        "--criterion",
        choices=sorted(AUTOINIT_CRITERIA),
        default=None,
        help="critical: the edge of chaos (chi_1 = 1); variance: pre-activations of "
        "variance 1 (default: autoinit's)",
    )
    auto.add_argument(
        "--distribution",
        choices=sorted(AUTOINIT_DISTRIBUTIONS),
        default=None,
        help="how the weights are drawn (default: autoinit's)",
    )
    auto.add_argument("--batch", type=int, default=256, help="inputs (default 256)")
    auto.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    auto.add_argument("--report", metavar="DIR", help="write a Markdown report and figures here")

    phase = commands.add_parser(
        "phase",
        help="the mean-field phase diagram of an activation, with where initializations sit",
        description="Draw ξ_c over (σ_w², σ_b²) with the critical line, mark where Glorot, "
        "He, LeCun, PyTorch's default and autoinit put a layer that feeds the activation, "
        "and write DIR/phase.png and DIR/phase.md. For an activation whose mean is not "
        "zero, the centred activation's critical line (each layer's biases also cancel the "
        "mean) is drawn beside it.",
    )
    phase.add_argument(
        "--activation",
        required=True,
        help=f"elementwise activation: one of {_activations.elementwise_names()}",
    )
    phase.add_argument("--out", metavar="DIR", required=True, help="directory for the files")
    phase.add_argument(
        "--width", type=int, default=100, help="units per layer (default 100; fan_in = fan_out)"
    )
    phase.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument of the activation, e.g. --param alpha=0.2",
    )
    phase.add_argument(
        "--resolution",
        type=int,
        default=PHASE_RESOLUTION,
        help=f"grid points per axis (default {PHASE_RESOLUTION})",
    )
    phase.add_argument(
        "--centred",
        action="store_true",
        help="the diagram of the centred activation φ − E[φ]: each layer's biases also "
        "hold −W·E[φ]𝟙",
    )

    report = commands.add_parser("report", help="write the Markdown report of a study")
    report.add_argument("directory", metavar="DIR", help="a study's results directory")
    return parser


def _autoinit_presets() -> list[str]:
    from signalprop.examples import TORCH_DEFAULT

    return [*EXAMPLES, *(f"torch-default-{name}" for name in TORCH_DEFAULT)]


def _parse_params(pairs: list[str], command: str = "gain") -> dict[str, float]:
    params = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        try:
            if not equals or not name.strip():
                raise ValueError(pair)
            params[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"{command}: --param must be NAME=NUMBER, got {pair!r}") from None
    return params


def _check_params(activation: str, params: dict[str, float], command: str) -> None:
    """The activation's arguments, refused in the command line's own words."""
    try:
        _activations.create(activation, **params)
    except UnknownArgumentsError as error:
        accepted = ", ".join(error.valid) if error.valid else "none"
        raise UsageError(
            f"{command}: --param {', '.join(error.unknown)} is not an argument of {activation} "
            f"(its arguments: {accepted})"
        ) from None
    except ValueError as error:
        raise UsageError(f"{command}: --param does not fit {activation}: {error}") from None


#: Grid points per axis of ``signalprop phase`` (100 × 100: a few seconds).
PHASE_RESOLUTION = 100


def _fitting_batch(batch: int, preset: str, command: str, low: int = 2) -> int:
    """--batch, checked, and refused with an estimate when the example could not hold it.

    An example keeps, per input, every layer's pre-activation, activation and their
    gradients: about 4 float32 values per unit of the net, plus the input.
    """
    from signalprop.examples import units

    batch = check_int(batch, param="--batch", caller=f"{PROG} {command}", low=low)
    count = units(preset)
    _refuse_beyond_memory(
        batch * count * 4 * 4,
        f"{command}: --batch {batch} needs, for {preset} ({count} units × 4 values × 4 bytes "
        "per input),",
        "use a smaller --batch",
    )
    return batch


def _refuse_beyond_memory(needed: int, what: str, fix: str) -> None:
    """A UsageError when ``needed`` bytes exceed half of this machine's memory."""
    from signalprop.propagate import beyond_memory

    refused = beyond_memory(needed)
    if refused is not None:
        raise UsageError(f"{what} {refused}: {fix}")


def _writable_directory(path: str, param: str) -> Path:
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise UsageError(
            f"{param} {path!r} is not a writable directory: {error.strerror}"
        ) from None
    return directory


def config_from_args(args: argparse.Namespace) -> Config:
    """Check parsed arguments and return a :class:`Config`; raises ``ValueError`` on mistakes."""
    command = args.command
    if command == "propagate":
        _activations.check_elementwise(
            args.activation, param="--activation", caller=f"{PROG} propagate"
        )
        check_option(args.init, _init.names(), param="--init", caller=f"{PROG} propagate")
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

        _refuse_beyond_memory(
            memory_needed(options["depth"], options["width"], options["batch"]),
            f"propagate: --depth {options['depth']} --width {options['width']} "
            f"--batch {options['batch']} needs, as depth × (width² + 4·batch·width) × 4 bytes,",
            "make them smaller",
        )
        return Config(command, options)
    if command == "plot":
        if args.what == "monitor" and args.log is None:
            raise UsageError(
                "plot monitor: give the Monitor's log file: plot monitor LOG --out DIR"
            )
        if args.what != "monitor" and args.log is not None:
            raise UsageError(f"plot {args.what}: takes no log file (got {args.log!r})")
        return Config(command, {"what": args.what, "out": args.out, "log": args.log})
    if command == "diagnose":
        if args.list:
            return Config(command, {"list": True})
        if args.preset is None:
            raise UsageError(f"diagnose: give --preset, one of {sorted(EXAMPLES)} (or --list)")
        check_option(args.preset, EXAMPLES, param="--preset", caller=f"{PROG} diagnose")
        options = {
            "list": False,
            "preset": args.preset,
            "batch": _fitting_batch(args.batch, args.preset, "diagnose", low=1),
            "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
            "report": args.report,
        }
        return Config(command, options)
    if command == "study":
        from signalprop.study import PRESET_NAMES, load_spec

        if args.preset not in PRESET_NAMES and not (
            args.preset.endswith(".json") or Path(args.preset).exists()
        ):
            check_option(args.preset, PRESET_NAMES, param="--preset", caller=f"{PROG} study")
        spec = load_spec(args.preset)
        if args.data_dir is not None and not Path(args.data_dir).is_dir():
            raise UsageError(f"--data-dir {args.data_dir!r} is not a directory")
        return Config(
            command,
            {
                "spec": spec,
                "out": args.out,
                "jobs": check_int(args.jobs, param="jobs", caller=PROG, low=1),
                "threads": check_int(args.threads, param="threads", caller=PROG, low=1),
                "data_dir": args.data_dir,
                "report": not args.no_report,
                "download": not args.no_download,
                "monitor": None
                if args.monitor is None
                else check_int(args.monitor, param="--monitor", caller=PROG, low=1),
                **_dask_options(args),
            },
        )
    if command == "gain":
        params = _parse_params(args.param)
        if args.activation is None and params:
            raise UsageError("gain: --param needs an activation name")
        if args.activation is not None:
            _activations.check_elementwise(args.activation, caller=f"{PROG} gain")
            _check_params(args.activation, params, "gain")
        return Config(command, {"activation": args.activation, "params": params})
    if command == "autoinit":
        check_option(args.preset, _autoinit_presets(), param="--preset", caller=f"{PROG} autoinit")
        return Config(
            command,
            {
                "preset": args.preset,
                "mode": args.mode,
                "criterion": args.criterion,
                "distribution": args.distribution,
                "batch": _fitting_batch(args.batch, args.preset, "autoinit"),
                "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
                "report": args.report,
            },
        )
    if command == "phase":
        caller = f"{PROG} phase"
        _activations.check_elementwise(args.activation, param="--activation", caller=caller)
        params = _parse_params(args.param, "phase")
        _check_params(args.activation, params, "phase")
        return Config(
            command,
            {
                "activation": args.activation,
                "params": params,
                "out": args.out,
                "width": check_int(args.width, param="--width", caller=caller, low=1),
                "resolution": check_int(
                    args.resolution, param="--resolution", caller=caller, low=5
                ),
                "centred": bool(args.centred),
            },
        )
    if command == "report":
        directory = Path(args.directory)
        if not (directory / "results.jsonl").exists():
            raise UsageError(f"report: {str(directory)!r} holds no results.jsonl")
        return Config(command, {"directory": args.directory})
    raise UsageError(f"unknown command {command!r}")  # pragma: no cover (argparse refuses it)


# ------------------------------------------------------------------ commands


def _run_propagate(options: dict[str, Any]) -> int:
    from signalprop.plots import plot_layers
    from signalprop.propagate import propagate

    directory = _writable_directory(options["report"], "--report") if options["report"] else None
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
            f"```\n{result.table()}\n```\n\n![per-layer statistics](propagate.png)\n"
        )
        print(f"report written to {directory}/propagate.md")
    return 0


def _run_plot(options: dict[str, Any]) -> int:
    from signalprop.plots import plot_activations

    if options["what"] == "monitor":
        return _plot_monitor(options["log"], options["out"])
    directory = _writable_directory(options["out"], "--out")
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
    directory = _writable_directory(out, "--out")
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


def _run_diagnose(options: dict[str, Any]) -> int:
    if options["list"]:
        for name, example in EXAMPLES.items():
            print(f"{name:16s} {example.description}")
        return 0
    from signalprop.diagnostics import diagnose
    from signalprop.examples import build_example
    from signalprop.plots import plot_layers

    directory = _writable_directory(options["report"], "--report") if options["report"] else None
    name = options["preset"]
    model, inputs, labels = build_example(name, batch=options["batch"], seed=options["seed"])
    report = diagnose(model, inputs, labels)
    title = f"{name}: {EXAMPLES[name].description}"
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
            "![per-layer statistics](layers.png)\n"
        )
        print(f"\nreport written to {directory}/report.md")
    return 0


#: Where the data folder came from, in the command line's words.
_DATA_SOURCE = {"data_dir": "--data-dir", "env": "$SIGNALPROP_DATA", "cache": "the per-user cache"}


def _check_data(data_dir: str | None, download: bool) -> None:
    """Missing data with --no-download: one line in the CLI's words, before anything is made."""
    from signalprop.data import missing_files

    folder, where, missing = missing_files(data_dir)
    if missing and not download:
        raise UsageError(
            f"study: Fashion-MNIST files are missing from {folder} (from {_DATA_SOURCE[where]}): "
            f"{', '.join(missing)}; point --data-dir or SIGNALPROP_DATA at a folder holding "
            "them, or leave out --no-download to fetch them"
        )


def _dask_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Dask flags as ``cluster()``'s arguments (``--cluster local:N`` as N, the TLS
    files as a ``distributed.Security``), after their combinations are checked: a
    mistake is one line before anything is created."""
    tls_files = [args.tls_ca_file, args.tls_cert, args.tls_key]
    options = {"scheduler": args.scheduler, "cluster": None, "security": None}
    options["dashboard"] = args.dashboard
    if args.scheduler is not None and args.cluster is not None:
        raise UsageError("study: give --scheduler or --cluster, not both")
    if (args.scheduler is not None or args.cluster is not None) and args.jobs != 1:
        raise UsageError(
            "study: --jobs is the local process pool's size; on a Dask cluster its workers "
            "train the runs (--cluster local:N starts N)"
        )
    if args.dashboard and args.cluster is None:
        raise UsageError("study: --dashboard serves a --cluster local:N's dashboard")
    if args.security is not None and any(tls_files):
        raise UsageError("study: give --security FILE or the --tls-* files, not both")
    if (args.security is not None or any(tls_files)) and args.scheduler is None:
        raise UsageError(
            "study: certificates are for a --scheduler tls://HOST:PORT (a --cluster makes its own)"
        )
    if any(tls_files) and not (args.tls_ca_file and args.tls_cert):
        raise UsageError("study: TLS needs --tls-ca-file and --tls-cert (and --tls-key)")
    if args.scheduler is None and args.cluster is None:
        return options
    from signalprop.study import _dask

    try:
        if args.cluster is not None:
            options["cluster"] = _dask.local_workers(args.cluster)
        elif args.security is not None:
            options["security"] = _dask.security_from_file(args.security)
        elif any(tls_files):
            options["security"] = _dask.tls_security(*tls_files)
        _dask.check(options["scheduler"], options["cluster"], options["security"], args.dashboard)
    except (ValueError, ImportError) as error:
        raise UsageError(f"study: {error}") from None
    return options


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the driver is, so that it stops as on Ctrl-C."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated


def _remove_if_made(directory: Path, existed: bool) -> None:
    """A study that could not start (no data, no scheduler) leaves no empty --out behind."""
    if not existed and not any(directory.iterdir()):
        directory.rmdir()


def _run_study(options: dict[str, Any]) -> int:
    """Run the study; exit status 0 when at least one of its runs finished, 1 when every
    run failed (one line says so; the report lists the errors), 2 for a user error, 130
    when interrupted and 143 when terminated. Runs that failed beside finished ones are
    said in one line and listed in the report, and the status stays 0."""
    from signalprop.study import StudyLockedError, run_study, write_report

    if options["scheduler"] is None:  # a remote cluster's workers read their own copy
        _check_data(options["data_dir"], options["download"])
    existed = Path(options["out"]).exists()
    directory = _writable_directory(options["out"], "--out")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # like ^C
    try:
        with contextlib.ExitStack() as stack:
            executor, slots = None, None
            if options["scheduler"] is not None or options["cluster"] is not None:
                from signalprop.study._dask import cluster

                try:
                    dask = stack.enter_context(
                        cluster(
                            options["scheduler"],
                            options["cluster"],
                            security=options["security"],
                            dashboard=options["dashboard"],
                        )
                    )
                except (ConnectionError, ImportError) as error:
                    _remove_if_made(directory, existed)
                    raise UsageError(f"study: {error}") from None
                executor, slots = dask.executor, dask.slots
                print(f"training on {dask.description} ({slots} run(s) at a time)")
                if dask.dashboard is not None:
                    print(f"its dashboard: {dask.dashboard}")
            results = run_study(
                options["spec"],
                directory,
                jobs=options["jobs"],
                data_dir=options["data_dir"],
                threads=options["threads"],
                download=options["download"],
                monitor=options["monitor"],
                executor=executor,
                slots=slots,
            )
    except StudyLockedError as error:
        raise UsageError(f"study: {error}") from None
    except FileNotFoundError as error:
        _remove_if_made(directory, existed)
        raise UsageError(str(error).splitlines()[0]) from None
    except KeyboardInterrupt as interrupt:
        what = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        print(
            f"{PROG}: {what}; every finished run is kept in {directory}/results.jsonl "
            "and the same command resumes",
            file=sys.stderr,
        )
        return 143 if isinstance(interrupt, Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    wanted = {run.run_id for run in options["spec"].runs}
    failed = {r["run_id"]: r["error"] for r in results if r["run_id"] in wanted and r.get("error")}
    finished = any(r["run_id"] in wanted and not r.get("error") for r in results)
    if options["report"]:
        print(f"report written to {write_report(directory)}")
    if failed and not finished:
        print(
            f"{PROG}: study: every run failed ({len(failed)}), e.g. {next(iter(failed.values()))}"
            f"; the report lists them all (signalprop report {directory})",
            file=sys.stderr,
        )
        return 1
    if failed:
        print(
            f"{PROG}: study: {len(failed)} of {len(wanted)} runs failed; the report lists "
            "their errors",
            file=sys.stderr,
        )
    return 0


def _run_report(options: dict[str, Any]) -> int:
    from signalprop.study import write_report

    print(f"report written to {write_report(options['directory'])}")
    return 0


def _torch_gain(name: str, params: dict[str, float]) -> str:
    import torch

    torch_name = {"sigmoid": "sigmoid", "logistic": "sigmoid", "linear": "linear"}.get(name, name)
    try:
        slope = params.get("alpha", 0.3) if name == "leaky_relu" else None  # signalprop's default
        value = torch.nn.init.calculate_gain(torch_name, slope)  # type: ignore[arg-type]
    except ValueError:
        return "-"
    return f"{value:.6g}"


def _run_gain(options: dict[str, Any]) -> int:
    from signalprop.gains import moments

    names = (
        [options["activation"]]
        if options["activation"]
        else [n for n in _activations.elementwise_names() if n not in ("logistic", "swish")]
    )
    # Every number first, so that an error is never printed below a table's header.
    table = [(name, moments(name, **options["params"])) for name in names]
    print(
        f"{'activation':>12}  {'E[f(z)²]':>10}  {'E[f′(z)²]':>10}  {'forward gain':>12}  "
        f"{'backward gain':>13}  {'torch calculate_gain':>20}"
    )
    for name, m in table:
        print(
            f"{name:>12}  {m.second:10.6f}  {m.derivative_second:10.6f}  {m.forward_gain:12.6f}  "
            f"{m.backward_gain:13.6f}  {_torch_gain(name, options['params']):>20}"
        )
    print("z ~ N(0, 1); forward gain 1/√E[f(z)²] keeps the signal's variance (the default),")
    print("backward gain 1/√E[f′(z)²] keeps the gradient's; weights: variance gain² / fan_in.")
    return 0


def _run_autoinit(options: dict[str, Any]) -> int:
    from signalprop.autoinit import autoinit
    from signalprop.diagnostics import diagnose
    from signalprop.examples import build_example, build_torch_default
    from signalprop.plots import plot_layers

    directory = _writable_directory(options["report"], "--report") if options["report"] else None
    name = options["preset"]
    if name.startswith("torch-default-"):
        model, inputs, labels = build_torch_default(
            name.removeprefix("torch-default-"), batch=options["batch"], seed=options["seed"]
        )
        title = f"{name}: 50 nn.Linear layers with PyTorch's default initialization"
    else:
        model, inputs, labels = build_example(name, batch=options["batch"], seed=options["seed"])
        title = f"{name}: {EXAMPLES[name].description}"
    before = diagnose(model, inputs, labels)
    chosen = {k: options[k] for k in ("criterion", "distribution") if options.get(k)}
    result = autoinit(model, inputs, mode=options["mode"], **chosen)
    after = diagnose(model, inputs, labels)
    print(title, "\n\nBEFORE autoinit:\n" + before.summary())
    print("\n" + str(result))
    print("\nAFTER autoinit:\n" + after.summary())
    if directory is not None:
        plot_layers(before).savefig(directory / "before.png", dpi=110)
        plot_layers(after).savefig(directory / "after.png", dpi=110)
        (directory / "autoinit.md").write_text(
            f"# autoinit ({result.criterion}, {options['mode']}): {title}\n\n"
            f"Standardized random inputs (batch "
            f"{options['batch']}, seed {options['seed']}) with random labels.\n\n"
            f"# Before\n\n{before.to_markdown()}\n![before](before.png)\n\n"
            f"# What autoinit did\n\n```\n{result}\n```\n\n"
            f"# After\n\n{after.to_markdown()}\n![after](after.png)\n"
        )
        print(f"\nreport written to {directory}/autoinit.md")
    return 0


def _phase_marks(
    activation: str, params: dict[str, Any], width: int, centred: bool = False
) -> tuple[dict[str, tuple[float, float]], dict[str, str], set[str]]:
    """Where each initialization puts a square layer of ``width`` units feeding ``activation``.

    autoinit's critical point is the one it uses (centred where :func:`meanfield.centres`
    says so), or, with ``centred``, the centred activation's own. Returns
    ``label -> (σ_w², σ_b²)``, ``label -> note`` (autoinit's, when it has one) and the
    labels of centred points (their label says so).
    """
    from signalprop.meanfield import init_point

    fans = {"fan_in": width, "fan_out": width, "fan_avg": width}  # a square layer

    def preset(name: str) -> float:
        scale, mode, _, _ = _init.PRESETS[name]
        return scale / fans[mode] * width  # σ_w²: the weights' variance × fan_in

    marks = {
        "Glorot": (preset("glorot_uniform"), 0.0),
        "He": (preset("he_normal"), 0.0),
        "LeCun": (preset("lecun_normal"), 0.0),
        # nn.Linear's bias is U(±1/√fan_in), like its weights: variance 1 / (3 fan_in).
        "PyTorch default": (preset("pytorch_default"), 1.0 / (3.0 * width)),
    }
    notes = {}
    centred_marks = set()
    for criterion in ("variance", "critical"):
        point = init_point(activation, criterion, centred=True if centred else None, **params)
        label = f"autoinit ({criterion}, centred)" if point.centred else f"autoinit ({criterion})"
        marks[label] = (point.weight_var, point.bias_var)
        if point.note:
            notes[label] = point.note
        if point.centred:
            centred_marks.add(label)
    return marks, notes, centred_marks


def _phase_grid(points: list[tuple[float, float]], resolution: int) -> tuple[Any, Any]:
    """(σ_w², σ_b²) axes holding every point; σ_w² geometric when its range is wide."""
    import numpy as np

    weights = [w for w, _ in points]
    top = max(4.0, 1.5 * max(weights))
    if top > 10:  # a log axis, with room on it for the side beyond the largest point
        weight_vars = np.geomspace(min(0.1, min(weights) / 2), 4 * max(weights), resolution)
    else:
        weight_vars = np.linspace(min(top / resolution, min(weights) / 2), top, resolution)
    bias_vars = np.linspace(0.0, max(0.5, 1.5 * max(b for _, b in points)), resolution)
    return weight_vars, bias_vars


def _shown(value: float) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if abs(value) < 1e-12:
        return "0"  # round-off around zero (c* of an odd activation)
    return f"{value:.4g}"


PHASE_COLUMNS = (
    "initialization",
    "σ_w²",
    "σ_b²",
    "q*",
    "χ₁",
    "phase",
    "c*",
    "ξ_c",
    "trainable depth (6ξ_c)",
)
#: Trainable depths drawn as contours on the phase diagram.
PHASE_DEPTHS = (20, 50, 100, 200)


def _text_table(rows: list[list[str]]) -> str:
    table = [list(PHASE_COLUMNS), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(PHASE_COLUMNS))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i in (0, 5) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    )


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


PHASE_READING = (  # {depths} is filled in with PHASE_DEPTHS
    "Each point (σ_w², σ_b²) is a deep stack of wide dense layers whose weights have variance "
    "σ_w²/fan_in and whose biases have variance σ_b², in the mean-field limit (Poole et al. "
    '2016; Schoenholz et al. 2017, "Deep information propagation"). Left of the critical line '
    "(χ₁ < 1) the stack is *ordered*: any two inputs become alike with depth and the mean "
    "squared gradient shrinks by a factor χ₁ per layer on its way back. Right of it (χ₁ > 1) "
    "the stack is *chaotic*: nearby inputs decorrelate and the gradient grows by χ₁ per layer. "
    "On the line, the edge of chaos, both survive. The colour is ξ_c, the number of layers "
    "over which the correlation between two inputs reaches its fixed point c*; it is infinite "
    "on the critical line. "
    "Schoenholz et al. found that networks train while their depth is below about 6ξ_c: the "
    "light contours are where 6ξ_c equals {depths} layers, so a net of depth L trains between "
    "its two L contours. q* is the pre-activations' variance the forward pass settles at (0: "
    "the signal fades, only as a power of depth on the critical line; ∞: it grows without "
    "bound, the hatched region, and ξ_c is then the gradient's depth scale 1/|ln χ₁|). "
    "These are wide-limit "
    "predictions for independent weights; a real layer of finite width only approaches them."
)


PHASE_CENTRED = (
    "The dashed line is the critical line of the centred activation φ − E[φ]: each layer's "
    "biases also hold −W·E[φ(√q* z)]𝟙, which cancels the mean φ adds to every unit of the "
    "next layer (a shared component no σ_w² removes), so that layer sees φ − E[φ]. "
    "autoinit does this where meanfield.centres says so (the logistic, softplus); a mark "
    "labelled centred is read on that line. Centred, the logistic is critical like tanh "
    "(σ(x) − ½ = tanh(x/2)/2: σ_w² = 16 at σ_b² = 0), and softplus, which has no critical "
    "point uncentred, has one (σ_w² ≈ 3.49 at σ_b² = 0.05)."
)
PHASE_CENTRED_ONLY = (
    "This is the diagram of the centred activation φ − E[φ]: each layer's biases also hold "
    "−W·E[φ(√q* z)]𝟙, cancelling the mean φ adds to every unit of the next layer, and every "
    "row of the table is read on it."
)


def _phase_numbers(
    name: str, params: dict[str, Any], width: int, resolution: int, centred: bool = False
) -> tuple[
    Any, dict[str, tuple[float, float]], dict[str, str], list[list[str]], list[float], Any, Any
]:
    """The diagram (of the centred activation with ``centred``), the marks and notes, the
    table's rows, and the critical line at a few σ_b², with the centred activation's
    beside it (``None`` with ``centred``, or where it is the same line: E[φ] = 0)."""
    import numpy as np

    from signalprop import meanfield

    marks, notes, centred_marks = _phase_marks(name, params, width, centred)
    (critical,) = [point for label, point in marks.items() if label.startswith("autoinit (crit")]
    # A centred autoinit point is off the diagram's own critical line: the grid holds both.
    own = meanfield.critical_weight_var(name, critical[1], centred=centred, **params)
    held = [*marks.values(), *([(own, critical[1])] if own is not None else [])]
    weight_vars, bias_vars = _phase_grid(held, resolution)
    diagram = meanfield.phase_diagram(name, weight_vars, bias_vars, centred=centred, **params)
    rows = []
    for label, (weight_var, bias_var) in marks.items():
        # A centred point is read on the centred activation, where autoinit puts it.
        on_centred = centred or label in centred_marks
        mf = meanfield.analyze(name, weight_var, bias_var, centred=on_centred, **params)
        values = (mf.weight_var, mf.bias_var, mf.q_star, mf.chi_1)
        rows.append(
            [
                label,
                *map(_shown, values),
                mf.phase,
                *map(_shown, (mf.c_star, mf.xi_c, mf.trainable_depth)),
            ]
        )
    levels = sorted(
        {b for b in (0.0, *meanfield.BIAS_VARS_TRIED) if b <= bias_vars[-1]} | {critical[1]}
    )
    line = meanfield.critical_line(name, levels, centred=centred, **params)
    centred_line = None
    if not centred:
        centred_line = meanfield.critical_line(name, levels, centred=True, **params)
        if np.allclose(centred_line, line, rtol=1e-6, equal_nan=True):
            centred_line = None  # E[φ] = 0 (tanh): centring changes nothing
    return diagram, marks, notes, rows, levels, line, centred_line


#: The critical line of ``signalprop phase`` is drawn from this many σ_b² spread over the
#: grid, plus ``PHASE_LINE_EDGE`` more between the two σ_b² around each end of the line:
#: near a threshold (SiLU's at σ_b² ≈ 0.556) the grid's rows alone draw a staircase.
PHASE_LINE_POINTS = 300
PHASE_LINE_EDGE = 40


def _phase_line(
    name: str, params: dict[str, Any], bias_vars: Any, centred: bool = False
) -> tuple[Any, Any]:
    """(σ_b², σ_w²) of the critical line, sampled finely, most finely around its ends."""
    import numpy as np

    from signalprop import meanfield

    b = np.linspace(bias_vars[0], bias_vars[-1], PHASE_LINE_POINTS)
    w = meanfield.critical_line(name, b, centred=centred, **params)
    exists = np.isfinite(w)
    ends = np.flatnonzero(exists[1:] != exists[:-1])
    if len(ends):
        extra = np.concatenate(
            [np.linspace(b[i], b[i + 1], PHASE_LINE_EDGE + 2)[1:-1] for i in ends]
        )
        b = np.concatenate([b, extra])
        w = np.concatenate([w, meanfield.critical_line(name, extra, centred=centred, **params)])
        order = np.argsort(b)
        b, w = b[order], w[order]
    return b, w


def _run_phase(options: dict[str, Any]) -> int:
    import numpy as np
    import torch

    from signalprop.plots import plot_phase_diagram

    directory = _writable_directory(options["out"], "--out")
    name, params, width = options["activation"], options["params"], options["width"]
    centred = options.get("centred", False)
    # One torch thread: the tensors are small, and on a shared 2-core machine a second
    # spinning thread made phase_diagram 2-3x slower (tests/conftest.py does the same).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        diagram, marks, notes, rows, levels, line, centred_line = _phase_numbers(
            name, params, width, options["resolution"], centred
        )
        fine = _phase_line(name, params, diagram.bias_vars, centred)
        fine_centred = None
        if centred_line is not None:
            fine_centred = _phase_line(name, params, diagram.bias_vars, centred=True)
    finally:
        torch.set_num_threads(threads)

    figure = plot_phase_diagram(
        diagram, marks, depths=PHASE_DEPTHS, critical_line=fine, centred_line=fine_centred
    )
    figure.savefig(directory / "phase.png", dpi=110)

    title = f"{diagram.activation}: mean-field phase diagram, dense layers of width {width}"
    preamble = (
        f"Glorot, He and LeCun are for a square layer (fan_in = fan_out = {width}), σ_w² = "
        "the weights' variance × fan_in; PyTorch's default for nn.Linear draws weights and "
        f"biases from U(±1/√fan_in), σ_b² = 1/(3·{width}). autoinit's points come from "
        "meanfield.init_point."
    )

    def cells(values: Any) -> list[str]:
        return [_shown(w) if np.isfinite(w) else "none" for w in values]

    line_cells = cells(line)
    line_rows = [["critical σ_w²", *line_cells]]
    if centred_line is not None:
        line_rows.append(["critical σ_w², centred", *cells(centred_line)])
    markdown = "\n\n".join(
        [
            f"# {title}",
            preamble,
            *([PHASE_CENTRED_ONLY] if centred else []),
            "![phase diagram](phase.png)",
            "## Where initializations put a layer",
            _markdown_table(list(PHASE_COLUMNS), rows),
            "## The critical line",
            _markdown_table(["σ_b²", *map(_shown, levels)], line_rows),
            *([PHASE_CENTRED] if centred_line is not None else []),
            *(
                ["Notes:\n\n" + "\n".join(f"- {k}: {note}" for k, note in notes.items())]
                if notes
                else []
            ),
            "## How to read it",
            PHASE_READING.format(
                depths=", ".join(map(str, PHASE_DEPTHS[:-1])) + f" and {PHASE_DEPTHS[-1]}"
            ),
        ]
    )
    (directory / "phase.md").write_text(markdown + "\n")

    print(title + "\n")
    print(_text_table(rows) + "\n")
    print(
        "critical σ_w²: "
        + ", ".join(f"{w} at σ_b² = {_shown(b)}" for b, w in zip(levels, line_cells, strict=True))
    )
    if centred_line is not None:
        print(
            "centred (biases −W·E[φ]𝟙): "
            + ", ".join(
                f"{w} at σ_b² = {_shown(b)}"
                for b, w in zip(levels, cells(centred_line), strict=True)
            )
        )
    for label, note in notes.items():
        print(f"note: {label}: {note}")
    print(f"\nwrote {directory}/phase.png and {directory}/phase.md")
    return 0


COMMANDS = {
    "propagate": _run_propagate,
    "plot": _run_plot,
    "diagnose": _run_diagnose,
    "study": _run_study,
    "report": _run_report,
    "gain": _run_gain,
    "autoinit": _run_autoinit,
    "phase": _run_phase,
}


def run(config: Config) -> int:
    """Run a checked command; returns the exit status."""
    return COMMANDS[config.command](config.options)


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as one line, in the command line's voice (no source file, no code line)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, check, run. User errors: one line on stderr, status 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = _warning_line
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        config = config_from_args(build_parser().parse_args(argv))
        return run(config)
    except (UsageError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # a full or read-only disk: one line, what to do, no traceback
        print(f"{PROG}: error: {_disk_error(error)}", file=sys.stderr)
        return 1


#: What to do about a write that failed, by errno.
_DISK_ADVICE = {
    errno.ENOSPC: "free some space (or choose another folder) and run the same command "
    "again: everything already written is kept",
    errno.EDQUOT: "free some of your quota and run the same command again",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "no permission to write there: choose a writable folder",
    errno.EPERM: "the file may not be changed (immutable or locked): choose another folder",
}


def _disk_error(error: OSError) -> str:
    """One line for an error of the file system: the path, the reason, what to do."""
    where = f"{error.filename}: " if error.filename else ""
    advice = _DISK_ADVICE.get(error.errno or 0, "check the path and the disk")
    return f"{where}{error.strerror or error}; {advice}"
