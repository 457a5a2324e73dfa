"""The ``signalprop`` command line: a thin layer over the library.

``build_parser()`` describes the commands, ``config_from_args()`` turns parsed
arguments into a checked :class:`Config` (pure: no output, no files),
``run(config)`` does the work and ``main(argv)`` ties them together and turns
user errors into one line on stderr and exit status 2.

Each command is a module of this package (``_propagate``, ``_study``, ...) holding its
``NAME``, ``add_parser(subparsers)``, ``config(args)`` and ``run(options)``; what the
commands share (the one-line :class:`UsageError`, :class:`Config`, the argument checks
and the error wording) is in ``_common``, and no command module imports another.

    signalprop propagate --activation selu --init lecun_normal --depth 1000
    signalprop plot activations --out DIR
    signalprop diagnose --preset chapter-selu --report DIR
    signalprop study --preset chapter11 --out DIR [--jobs 2]
    signalprop report DIR
    signalprop reproduce DIR [--runs 2]
    signalprop gain [ACTIVATION] [--param alpha=0.2]
    signalprop autoinit --preset torch-default-relu --report DIR
    signalprop phase --activation tanh --out DIR [--width 100] [--param alpha=0.2]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from signalprop.cli import (
    _autoinit,
    _diagnose,
    _gain,
    _phase,
    _plot,
    _propagate,
    _report,
    _reproduce,
    _study,
)
from signalprop.cli._common import (
    PROG,
    Command,
    Config,
    Parser,
    UsageError,
    disk_error,
    warning_line,
)

__all__ = ["Config", "UsageError", "build_parser", "config_from_args", "main", "run"]

EXAMPLES_TEXT = """examples:
  signalprop propagate --activation selu --init lecun_normal --depth 1000
  signalprop diagnose --preset chapter-relu --report reports/chapter-relu/
  signalprop autoinit --preset torch-default-tanh --criterion critical
  signalprop phase --activation tanh --out figures/phase-tanh/
  signalprop gain leaky_relu --param alpha=0.2
  signalprop study --preset quick --out runs/quick --jobs 2
  signalprop report runs/quick

'signalprop COMMAND --help' describes each command."""

#: Every command's module, in the order ``signalprop --help`` lists them.
_ORDER: tuple[Command, ...] = (
    _propagate,
    _plot,
    _diagnose,
    _study,
    _gain,
    _autoinit,
    _phase,
    _report,
    _reproduce,
)
COMMANDS = {command.NAME: command for command in _ORDER}


def _version() -> str:
    from signalprop import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command.

    Examples:
        >>> from signalprop.cli import build_parser
        >>> args = build_parser().parse_args(['propagate', '--activation', 'selu', '--depth', '10'])
        >>> args.command, args.depth
        ('propagate', 10)
    """
    parser = Parser(
        prog=PROG,
        description="Make deep neural networks trainable.",
        epilog=EXAMPLES_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS.values():
        command.add_parser(subparsers)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Check parsed arguments and return a :class:`Config`; raises ``ValueError`` on mistakes.

    Examples:
        >>> from signalprop.cli import build_parser, config_from_args
        >>> args = build_parser().parse_args(['propagate', '--activation', 'selu'])
        >>> config = config_from_args(args)
        >>> config.options['activation']
        'selu'
    """
    if args.command not in COMMANDS:  # pragma: no cover (argparse refuses it)
        raise UsageError(f"unknown command {args.command!r}")
    return COMMANDS[args.command].config(args)


def run(config: Config) -> int:
    """Run a checked command; returns the exit status.

    Examples:
        >>> from signalprop.cli import build_parser, config_from_args, run
        >>> run(config_from_args(build_parser().parse_args(['gain', 'tanh'])))
          activation    E[f(z)²]   E[f′(z)²]  forward gain  backward gain  torch ...
                tanh    0.394294    0.464403      1.592537       1.467414               ...
        z ~ N(0, 1); forward gain 1/√E[f(z)²] keeps the signal's variance (the default),
        backward gain 1/√E[f′(z)²] keeps the gradient's; weights: variance gain² / fan_in.
        0
    """
    return COMMANDS[config.command].run(config.options)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, check, run. User errors: one line on stderr, status 2.

    Examples:
        >>> from signalprop.cli import main
        >>> main(['gain', 'selu'])
          activation    E[f(z)²]   E[f′(z)²]  forward gain  backward gain  torch ...
                selu    1.000000    1.071575      1.000000       0.966026                ...
        z ~ N(0, 1); forward gain 1/√E[f(z)²] keeps the signal's variance (the default),
        backward gain 1/√E[f′(z)²] keeps the gradient's; weights: variance gain² / fan_in.
        0
    """
    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = warning_line
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
        print(f"{PROG}: error: {disk_error(error)}", file=sys.stderr)
        return 1
