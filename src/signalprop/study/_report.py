"""The study report: Markdown and figures from ``results.jsonl``.

Aggregation happens here (means and ranges over seeds, rankings); the figures
are drawn by :mod:`signalprop.plots` from the aggregated arrays.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from signalprop._provenance import code_line
from signalprop.study._criticality import depth_scan_section, initializations_section
from signalprop.study._residual_report import is_residual, residual_section
from signalprop.study._runner import CHANCE, RESULTS, SPEC, final_accuracy, read_results
from signalprop.study._spec import (
    RunConfig,
    activation_key,
    describe_activation,
    describe_autoinit,
)

__all__ = ["RULE_OF_THUMB", "write_report"]

RULE_OF_THUMB: tuple[tuple[str, ...], ...] = (
    ("selu",),
    ("elu",),
    ("leaky_relu", "prelu", "rrelu"),
    ("relu",),
    ("tanh",),
    ("sigmoid",),
)
"""The chapter's rule of thumb, best first; activations in one tuple are not ordered.

Examples:
    >>> from signalprop.study import RULE_OF_THUMB
    >>> RULE_OF_THUMB[0], RULE_OF_THUMB[-1]   # best first
    (('selu',), ('sigmoid',))
"""
NAMES = {
    "sigmoid": "logistic",
    "tanh": "tanh",
    "relu": "ReLU",
    "leaky_relu": "leaky ReLU",
    "prelu": "PReLU",
    "rrelu": "RReLU",
    "elu": "ELU",
    "selu": "SELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "mish": "Mish",
    "softplus": "softplus",
}


def _shown(activation: str) -> str:
    return NAMES.get(activation, activation)


def _activation(config: dict[str, Any]) -> str:
    """The run's activation as the report shows it: a name with its arguments, or a cycle."""
    return describe_activation(config["activation"], config.get("activation_args"), _shown)


def _key(group: _Group) -> str:
    """The order of activations in tables and figures: by name, cycles by their label."""
    return activation_key(group.config["activation"])


def _group_key(config: dict[str, Any]) -> str:
    """Runs that differ only in their seed: their identity (what their run id hashes)
    without the seed, so that a label, a reference or a setting left at its default
    never splits one configuration in two."""
    identity = RunConfig.from_dict(config).identity()
    identity.pop("seed")
    return json.dumps(identity, sort_keys=True)


