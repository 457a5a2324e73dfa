"""Plain records of a diagnosis: per-layer numbers, findings, and their text forms."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from signalprop._validation import check_int, check_real

__all__ = ["Finding", "LayerStats", "Report", "Thresholds"]

#: Finding kinds, in the order a report lists them.
KINDS = (
    "non_finite",
    "vanishing_gradients",
    "exploding_gradients",
    "ordered",
    "chaotic",
    "vanishing_signal",
    "exploding_signal",
    "saturation",
    "dead_units",
    "mean_shift",
    "off_scale",
    "residual_growth",
)


@dataclass(frozen=True)
class Thresholds:
    """When a measurement becomes a finding. All are documented defaults.

    Attributes:
        vanishing: Gradient ratio (lowest weight layer / highest hidden weight
            layer, by RMS of the gradient w.r.t. pre-activations) below which
            gradients vanish. 1e-2: the lowest layer learns 100× slower.
        exploding: The same ratio above which gradients explode. 1e4: a
            SELU net's gradient grows by √1.0716 ≈ 1.035 per layer at its
            fixed point (E[f′(z)²] = 1.0716), about 2,500× over 200 layers,
            and such nets still train; a ReLU net with weights 10× too large
            passes 1e4 within a few layers.
        signal: Ratio of the activations' RMS between the highest and the
            lowest hidden layer beyond which the forward signal vanishes
            (below 1/signal) or explodes (above signal). 1e4.
        saturation: Fraction of a layer's activations that are saturated above
            which the layer is reported. 0.2.
        saturation_margin: An output is saturated when it lies within this
            fraction of the activation's range from either end: logistic
            within 0.02 of 0 or 1, tanh within 0.04 of ±1 (where the slope
            has fallen below 8 % of its maximum). 0.02.
        dead: Fraction of a ReLU layer's units that are never positive across
            the batch above which the layer is reported. 0.1.
        mean_shift: |mean| / std of a layer's activations above which its
            outputs are reported as shifted. 1.0 (ReLU's own ratio on
            standard normal inputs is 0.68, the logistic's far above).
        min_batch_for_dead: Below this batch size dead units are not judged
            (a unit is "never positive" on a tiny batch by chance). 16.
        residual_growth: The residual stream's RMS growth (after the last residual
            block over entering the first) above which it is reported. 4 (16-fold in
            variance): autoinit's residual criterion gives at most √e ≈ 1.65 at any
            depth, PyTorch's default init 1.5 at 16 ReLU blocks but 5.6 at 64 and
            ~1,000 at 256 (×(1 + 1/18) in variance per block).

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ... )
        >>> strict = sp.Thresholds(saturation=0.05, dead=0.01)
        >>> x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
        >>> report = sp.diagnose(model, x, y, thresholds=strict)
        >>> report.thresholds.saturation
        0.05
    """

    vanishing: float = 1e-2
    exploding: float = 1e4
    signal: float = 1e4
    saturation: float = 0.2
    saturation_margin: float = 0.02
    dead: float = 0.1
    mean_shift: float = 1.0
    min_batch_for_dead: int = 16
    residual_growth: float = 4.0

    def __post_init__(self) -> None:
        caller = "Thresholds"
        check_real(self.vanishing, param="vanishing", caller=caller, low=0, low_inclusive=False)
        check_real(self.exploding, param="exploding", caller=caller, low=1, low_inclusive=False)
        check_real(self.signal, param="signal", caller=caller, low=1, low_inclusive=False)
        for name in ("saturation", "dead"):
            check_real(getattr(self, name), param=name, caller=caller, low=0, high=1)
        check_real(
            self.saturation_margin, param="saturation_margin", caller=caller, low=0, high=0.5
        )
        check_real(self.mean_shift, param="mean_shift", caller=caller, low=0, low_inclusive=False)
        check_int(self.min_batch_for_dead, param="min_batch_for_dead", caller=caller, low=1)
        check_real(self.residual_growth, param="residual_growth", caller=caller, low=1)


@dataclass
class LayerStats:
    """One layer's numbers from one forward and one backward pass.

    ``None`` means "not applicable or not seen": no activation module consumed
    the layer's output, the activation cannot saturate or die, or no gradient
    reached it.

    Attributes:
        name: The module's name in ``model.named_modules()``.
        layer_type: The module's class name.
        activation: Registry name of the activation applied to its output.
        pre_mean, pre_std: Statistics of the pre-activations (the weight
            layer's output).
        act_mean, act_std: Statistics of the activations.
        saturated: Fraction of activations within the saturation margin.
        dead: Fraction of units (features or channels) never positive.
        similarity: For ReLU layers, how alike the examples' pre-activations
            are, from about 1/batch (independent) to 1 (identical).
        grad_pre_rms: RMS of the loss gradient w.r.t. the pre-activations.
        grad_out_rms: RMS of the loss gradient w.r.t. the activations.
        grad_weight_rms: RMS of the loss gradient w.r.t. the weight.
        weight_var: Mean square of the weight.
        weight_scale_fan_in: ``weight_var · fan_in`` (1 LeCun, 2 He).
        weight_scale_fan_avg: ``weight_var · fan_avg`` (1 Glorot).
        fan_in, fan_out: The weight's fans.
        bias_var: Mean square of the bias (0 without one): σ_b².
        input_offset: The input mean ``m`` its biases cancel (``b = −m·W𝟙 + r``:
            autoinit's centring of the logistic and softplus; 0 for plain biases).
        normalized: Whether a normalization (BatchNorm, LayerNorm, …) sits between the
            layer and its activation: its weights' scale then does not set the
            activation's input, and no finding compares that scale with others'.
        finite: Whether every forward value of the layer was finite.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ... )
        >>> report = sp.diagnose(model, torch.randn(64, 8), torch.randint(0, 2, (64,)))
        >>> row = report.layers[0]
        >>> row.name, row.layer_type, row.activation, row.fan_in
        ('0', 'Linear', 'tanh', 8.0)
    """

    name: str
    layer_type: str
    activation: str | None = None
    pre_mean: float | None = None
    pre_std: float | None = None
    act_mean: float | None = None
    act_std: float | None = None
    saturated: float | None = None
    dead: float | None = None
    similarity: float | None = None
    grad_pre_rms: float | None = None
    grad_out_rms: float | None = None
    grad_weight_rms: float | None = None
    weight_var: float | None = None
    weight_scale_fan_in: float | None = None
    weight_scale_fan_avg: float | None = None
    fan_in: float | None = None
    fan_out: float | None = None
    bias_var: float | None = None
    input_offset: float | None = None
    normalized: bool = False
    finite: bool = True

    @property
    def has_weight(self) -> bool:
        return self.weight_var is not None

    @property
    def gradient_finite(self) -> bool:
        values = (self.grad_pre_rms, self.grad_out_rms, self.grad_weight_rms)
        return all(v is None or math.isfinite(v) for v in values)


@dataclass
class Finding:
    """One verdict: what is wrong, where, how badly, and what to do.

    Attributes:
        kind: One of ``"non_finite"``, ``"vanishing_gradients"``,
            ``"exploding_gradients"``, ``"ordered"``, ``"chaotic"`` (a plain
            dense stack deeper than mean-field theory's trainable depth 6ξ_c),
            ``"vanishing_signal"``, ``"exploding_signal"``, ``"saturation"``,
            ``"dead_units"``, ``"mean_shift"``, ``"off_scale"``, ``"residual_growth"``
            (a residual stream whose RMS grows over the blocks beyond
            :attr:`Thresholds.residual_growth`).
        layers: Names of the layers concerned, bottom to top.
        severity: ``"warning"`` or ``"error"``.
        message: What was measured.
        fix: A concrete remedy in signalprop's vocabulary.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Sigmoid(), torch.nn.Linear(16, 2)
        ... )
        >>> _ = torch.nn.init.normal_(model[0].weight, std=10.0)   # far too large: saturates
        >>> finding = sp.diagnose(model, torch.randn(64, 8), torch.randint(0, 2, (64,))).findings[0]
        >>> finding.kind, finding.severity, finding.layers
        ('saturation', 'error', ['0'])
    """

    kind: str
    layers: list[str]
    severity: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.kind}: {self.message}\n    fix: {self.fix}"


def _cell(value: float | None, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    return format(value, fmt)


#: The per-layer table's columns after its first, "#": each layer's number, counted from 1
#: on the input side as everywhere signalprop numbers layers (propagate's table, the
#: figures' axes, the Monitor's heatmaps and TensorBoard tags). "layer" is the layer's
#: name in the model (PyTorch's ``"0"``, ``"2"``, ``"features.3"``), which findings quote.
COLUMNS = (
    ("layer", "name", None),
    ("type", "layer_type", None),
    ("act", "activation", None),
    ("pre mean", "pre_mean", "+.3g"),
    ("pre std", "pre_std", ".3g"),
    ("act mean", "act_mean", "+.3g"),
    ("act std", "act_std", ".3g"),
    ("sat", "saturated", ".0%"),
    ("dead", "dead", ".0%"),
    ("grad pre", "grad_pre_rms", ".2e"),
    ("grad W", "grad_weight_rms", ".2e"),
    ("var·fan_in", "weight_scale_fan_in", ".3g"),
)


@dataclass
class Report:
    """The result of :func:`signalprop.diagnose`.

    Attributes:
        layers: Per-layer numbers, bottom (input side) to top.
        findings: Verdicts; empty for a healthy network.
        loss: The loss (or surrogate) value backpropagated.
        surrogate: Whether the loss was the surrogate (no targets given).
        batch_size: Number of examples in the batch.
        input_mean, input_std: Statistics of the model's input.
        thresholds: The thresholds the findings used.
        notes: Things the diagnosis could not judge, and why.
        meanfield: For a plain stack of dense layers sharing one activation,
            the phase, χ₁, ξ_c and trainable depth its weights put it at
            (:class:`~signalprop.diagnostics.MeanFieldVerdict`); else None.

    Examples:
        >>> import torch, signalprop as sp
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ... )
        >>> report = sp.diagnose(model, torch.randn(64, 8), torch.randint(0, 2, (64,)))
        >>> report.batch_size, len(report.layers), [f.kind for f in report.findings]
        (64, 2, [])
    """

    layers: list[LayerStats]
    findings: list[Finding]
    loss: float | None
    surrogate: bool
    batch_size: int
    input_mean: float | None = None
    input_std: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    notes: list[str] = field(default_factory=list)
    meanfield: Any = None  # a MeanFieldVerdict for plain dense stacks

    @property
    def healthy(self) -> bool:
        """Whether there are no findings."""
        return not self.findings

    def layer(self, name: str) -> LayerStats:
        """The statistics of the layer called ``name``."""
        for stats in self.layers:
            if stats.name == name:
                return stats
        raise KeyError(name)

    def findings_of(self, kind: str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serializable)."""
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "findings": [asdict(f) for f in self.findings],
            "loss": self.loss,
            "surrogate": self.surrogate,
            "batch_size": self.batch_size,
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "thresholds": asdict(self.thresholds),
            "notes": list(self.notes),
            "meanfield": None if self.meanfield is None else self.meanfield.to_dict(),
        }

    def _rows(self) -> list[list[str]]:
        rows = []
        for number, layer in enumerate(self.layers, start=1):
            cells = [str(number)]
            for _, attr, fmt in COLUMNS:
                value = getattr(layer, attr)
                cells.append(str(value or "-") if fmt is None else _cell(value, fmt))
            rows.append(cells)
        return rows

    def table(self) -> str:
        """The per-layer numbers as a fixed-width text table."""
        header = ["#", *(title for title, _, _ in COLUMNS)]
        rows = self._rows()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)

    def summary(self) -> str:
        """The verdicts in a few lines."""
        head = (
            f"{len(self.layers)} layers, batch {self.batch_size}, "
            f"{'surrogate loss' if self.surrogate else 'loss'} {_cell(self.loss, '.4g')}"
        )
        if self.meanfield is not None:
            head += "\n" + self.meanfield.summary()
        if self.healthy:
            lines = [head, "healthy: no findings"]
        else:
            lines = [head, *(str(f) for f in self.findings)]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.table()}\n\n{self.summary()}"

    def to_markdown(self) -> str:
        """The report as Markdown: verdicts first, then the per-layer table."""
        lines = ["## Findings", ""]
        if self.healthy:
            lines.append("Healthy: no findings.")
        for f in self.findings:
            lines.append(f"- **{f.kind}** ({f.severity}): {f.message}  \n  *Fix:* {f.fix}")
        for note in self.notes:
            lines.append(f"- note: {note}")
        if self.meanfield is not None:
            lines += ["", self.meanfield.summary().replace("mean field:", "Mean field:", 1) + "."]
        loss_name = "surrogate loss" if self.surrogate else "loss"
        lines += [
            "",
            f"Batch {self.batch_size}, {loss_name} {_cell(self.loss, '.4g')}, input mean "
            f"{_cell(self.input_mean, '+.3f')}, std {_cell(self.input_std, '.3g')}.",
            "",
            "## Layers",
            "",
        ]
        header = ["#", *(title for title, _, _ in COLUMNS)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(r) + " |" for r in self._rows()]
        return "\n".join(lines) + "\n"
