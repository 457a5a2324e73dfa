"""Studies: grids of training runs on Fashion-MNIST, resumable, with a report.

spec = load_spec("chapter11")           # or a JSON grid file
run_study(spec, "runs/chapter11")       # appends to runs/chapter11/results.jsonl
write_report("runs/chapter11")          # report.md and figures
"""

from signalprop.study._lock import StudyLockedError
from signalprop.study._report import RULE_OF_THUMB, write_report
from signalprop.study._runner import build_model, execute, read_results, run_study
from signalprop.study._spec import PRESET_NAMES, RunConfig, StudySpec, expand, load_spec

__all__ = [
    "PRESET_NAMES",
    "RULE_OF_THUMB",
    "RunConfig",
    "StudyLockedError",
    "StudySpec",
    "build_model",
    "execute",
    "expand",
    "load_spec",
    "read_results",
    "run_study",
    "write_report",
]
