"""A report counts each configuration once, whatever format its records were written in,
and says which signalprop (version and git commit) made them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from _records import record, write_study
from signalprop._provenance import commit_of, versions
from signalprop.cli import main
from signalprop.study import expand, write_report
from signalprop.study._report import _groups, _label, normalized
from signalprop.study._runner import RESULTS, read_results

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results"

#: Settings a record written before they existed lacks (chapter11's seed-0 records had
#: no ``init_args`` and no ``autoinit``; ``bias_var``, ``model`` and ``blocks`` came after).
LATER_SETTINGS = ("init_args", "autoinit", "bias_var", "model", "blocks")


def _two_seeds(directory: Path, *, old_seed_0: bool) -> list[dict]:
    spec = expand(
        {
            "name": "two-seeds",
            "defaults": {"init": "matching", "depth": 2, "epochs": 1},
            "grid": {"activation": ["selu"]},
            "seeds": [0, 1],
        }
    )
    records = [record(run, 0.80 + run.seed / 100) for run in spec.runs]
    if old_seed_0:
        for key in LATER_SETTINGS:
            del records[0]["config"][key]
    write_study(directory, spec, records)
    return records


def _table_rows(text: str) -> list[str]:
    start = text.index("## Final validation accuracy")
    return [
        line for line in text[start:].split("\n## ")[0].splitlines() if line.startswith("| SELU")
    ]


def test_an_older_record_of_the_same_configuration_is_counted_with_its_seeds(tmp_path: Path):
    _two_seeds(tmp_path, old_seed_0=True)
    text = write_report(tmp_path).read_text()
    rows = _table_rows(text)
    # One configuration, two seeds: one row (the old report had a "1 seed" and a "2
    # seeds" row when seed 0 was written without init_args and autoinit).
    assert len(rows) == 1, rows
    assert "| 2 | 0.8050 ± 0.0071 |" in rows[0]
    assert "Records left out" not in text


def test_a_record_whose_settings_give_another_run_is_left_out_and_said(tmp_path: Path):
    records = _two_seeds(tmp_path, old_seed_0=False)
    # Seed 1's line says lr 0.01 under the run id of lr 0.001: the configuration written
    # is not the run that was identified (code whose settings meant something else).
    records[1]["config"]["lr"] = 0.01
    (tmp_path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.warns(UserWarning, match="1 record.* left out of the report"):
        text = write_report(tmp_path).read_text()
    assert "## Records left out" in text
    assert f"run {records[1]['run_id']} (selu + lecun_normal, 2 hidden, seed 1)" in text
    rows = _table_rows(text)
    assert len(rows) == 1 and "| 1 | 0.8000 (one run: no spread)" in rows[0]


def test_a_run_recorded_twice_is_counted_once(tmp_path: Path):
    records = _two_seeds(tmp_path, old_seed_0=False)
    (tmp_path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in [*records, records[0]]))
    with pytest.warns(UserWarning, match="left out"):
        text = write_report(tmp_path).read_text()
    assert "recorded again; the first is counted" in text
    assert "| 2 | 0.8050 ± 0.0071 |" in _table_rows(text)[0]


def test_a_record_with_a_setting_this_version_does_not_know_is_left_out(tmp_path: Path):
    records = _two_seeds(tmp_path, old_seed_0=False)
    records[1]["config"]["dropout"] = 0.5
    kept, left_out = normalized(records)
    assert [r["config"]["seed"] for r in kept] == [0]
    assert left_out == [
        f"run {records[1]['run_id']} (seed 1): a run configuration with unknown "
        "setting(s) ['dropout']"
    ]


@pytest.mark.parametrize(
    "study", sorted(p.parent.name for p in RESULTS_DIR.glob("*/results.jsonl"))
)
def test_committed_studies_count_each_configuration_once(study: str):
    results = [r for r in read_results(RESULTS_DIR / study) if not r.get("error")]
    kept, left_out = normalized(results)
    assert left_out == []
    labels = [
        (_label(g.config, depth=False), len(g.config["hidden"]), g.config.get("blocks"))
        for g in _groups(kept)
    ]
    assert len(labels) == len(set(labels)), sorted(labels)


def _versions(commit: str | None) -> dict[str, str]:
    shown = {"signalprop": "0.1.0", "torch": "2.13.0+cpu"}
    return shown if commit is None else {**shown, "commit": commit}


def test_the_report_states_the_version_and_commit_that_made_the_runs(tmp_path: Path):
    records = _two_seeds(tmp_path, old_seed_0=False)
    for r in records:
        r["versions"] = _versions("a" * 40)
    (tmp_path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    text = write_report(tmp_path).read_text()
    assert "Made by signalprop 0.1.0, commit aaaaaaaaaaaa. Versions: torch 2.13.0+cpu." in text

    # Runs made by different code: each, with its number of runs, the most first.
    spec = expand(
        {
            "name": "mixed",
            "defaults": {"init": "matching", "depth": 2, "epochs": 1},
            "grid": {"activation": ["selu", "elu"]},
            "seeds": [0, 1],
        }
    )
    mixed = [record(run, 0.8) for run in spec.runs]
    for r, commit in zip(mixed, ["a" * 40, "a" * 40, "b" * 40 + "-dirty", None], strict=True):
        r["versions"] = _versions(commit)
    write_study(tmp_path / "mixed", spec, mixed)
    text = write_report(tmp_path / "mixed").read_text()
    assert (
        "Made by signalprop 0.1.0, commit aaaaaaaaaaaa (2 runs); signalprop 0.1.0, commit "
        "bbbbbbbbbbbb with uncommitted changes (1 run); signalprop 0.1.0, commit not "
        "recorded (1 run) (the runs were made by different code)."
    ) in text


def test_a_record_names_the_commit_of_the_code_that_ran():
    recorded = versions()
    assert recorded["signalprop"]
    # This test runs from a checkout: the commit is a hash (with -dirty while the
    # package's files are being edited), never "unknown".
    commit = recorded["commit"].removesuffix("-dirty")
    assert len(commit) == 40 and int(commit, 16) >= 0


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_of_a_package_clean_dirty_untracked_and_outside_git(tmp_path: Path):
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    assert commit_of(package) == "unknown"  # not in a checkout

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t",
             *args],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    git("init", "-q")
    assert commit_of(package) == "unknown"  # in a checkout, but not tracked by it
    (tmp_path / "repo" / "results.jsonl").write_text("{}\n")
    git("add", "pkg/__init__.py")
    git("commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    # Files written beside the package (a study's results) do not make its code dirty.
    assert commit_of(package) == head
    (package / "__init__.py").write_text("x = 2\n")
    assert commit_of(package) == head + "-dirty"
    git("commit", "-qam", "second")
    assert commit_of(package) == git("rev-parse", "HEAD")
    (package / "new.py").write_text("")
    assert commit_of(package).endswith("-dirty")  # a new module is a change too


def test_the_report_command_leaves_out_and_says_in_one_line(tmp_path: Path, capsys):
    records = _two_seeds(tmp_path, old_seed_0=False)
    records[1]["config"]["lr"] = 0.01
    (tmp_path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "left out of the report" in err
