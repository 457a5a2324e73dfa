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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, check_option
from signalprop.examples import EXAMPLES

__all__ = ["Config", "UsageError", "build_parser", "config_from_args", "main", "run"]

PROG = "signalprop"


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(prog=PROG, description="Make deep neural networks trainable.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    prop = commands.add_parser(
        "propagate", help="the data-free depth experiment: signal and gradient per layer"
    )
    prop.add_argument("--activation", default="selu", help="activation name (default selu)")
    prop.add_argument("--init", default="lecun_normal", help="initializer (default lecun_normal)")
    prop.add_argument("--depth", type=int, default=1000, help="number of layers (default 1000)")
    prop.add_argument("--width", type=int, default=100, help="units per layer (default 100)")
    prop.add_argument("--batch", type=int, default=500, help="inputs (default 500)")
    prop.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    prop.add_argument("--report", metavar="DIR", help="write a Markdown report and figure here")

    plot = commands.add_parser("plot", help="draw figures")
    plot.add_argument("what", choices=["activations"], help="what to draw")
    plot.add_argument("--out", metavar="DIR", required=True, help="directory for the PNG files")

    diag = commands.add_parser("diagnose", help="diagnose a built-in example network (see --list)")
    diag.add_argument("--preset", help=f"example network: one of {sorted(EXAMPLES)}")
    diag.add_argument("--list", action="store_true", help="list the example networks")
    diag.add_argument("--batch", type=int, default=256, help="inputs (default 256)")
    diag.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    diag.add_argument("--report", metavar="DIR", help="write a Markdown report and figure here")
    study = commands.add_parser(
        "study", help="run a grid of training runs on Fashion-MNIST (resumable)"
    )
    study.add_argument(
        "--preset",
        required=True,
        help="chapter11, ranking, he-vs-glorot, autoinit, quick, or a JSON grid file",
    )
    study.add_argument("--out", metavar="DIR", required=True, help="results directory")
    study.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    study.add_argument("--threads", type=int, default=1, help="torch threads per run")
    study.add_argument(
        "--data-dir", metavar="DIR", help="Fashion-MNIST files (default: $SIGNALPROP_DATA or cache)"
    )
    study.add_argument("--no-report", action="store_true", help="do not write the report after")
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
    auto.add_argument("--batch", type=int, default=256, help="inputs (default 256)")
    auto.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    auto.add_argument("--report", metavar="DIR", help="write a Markdown report and figures here")

    report = commands.add_parser("report", help="write the Markdown report of a study")
    report.add_argument("directory", metavar="DIR", help="a study's results directory")
    return parser


def _autoinit_presets() -> list[str]:
    from signalprop.examples import TORCH_DEFAULT

    return [*EXAMPLES, *(f"torch-default-{name}" for name in TORCH_DEFAULT)]


def _parse_params(pairs: list[str]) -> dict[str, float]:
    params = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"gain: --param must be NAME=NUMBER, got {pair!r}") from None
    return params


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
        _activations.get(args.activation)
        _init.get(args.init)
        options = {
            "activation": args.activation,
            "init": args.init,
            "depth": check_int(args.depth, param="depth", caller=PROG, low=1),
            "width": check_int(args.width, param="width", caller=PROG, low=1),
            "batch": check_int(args.batch, param="batch", caller=PROG, low=2),
            "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
            "report": args.report,
        }
        return Config(command, options)
    if command == "plot":
        return Config(command, {"what": args.what, "out": args.out})
    if command == "diagnose":
        if args.list:
            return Config(command, {"list": True})
        if args.preset is None:
            raise UsageError(f"diagnose: give --preset, one of {sorted(EXAMPLES)} (or --list)")
        check_option(args.preset, EXAMPLES, param="preset", caller=f"{PROG} diagnose")
        options = {
            "list": False,
            "preset": args.preset,
            "batch": check_int(args.batch, param="batch", caller=PROG, low=1),
            "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
            "report": args.report,
        }
        return Config(command, options)
    if command == "study":
        from signalprop.study import load_spec

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
            },
        )
    if command == "gain":
        params = _parse_params(args.param)
        if args.activation is None and params:
            raise UsageError("gain: --param needs an activation name")
        if args.activation is not None:
            _activations.create(args.activation, **params)
        return Config(command, {"activation": args.activation, "params": params})
    if command == "autoinit":
        check_option(args.preset, _autoinit_presets(), param="preset", caller=f"{PROG} autoinit")
        return Config(
            command,
            {
                "preset": args.preset,
                "mode": args.mode,
                "batch": check_int(args.batch, param="batch", caller=PROG, low=2),
                "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
                "report": args.report,
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

    directory = _writable_directory(options["out"], "--out")
    asymptotes = {"elu": -1.0, "selu": -_activations.SELU_SCALE * _activations.SELU_ALPHA}
    figure = plot_activations(_activations.curves(), asymptotes=asymptotes)
    path = directory / "activations.png"
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")
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


def _run_study(options: dict[str, Any]) -> int:
    from signalprop.study import run_study, write_report

    directory = _writable_directory(options["out"], "--out")
    try:
        run_study(
            options["spec"],
            directory,
            jobs=options["jobs"],
            data_dir=options["data_dir"],
            threads=options["threads"],
            download=options["download"],
        )
    except FileNotFoundError as error:
        raise UsageError(str(error).splitlines()[0]) from None
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; every finished run is kept in {directory}/results.jsonl "
            "and the same command resumes",
            file=sys.stderr,
        )
        return 130
    if options["report"]:
        print(f"report written to {write_report(directory)}")
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
        else [n for n in _activations.names() if n not in ("softmax", "logistic", "swish")]
    )
    print(
        f"{'activation':>12}  {'E[f(z)²]':>10}  {'E[f′(z)²]':>10}  {'forward gain':>12}  "
        f"{'backward gain':>13}  {'torch calculate_gain':>20}"
    )
    for name in names:
        m = moments(name, **options["params"])
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
    result = autoinit(model, inputs, mode=options["mode"])
    after = diagnose(model, inputs, labels)
    print(title, "\n\nBEFORE autoinit:\n" + before.summary())
    print("\n" + str(result))
    print("\nAFTER autoinit:\n" + after.summary())
    if directory is not None:
        plot_layers(before).savefig(directory / "before.png", dpi=110)
        plot_layers(after).savefig(directory / "after.png", dpi=110)
        (directory / "autoinit.md").write_text(
            f"# autoinit ({options['mode']}): {title}\n\nStandardized random inputs (batch "
            f"{options['batch']}, seed {options['seed']}) with random labels.\n\n"
            f"# Before\n\n{before.to_markdown()}\n![before](before.png)\n\n"
            f"# What autoinit did\n\n```\n{result}\n```\n\n"
            f"# After\n\n{after.to_markdown()}\n![after](after.png)\n"
        )
        print(f"\nreport written to {directory}/autoinit.md")
    return 0


COMMANDS = {
    "propagate": _run_propagate,
    "plot": _run_plot,
    "diagnose": _run_diagnose,
    "study": _run_study,
    "report": _run_report,
    "gain": _run_gain,
    "autoinit": _run_autoinit,
}


def run(config: Config) -> int:
    """Run a checked command; returns the exit status."""
    return COMMANDS[config.command](config.options)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, check, run. User errors: one line on stderr, status 2."""
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
