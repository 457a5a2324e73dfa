"""Studies: grids of training runs on Fashion-MNIST, resumable, with a report.

spec = load_spec("chapter11")           # or a JSON grid file
run_study(spec, "runs/chapter11")       # appends to runs/chapter11/results.jsonl
write_report("runs/chapter11")          # report.md and figures
reproduce("runs/chapter11", runs=2)     # two runs trained again, compared with the record

with cluster(workers=2) as dask:         # or cluster("tls://HOST:8786", security=...)
    run_study(spec, "runs/x", executor=dask.executor, slots=dask.slots)
"""

from signalprop.study._dask import (
    Cluster,
    check_cluster,
    cluster,
    security_from_file,
    tls_security,
)
from signalprop.study._lock import StudyLockedError
from signalprop.study._report import RULE_OF_THUMB, write_report
from signalprop.study._reproduce import Reproduction, reproduce
from signalprop.study._runner import build_model, execute, read_results, run_study
from signalprop.study._settings import (
    SETTINGS,
    TOP_LEVEL,
    Setting,
    settings_markdown,
    settings_text,
)
from signalprop.study._spec import PRESET_NAMES, RunConfig, StudySpec, expand, load_spec

__all__ = [
    "PRESET_NAMES",
    "RULE_OF_THUMB",
    "SETTINGS",
    "TOP_LEVEL",
    "Cluster",
    "Reproduction",
    "RunConfig",
    "Setting",
    "StudyLockedError",
    "StudySpec",
    "build_model",
    "check_cluster",
    "cluster",
    "execute",
    "expand",
    "load_spec",
    "read_results",
    "reproduce",
    "run_study",
    "security_from_file",
    "settings_markdown",
    "settings_text",
    "tls_security",
    "write_report",
]
