"""A monitored run as plain records, and the findings of ``diagnose`` over time.

:class:`MonitorHistory` is what a :class:`~signalprop.Monitor` keeps in memory
and what :func:`read_log` rebuilds from its JSON Lines log: the layers, one
:class:`Record` per monitored step (every quantity as a list over the layers),
and the :class:`NonFiniteEvent` records. :meth:`MonitorHistory.findings` runs
the detectors of :func:`~signalprop.diagnose` on every record and says, for
each finding, when it began and in which layers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from signalprop._validation import invalid_parameter
from signalprop.diagnostics import (
    KINDS,
    Finding,
    LayerStats,
    Thresholds,
    find,
    layer_range,
    weights_of,
)

__all__ = [
    "QUANTITIES",
    "LayerInfo",
    "MonitorHistory",
    "NonFiniteEvent",
    "Record",
    "TimedFinding",
    "read_log",
]

QUANTITIES = (
    "pre_mean",
    "pre_std",
    "act_mean",
    "act_std",
    "saturated",
    "dead",
    "grad_pre_rms",
    "grad_weight_rms",
    "weight_norm",
    "update_ratio",
)
"""What a record holds per layer, with :class:`~signalprop.diagnostics.LayerStats`'s
definitions (``grad_weight_rms`` included), plus the weight's norm and the
update-to-weight ratio ‖W_after − W_before‖ / ‖W_before‖ of the step.

Examples:
    >>> import signalprop as sp
    >>> sp.monitor.QUANTITIES[:4]
    ('pre_mean', 'pre_std', 'act_mean', 'act_std')
"""

#: The log's format name and version, in its header line.
FORMAT = "signalprop-monitor"
VERSION = 1


@dataclass(frozen=True)
class LayerInfo:
    """One monitored layer.

    Attributes:
        name: As in ``model.named_modules()`` (``"name#2"`` for a second call).
        layer_type: The module's class name.
        activation: Registry name of the activation applied to its output.
        fan_in, fan_out: The weight's fans (None: no weight).
        weight_numel: Elements of the weight (0: none).

    Examples:
        >>> import torch, signalprop as sp
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2)
        ... )
        >>> _ = torch.nn.init.normal_(model[0].weight, std=10.0)   # saturates the sigmoid
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with sp.Monitor(model, every=1, optimizer=opt) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
        ...         loss.backward()
        ...         opt.step()   # the Monitor records after each step
        ...
        >>> monitor.history.layers[0]
        LayerInfo(name='0', layer_type='Linear', activation='sigmoid', fan_in=4.0, ...
    """

    name: str
    layer_type: str
    activation: str | None = None
    fan_in: float | None = None
    fan_out: float | None = None
    weight_numel: int = 0


@dataclass
class Record:
    """The quantities of one monitored step, each a list over the layers (None: not seen).

    Examples:
        >>> import torch, signalprop as sp
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2)
        ... )
        >>> _ = torch.nn.init.normal_(model[0].weight, std=10.0)   # saturates the sigmoid
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with sp.Monitor(model, every=1, optimizer=opt) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
        ...         loss.backward()
        ...         opt.step()   # the Monitor records after each step
        ...
        >>> record = monitor.history.records[0]
        >>> record.step, record.batch_size, len(record.values['act_mean'])
        (1, 16, 2)
    """

    step: int
    batch_size: int
    values: dict[str, list[float | None]]

    def layer_stats(self, layers: list[LayerInfo]) -> list[LayerStats]:
        """The record as ``diagnose``'s per-layer records, for its detectors."""
        rows = []
        for index, info in enumerate(layers):
            value = {q: self.values[q][index] for q in QUANTITIES}
            stats = LayerStats(
                name=info.name,
                layer_type=info.layer_type,
                activation=info.activation,
                pre_mean=value["pre_mean"],
                pre_std=value["pre_std"],
                act_mean=value["act_mean"],
                act_std=value["act_std"],
                saturated=value["saturated"],
                dead=value["dead"],
                grad_pre_rms=value["grad_pre_rms"],
                grad_weight_rms=value["grad_weight_rms"],
            )
            norm = value["weight_norm"]
            if info.weight_numel and norm is not None and info.fan_in and info.fan_out:
                variance = norm * norm / info.weight_numel
                stats.weight_var = variance
                stats.weight_scale_fan_in = variance * info.fan_in
                stats.weight_scale_fan_avg = variance * (info.fan_in + info.fan_out) / 2
                stats.fan_in, stats.fan_out = info.fan_in, info.fan_out
            stats.finite = all(
                v is None or math.isfinite(v)
                for v in (stats.pre_mean, stats.pre_std, stats.act_mean, stats.act_std)
            )
            rows.append(stats)
        return rows


