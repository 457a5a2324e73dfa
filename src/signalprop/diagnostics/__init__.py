"""Diagnostics: see where a network's signal and gradient vanish, explode, saturate or die.

Data flows one way: hooks record plain numbers (:class:`LayerStats`),
detectors turn them into :class:`Finding` records, and a :class:`Report`
prints them. Nothing here knows about training or studies.
"""

from signalprop.diagnostics._diagnose import diagnose, surrogate_loss
from signalprop.diagnostics._phase import MeanFieldVerdict
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
