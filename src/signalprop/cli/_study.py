"""``signalprop study``: a resumable grid of training runs on Fashion-MNIST, on local
processes or a Dask cluster."""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from signalprop._validation import check_int, check_option
from signalprop.cli._common import PROG, Config, UsageError, check_data, writable_directory

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "study"


def _epilog() -> str:
    from signalprop.study import settings_text

    return (
        'A grid file is a JSON object: {"name": ..., "description": ..., "defaults": '
        '{SETTING: VALUE},\n"grid": {SETTING: [VALUES]} (every combination is a run), '
        '"runs": [{SETTING: VALUE}],\n"seeds": [0, 1, 2]} (docs/study-grid.md).\n'
        'example: {"defaults": {"epochs": 1, "standardize": true},\n'
        '          "grid": {"activation": ["selu", "tanh"], "init": ["matching"], '
        '"depth": [20, 50]}}\n\n'
        + settings_text()
        + "\n\nexit status: 0 when at least one run finished (failed ones are listed in the "
        "report),\n1 when every run failed, 2 for a usage error, 130 when interrupted, 143 "
        "when terminated"
    )


def _presets() -> tuple[str, ...]:
    from signalprop.study import PRESET_NAMES

    return PRESET_NAMES


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    study = subparsers.add_parser(
        NAME,
        help="run a grid of training runs on Fashion-MNIST (resumable)",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    study.add_argument(
        "--preset",
        required=True,
        help=f"one of {', '.join(_presets())}, or a JSON grid file",
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
        "TLS", "certificates for a --scheduler tls://HOST:PORT (see docs/guide/dask.md, Security)"
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
    return study


def config(args: argparse.Namespace) -> Config:
    from signalprop.study import PRESET_NAMES, load_spec

    if args.preset not in PRESET_NAMES and not (
        args.preset.endswith(".json") or Path(args.preset).exists()
    ):
        check_option(args.preset, PRESET_NAMES, param="--preset", caller=f"{PROG} study")
    spec = load_spec(args.preset)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir!r} is not a directory")
    return Config(
        NAME,
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
    from signalprop.study import check_cluster, security_from_file, tls_security

    try:
        if args.cluster is not None:
            options["cluster"] = local_workers(args.cluster)
        elif args.security is not None:
            options["security"] = security_from_file(args.security)
        elif any(tls_files):
            options["security"] = tls_security(*tls_files)
        check_cluster(options["scheduler"], options["cluster"], options["security"], args.dashboard)
    except (ValueError, ImportError) as error:
        raise UsageError(f"study: {error}") from None
    return options


def local_workers(text: str) -> int:
    """``"local:4"`` -> 4; raises ``ValueError`` for anything else."""
    match = re.fullmatch(r"local:(\d+)", text.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"--cluster must be local:N with N >= 1 worker processes, not {text!r}")
    return int(match.group(1))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the driver is, so that it stops as on Ctrl-C."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated


def _remove_if_made(directory: Path, existed: bool) -> None:
    """A study that could not start (no data, no scheduler) leaves no empty --out behind."""
    if not existed and not any(directory.iterdir()):
        directory.rmdir()


def run(options: dict[str, Any]) -> int:
    """Run the study; exit status 0 when at least one of its runs finished, 1 when every
    run failed (one line says so; the report lists the errors), 2 for a user error, 130
    when interrupted and 143 when terminated. Runs that failed beside finished ones are
    said in one line and listed in the report, and the status stays 0."""
    from signalprop.study import StudyLockedError, run_study, write_report

    if options["scheduler"] is None:  # a remote cluster's workers read their own copy
        check_data(options["data_dir"], options["download"])
    existed = Path(options["out"]).exists()
    directory = writable_directory(options["out"], "--out")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # like ^C
    try:
        with contextlib.ExitStack() as stack:
            executor, slots = None, None
            if options["scheduler"] is not None or options["cluster"] is not None:
                from signalprop.study import cluster

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