@dataclass(frozen=True)
class NonFiniteEvent:
    """Where a NaN or Inf first appeared.

    Attributes:
        step: The training step (from 1).
        pass_: ``"forward"`` or ``"backward"``.
        layer: The first layer with a non-finite value in that pass (the
            lowest in the forward pass, the highest in the backward pass), or
            None when no layer could be named.
        message: The sentence a report prints.
        batch_file: Where the batch was saved, if it was.

    Examples:
        >>> import torch, signalprop as sp
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 2))
        >>> with sp.Monitor(model, every=1) as monitor:
        ...     model(torch.full((3, 4), float('nan'))).sum().backward()
        ...     monitor.step()
        ...
        >>> event = monitor.events[0]
        >>> event.step, event.pass_, event.message
        (1, 'forward', 'the inputs of step 1 contain NaN or Inf')
    """

    step: int
    pass_: str
    layer: str | None
    message: str
    batch_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("pass_")
        return data


#: What each finding kind means as an event in time, for "… between steps A and B".
ONSET = {
    "non_finite": "values became NaN or Inf",
    "vanishing_gradients": "gradients vanished",
    "exploding_gradients": "gradients exploded",
    "ordered": "the weights put the net in the ordered phase",
    "chaotic": "the weights put the net in the chaotic phase",
    "vanishing_signal": "the forward signal vanished",
    "exploding_signal": "the forward signal exploded",
    "saturation": "units saturated",
    "dead_units": "units died",
    "mean_shift": "outputs drifted off zero mean",
    "off_scale": "weights moved off their initializer's scale",
}


@dataclass(frozen=True)
class TimedFinding:
    """A finding of ``diagnose`` seen over a monitored run.

    Attributes:
        kind, severity, fix: As in :class:`~signalprop.diagnostics.Finding`
            (severity: the worst seen, or ``"warning"`` for an intermittent
            finding: absent from the last record and seen in fewer than half of
            the records since it began).
        layers: The layers it began in at the same time.
        began: The first monitored step it was seen at.
        clean_before: The last monitored step before ``began`` without it
            (None: seen from the first monitored step).
        ended: The first monitored step after its last sighting whose values
            were judged (None: none was; records holding NaN or Inf are judged
            for that alone).
        last_step: The last monitored step of the run.
        detail: The finding's own message at ``began``.
        seen: How many records showed it.
        records: How many records from ``began`` to the end were judged for it.
        last_seen: The last monitored step that showed it.
        spell: How many records from ``began`` to ``last_seen`` were judged for it
            (``seen == spell``: it showed in every one of them).

    Examples:
        >>> import torch, signalprop as sp
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2)
        ... )
        >>> _ = torch.nn.init.normal_(model[0].weight, std=10.0)   # saturates the sigmoid
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with sp.Monitor(model, every=1, optimizer=opt) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
        ...         loss.backward()
        ...         opt.step()   # the Monitor records after each step
        ...
        >>> finding = monitor.findings()[0]
        >>> finding.kind, finding.layers, finding.began, finding.persistent
        ('saturation', ['0'], 1, True)
    """

    kind: str
    severity: str
    layers: list[str]
    began: int
    clean_before: int | None
    ended: int | None
    last_step: int
    detail: str
    fix: str
    seen: int = 1
    records: int = 1
    last_seen: int = 0
    spell: int = 1
    all_layers: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def unbroken(self) -> bool:
        """Whether every record from ``began`` to ``last_seen`` showed it."""
        return self.seen >= self.spell

    @property
    def persistent(self) -> bool:
        """Whether every record from ``began`` to the last one showed it."""
        return self.unbroken and self.ended is None

    @property
    def persistence(self) -> str:
        """How long it lasted: ``"from step 26 on"``, ``"steps 4–6"``, ``"in 3 of 127
        records"``."""
        if self.persistent:
            return f"from step {self.began:,} on"
        if self.unbroken:
            return f"steps {self.began:,}–{self.last_seen:,}"
        return f"in {self.seen:,} of {self.records:,} records"

    @property
    def message(self) -> str:
        """``"layer 37: units died between steps 4,200 and 4,800; seen in every record
        from then on, to step 9,000 (…)"``."""
        where = layer_range(self.layers, self.all_layers or self.layers)
        what = ONSET.get(self.kind, self.kind)
        if self.clean_before is None:
            when = f"from the first monitored step ({self.began:,})"
        else:
            when = f"between steps {self.clean_before:,} and {self.began:,}"
        if self.persistent and self.last_seen < self.last_step:
            until = (
                f"seen in every record to step {self.last_seen:,}; the records after it hold "
                "NaN or Inf, which no other detector judges"
            )
        elif self.persistent:
            until = (
                f"seen in every record from then on, to step {self.last_step:,}"
                if self.began != self.last_step
                else "at the last monitored step"
            )
        elif self.unbroken:
            until = (
                f"seen in every record to step {self.last_seen:,}, and in none from step "
                f"{self.ended:,} on"
            )
        else:
            last = "the last one" if self.ended is None else f"step {self.last_seen:,}"
            until = (
                f"seen in only {self.seen:,} of the {self.records:,} records from then on, "
                f"last at {last}"
            )
        return f"{where}: {what} {when}; {until} ({self.detail})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("all_layers")
        data["message"] = self.message
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], all_layers: list[str]) -> TimedFinding:
        """Back from :meth:`to_dict` (a log's last line)."""
        names = {f.name for f in fields(cls)} - {"all_layers"}
        return cls(**{k: v for k, v in data.items() if k in names}, all_layers=all_layers)


