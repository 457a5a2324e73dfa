"""Diagnostics: see where a network's signal and gradient vanish, explode, saturate or die.

Data flows one way: hooks (:mod:`signalprop._recorder`) record plain numbers
(:mod:`signalprop._stats`, gathered in :class:`LayerStats`), detectors turn them
into :class:`Finding` records, and a :class:`Report` prints them. Nothing here
knows about training or studies.

Besides its public surface (``__all__``), the package offers signalprop's own
modules its detectors: :func:`find` (a list of :class:`LayerStats` judged as
``diagnose`` judges them), :func:`layer_range` (how a finding names its layers)
and :data:`KINDS` (the findings' kinds, in the order a report lists them), and
:func:`weights_of` (the weights of some layers against their initializer),
:func:`phase_finding` (the mean-field ``ordered``/``chaotic`` finding from given
weight and bias variances), :func:`phase_applies` (whether there is one to draw)
and :func:`bias_splits` (what the biases cancel). The Monitor judges each of its
records with them.

Examples:
    >>> import torch, signalprop as sp
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    >>> report = sp.diagnose(model, torch.randn(64, 8), torch.randint(0, 2, (64,)))
    >>> [(row.name, row.activation) for row in report.layers]
    [('0', 'tanh'), ('2', None)]
"""

from signalprop.diagnostics._diagnose import diagnose, surrogate_loss
from signalprop.diagnostics._findings import find as find
from signalprop.diagnostics._findings import layer_range as layer_range
from signalprop.diagnostics._findings import weights_of as weights_of
from signalprop.diagnostics._phase import MeanFieldVerdict
from signalprop.diagnostics._phase import bias_splits as bias_splits
from signalprop.diagnostics._phase import phase_applies as phase_applies
from signalprop.diagnostics._phase import phase_finding as phase_finding
from signalprop.diagnostics._report import KINDS as KINDS
from signalprop.diagnostics._report import Finding, LayerStats, Report, Thresholds
from signalprop.diagnostics._selfnorm import (
    Condition,
    SelfNormalizationCheck,
    check_self_normalizing,
)

__all__ = [
    "Condition",
    "Finding",
    "LayerStats",
    "MeanFieldVerdict",
    "Report",
    "SelfNormalizationCheck",
    "Thresholds",
    "check_self_normalizing",
    "diagnose",
    "surrogate_loss",
]
