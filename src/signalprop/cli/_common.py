"""What every command of the command line shares: the one-line usage error, the parser
that raises it, the checked :class:`Config`, the :class:`Command` each command module is,
and the checks and error wording more than one command uses."""

from __future__ import annotations

import argparse
import errno
import sys
import tempfile
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from signalprop import activations as _activations
from signalprop._validation import UnknownArgumentsError, check_int

PROG = "signalprop"


class UsageError(Exception):
    """A mistake of the user's: reported in one line, exit status 2.

    Examples:
        >>> from signalprop.cli import build_parser
        >>> build_parser().parse_args(['gain', '--nope'])
        Traceback (most recent call last):
            ...
        signalprop.cli._common.UsageError: unrecognized arguments: --nope
    """


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{command}: {message}" if command else message)


if TYPE_CHECKING:
    #: What ``Parser.add_subparsers`` returns, to which each command adds its parser.
    Subparsers = argparse._SubParsersAction[Parser]


@dataclass(frozen=True)
class Config:
    """A checked command: its name and its options.

    Examples:
        >>> from signalprop.cli import build_parser, config_from_args
        >>> config = config_from_args(build_parser().parse_args(['gain', 'selu']))
        >>> config.command, config.options['activation']
        ('gain', 'selu')
    """

    command: str
    options: dict[str, Any] = field(default_factory=dict)


class Command(Protocol):
    """One command of the command line: a module with these four names."""

    #: The command's name on the command line.
    NAME: str

    def add_parser(self, subparsers: Subparsers) -> argparse.ArgumentParser:
        """Add the command's parser, its arguments and help, to ``subparsers``."""

    def config(self, args: argparse.Namespace) -> Config:
        """Check the parsed arguments (pure: no output, no files); raises ``UsageError``
        or ``ValueError`` on mistakes."""

    def run(self, options: dict[str, Any]) -> int:
        """Do the work; returns the exit status."""


def add_param_argument(parser: argparse.ArgumentParser) -> None:
    """``--param NAME=VALUE``, repeatable: an argument of the command's activation."""
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument of the activation, e.g. --param alpha=0.2",
    )


def parse_params(pairs: list[str], command: str = "gain") -> dict[str, float]:
    """``--param NAME=VALUE`` pairs as a dict of numbers."""
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


def check_params(activation: str, params: dict[str, float], command: str) -> None:
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


def fitting_batch(batch: int, preset: str, command: str, low: int = 2) -> int:
    """--batch, checked, and refused with an estimate when the example could not hold it.

    An example keeps, per input, every layer's pre-activation, activation and their
    gradients: about 4 float32 values per unit of the net, plus the input.
    """
    from signalprop.examples import units

    batch = check_int(batch, param="--batch", caller=f"{PROG} {command}", low=low)
    count = units(preset)
    refuse_beyond_memory(
        batch * count * 4 * 4,
        f"{command}: --batch {batch} needs, for {preset} ({count} units × 4 values × 4 bytes "
        "per input),",
        "use a smaller --batch",
    )
    return batch


def refuse_beyond_memory(needed: int, what: str, fix: str) -> None:
    """A UsageError when ``needed`` bytes exceed half of this machine's memory."""
    from signalprop.propagate import beyond_memory

    refused = beyond_memory(needed)
    if refused is not None:
        raise UsageError(f"{what} {refused}: {fix}")


def writable_directory(path: str, param: str) -> Path:
    """``path`` as a directory, made if need be, or a UsageError naming ``param``."""
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


#: Where the data folder came from, in the command line's words.
_DATA_SOURCE = {"data_dir": "--data-dir", "env": "$SIGNALPROP_DATA", "cache": "the per-user cache"}


def made_by() -> str:
    """The sentence a command's Markdown report ends with: the signalprop version and
    git commit that wrote it and the libraries' versions, as study reports state them."""
    from signalprop._provenance import code_line, versions

    return code_line([{"versions": versions()}])


def text_table(rows: list[list[str]], *, right: Container[int] = (), rule: bool = False) -> str:
    """Rows of cells as lines of columns two spaces apart, each column as wide as its
    widest cell: left-aligned, or right-aligned for the column numbers in ``right``;
    ``rule``: a line of dashes under the first row (the header). Trailing blanks dropped.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(row) for row in rows]
    if rule:
        lines.insert(1, line(["-" * width for width in widths]))
    return "\n".join(lines)


def check_data(data_dir: str | None, download: bool) -> None:
    """Missing data with --no-download: one line in the CLI's words, before anything is made."""
    from signalprop.data import missing_files

    folder, where, missing = missing_files(data_dir)
    if missing and not download:
        raise UsageError(
            f"study: Fashion-MNIST files are missing from {folder} (from {_DATA_SOURCE[where]}): "
            f"{', '.join(missing)}; point --data-dir or SIGNALPROP_DATA at a folder holding "
            "them, or leave out --no-download to fetch them"
        )


def warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as one line, in the command line's voice (no source file, no code line)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


#: What to do about a write that failed, by errno.
_DISK_ADVICE = {
    errno.ENOSPC: "free some space (or choose another folder) and run the same command "
    "again: everything already written is kept",
    errno.EDQUOT: "free some of your quota and run the same command again",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "no permission to write there: choose a writable folder",
    errno.EPERM: "the file may not be changed (immutable or locked): choose another folder",
}


def disk_error(error: OSError) -> str:
    """One line for an error of the file system: the path, the reason, what to do."""
    where = f"{error.filename}: " if error.filename else ""
    advice = _DISK_ADVICE.get(error.errno or 0, "check the path and the disk")
    return f"{where}{error.strerror or error}; {advice}"