#: Kinds drawn from the model as well as the records (the mean-field phase needs the
#: model's structure): a log keeps them in its last line, and read_log reads them back.
MODEL_KINDS = ("ordered", "chaotic")
#: A finding absent from the last record and seen in fewer than this share of the
#: records since it began is intermittent, and reported as a warning.
INTERMITTENT = 0.5


@dataclass
class MonitorHistory:
    """A monitored run: its layers, records and non-finite events.

    Attributes:
        layers: The monitored layers, in forward order.
        records: One per monitored step.
        events: Where NaN or Inf appeared.
        every: Steps between monitored steps.
        world_size: Processes whose batches each record combines.
        steps: Training steps taken (0 when unknown, e.g. a log cut short).
        model_findings: The ``ordered``/``chaotic`` findings a log's last line kept
            (they are drawn with the model, which a log does not hold).

    Examples:
        >>> import torch, signalprop as sp
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2)
        ... )
        >>> _ = torch.nn.init.normal_(model[0].weight, std=10.0)   # saturates the sigmoid
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with sp.Monitor(model, every=1, optimizer=opt) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
        ...         loss.backward()
        ...         opt.step()   # the Monitor records after each step
        ...
        >>> history = monitor.history
        >>> history.steps, len(history.records), history.names
        (3, 3, ['0', '2'])
    """

    layers: list[LayerInfo] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    events: list[NonFiniteEvent] = field(default_factory=list)
    every: int = 1
    world_size: int = 1
    steps: int = 0
    model_findings: list[TimedFinding] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def series(self, quantity: str) -> list[list[float | None]]:
        """``[record][layer]`` values of one quantity (see :data:`QUANTITIES`)."""
        if quantity not in QUANTITIES:
            raise invalid_parameter(
                "quantity", "MonitorHistory.series", f"one of {list(QUANTITIES)}", quantity
            )
        return [record.values[quantity] for record in self.records]

    def findings(
        self,
        thresholds: Thresholds | None = None,
        more: Callable[[Record], list[Finding]] | None = None,
    ) -> list[TimedFinding]:
        """``diagnose``'s detectors on every record, as findings with a time and layers.

        For each kind and layer, the finding *began* at the first record that
        shows it, and has *ended* if the last record no longer does. Layers
        that began at the same time are one finding: units that died between
        steps 100 and 200 and others that died later are two. A record whose
        values are not finite gets ``diagnose``'s ``non_finite`` finding (and no
        other, as there), unless a :class:`NonFiniteEvent` at or before its step
        already says where the NaN or Inf began.

        Args:
            thresholds: When a measurement becomes a finding.
            more: Findings of a record drawn from more than the record (the
                Monitor's mean-field phase, which reads the model). Without it,
                the ``ordered``/``chaotic`` findings a log kept are returned.
        """
        thresholds = thresholds if thresholds is not None else Thresholds()
        names = self.names
        steps = [record.step for record in self.records]
        last = steps[-1] if steps else 0
        # (kind, layer) -> its first sighting, the record before it, and the last sighting
        first: dict[tuple[str, str], tuple[int, int | None, Finding, int]] = {}
        latest: dict[tuple[str, str], int] = {}
        worst: dict[tuple[str, str], str] = {}
        sightings: dict[tuple[str, str], int] = {}
        previous: int | None = None
        judged: list[int] = []  # the records whose values the detectors could judge
        for position, record in enumerate(self.records):
            found, _ = find(record.layer_stats(self.layers), thresholds, record.batch_size)
            if any(f.kind == "non_finite" for f in found):
                if any(event.step <= record.step for event in self.events):
                    found = []  # the event says where it began
            else:
                judged.append(position)
                if more is not None:
                    found = found + more(record)
            for finding in found:
                for layer in finding.layers:
                    key = (finding.kind, layer)
                    first.setdefault(key, (record.step, previous, finding, position))
                    latest[key] = record.step
                    sightings[key] = sightings.get(key, 0) + 1
                    if finding.severity == "error" or key not in worst:
                        worst[key] = finding.severity
            previous = record.step
        groups: dict[tuple[str, int, int | None], list[tuple[str, str]]] = {}
        for key, (began, before, _, _) in first.items():
            groups.setdefault((key[0], began, before), []).append(key)
        result = []
        for (kind, began, before), keys in groups.items():
            keys.sort(key=lambda k: names.index(k[1]))
            last_seen = max(latest[k] for k in keys)
            # Records of NaN or Inf judge no other kind: they neither show nor end it.
            since = range(len(self.records)) if kind == "non_finite" else judged
            after = [steps[p] for p in since if steps[p] > last_seen]
            ended = after[0] if after else None
            records_since = sum(1 for p in since if p >= first[keys[0]][3])
            spell = sum(1 for p in since if first[keys[0]][3] <= p and steps[p] <= last_seen)
            seen = max(sightings[k] for k in keys)
            severity = "error" if any(worst[k] == "error" for k in keys) else "warning"
            if ended is not None and seen < INTERMITTENT * records_since:
                severity = "warning"  # a passing spell, not the state of the run
            result.append(
                TimedFinding(
                    kind=kind,
                    severity=severity,
                    layers=[k[1] for k in keys],
                    began=began,
                    clean_before=before,
                    ended=ended,
                    last_step=last,
                    detail=self._detail(kind, keys, first),
                    fix=self._fix(keys, first),
                    seen=seen,
                    records=records_since,
                    last_seen=last_seen,
                    spell=spell,
                    all_layers=names,
                )
            )
        if more is None:
            result += self.model_findings
        result.sort(key=lambda f: (KINDS.index(f.kind), f.began, names.index(f.layers[0])))
        return result

    def _detail(
        self,
        kind: str,
        keys: list[tuple[str, str]],
        first: dict[tuple[str, str], tuple[int, int | None, Finding, int]],
    ) -> str:
        """What the finding measured when it began, for these layers."""
        _, _, finding, position = first[keys[0]]
        record = self.records[position]
        names = self.names
        quantity = {"dead_units": "dead", "saturation": "saturated"}.get(kind)
        if quantity is not None:
            values = [record.values[quantity][names.index(k[1])] or 0.0 for k in keys]
            what = "units never positive" if kind == "dead_units" else "activations saturated"
            return f"up to {max(values):.0%} of {what} at step {record.step:,}"
        return finding.message

    def _fix(
        self,
        keys: list[tuple[str, str]],
        first: dict[tuple[str, str], tuple[int, int | None, Finding, int]],
    ) -> str:
        """The finding's fix, unless it says to (re-)initialize weights that were at their
        initializer's scale at the first record: then training moved them, and starting
        over from the same initialization would only repeat the run."""
        began, _, finding, position = first[keys[0]]
        if position == 0 or not any(w in finding.fix for w in ("initiali", "he_normal")):
            return finding.fix
        where = [self.names.index(k[1]) for k in keys]
        start = [self.records[0].layer_stats(self.layers)[i] for i in where]
        now = [self.records[position].layer_stats(self.layers)[i] for i in where]
        before, after = weights_of(start), weights_of(now)
        if before.reinit or before.relation is None or after.relation is None:
            return finding.fix  # not at the initializer's scale to begin with
        if not after.reinit:
            return finding.fix  # still at it: the fix does not name the initializer
        return (
            f"the weights were at {before.init_name}'s scale at step {self.records[0].step:,}; "
            f"training took them to {after.relation:.3g}× it by step {began:,}: lower the "
            "learning rate, or clip gradients (torch.nn.utils.clip_grad_norm_)"
        )

    def summary(
        self,
        thresholds: Thresholds | None = None,
        more: Callable[[Record], list[Finding]] | None = None,
    ) -> str:
        """The events and findings over time, as text a person reads (``more``: as
        for :meth:`findings`). "Healthy" is said only of a run in which no record
        had a finding and no NaN or Inf appeared."""
        last = max(self.steps, self.records[-1].step if self.records else 0)
        lines = [
            f"{len(self.layers)} layers, {len(self.records)} monitored steps "
            f"(every {self.every}) of {last:,}"
        ]
        for event in self.events:
            lines.append(f"  [error] non_finite: {event.message}")
        findings = self.findings(thresholds, more)
        for finding in findings:
            lasting = "" if finding.persistent else f" ({finding.persistence})"
            lines.append(f"  [{finding.severity}] {finding.kind}{lasting}: {finding.message}")
            lines.append(f"      fix: {finding.fix}")
        if not self.records and not self.events:
            lines.append("  nothing recorded: no monitored step ran a forward pass with gradients")
        elif not self.events and not findings:
            lines.append("  healthy over the whole run: no findings")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def header(self, thresholds: Thresholds) -> dict[str, Any]:
        """The log's first line."""
        return {
            "kind": "header",
            "format": FORMAT,
            "version": VERSION,
            "every": self.every,
            "world_size": self.world_size,
            "layers": [asdict(layer) for layer in self.layers],
            "thresholds": asdict(thresholds),
        }