def normalized(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records in today's format, and a line for each record left out and why.

    A record's ``config`` is read as a :class:`RunConfig` with today's defaults for the
    settings it lacks (records written before a setting existed), and kept, with every
    setting written in, when that run's id is the record's: the same configuration.
    Left out, each said in one line: a record whose configuration gives another run id
    (its settings meant something else when it was written), one with a setting this
    version does not know, and a second record of a run already counted.
    """
    kept: list[dict[str, Any]] = []
    left_out: list[str] = []
    seen: set[str] = set()
    for record in results:
        run_id = record["run_id"]
        seed = record["config"].get("seed")
        try:
            run = RunConfig.from_dict(record["config"])
            identity = run.run_id
        except (TypeError, ValueError) as error:
            left_out.append(f"run {run_id} (seed {seed}): {error}")
            continue
        if identity != run_id:
            left_out.append(
                f"run {run_id} ({run.name}): its configuration, read with today's defaults, "
                f"is run {identity}; it was written by code whose settings meant something "
                "else, and is not counted as either"
            )
        elif run_id in seen:
            left_out.append(f"run {run_id} ({run.name}): recorded again; the first is counted")
        else:
            seen.add(run_id)
            kept.append({**record, "config": run.to_dict()})
    return kept, left_out


def _label(config: dict[str, Any], *, depth: bool = True) -> str:
    if config.get("model", "mlp") != "mlp":  # a residual model: its blocks, not hidden layers
        text = f"{config['model']} {config['blocks']} blocks × {config['hidden'][0]}"
        if config.get("autoinit") is not None:
            return f"{text} + autoinit ({describe_autoinit(config['autoinit'])})"
        return f"{text} + {config['init']}"
    activation = _activation(config)
    init_args = ", ".join(f"{k}={v}" for k, v in sorted(config.get("init_args", {}).items()))
    text = f"{activation} + {config['init']}" + (f"({init_args})" if init_args else "")
    if config.get("bias_var"):
        text += f", σ_b² {config['bias_var']:g}"
    if config.get("autoinit") is not None:
        text += f" + autoinit ({describe_autoinit(config['autoinit'])})"
    return f"{text}, {len(config['hidden'])} hidden" if depth else text


class _Group:
    """The runs of one configuration over seeds."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = sorted(records, key=lambda r: r["config"]["seed"])
        self.config = self.records[0]["config"]
        self.finals = [final_accuracy(r) for r in self.records]

    @property
    def depth(self) -> int:
        """Hidden layers, or a residual model's blocks."""
        return int(self.config.get("blocks") or len(self.config["hidden"]))

    @property
    def unit(self) -> str:
        """What :attr:`depth` counts."""
        return "blocks" if self.config.get("blocks") else "hidden layers"

    @property
    def mean(self) -> float:
        finite = [v for v in self.finals if math.isfinite(v)]
        return statistics.fmean(finite) if finite else math.nan

    @property
    def std(self) -> float:
        finite = [v for v in self.finals if math.isfinite(v)]
        return statistics.stdev(finite) if len(finite) > 1 else 0.0

    @property
    def scores(self) -> list[float]:
        """Final accuracies with a diverged run counted at chance (1/10): for ranking."""
        return [v if math.isfinite(v) else CHANCE for v in self.finals]

    @property
    def diverged(self) -> int:
        return sum(not math.isfinite(v) for v in self.finals)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Validation accuracy per epoch: mean, min and max over seeds."""
        length = max(len(r["history"]["val_accuracy"]) for r in self.records)
        table = np.full((len(self.records), length), np.nan)
        for i, record in enumerate(self.records):
            values = record["history"]["val_accuracy"]
            table[i, : len(values)] = values
        x = np.arange(1, length + 1)
        # An epoch no seed finished is NaN in the curve, not a warning.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return x, np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


def _groups(results: list[dict[str, Any]]) -> list[_Group]:
    buckets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        buckets[_group_key(record["config"])].append(record)
    return [_Group(records) for records in buckets.values()]


def _format(value: float, digits: int = 4) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _accuracy_table(groups: list[_Group]) -> list[str]:
    lines = [
        "| configuration | hidden layers | epochs | seeds | final val. accuracy (mean ± std) "
        "| range | diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in sorted(groups, key=lambda g: (g.depth, -np.nan_to_num(g.mean, nan=-1))):
        finite = [v for v in group.finals if math.isfinite(v)]
        span = f"{min(finite):.4f}–{max(finite):.4f}" if finite else "—"
        diverged = len(group.finals) - len(finite)
        spread = (
            f"{_format(group.mean)} ± {_format(group.std)}"
            if len(finite) > 1
            else f"{_format(group.mean)} (one run: no spread)"
            if finite
            else "— (every run diverged)"
        )
        lines.append(
            f"| {_label(group.config, depth=False)} | {group.depth} | {group.config['epochs']} "
            f"| {len(group.finals)} | {spread} | {span} | {diverged or ''} |"
        )
    return lines


def _reference_table(results: list[dict[str, Any]]) -> list[str]:
    """Published numbers next to the measured ones, over the seeds of each row."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        if record["config"].get("reference"):
            rows[record["config"].get("label") or _label(record["config"])].append(record)
    if not rows:
        return []
    lines = [
        "## Against the published results",
        "",
        "| model | epochs | published val. accuracy | measured (mean ± std over seeds) | seeds "
        "| range | mean − published | per epoch: published / measured mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, records in rows.items():
        group = _Group(records)
        reference = group.config["reference"]
        published = reference.get("val_accuracy", math.nan)
        finite = [v for v in group.finals if math.isfinite(v)]
        span = f"{min(finite):.4f}–{max(finite):.4f}" if finite else "—"
        per_epoch = reference.get("val_accuracy_per_epoch")
        epochs_text = ""
        if per_epoch:
            _, means, _, _ = group.curve()
            epochs_text = " · ".join(
                f"{p:.4f} / {m:.4f}" for p, m in zip(per_epoch, means, strict=False)
            )
        lines.append(
            f"| {label} | {group.config['epochs']} | {published:.4f} "
            f"| {_format(group.mean)} ± {_format(group.std)} | {len(records)} | {span} "
            f"| {group.mean - published:+.4f} | {epochs_text} |"
        )
    lines += [
        "",
        "The book reports one run per row. The offline Fashion-MNIST copy assigns images to "
        "train and test slightly differently from the official files (see the data README), "
        "so a few tenths of a percent either way are within the run-to-run noise; the range "
        "over seeds shows how large that noise is for each row.",
        "",
    ]
    return lines


def _rank_of(activation: str) -> int | None:
    for rank, members in enumerate(RULE_OF_THUMB):
        if activation in members:
            return rank
    return None


def _ranking(groups: list[_Group]) -> list[str]:
    """The measured order at each depth (matching initializers) against the rule of thumb.

    Only the textbook runs count: one activation, its matching initializer as drawn.
    A run that autoinit re-initialized is another initialization of the same
    activation, and would stand in the order under the activation's bare name.
    """
    matching = [
        g
        for g in groups
        if g.config.get("init_choice") == "matching"
        and g.config.get("autoinit") is None
        and isinstance(g.config["activation"], str)
    ]
    depths = sorted({g.depth for g in matching})
    ranked = [g for g in matching if _rank_of(g.config["activation"]) is not None]
    if len({g.config["activation"] for g in ranked}) < 3:
        return []
    lines = [
        "## Measured ranking against the rule of thumb",
        "",
        "Rule of thumb (the chapter): SELU > ELU > leaky ReLU and its variants (RReLU, PReLU) > "
        "ReLU > tanh > logistic. Measured: each activation with its matching initializer "
        "(the textbook runs; runs re-initialized by autoinit are left out), ordered by mean "
        "final validation accuracy over seeds, a run that diverged (non-finite "
        "loss) counting at chance, 0.10. A pair counts as *clearly* ordered when the means "
        "differ by more than twice the standard error of their difference (from the seeds' "
        "spread); otherwise it is *within noise*.",
        "",
    ]
    for depth in depths:
        at_depth = sorted(
            (g for g in ranked if g.depth == depth), key=lambda g: -statistics.fmean(g.scores)
        )
        order = " > ".join(
            f"{_shown(g.config['activation'])} ({statistics.fmean(g.scores):.4f}"
            + (f", {g.diverged} of {len(g.finals)} diverged" if g.diverged else "")
            + ")"
            for g in at_depth
        )
        agree = disagree = noise = unjudged = 0
        notes = []
        for i, a in enumerate(at_depth):
            for b in at_depth[i + 1 :]:
                rank_a, rank_b = _rank_of(a.config["activation"]), _rank_of(b.config["activation"])
                if rank_a is None or rank_b is None or rank_a == rank_b:
                    continue
                if len(a.scores) < 2 or len(b.scores) < 2:
                    unjudged += 1  # one seed: no spread, so no noise to judge against
                    continue
                spread_a = statistics.stdev(a.scores) if len(a.scores) > 1 else 0.0
                spread_b = statistics.stdev(b.scores) if len(b.scores) > 1 else 0.0
                error = math.sqrt(spread_a**2 / len(a.scores) + spread_b**2 / len(b.scores))
                difference = statistics.fmean(a.scores) - statistics.fmean(b.scores)
                if abs(difference) <= 2 * error:
                    noise += 1
                elif rank_a < rank_b:
                    agree += 1
                else:
                    disagree += 1
                    notes.append(
                        f"{_shown(a.config['activation'])} beat "
                        f"{_shown(b.config['activation'])} by {difference:.4f}"
                    )
        lines += [
            f"**{depth} hidden layers:** {order}",
            "",
            f"Pairs ordered as the rule of thumb says: {agree}; clearly the other way: "
            f"{disagree}; within noise: {noise}."
            + (
                f" Not judged: {unjudged} (a single seed measures no noise, so no order "
                "between two activations can be called clear)."
                if unjudged
                else ""
            )
            + (f" Against the rule: {'; '.join(notes)}." if notes else ""),
            "",
        ]
    return lines


def _findings_table(groups: list[_Group]) -> list[str]:
    lines = [
        "## What diagnose saw (seed 0, at initialization and after training)",
        "",
        f"| configuration | {groups[0].unit if groups else 'hidden layers'} | at initialization "
        "| after training |",
        "|---|---|---|---|",
    ]
    for group in sorted(groups, key=lambda g: (g.depth, _key(g), g.config["init"])):
        record = group.records[0]

        def kinds(when: str, record: dict[str, Any] = record) -> str:
            found = record.get("findings", {}).get(when, [])
            return ", ".join(f"{f['kind']} ({f['severity']})" for f in found) or "healthy"

        lines.append(
            f"| {_label(group.config, depth=False)} | {group.depth} | {kinds('start')} "
            f"| {kinds('end')} |"
        )
    return [*lines, ""]


#: Above this many activations at one depth, an autoinit study's learning curves get one
#: panel per initialization.
SPLIT_ABOVE = 8


def _palette(count: int) -> list[Any]:
    """A colour per activation: matplotlib's ten cycle colours, or twenty tab20 ones."""
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    return [tab20(i % 20) for i in range(count)]


def _figures(groups: list[_Group], directory: Path) -> list[str]:
    from signalprop.plots import (
        plot_accuracy_vs_depth,
        plot_gradient_profiles,
        plot_learning_curves,
    )

    lines = []
    depths = sorted({g.depth for g in groups})
    panels: dict[str, dict[str, Any]] = {}
    styles: dict[str, str] = {}
    colors: dict[str, Any] = {}
    activations = sorted({_key(g) for g in groups})
    palette = _palette(len(activations))
    autoinit_study = any(g.config.get("autoinit") is not None for g in groups)
    # Many activations at one depth: one panel per initialization, or the curves are a knot.
    split = autoinit_study and len(depths) == 1 and len(activations) > SPLIT_ABOVE
    for group in sorted(groups, key=lambda g: (_key(g), g.config["init"])):
        title = f"{group.depth} {group.unit}"
        if split:
            auto = group.config.get("autoinit")
            title += ", " + (
                f"autoinit ({describe_autoinit(auto)})" if auto is not None else "as drawn"
            )
        label = _label(group.config, depth=False)
        glorot = (
            group.records[0]["config"].get("init_choice") != "matching"
            and len({g.config["init"] for g in groups}) > 1
        )
        if autoinit_study:  # dashed: as drawn, solid: autoinit
            styles[label] = "-" if group.config.get("autoinit") is not None else "--"
        else:  # dashed: Glorot uniform where the activation has its own initializer
            styles[label] = "--" if glorot else "-"
        colors[label] = palette[activations.index(_key(group))]
        panels.setdefault(title, {})[label] = group.curve()
    plot_learning_curves(
        dict(sorted(panels.items(), key=lambda kv: (int(kv[0].split()[0]), kv[0]))),
        styles=styles,
        colors=colors,
    ).savefig(directory / "learning_curves.png", dpi=100)
    lines += [
        "## Learning curves",
        "",
        "Validation accuracy after each epoch, mean over seeds (band: the seeds' range).",
        "",
        "![learning curves](learning_curves.png)",
        "",
    ]
    if len(depths) > 1:
        by_label: dict[str, list[_Group]] = defaultdict(list)
        for group in groups:
            by_label[_label(group.config, depth=False)].append(group)
        series = {}
        for label, members in sorted(by_label.items()):
            members.sort(key=lambda g: g.depth)
            means = np.array([g.mean for g in members])
            lows = np.array([min(g.finals) for g in members])
            highs = np.array([max(g.finals) for g in members])
            series[label] = (np.array([g.depth for g in members]), means, lows, highs)
        plot_accuracy_vs_depth(series, styles=styles, colors=colors).savefig(
            directory / "accuracy_vs_depth.png", dpi=100
        )
        lines += [
            "## Final accuracy against depth",
            "",
            "Mean over seeds, bars from the worst to the best seed; dashed: Glorot uniform "
            "(or, in an autoinit study, the initialization as drawn).",
            "",
            "![accuracy vs depth](accuracy_vs_depth.png)",
            "",
        ]
    deepest = max(depths)
    profiles: dict[str, dict[str, np.ndarray]] = {
        "at initialization": {},
        "after training": {},
    }
    for group in sorted(groups, key=_key):
        if group.depth != deepest:
            continue
        record = group.records[0]
        label = _label(group.config, depth=False)
        for when, title in (("start", "at initialization"), ("end", "after training")):
            values = record.get("layers", {}).get(when, {}).get("grad_pre_rms")
            if values:
                profiles[title][label] = np.array(
                    [np.nan if v is None else v for v in values], dtype=float
                )
    if any(profiles.values()):
        plot_gradient_profiles(profiles, styles=styles, colors=colors).savefig(
            directory / "gradients.png", dpi=100
        )
        lines += [
            f"## Gradients per layer ({deepest} {groups[0].unit}, seed 0)",
            "",
            "RMS of the loss gradient with respect to each layer's pre-activations on 256 "
            "training images, before the first step and after the last epoch (measured by "
            "`signalprop.diagnose`).",
            "",
            "![gradients per layer](gradients.png)",
            "",
        ]
    return lines


#: The quantities a monitored run's heatmap shows in the report.
MONITOR_QUANTITIES = ("grad_pre_rms", "act_std", "update_ratio", "dead", "saturated")


def monitor_section(results: list[dict[str, Any]], directory: Path) -> list[str]:
    """Per monitored run: heatmaps of its Monitor log, and what went wrong when."""
    from signalprop.monitor import read_log
    from signalprop.plots import plot_monitor

    monitored = [r for r in results if r.get("monitor")]
    if not monitored:
        return []
    lines = [
        "## Training monitor",
        "",
        f"{len(monitored)} runs were watched by `signalprop.Monitor` (every "
        f"{monitored[0]['monitor']['every']} steps): per layer (rows, input at the bottom) "
        "and step (columns), the gradient RMS at the pre-activations, the activations' std, "
        "the update-to-weight ratio and the dead or saturated fraction. Findings say when "
        "they began; `signalprop plot monitor` draws any one log.",
        "",
    ]
    for record in monitored:
        label = record["config"].get("label") or _label(record["config"])
        seed = record["config"].get("seed")
        lines += [f"### {label}, seed {seed}", ""]
        log = directory / record["monitor"]["log"]
        if not log.is_file():
            lines += [f"Log `{record['monitor']['log']}` is missing.", ""]
            continue
        history = read_log(log)
        quantities = [
            q
            for q in MONITOR_QUANTITIES
            if any(v is not None for r in history.records for v in r.values[q])
        ]
        name = f"monitor-{record['run_id']}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # log scales of constant panels
            plot_monitor(history, quantities).savefig(directory / name, dpi=80)
        lines += [f"![monitor heatmaps]({name})", ""]
        events = record["monitor"]["events"]
        findings = record["monitor"]["findings"]
        for event in events:
            lines.append(f"- **non_finite**: {event['message']}")
        for finding in findings:
            lines.append(f"- **{finding['kind']}** ({finding['severity']}): {finding['message']}")
        if not events and not findings:
            lines.append("- no findings over the whole run")
        lines.append("")
    return lines


def write_report(directory: str | Path, *, title: str | None = None) -> Path:
    """Write ``DIR/report.md`` and its figures from ``DIR/results.jsonl``; return its path.

    Runs that failed (``record["error"]``) are listed with their errors at the end,
    also when every run failed: then the report holds only that list.

    Raises:
        ValueError: When the directory holds no results at all.

    Examples:
        ```python
        from signalprop.study import write_report

        write_report('runs/chapter11')   # runs/chapter11/report.md and its figures
        ```
    """
    directory = Path(directory)
    spec_path = directory / SPEC
    spec = json.loads(spec_path.read_text(encoding="utf-8")) if spec_path.exists() else {}
    results, left_out = normalized(read_results(directory))
    if left_out:
        warnings.warn(
            f"{directory}: {len(left_out)} record(s) of {RESULTS} left out of the report "
            f"(it lists them), e.g. {left_out[0]}",
            stacklevel=2,
        )
    if spec.get("runs"):
        wanted = {r.get("run_id") for r in spec["runs"]} - {None}
        if wanted:
            results = [r for r in results if r["run_id"] in wanted]
    failures = [r for r in results if r.get("error")]
    results = [r for r in results if not r.get("error")]
    if not results and not failures:
        raise ValueError(f"{directory}: no finished runs in {RESULTS}")
    total_runs = len(spec.get("runs", [])) or len(results) + len(failures)
    hours = sum(r["wall_time"] for r in results) / 3600
    threads = sorted({r.get("threads", 1) for r in results or failures})
    name = title or f"Study: {spec.get('name', directory.name)}"
    lines = [
        f"# {name}",
        "",
        spec.get("description", ""),
        "",
        f"{len(results)} of {total_runs} runs finished"
        + (f", {len(failures)} failed (listed at the end)" if failures else "")
        + f"; {hours:.2f} h of training in all "
        f"({' or '.join(map(str, threads))} thread(s) per run). "
        + code_line(results + failures)
        + " Generated by `signalprop report` from `results.jsonl`, which holds every run's "
        "configuration, history and per-layer statistics; `signalprop reproduce` trains "
        "some of them again and compares.",
        "",
    ]
    if left_out:
        lines += [
            "## Records left out",
            "",
            f"These records of `{RESULTS}` are not counted anywhere below:",
            "",
            *(f"- {line}" for line in left_out),
            "",
        ]
    if results:
        lines += _finished_sections(results, spec, directory)
    else:
        lines += ["Every run failed: there are no results to show, only the errors below.", ""]
    if failures:
        lines += [
            "## Runs that failed",
            "",
            "These raised an error (or killed their worker more often than the cluster "
            "retries); the study went on without them, and rerunning it skips them (delete "
            "their lines from `results.jsonl` to run them again).",
            "",
            *(
                f"- {r['config'].get('label') or _label(r['config'])}, seed "
                f"{r['config'].get('seed')}: {r['error']}"
                for r in failures
            ),
            "",
        ]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _finished_sections(
    results: list[dict[str, Any]], spec: dict[str, Any], directory: Path
) -> list[str]:
    """The report's tables and figures of the runs that finished."""
    groups = _groups(results)
    lines: list[str] = []
    scan = depth_scan_section(results, directory)
    if is_residual(results):  # blocks, not hidden layers: their own table
        lines += [
            *residual_section(results, spec.get("goals")),
            *_figures(groups, directory),
            *_findings_table(groups),
        ]
    elif scan:  # a grid over (σ_w², depth): the heatmap says it all, per-run tables would not
        lines += scan
    else:
        lines += [
            *initializations_section(results, spec.get("goals")),
            "## Final validation accuracy",
            "",
            *_accuracy_table(groups),
            "",
            *_reference_table(results),
            *_ranking(groups),
            *_figures(groups, directory),
            *_findings_table(groups),
        ]
    lines += monitor_section(results, directory)
    return lines