def _number(value: float | None) -> str:
    """A value as JSON (with Python's NaN and Infinity), to 9 significant digits."""
    if value is None:
        return "null"
    if math.isfinite(value):
        return f"{value:.9g}"
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def record_line(record: Record) -> str:
    """A record as one log line.

    Values keep 9 significant digits, all that the float32 data they are measured
    on carries; formatting them so is 3x faster than ``json.dumps``'s 17.
    """
    columns = ", ".join(
        f'"{q}": [' + ", ".join(map(_number, record.values[q])) + "]" for q in QUANTITIES
    )
    return (
        f'{{"kind": "record", "step": {record.step}, "batch_size": {record.batch_size}, {columns}}}'
    )


#: How a header line begins inside a line that is not one: a header glued to a cut line.
GLUED_HEADER = f'"format": "{FORMAT}"'


def _two_runs(path: Path, number: int, what: str) -> ValueError:
    """The error for a log that holds more than one run, at line ``number``."""
    return ValueError(
        f"read_log: {str(path)!r} holds more than one monitored run: line {number} {what}. "
        "A Monitor log holds one run; this file was appended to (a path reused before "
        "Monitor refused used paths). Split it at that line, or read another log."
    )


def read_log(path: str | Path) -> MonitorHistory:
    """Rebuild a :class:`MonitorHistory` from a Monitor's JSON Lines log.

    A line cut short by a killed process, as the last line, is skipped: every record
    written before it counts.

    Raises:
        ValueError: If ``path`` is not a Monitor log, or holds more than one run (a
            second header, or a header glued to a cut line: a path appended to by an
            older signalprop), naming the line.

    Examples:
        >>> import torch, signalprop as sp
        >>> import os, tempfile
        >>> log = os.path.join(tempfile.mkdtemp(), 'monitor.jsonl')
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
        ... )
        >>> with sp.Monitor(model, every=1, log=log) as monitor:
        ...     for _ in range(2):
        ...         model(torch.randn(16, 4)).square().mean().backward()
        ...         monitor.step()
        ...
        >>> history = sp.monitor.read_log(log)
        >>> len(history.records), history.names
        (2, ['0', '2'])
    """
    path = Path(path)
    if not path.is_file():
        raise invalid_parameter("path", "read_log", "an existing monitor log file", str(path))
    history: MonitorHistory | None = None
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if GLUED_HEADER in line:
                    raise _two_runs(
                        path, number, "is a line cut short with the next run's header glued on"
                    ) from None
                continue  # the last line of a killed run
            kind = data.get("kind") if isinstance(data, dict) else None
            if kind == "header":
                if data.get("format") != FORMAT:
                    break
                if history is not None:
                    raise _two_runs(path, number, "is a second header")
                history = MonitorHistory(
                    layers=[LayerInfo(**layer) for layer in data["layers"]],
                    every=int(data["every"]),
                    world_size=int(data.get("world_size", 1)),
                )
            elif history is None:
                continue
            elif kind == "record":
                values = {q: data[q] for q in QUANTITIES}
                history.records.append(Record(data["step"], data["batch_size"], values))
            elif kind == "non_finite":
                history.events.append(
                    NonFiniteEvent(
                        step=data["step"],
                        pass_=data["pass"],
                        layer=data["layer"],
                        message=data["message"],
                        batch_file=data.get("batch_file"),
                    )
                )
            elif kind == "end":
                history.steps = int(data["steps"])
                history.model_findings = [
                    TimedFinding.from_dict(item, history.names)
                    for item in data.get("findings", [])
                    if item.get("kind") in MODEL_KINDS
                ]
    if history is None:
        raise invalid_parameter(
            "path", "read_log", f"a log written by signalprop.Monitor ({FORMAT})", str(path)
        )
    return history
