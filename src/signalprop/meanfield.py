"""Mean-field signal propagation: phases, depth scales and the edge of chaos.

A dense layer with ``n`` inputs, weights of variance ``σ_w² / n`` and biases
of variance ``σ_b²`` maps, in the wide limit, the variance ``q`` of its
inputs' pre-activations and the correlation ``c`` between two inputs to
(Poole et al. 2016, "Exponential expressivity in deep neural networks through
transient chaos"; Schoenholz et al. 2017, "Deep information propagation"):

* the variance map ``q ↦ σ_w² E[φ(√q z)²] + σ_b²``, whose fixed point ``q*``
  is stable when the map's slope there is below 1;
* the correlation map ``c ↦ (σ_w² E[φ(u₁)φ(u₂)] + σ_b²) / q*`` with
  ``u₁ = √q* z₁``, ``u₂ = √q* (c z₁ + √(1−c²) z₂)``; ``c = 1`` is always a
  fixed point, and its slope there, ``χ₁ = σ_w² E[φ′(√q* z)²]``, is also the
  factor by which the mean squared gradient grows per layer backward;
* the phases: ordered (``χ₁ < 1``: inputs become alike, gradients vanish),
  chaotic (``χ₁ > 1``: inputs decorrelate, gradients explode) and the
  critical line between them;
* the depth scales ``ξ_q = −1 / ln(slope of the variance map at q*)`` and
  ``ξ_c = −1 / ln χ_c``, with ``χ_c`` the correlation map's slope at its
  stable fixed point ``c*``. Networks train while their depth is below about
  ``6 ξ_c`` (Schoenholz et al. 2017, measured on MNIST and CIFAR-10).

By default the activation's mean is kept: ``E[φ²]`` is the raw second
moment and the correlation map keeps ``E[φ]²``, so non-centred activations
(the logistic) are handled as they propagate. With ``centred=True`` every map
is that of ``φ − E[φ(√q z)]``, what a layer sees when its biases also hold
``−W·E[φ]𝟙`` (:func:`centres`, :func:`init_point`). Stacks whose activations
differ from layer to layer are chains (:func:`chain`, :func:`init_chain`):
each layer's gradient factor is its producer's derivative at the variance
that actually arrives there.

Numerics:

* One-dimensional expectations use the composite Gauss–Legendre rule of
  :mod:`signalprop.gains` (16 nodes per panel of width 1/4 on [−12, 12]):
  exact to round-off for smooth activations and for kinks at 0 (the ReLU
  family, ELU, SELU), since 0 is a panel edge. PyTorch's activations with
  kinks elsewhere (hardtanh at min_val/max_val, relu6 at 6, hardsigmoid and
  hardswish at ±3, hardshrink/softshrink, threshold; as modules or functions)
  get, per q, the panel holding each kink k/√q split there: exact too. Above
  q = 25 (:data:`Q_REFINE`) φ(√q z) changes over |z| ≲ 1/√q, inside one panel
  (tanh′² alone: relative error 1e-6 at q = 1e3, 0.15 at 1e5); the panels
  around 0 are then replaced by ones growing geometrically from 1/(2√q) to 1/4,
  which keeps the rule exact to round-off up to q = Q_MAX for activations whose
  changes sit at 0 or at known kinks (tanh, the logistic, GELU, SiLU, ELU, …).
  An activation changing fast elsewhere (tanh(u − 5) at q = 1e6) is not resolved.
* The two-dimensional expectation is Mehler's formula,
  ``E[φ(u₁)φ(u₂)] = Σₖ aₖ² cᵏ`` with ``aₖ = E[φ(√q z) Heₖ(z)] / √k!`` (the
  Hermite coefficients of ``φ(√q ·)``), so the correlation map is a power
  series in ``c``. :data:`HERMITE_TERMS` terms are summed; what they miss of
  ``E[φ²] = Σ aₖ²`` (Parseval) and of ``q E[φ′²] = Σ k aₖ²`` is put in one
  more term ``T cᵏ`` with matching mass and slope, so the map and its slope
  are exact at ``c = 1``. For ``0 ≤ c ≤ 1`` (where ``c*`` lies) the error of
  ``E[φ(u₁)φ(u₂)]`` is at most the missing mass ``T``; over ``q*`` and times
  σ_w² it is reported as ``MeanField.correlation_error`` (below 1e-12 for
  tanh, 5e-6 for SELU; tested against the closed forms of ReLU's arc-cosine
  and erf's arcsine kernels). For ``c < 0`` the tail term's sign is a guess
  and the bound is ``2T`` (reached at ``c = −1`` by hardtanh, odd with kinks).
* That bound is weak where ``c*`` is near 1 and q* large (GELU at σ_w² = 1.99,
  σ_b² = 1: q* = 195, c* = 0.9993, where ``c²⁵⁶ ≈ 0.8``; the series left c* off
  by 3e-5 and ξ_c 1 % low). On [0, 1] the missing terms and their slope lie in
  ``[0, T cᴷ⁺¹]`` and ``[0, S cᴷ]`` (S: the missing ``Σ k aₖ²``); where these
  move c* by more than 1e-10 or ξ_c by more than 1e-8 relative, c* and χ_c are
  solved again on the exact map, a product rule (:func:`_kernel_2d`): the inner
  expectation over ``u₂`` given ``u₁`` on the 1-D rule split at φ's kinks and
  refined where ``φ(u₂)`` changes, the outer one refined around 0 and the kinks.
  About three such evaluations (0.1–0.3 s each) per point.
* ``q*`` is the fixed point the forward pass reaches from the input variance
  (1 by default): the variance map is increasing, so iterates move
  monotonically to the nearest root of ``V(q) − q`` in the direction of
  ``V(q₀) − q₀``; it is bracketed by factors of √10 (a pair of roots between two
  trials shows as a turn of the gap's slope, and the gap at the turn is checked)
  and solved by safeguarded Newton steps to relative 1e-12. A variance that falls below 1e-12 is
  ``q* = 0``; one that passes 1e8 (:data:`Q_MAX`) growing faster than q is
  ``q* = ∞`` (no fixed point: the ReLU family above He's variance). One that
  passes it while the gap ``V(q) − q`` shrinks has a fixed point beyond the
  engine's range (tanh at σ_w² > 1e8): refused, not called ∞.

Examples:
    >>> import signalprop as sp
    >>> mf = sp.meanfield.analyze("tanh", weight_var=2.54)
    >>> mf.phase, round(mf.chi_1, 2)
    ('chaotic', 1.18)
    >>> round(sp.meanfield.critical_weight_var("tanh", bias_var=0.05), 3)
    1.761
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from signalprop import activations as _activations
from signalprop._validation import check_int, check_option, check_real, invalid_parameter
from signalprop.gains import _NODES, _WEIGHTS, NODES, PANEL, RANGE, _as_function

__all__ = [
    "CRITERIA",
    "CRITICAL_TOLERANCE",
    "HERMITE_TERMS",
    "TRAINABLE_DEPTH_FACTOR",
    "InitPoint",
    "MeanField",
    "PhaseDiagram",
    "ResidualStream",
    "activation_mean",
    "analyze",
    "centres",
    "correlation_map",
    "critical_line",
    "critical_weight_var",
    "default_bias_var",
    "init_point",
    "kernel",
    "phase_diagram",
    "phase_of",
    "relu_residual_growth",
    "residual_stream",
    "second_moments",
    "trainable_depth",
    "variance_map",
]

HERMITE_TERMS = 256
"""Hermite terms of the correlation map (Mehler's series), before the tail term.

Examples:
    >>> import signalprop as sp
    >>> sp.meanfield.HERMITE_TERMS
    256
"""
TRAINABLE_DEPTH_FACTOR = 6.0
"""Depth, in units of ξ_c, up to which a network trains: Schoenholz et al. (2017)
found the trainable region of tanh nets on MNIST and CIFAR-10 bounded by L ≈ 6 ξ_c.

Examples:
    >>> import signalprop as sp
    >>> mf = sp.meanfield.analyze('tanh', weight_var=2.54)
    >>> round(mf.trainable_depth / mf.xi_c, 6) == sp.meanfield.TRAINABLE_DEPTH_FACTOR
    True
"""
CRITICAL_TOLERANCE = 0.02
"""|ln χ₁| at most this is "critical": the gradient changes by at most e over 50 layers.

Examples:
    >>> import signalprop as sp
    >>> sp.meanfield.phase_of(1 + sp.meanfield.CRITICAL_TOLERANCE / 2)
    'critical'
"""
#: Variances below this are q* = 0, above Q_MAX q* = ∞.
Q_MIN = 1e-12
Q_MAX = 1e8
#: σ_b² used at the edge of chaos when none is given, for activations whose
#: critical point at σ_b² = 0 has q* = 0 (tanh: the signal would fade as 1/depth).
#: Schoenholz et al. (2017) train tanh nets at σ_b² = 0.05.
DEFAULT_BIAS_VAR = 0.05
#: Rows of φ(√q z) evaluated at once (rows × 1,536 nodes, float64).
CHUNK = 2048

_Z = _NODES.numpy()
_W = _WEIGHTS.numpy()


def _hermite_basis(terms: int) -> np.ndarray:
    """Normalized probabilists' Hermite polynomials Heₖ(z)/√k! at the nodes, times the weights."""
    basis = np.empty((terms + 1, len(_Z)))
    basis[0] = 1.0
    basis[1] = _Z
    for k in range(1, terms):
        basis[k + 1] = (_Z * basis[k] - math.sqrt(k) * basis[k - 1]) / math.sqrt(k + 1)
    weighted: np.ndarray = basis * _W
    return weighted


_BASIS_T = torch.from_numpy(_hermite_basis(HERMITE_TERMS).T.copy())


def _hermite_per_row(y: Tensor, nodes: Tensor, weights: Tensor) -> np.ndarray:
    """E[y Heₖ(z)/√k!] per row for a kinked rule (see :func:`_kinked_rule`).

    The shared nodes (with the kinks' panels zeroed) go through the precomputed basis;
    only the few nodes of the split panels get their own recursion.
    """
    shared = len(_Z)
    mask = weights[:, :shared] / _WEIGHTS
    out = (y[:, :shared] * mask) @ _BASIS_T
    z, yw = nodes[:, shared:], y[:, shared:] * weights[:, shared:]
    previous, current = torch.ones_like(z), z.clone()
    out[:, 0] += yw.sum(-1)
    out[:, 1] += (yw * current).sum(-1)
    for k in range(1, HERMITE_TERMS):
        previous, current = current, (z * current - math.sqrt(k) * previous) / math.sqrt(k + 1)
        out[:, k + 1] += (yw * current).sum(-1)
    result: np.ndarray = out.numpy()
    return result


_DEGREES = np.arange(HERMITE_TERMS + 1, dtype=np.float64)
#: Correlations scanned for the correlation map's fixed point, and their powers.
_C_GRID = np.linspace(-1.0, 1.0, 401)
_GRID_POWERS = _C_GRID[:, None] ** _DEGREES

Activation = str | nn.Module | Callable[[Tensor], Tensor]


# ------------------------------------------------------------------ evaluation

#: Where PyTorch's piecewise activations (as functions) have kinks or jumps, in φ's argument.
_FUNCTION_KINKS: dict[Any, tuple[float, ...]] = {
    F.hardtanh: (-1.0, 1.0),
    F.relu6: (0.0, 6.0),
    F.hardsigmoid: (-3.0, 3.0),
    F.hardswish: (-3.0, 3.0),
}


def _kinks(activation: Any) -> tuple[float, ...]:
    """Known kinks of φ away from 0 (0 is a panel edge at every q), in φ's argument."""
    activation = getattr(activation, "fn", activation)  # signalprop's Lambda wrapper
    if isinstance(activation, nn.Hardtanh):  # ReLU6 too
        points: tuple[float, ...] = (activation.min_val, activation.max_val)
    elif isinstance(activation, nn.Hardsigmoid | nn.Hardswish):
        points = (-3.0, 3.0)
    elif isinstance(activation, nn.Hardshrink | nn.Softshrink):
        points = (-activation.lambd, activation.lambd)
    elif isinstance(activation, nn.Threshold):
        points = (activation.threshold,)
    else:
        try:
            points = _FUNCTION_KINKS.get(activation, ())
        except TypeError:  # an unhashable callable
            points = ()
    return tuple(sorted({float(p) for p in points if p != 0 and math.isfinite(p)}))


_GL_X, _GL_W = np.polynomial.legendre.leggauss(NODES)
_EDGES = np.arange(-RANGE, RANGE + PANEL / 2, PANEL)


#: Variances above which the rule is refined around 0: φ(√q z) changes over |z| ≲ 1/√q,
#: narrower than the panels (the rule's error for tanh′² is 3e-14 at q = 100, 0.15 at 1e5).
Q_REFINE = 25.0
#: Graded panels on each side of a refined point, from width/2 up to one panel (ratio ≤ 3
#: up to width/2 = PANEL / 3⁸ ≈ 4e-5, i.e. q ≈ 1.5e8 > Q_MAX).
_GRADES = 9


@dataclass(frozen=True)
class _Base:
    """A composite Gauss–Legendre rule for E[g(z)]: panels of ``panel`` on ±``reach``."""

    panel: float
    reach: float

    @functools.cached_property
    def edges(self) -> np.ndarray:
        return np.arange(-self.reach, self.reach + self.panel / 2, self.panel)

    @functools.cached_property
    def rule(self) -> tuple[np.ndarray, np.ndarray]:
        left = self.edges[:-1, None]
        z = (left + (_GL_X + 1) * self.panel / 2).ravel()
        w = np.tile(_GL_W * self.panel / 2, len(left)) * np.exp(-(z**2) / 2)
        return z, w / math.sqrt(2 * math.pi)


#: The library's rule (that of :mod:`signalprop.gains`), and a coarser one for the 2-D
#: kernel: the mass beyond ±9 is 2e-19, and panels of 1/2 still resolve the Gaussian.
_LIBRARY = _Base(PANEL, RANGE)
_COARSE = _Base(2 * PANEL, 9.0)


def _split_rule(
    points: np.ndarray, centres: np.ndarray, widths: np.ndarray, base: _Base = _LIBRARY
) -> tuple[Tensor, Tensor]:
    """Nodes and weights (rows × nodes) of a composite rule, split and refined per row.

    ``points`` (rows × P): kinks of the integrand in z, where panels are split.
    ``centres`` and ``widths`` (rows × C): places where the integrand changes over a
    width narrower than the panels (tanh′(√q z) at 0, over 1/√q). Around each, edges at
    ±width/2 · rʲ grow geometrically (r ≤ 3, at most :data:`_GRADES` of them) up to one
    panel, so every piece is at least its distance from the centre away from the
    integrand's singularities (tanh's poles at z = ±iπ/(2√q)) and Gauss–Legendre
    converges like (2 + √3)^(−32) ≈ 1e-18 per piece whatever the width; a width of two
    panels or more leaves the centre as a plain split. The panels of ``base`` holding a
    new edge are dropped (their weights zeroed) and replaced by the pieces between the
    edges, so the rows are the shared nodes of ``base`` (the library's 1,536) followed
    by 16 nodes per piece (empty pieces have no weight).
    """
    panel, reach = base.panel, base.reach
    z_base, w_base = base.rule
    n = points.shape[0]
    # A zero width (a correlation of 1: the conditional variable is a point) needs no
    # refinement: it is a plain split at its centre.
    widths = np.where(widths > 0, widths, 2 * panel)
    half = np.minimum(widths, 2 * panel)[:, :, None] / 2
    if (half < panel).any():
        grades = math.ceil(math.log(panel / half.min()) / math.log(3.0)) + 1
        grades = min(max(grades, 2), _GRADES)
        steps = half * (panel / half) ** (np.arange(grades) / (grades - 1))
        steps = np.minimum(steps, panel)
        graded = centres[:, :, None] + np.concatenate([-steps, np.zeros_like(half), steps], 2)
    else:
        graded = centres
    special = np.concatenate([points, graded.reshape(n, -1)], axis=1)
    special = np.clip(special, -reach, reach)
    panels = len(base.edges) - 1
    touched = np.clip(np.floor((special + reach) / panel), 0, panels - 1).astype(np.int64)
    edges = base.edges
    edges = np.sort(np.concatenate([special, edges[touched], edges[touched + 1]], axis=1))
    left, right = edges[:, :-1], edges[:, 1:]
    middle = np.clip(np.floor(((left + right) / 2 + reach) / panel), 0, panels - 1)
    keep = (middle[:, :, None] == touched[:, None, :]).any(axis=2)
    width = np.where(keep, right - left, 0.0)[:, :, None]
    extra = (left[:, :, None] + (_GL_X + 1) / 2 * width).reshape(n, -1)
    extra_weights = (_GL_W * width / 2).reshape(n, -1) * np.exp(-(extra**2) / 2)
    mask = np.ones((n, panels))
    np.put_along_axis(mask, touched, 0.0, axis=1)
    shared = w_base[None, :] * np.repeat(mask, NODES, axis=1)
    nodes = np.concatenate([np.broadcast_to(z_base, shared.shape), extra], axis=1)
    weights = np.concatenate([shared, extra_weights / math.sqrt(2 * math.pi)], axis=1)
    return torch.from_numpy(nodes), torch.from_numpy(weights)


def _integrate(values: Tensor, weights: Tensor) -> Tensor:
    """Σ values × weights per row: one shared rule (1 row of weights) or one rule per row."""
    if weights.shape[0] == 1 and values.shape[0] != 1:
        return values @ weights[0]
    return (values * weights).sum(dim=-1)


class _Phi:
    """An activation evaluated with its derivative on rows of √q · nodes."""

    def __init__(
        self,
        activation: Activation,
        params: dict[str, Any],
        caller: str,
        centred: bool = False,
    ) -> None:
        if isinstance(activation, nn.PReLU) and activation.weight.numel() > 1:
            raise invalid_parameter(
                "activation",
                caller,
                "an elementwise activation with one shape (PReLU: a single slope)",
                f"PReLU with {activation.weight.numel()} slopes",
            )
        self.function = _as_function(activation, params, caller)
        self.centred = bool(centred)
        self.name = _display_name(activation, params) + (" − E[·]" if self.centred else "")
        self.caller = caller
        self.kinks = np.array(_kinks(activation))
        # Fails early on activations without finite values.
        self.variance_terms(np.ones(1))

    def _rule(self, q: np.ndarray) -> tuple[Tensor, Tensor]:
        """Nodes and weights for rows of variances ``q``: one shared row without kinks,
        below :data:`Q_REFINE`; else each row split at its kinks k/√q and refined around 0."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if not len(self.kinks) and not (q > Q_REFINE).any():
            return _NODES[None, :], _WEIGHTS[None, :]
        root = np.sqrt(np.maximum(q, 0.0))[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            points = self.kinks[None, :] / root
            widths = np.where(root > math.sqrt(Q_REFINE), 1.0 / root, np.inf)
        return _split_rule(np.nan_to_num(points), np.zeros_like(widths), widths)

    def _chunks(self, q: np.ndarray, derivative: bool) -> Any:
        """Yield (rows, nodes, weights, φ(√q z), φ′(√q z) or None) for chunks of the
        flattened ``q``; the rows that share the plain rule come apart from the others."""
        variances = np.asarray(q, dtype=np.float64).reshape(-1)
        flat = np.sqrt(variances)
        own = (variances > Q_REFINE) | bool(len(self.kinks))
        for group in (np.flatnonzero(~own), np.flatnonzero(own)):
            for start in range(0, len(group), CHUNK):
                rows = group[start : start + CHUNK]
                scale = torch.from_numpy(flat[rows])
                nodes, weights = self._rule(variances[rows])
                y, dy = self._evaluate(scale[:, None] * nodes, derivative)
                yield rows, nodes, weights, y, dy

    def _evaluate(self, u: Tensor, derivative: bool) -> tuple[Tensor, Tensor | None]:
        """φ(u) and, if asked, φ′(u) (float64), refusing what is not an elementwise function."""
        if derivative:
            u.requires_grad_(True)
        with torch.enable_grad() if derivative else torch.no_grad():
            try:
                # On a copy: a callable that works in place (a function calling
                # ``relu_``) must not write into the tensor whose derivative is taken.
                y = self.function(u.clone())
            except Exception as error:
                raise invalid_parameter(
                    "activation",
                    self.caller,
                    "a function of a float64 tensor",
                    self.name,
                    hint=str(error),
                ) from None
            if not isinstance(y, Tensor) or y.shape != u.shape:
                raise invalid_parameter(
                    "activation", self.caller, "an elementwise function", self.name
                )
            y = y.double()
            dy = None
            if derivative:
                (dy,) = torch.autograd.grad(y.sum(), u, allow_unused=True)
                dy = torch.zeros_like(u) if dy is None else dy
        return y.detach(), dy

    def _finite(self, *results: np.ndarray) -> None:
        """A NaN or Inf anywhere in φ or φ′ reaches the reductions: refuse it there."""
        if not all(np.isfinite(r).all() for r in results):
            raise invalid_parameter(
                "activation",
                self.caller,
                "an activation with finite values and derivative",
                self.name,
                hint="its mean-field maps do not exist",
            )

    def mean(self, q: np.ndarray) -> np.ndarray:
        """E[φ(√q z)] for each q, of the activation itself (centred or not)."""
        out = np.empty(np.size(q))
        for rows, _, weights, y, _ in self._chunks(q, derivative=False):
            out[rows] = _integrate(y, weights)
        self._finite(out)
        return out.reshape(np.shape(q))

    def mean_terms(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """E[φ(√q z)] and its derivative in q, E[φ′(√q z) z] / (2√q), for each q."""
        mean, mixed = np.empty(np.size(q)), np.empty(np.size(q))
        flat = np.asarray(q, dtype=np.float64).reshape(-1)
        for rows, nodes, weights, y, dy in self._chunks(q, derivative=True):
            mean[rows] = _integrate(y, weights)
            mixed[rows] = _integrate(dy, nodes * weights)
        self._finite(mean, mixed)
        shape = np.shape(q)
        return mean.reshape(shape), (mixed / (2 * np.sqrt(flat))).reshape(shape)

    def second(self, q: np.ndarray) -> np.ndarray:
        """E[φ(√q z)²] for each q (for a centred φ: its variance)."""
        out = np.empty(np.size(q))
        mean = np.zeros(np.size(q))
        for rows, _, weights, y, _ in self._chunks(q, derivative=False):
            out[rows] = _integrate(y * y, weights)
            if self.centred:
                mean[rows] = _integrate(y, weights)
        self._finite(out, mean)
        return (out - mean**2).reshape(np.shape(q))

    def variance_terms(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """E[φ(√q z)²], its derivative in q, and E[φ′(√q z)²]."""
        second, mixed, derivative = (np.empty(np.size(q)) for _ in range(3))
        mean, mean_mixed = np.zeros(np.size(q)), np.zeros(np.size(q))
        flat = np.asarray(q, dtype=np.float64).reshape(-1)
        for rows, nodes, weights, y, dy in self._chunks(q, derivative=True):
            second[rows] = _integrate(y * y, weights)
            mixed[rows] = _integrate(y * dy, nodes * weights)
            derivative[rows] = _integrate(dy * dy, weights)
            if self.centred:
                mean[rows] = _integrate(y, weights)
                mean_mixed[rows] = _integrate(dy, nodes * weights)
        self._finite(second, mixed, derivative, mean, mean_mixed)
        # dV/dq = E[φ φ′ z] / √q (= E[φ′² + φ φ″] by Stein's lemma, without φ″); centred,
        # V = E[φ²] − μ² with dμ/dq = E[φ′ z] / (2√q), so dV/dq loses 2μ dμ/dq = μ E[φ′ z] / √q.
        second = second - mean**2
        slope = (mixed - mean * mean_mixed) / np.sqrt(flat)
        shape = np.shape(q)
        return second.reshape(shape), slope.reshape(shape), derivative.reshape(shape)

    def hermite(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hermite coefficients of φ(√q ·), E[φ(√q z)²] and E[φ′(√q z)²], per q."""
        coefficients = np.empty((np.size(q), HERMITE_TERMS + 1))
        second, derivative = np.empty(np.size(q)), np.empty(np.size(q))
        for rows, nodes, weights, y, dy in self._chunks(q, derivative=True):
            if nodes.shape[1] == len(_Z):  # the shared rule
                coefficients[rows] = (y @ _BASIS_T).numpy()
            else:
                coefficients[rows] = _hermite_per_row(y, nodes, weights)
            second[rows] = _integrate(y * y, weights)
            derivative[rows] = _integrate(dy * dy, weights)
        self._finite(coefficients, second, derivative)
        if self.centred:  # φ − E[φ] has no constant Hermite term: a₀ = E[φ] is removed
            second = second - coefficients[:, 0] ** 2
            coefficients[:, 0] = 0.0
        return coefficients, second, derivative


def _display_name(activation: Activation, params: dict[str, Any]) -> str:
    if isinstance(activation, str):
        args = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        return f"{activation}({args})" if args else activation
    if isinstance(activation, nn.Module):
        return _activations.name_of(activation) or type(activation).__name__
    return str(getattr(activation, "__name__", repr(activation)))


# ------------------------------------------------------------- the variance map


#: Factor between the trials that bracket the variance fixed point.
_Q_STEP = math.sqrt(10.0)


def _turning_point(
    phi: _Phi, weight_var: np.ndarray, low: np.ndarray, high: np.ndarray, minimum: np.ndarray
) -> np.ndarray:
    """Where σ_w² V′(q) = 1 between exp(low) and exp(high), by bisection in log q.

    ``minimum``: g′ = σ_w² V′ − 1 goes from − to + (a minimum of g); else from + to −.
    """
    for _ in range(50):  # a bracket of ln √10 ≈ 1.15 to 1e-15
        mid = (low + high) / 2
        _, ds, _ = phi.variance_terms(np.exp(mid))
        right = (weight_var * ds - 1 > 0) == minimum  # the turn is left of mid
        high = np.where(right, mid, high)
        low = np.where(right, low, mid)
    result: np.ndarray = np.exp((low + high) / 2)
    return result


def _fixed_q(
    phi: _Phi, weight_var: np.ndarray, bias_var: np.ndarray, q0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """q* reached from q0, the variance map's slope there, E[φ′(√q* z)²], and where q* lies
    beyond the engine's range, vectorized.

    At q* = 0 the slope and E[φ′²] are their limits (taken at Q_MIN); at q* = ∞
    the slope is ∞ and E[φ′²] its value at Q_MAX. A variance that passes Q_MAX while
    the gap V(q) − q shrinks there (σ_w² V′ < 1: tanh at σ_w² > 1e8, whose q* ≈ σ_w²) is
    not unbounded but has its fixed point beyond Q_MAX: flagged, not called ∞.
    """
    n = weight_var.shape[0]
    s0, ds0, _ = phi.variance_terms(np.full(n, q0))
    g0 = weight_var * s0 + bias_var - q0
    up = g0 > 0
    # Bracket the nearest root in the direction the iterates move, by factors of √10:
    # ``edge`` is the last point on q0's side of it. Two roots between consecutive trials
    # (mish at σ_w² = 2, σ_b² = 0.1: q* = 1.22 and 4.6, both between 1 and 10) leave g's
    # sign unchanged; they show as a turn of g′ = σ_w² V′ − 1 between the trials (g has an
    # extremum there), whose value is then checked.
    active = np.abs(g0) > 1e-14 * max(q0, 1.0)
    edge = np.full(n, q0)
    edge_slope = weight_var * ds0 - 1
    lo = np.full(n, q0)
    hi = np.full(n, q0)
    zero = np.zeros(n, dtype=bool)
    infinite = np.zeros(n, dtype=bool)
    beyond = np.zeros(n, dtype=bool)
    searching = active.copy()
    while searching.any():
        index = np.flatnonzero(searching)
        rising = up[index]
        trial = np.where(rising, edge[index] * _Q_STEP, edge[index] / _Q_STEP)
        s, ds, _ = phi.variance_terms(trial)
        g = weight_var[index] * s + bias_var[index] - trial
        dg = weight_var[index] * ds - 1
        crossed = np.where(rising, g <= 0, g >= 0)
        lower = np.where(rising, edge[index], trial)
        upper = np.where(rising, trial, edge[index])
        # g′ < 0 at ``edge`` and > 0 at ``trial``: rising, a minimum of g between them;
        # falling (``trial`` below ``edge``), a maximum.
        turns = ~crossed & (edge_slope[index] < 0) & (dg > 0)
        if turns.any():
            sub = index[turns]
            extremum = _turning_point(
                phi, weight_var[sub], np.log(lower[turns]), np.log(upper[turns]), rising[turns]
            )
            s, _, _ = phi.variance_terms(extremum)
            g_extremum = weight_var[sub] * s + bias_var[sub] - extremum
            inside = np.where(rising[turns], g_extremum <= 0, g_extremum >= 0)
            # The first root lies between ``edge`` and the extremum.
            trial[turns] = np.where(inside, extremum, trial[turns])
            crossed[turns] = inside
            lower = np.where(rising, edge[index], trial)
            upper = np.where(rising, trial, edge[index])
        lo[index], hi[index] = lower, upper
        edge[index] = trial
        edge_slope[index] = dg
        infinite[index] |= rising & ~crossed & (trial >= Q_MAX)
        # Clearly contracting there (σ_w² V′ < ½: tanh, V′ → 0), the crossing is near; a
        # gap that only levels off (softplus at σ_w² = 2: g ≈ C/√q → 0⁺, σ_w² V′ → 1⁻)
        # never crosses: q* = ∞, as for ReLU above He's variance.
        beyond[index] |= rising & ~crossed & (trial >= Q_MAX) & (dg < -0.5)
        zero[index] |= ~rising & ~crossed & (trial <= Q_MIN)
        searching[index] = ~crossed & (trial < Q_MAX) & (trial > Q_MIN)
    # Safeguarded Newton inside [lo, hi] (g(lo) ≥ 0 ≥ g(hi)).
    solving = active & ~zero & ~infinite
    q = np.where(solving, (lo + hi) / 2, q0)
    for _ in range(100):
        index = np.flatnonzero(solving)
        if not len(index):
            break
        s, ds, _ = phi.variance_terms(q[index])
        g = weight_var[index] * s + bias_var[index] - q[index]
        dg = weight_var[index] * ds - 1
        positive = g > 0
        lo[index] = np.where(positive, q[index], lo[index])
        hi[index] = np.where(positive, hi[index], q[index])
        newton = q[index] - g / np.where(dg != 0, dg, -1.0)
        inside = (newton >= lo[index]) & (newton <= hi[index]) & (dg < 0)
        new = np.where(g == 0, q[index], np.where(inside, newton, (lo[index] + hi[index]) / 2))
        done = np.abs(new - q[index]) <= 1e-12 * new
        q[index] = new
        solving[index] = ~done & (hi[index] - lo[index] > 1e-14 * hi[index])
    q = np.where(zero, 0.0, np.where(infinite, np.inf, q))
    at = np.clip(q, Q_MIN, Q_MAX)
    _, slope, derivative = phi.variance_terms(at)
    slope = np.where(infinite, np.inf, weight_var * slope)
    return q, slope, derivative, beyond


# ---------------------------------------------------------- the correlation map


def _hermite(phi: _Phi, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Hermite coefficients of φ(√q ·), the tail's mass and its degree."""
    coefficients, second, derivative = phi.hermite(q)
    coefficients = coefficients**2
    slope = q * derivative  # Σ k aₖ² = E[(d/dz φ(√q z))²]
    tail = np.maximum(second - coefficients.sum(axis=-1), 0.0)
    tail_slope = np.maximum(slope - coefficients @ _DEGREES, 0.0)
    degree = np.where(tail > 0, tail_slope / np.where(tail > 0, tail, 1.0), 0.0)
    degree = np.maximum(degree, HERMITE_TERMS + 1.0)
    return coefficients, tail, degree


def _series(
    coefficients: np.ndarray,
    tail: np.ndarray,
    degree: np.ndarray,
    c: np.ndarray,
    *,
    per_row: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Σ aₖ² cᵏ + T c^κ and its derivative in c.

    ``coefficients`` has rows (n, K+1); ``c`` is either one shared 1-D grid
    (result (n, m)) or, with ``per_row``, one value per row, shape (n,) (result
    (n,)). Said, not guessed from the shapes: a grid as long as there are rows
    is still a grid.
    """
    c = np.asarray(c, dtype=np.float64)
    slopes = coefficients[:, 1:] * _DEGREES[1:]
    if per_row:
        grid = c[:, None]
        powers = c[:, None] ** _DEGREES  # (n, K+1)
        value = (powers * coefficients).sum(axis=1, keepdims=True)
        derivative = (powers[:, :-1] * slopes).sum(axis=1, keepdims=True)
    else:
        grid = c[None, :]
        table = _GRID_POWERS if c is _C_GRID else c[:, None] ** _DEGREES  # (m, K+1)
        value = coefficients @ table.T
        derivative = slopes @ table[:, :-1].T
    kappa = degree[:, None]
    magnitude = np.abs(grid) ** kappa
    sign = np.where(grid < 0, (-1.0) ** np.round(kappa), 1.0)
    value = value + tail[:, None] * sign * magnitude
    with np.errstate(divide="ignore", invalid="ignore"):
        below = np.where(grid != 0, sign * magnitude / grid, 0.0)
    derivative = derivative + tail[:, None] * kappa * below
    if per_row:
        return value[:, 0], derivative[:, 0]
    return value, derivative


def _fixed_c(
    coefficients: np.ndarray,
    tail: np.ndarray,
    degree: np.ndarray,
    weight_var: np.ndarray,
    bias_var: np.ndarray,
    q: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The largest stable fixed point c* < 1 of the correlation map and its slope (chaotic phase).

    ``h(c) = C(c) − c`` is negative just below 1 (C′(1) = χ₁ > 1) and
    ``h(−1) ≥ 0`` (|C| ≤ 1), so scanning down from 1 brackets the largest root,
    where ``C′ ≤ 1``; safeguarded Newton steps refine it.
    """
    grid = _C_GRID

    def h(c: np.ndarray, per_row: bool = True) -> tuple[np.ndarray, np.ndarray]:
        value, slope = _series(coefficients, tail, degree, c, per_row=per_row)
        if value.ndim == 2:
            mapped = (weight_var[:, None] * value + bias_var[:, None]) / q[:, None]
            return mapped - grid, weight_var[:, None] * slope / q[:, None] - 1
        return (weight_var * value + bias_var) / q - c, weight_var * slope / q - 1

    on_grid, _ = h(grid, per_row=False)
    below = on_grid[:, :-1] >= 0
    last = below.shape[1] - 1 - np.argmax(below[:, ::-1], axis=1)
    lo, hi = grid[last], grid[last + 1]
    c = (lo + hi) / 2
    for _ in range(100):
        value, slope = h(c)
        positive = value >= 0
        lo = np.where(positive, c, lo)
        hi = np.where(positive, hi, c)
        newton = c - value / np.where(slope != 0, slope, -1.0)
        # A step just past the bracket (round-off, a root on its end) is clipped into it;
        # one far outside falls back to bisection.
        inside = (newton >= lo - 1e-12) & (newton <= hi + 1e-12)
        done = np.abs(value) <= 1e-16
        new = np.where(done, c, np.where(inside, np.clip(newton, lo, hi), (lo + hi) / 2))
        converged = done | (np.abs(new - c) <= 1e-15)
        c = new
        if (converged | (hi - lo <= 1e-15)).all():
            break
    _, slope = h(c)
    return c, slope + 1


#: The series' c* is kept when its error bound is below this, and χ_c when its bound
#: moves ξ_c by less than this relative amount; else both come from :func:`_kernel_2d`.
C_TOLERANCE = 1e-10
XI_TOLERANCE = 1e-8
#: Outer nodes per block of the 2-D rule (block × inner nodes values at once).
_BLOCK_2D = 192


def _kernel_2d(phi: _Phi, q: float, c: float) -> tuple[float, float]:
    """E[φ(u₁)φ(u₂)] and E[φ′(u₁)φ′(u₂)] (centred: their covariances) by a product rule.

    ``u₁ = √q z₁``, ``u₂ = m + σ t`` with ``m = √q c z₁`` and ``σ = √q √(1−c²)``: for
    each outer node z₁ the inner expectation over t is a 1-D one, on the library's rule
    split at the kinks (k − m)/σ and refined around −m/σ over 1/σ, where φ(m + σ t)
    changes. The outer rule is split at the kinks k/√q and refined around them and 0 over
    the narrower of 1/√q (φ's changes) and √(1−c²) (those of the inner expectation, φ
    smoothed over σ). Exact to round-off wherever the 1-D rule is, whatever q and c.
    """
    root = math.sqrt(q)
    spread = root * math.sqrt(max(1.0 - c * c, 0.0))
    kinks = phi.kinks
    centres = np.concatenate([[0.0], kinks / root])[None, :]
    width = min(1.0 / root, math.sqrt(max(1.0 - c * c, 0.0)) / max(abs(c), 1e-300))
    outer, outer_weights = _split_rule(
        kinks[None, :] / root, centres, np.full_like(centres, width), _COARSE
    )
    used = outer_weights[0] > 0
    z, w = outer[0, used], outer_weights[0, used]
    value = slope = 0.0
    places = np.concatenate([[0.0], kinks])
    for start in range(0, len(z), _BLOCK_2D):
        z1, w1 = z[start : start + _BLOCK_2D], w[start : start + _BLOCK_2D]
        mean = root * c * z1.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (places[None, :] - mean[:, None]) / spread
        at = np.nan_to_num(at, nan=0.0, posinf=RANGE, neginf=-RANGE)
        inner, inner_weights = _split_rule(
            at[:, 1:], at, np.full_like(at, 1.0 / max(spread, 1e-300)), _COARSE
        )
        y, dy = phi._evaluate(torch.from_numpy(mean)[:, None] + spread * inner, True)
        assert dy is not None
        g = _integrate(y, inner_weights)
        dg = _integrate(dy, inner_weights)
        y1, dy1 = phi._evaluate(root * z1, True)
        assert dy1 is not None
        phi._finite(y.numpy(), dy.numpy(), y1.numpy(), dy1.numpy())
        value += float((w1 * y1 * g).sum())
        slope += float((w1 * dy1 * dg).sum())
    if phi.centred:
        value -= float(phi.mean(np.array([q]))[0]) ** 2
    return value, slope


def _series_error(
    tail: np.ndarray,
    degree: np.ndarray,
    weight_var: np.ndarray,
    q: np.ndarray,
    c: np.ndarray,
    chi_c: np.ndarray,
    chi_1: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the series' errors in c* and in ξ_c (relative), for 0 ≤ c* < 1.

    The missing terms Σ_{k>K} aₖ² cᵏ and their slope Σ k aₖ² cᵏ⁻¹ lie in [0, T cᴷ⁺¹] and
    [0, S cᴷ] (T, S: the missing mass and slope, known exactly at c = 1), as does the
    tail term put in their place; so the map errs by at most ε = σ_w² T cᴷ⁺¹ / q* and
    its slope by σ_w² S cᴷ / q*. c* moves by ε / (1 − χ_c), and χ_c also by C″ times that,
    with C″(c*) ≤ (χ₁ − χ_c) / (1 − c*) (C′ is convex on [0, 1]).
    """
    c = np.clip(c, 0.0, 1.0)
    power = c**HERMITE_TERMS
    value = weight_var * tail * power * c / q
    slope = weight_var * tail * degree * power / q
    gap = np.maximum(1 - chi_c, 1e-300)
    c_error = value / gap
    chi_error = slope + (chi_1 - chi_c) / np.maximum(1 - c, 1e-300) * c_error
    with np.errstate(divide="ignore"):
        xi_error = chi_error / np.abs(chi_c * np.log(np.maximum(chi_c, 1e-300)))
    return c_error, xi_error


def _refine_c(
    phi: _Phi,
    coefficients: np.ndarray,
    tail: np.ndarray,
    degree: np.ndarray,
    weight_var: float,
    bias_var: float,
    q: float,
    c: float,
) -> tuple[float, float]:
    """c* and χ_c on the exact map (:func:`_kernel_2d`), from the series' c*.

    The series' map S is off by a small, slowly varying amount (its missing high
    terms): each step evaluates the exact map h = C − c and its slope at x, and solves
    S(c) − c + δ + δ′ (c − x) = 0, with δ, δ′ the gap to the series at x. The gap's
    curvature is far below C's (near c = 1, C″ ≈ 300 at GELU's q* = 195), so this
    converges in about three exact evaluations where Newton steps on h take six.
    """
    weights, biases = np.array([weight_var]), np.array([bias_var])

    def series(x: float) -> tuple[float, float]:
        value, slope = _series(coefficients, tail, degree, np.array([x]), per_row=True)
        return (
            float((weights * value + biases)[0] / q - x),
            float(weights[0] * slope[0] / q - 1),
        )

    x = c
    slope = math.nan
    for _ in range(8):
        value, slope = _kernel_2d(phi, q, x)
        h, dh = (weight_var * value + bias_var) / q - x, weight_var * slope - 1
        s, ds = series(x)
        gap, gap_slope = h - s, dh - ds
        target = x
        for _ in range(60):  # Newton on the model, a convex function left of its minimum
            s, ds = series(target)
            model = s + gap + gap_slope * (target - x)
            model_slope = ds + gap_slope
            if model_slope >= 0:
                break
            step = -model / model_slope
            target = min(max(target + step, 0.0), 1.0)
            if abs(step) <= 1e-16:
                break
        moved = abs(target - x)
        x = target
        if moved <= 1e-12:
            break
    return x, weight_var * slope


# ------------------------------------------------------------------- results


@dataclass(frozen=True)
class MeanField:
    """The mean-field quantities of one (activation, σ_w², σ_b²).

    Attributes:
        activation: Its name.
        weight_var: σ_w² (the weights' variance times fan_in).
        bias_var: σ_b².
        q_star: The pre-activations' variance fixed point reached from
            ``input_var`` (0: the signal fades; ``inf``: it grows without bound).
        q_slope: Slope of the variance map at ``q_star``.
        q_stable: Whether ``q_star`` is finite and attracts (slope ≤ 1).
        chi_1: σ_w² E[φ′(√q* z)²]: the correlation map's slope at c = 1 and the
            mean squared gradient's growth per layer backward.
        c_star: The correlation map's stable fixed point (1 unless chaotic;
            NaN when q* = ∞).
        chi_c: The correlation map's slope at ``c_star``.
        xi_q: Depth scale of the variance, −1/ln(q_slope) (``inf`` when
            marginal, NaN when unstable).
        xi_c: Depth scale of the correlation, −1/ln(chi_c); where the variance
            grows without bound, 1/|ln χ₁|, the gradient's.
        phase: ``"ordered"``, ``"critical"`` or ``"chaotic"``, by χ₁ (see
            :data:`CRITICAL_TOLERANCE`).
        correlation_error: Bound on the correlation map's absolute error for
            c ≥ 0 (σ_w² times the Hermite series' missing mass, over q*);
            twice it for c < 0.

    Examples:
        >>> import signalprop as sp
        >>> mf = sp.meanfield.analyze('relu', weight_var=2.0)
        >>> mf.phase, round(mf.chi_1, 6)
        ('critical', 1.0)
    """

    activation: str
    weight_var: float
    bias_var: float
    q_star: float
    q_slope: float
    q_stable: bool
    chi_1: float
    c_star: float
    chi_c: float
    xi_q: float
    xi_c: float
    phase: str
    correlation_error: float

    @property
    def trainable_depth(self) -> float:
        """:data:`TRAINABLE_DEPTH_FACTOR` × ξ_c: the depth up to which such a net trains."""
        return TRAINABLE_DEPTH_FACTOR * self.xi_c

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trainable_depth": self.trainable_depth}

    def summary(self) -> str:
        """One line: ``tanh, σ_w² = 2.54, σ_b² = 0: chaotic (χ₁ = 1.18), ξ_c = 13.8, …``."""
        return (
            f"{self.activation}, σ_w² = {self.weight_var:.4g}, σ_b² = {self.bias_var:.4g}: "
            f"{self.phase} (χ₁ = {self.chi_1:.4g}), q* = {self.q_star:.4g}"
            f"{'' if self.q_stable else ' (unstable)'}, c* = {self.c_star:.4g}, "
            f"ξ_c = {_shown(self.xi_c)}, trainable depth ≈ {_shown(self.trainable_depth)}"
        )

    def __str__(self) -> str:
        return self.summary()


def _shown(value: float) -> str:
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}" if value < 1e4 else f"{value:.2e}"


#: A slope this close to 1 is 1: the limits q* → 0 are taken at Q_MIN, off by O(Q_MIN).
_MARGINAL = 1e-9


def _depth_scale(slope: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = -1.0 / np.log(slope)
    scale = np.where(np.abs(slope - 1) < _MARGINAL, np.inf, scale)
    return np.where(slope > 1 + _MARGINAL, np.nan, scale)


def _phase(chi_1: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(chi_1)
    return np.where(
        np.abs(log) <= CRITICAL_TOLERANCE, "critical", np.where(log < 0, "ordered", "chaotic")
    )


def _solve(
    phi: _Phi, weight_var: np.ndarray, bias_var: np.ndarray, input_var: float
) -> dict[str, np.ndarray]:
    """Every mean-field quantity for flat arrays of (σ_w², σ_b²)."""
    q, q_slope, derivative, beyond = _fixed_q(phi, weight_var, bias_var, input_var)
    chi_1 = weight_var * derivative
    n = len(q)
    c_star = np.ones(n)
    chi_c = chi_1.copy()
    error = np.zeros(n)
    finite = np.isfinite(q) & (q > 0)
    if finite.any():
        index = np.flatnonzero(finite)
        coefficients, tail, degree = _hermite(phi, q[index])
        error[index] = weight_var[index] * tail / q[index]
        chaotic = chi_1[index] > 1 + 1e-12
        if chaotic.any():
            sub = index[chaotic]
            c, slope = _fixed_c(
                coefficients[chaotic],
                tail[chaotic],
                degree[chaotic],
                weight_var[sub],
                bias_var[sub],
                q[sub],
            )
            c_star[sub], chi_c[sub] = c, slope
            c_error, xi_error = _series_error(
                tail[chaotic], degree[chaotic], weight_var[sub], q[sub], c, slope, chi_1[sub]
            )
            loose = np.flatnonzero((c_error > C_TOLERANCE) | (xi_error > XI_TOLERANCE))
            for at in loose:
                row, keep = sub[at], slice(at, at + 1)
                refined_c, refined_chi = _refine_c(
                    phi,
                    coefficients[chaotic][keep],
                    tail[chaotic][keep],
                    degree[chaotic][keep],
                    weight_var[row],
                    bias_var[row],
                    q[row],
                    c[at],
                )
                # Just above χ₁ = 1, c* is within round-off of 1 and the 2-D rule cannot
                # tell it from 1 (its slope there is χ₁ > 1): the series' c* is kept.
                if refined_c < 1 - 1e-12 and refined_chi < 1:
                    c_star[row], chi_c[row] = refined_c, refined_chi
    unbounded = np.isinf(q)
    c_star[unbounded] = np.nan
    xi_c = _depth_scale(chi_c)
    # χ₁ within ~1e-8 above 1: c* is within round-off of 1, where the map's slope is χ₁;
    # the depth scale diverges there as at the critical line (not NaN).
    xi_c = np.where((c_star > 1 - 1e-9) & (chi_c > 1) & (chi_1 < 1 + 1e-6), np.inf, xi_c)
    with np.errstate(divide="ignore"):
        gradient_scale = np.where(
            np.abs(np.log(chi_1)) > 1e-12, 1.0 / np.abs(np.log(chi_1)), np.inf
        )
    xi_c = np.where(unbounded, gradient_scale, xi_c)
    chi_c[unbounded] = np.nan
    return {
        "q_star": q,
        "q_slope": q_slope,
        "q_stable": np.isfinite(q) & (q_slope <= 1 + 1e-9),
        "chi_1": chi_1,
        "c_star": c_star,
        "chi_c": chi_c,
        "xi_q": _depth_scale(q_slope),
        "xi_c": xi_c,
        "phase": _phase(chi_1),
        "correlation_error": error,
        "beyond": beyond,
    }


def _refuse_beyond(beyond: np.ndarray, weight_var: Any, param: str, caller: str) -> None:
    """Refuse points whose variance fixed point lies beyond :data:`Q_MAX`."""
    if beyond.any():
        raise invalid_parameter(
            param,
            caller,
            f"a point whose variance fixed point q* is at most Q_MAX = {Q_MAX:g} (or unbounded)",
            weight_var,
            hint="The variance map still crosses the diagonal beyond it: q* is finite but "
            "out of the engine's range.",
        )


def _check_variances(weight_var: Any, bias_var: Any, caller: str) -> tuple[float, float]:
    weight_var = check_real(
        weight_var, param="weight_var", caller=caller, low=0, low_inclusive=False
    )
    bias_var = check_real(bias_var, param="bias_var", caller=caller, low=0)
    return weight_var, bias_var


def analyze(
    activation: Activation,
    weight_var: float,
    bias_var: float = 0.0,
    *,
    input_var: float = 1.0,
    centred: bool = False,
    **params: Any,
) -> MeanField:
    """The mean-field quantities of a deep dense stack of one activation.

    Args:
        activation: A name (with ``params``, e.g. ``alpha=0.2``), a module or
            an elementwise callable; non-centred ones (the logistic) included.
        weight_var: σ_w²: the weights' variance times fan_in (1 LeCun, 2 He).
        bias_var: σ_b²: the biases' variance.
        input_var: The first pre-activations' variance, from which the
            variance fixed point is reached.
        centred: Analyze ``φ − E[φ(√q z)]``: each layer's biases also hold
            ``−W·E[φ]𝟙``, which cancels the activation's mean in the next
            layer's input (see :func:`activation_mean`).
        **params: Arguments of a named activation.

    Returns:
        A :class:`MeanField`.

    Examples:
        >>> mf = analyze("relu", 2.0)
        >>> mf.phase, round(mf.chi_1, 12), mf.xi_c
        ('critical', 1.0, inf)
    """
    caller = "meanfield.analyze"
    weight_var, bias_var = _check_variances(weight_var, bias_var, caller)
    input_var = check_real(input_var, param="input_var", caller=caller, low=0, low_inclusive=False)
    phi = _Phi(activation, params, caller, centred)
    solved = _solve(phi, np.array([weight_var]), np.array([bias_var]), input_var)
    _refuse_beyond(solved.pop("beyond"), weight_var, "weight_var", caller)
    values = {key: value[0].item() for key, value in solved.items()}
    return MeanField(
        activation=phi.name,
        weight_var=weight_var,
        bias_var=bias_var,
        **values,
    )


def trainable_depth(
    activation: Activation,
    weight_var: float,
    bias_var: float = 0.0,
    *,
    centred: bool = False,
    **params: Any,
) -> float:
    """The depth up to which a dense stack is expected to train: 6 ξ_c.

    Schoenholz et al. (2017, "Deep information propagation", Figs. 5–6) trained
    tanh networks over a grid of σ_w² and depth on MNIST and CIFAR-10 and
    found the trainable region bounded by ``L ≈ 6 ξ_c``
    (:data:`TRAINABLE_DEPTH_FACTOR`). ``inf`` at the edge of chaos.

    Examples:
        >>> round(trainable_depth("tanh", 2.54))
        83
    """
    return analyze(activation, weight_var, bias_var, centred=centred, **params).trainable_depth


def variance_map(
    activation: Activation,
    weight_var: float,
    bias_var: float,
    q: float | Sequence[float] | np.ndarray,
    *,
    centred: bool = False,
    **params: Any,
) -> np.ndarray:
    """``σ_w² E[φ(√q z)²] + σ_b²`` for each ``q`` (an array of the same shape).

    With ``centred``, φ − E[φ(√q z)]: ``σ_w² Var[φ(√q z)] + σ_b²``.

    Examples:
        >>> import signalprop as sp
        >>> sp.meanfield.variance_map('relu', 2.0, 0.0, [0.5, 1.0])   # He: q maps to itself
        array([0.5, 1. ])
    """
    caller = "meanfield.variance_map"
    weight_var, bias_var = _check_variances(weight_var, bias_var, caller)
    q_array = np.asarray(q, dtype=np.float64)
    if (q_array < 0).any() or not np.isfinite(q_array).all():
        raise invalid_parameter("q", caller, "finite variances >= 0", q)
    second, _, _ = _Phi(activation, params, caller, centred).variance_terms(q_array)
    return weight_var * second + bias_var


def kernel(
    activation: Activation,
    q: float,
    c: float | Sequence[float] | np.ndarray,
    *,
    centred: bool = False,
    **params: Any,
) -> np.ndarray:
    """``E[φ(u₁)φ(u₂)]`` (``centred``: their covariance) for ``(u₁, u₂)``.

    The two have variance ``q`` and correlation ``c``.

    Computed by Mehler's series (see the module's notes); exact at ``c = 1``.

    Examples:
        >>> import math
        >>> round(float(kernel("relu", 1.0, 0.0)) * 2 * math.pi, 12)
        1.0
    """
    caller = "meanfield.kernel"
    q = check_real(q, param="q", caller=caller, low=0, low_inclusive=False)
    c_array = np.asarray(c, dtype=np.float64)
    if not (np.abs(c_array) <= 1).all():  # NaN included
        raise invalid_parameter("c", caller, "correlations in [-1, 1]", c)
    phi = _Phi(activation, params, caller, centred)
    coefficients, tail, degree = _hermite(phi, np.array([q]))
    value, _ = _series(coefficients, tail, degree, c_array.reshape(-1))
    return value.reshape(c_array.shape)


def correlation_map(
    activation: Activation,
    weight_var: float,
    bias_var: float,
    c: float | Sequence[float] | np.ndarray,
    *,
    centred: bool = False,
    **params: Any,
) -> np.ndarray:
    """``(σ_w² E[φ(u₁)φ(u₂)] + σ_b²) / q*`` for each ``c``, at the variance fixed point.

    Raises:
        ValueError: When ``q*`` is 0 or infinite (the map is then undefined).

    Examples:
        >>> import signalprop as sp
        >>> sp.meanfield.correlation_map('tanh', 1.761, 0.05, [0.0, 0.5, 1.0]).round(4)
        array([0.0877, 0.5292, 1.    ])
    """
    caller = "meanfield.correlation_map"
    weight_var, bias_var = _check_variances(weight_var, bias_var, caller)
    mf = analyze(activation, weight_var, bias_var, centred=centred, **params)
    if not (0 < mf.q_star < math.inf):
        raise invalid_parameter(
            "weight_var",
            caller,
            "a point with a finite, non-zero variance fixed point",
            weight_var,
            hint=f"q* = {mf.q_star} there",
        )
    value = kernel(activation, mf.q_star, c, centred=centred, **params)
    return (weight_var * value + bias_var) / mf.q_star


#: _Phi objects by activation (its key: class, arguments, parameter values), for the
#: calls made once per layer and per diagnosis (the residual stream's prediction).
_PHIS: dict[Any, _Phi] = {}
#: At most this many are kept; past it the cache starts again.
_PHIS_LIMIT = 256


def _cached_phi(activation: Activation, params: dict[str, Any], caller: str, centred: bool) -> _Phi:
    """``_Phi(activation, params, caller, centred)``, built once per activation."""
    try:
        key = (
            _activations.activation_key(activation),
            tuple(sorted(params.items())),
            caller,
            centred,
        )
        hash(key)
    except TypeError:  # unhashable arguments: built each time
        return _Phi(activation, params, caller, centred)
    phi = _PHIS.get(key)
    if phi is None:
        if len(_PHIS) >= _PHIS_LIMIT:
            _PHIS.clear()
        phi = _PHIS[key] = _Phi(activation, params, caller, centred)
    return phi


def second_moments(
    activation: Activation, q: float, *, centred: bool = False, **params: Any
) -> tuple[float, float]:
    """``(E[φ(√q z)²], E[φ′(√q z)²])``: what a layer reading φ's output sees, forward and back.

    A layer with weights of variance σ_w²/fan_in reading φ's outputs gets
    pre-activations of variance σ_w² E[φ(√q z)²] (+ σ_b²), and multiplies the
    mean squared gradient by σ_w² E[φ′(√q z)²] on its way down.

    Examples:
        >>> [round(v, 12) for v in second_moments("relu", 1.0)]
        [0.5, 0.5]
    """
    caller = "meanfield.second_moments"
    q = check_real(q, param="q", caller=caller, low=0)
    second, _, derivative = _cached_phi(activation, params, caller, centred).variance_terms(
        np.array([max(q, Q_MIN)])
    )
    return float(second[0]), float(derivative[0])


def phase_of(chi: float) -> str:
    """``"ordered"``, ``"critical"`` or ``"chaotic"`` for a gradient factor χ per layer.

    Examples:
        >>> import signalprop as sp
        >>> sp.meanfield.phase_of(0.5), sp.meanfield.phase_of(1.0), sp.meanfield.phase_of(1.5)
        ('ordered', 'critical', 'chaotic')
    """
    return str(_phase(np.array([chi]))[0])


# -------------------------------------------------------------- the edge of chaos


#: Variances scanned for the critical line, 20 per decade.
_Q_SCAN = np.geomspace(1e-8, 1e4, 241)
#: |χ₁ − 1| below this at both ends of a scan step is round-off, not a crossing.
_CHI_NOISE = 1e-7


def _critical(phi: _Phi, bias_vars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(σ_w², q*) on the critical line for each σ_b² (NaN where there is none).

    A critical point is a *stable* fixed point q* of the variance map with
    χ₁ = 1. Parametrized by q, the fixed point needs σ_w²(q) = (q − σ_b²) / V(q)
    with V(q) = E[φ(√q z)²], so the line is found by scanning q for the first
    stable root of χ₁(q) = σ_w²(q) E[φ′(√q z)²] = 1 and bisecting in log q.
    Two limits are kept: an activation for which χ₁ ≡ 1 at σ_b² = 0 (the ReLU
    family, linear: every q is critical) gets q* = 1; one whose χ₁ tends to 1
    as q → 0 at σ_b² = 0 with a stable limit (tanh at σ_w² = 1, ELU, SELU)
    gets q* = 0, the signal then fading as a power of depth.
    """
    second, slope, derivative = phi.variance_terms(_Q_SCAN)
    b = bias_vars[:, None]
    valid = _Q_SCAN[None, :] > b
    w = np.where(valid, (_Q_SCAN - b) / second, np.nan)
    chi = w * derivative
    stable = w * slope <= 1 + 1e-9
    with np.errstate(invalid="ignore"):
        crossing = (
            valid[:, :-1]
            & valid[:, 1:]
            & ((chi[:, :-1] - 1) * (chi[:, 1:] - 1) <= 0)
            & stable[:, :-1]
            & stable[:, 1:]
            & ((np.abs(chi[:, :-1] - 1) > _CHI_NOISE) | (np.abs(chi[:, 1:] - 1) > _CHI_NOISE))
        )
    weight_vars = np.full(len(bias_vars), np.nan)
    q_stars = np.full(len(bias_vars), np.nan)
    rows = np.flatnonzero(crossing.any(axis=1))
    if len(rows):
        first = np.argmax(crossing[rows], axis=1)
        lo, hi = np.log(_Q_SCAN[first]), np.log(_Q_SCAN[first + 1])
        rb = bias_vars[rows]
        below = chi[rows, first] < 1
        for _ in range(60):  # bisection in log q to round-off
            mid = (lo + hi) / 2
            s, _, d = phi.variance_terms(np.exp(mid))
            side = (np.exp(mid) - rb) / s * d < 1
            lo = np.where(side == below, mid, lo)
            hi = np.where(side == below, hi, mid)
        q = np.exp((lo + hi) / 2)
        weight_vars[rows], q_stars[rows] = (q - rb) / phi.second(q), q
    flat = np.all(np.abs(chi - 1) < 1e-9, axis=1, where=valid) & (bias_vars == 0)
    if flat.any():
        weight_vars[flat], q_stars[flat] = 1.0 / phi.second(np.array([1.0]))[0], 1.0
    limit = np.isnan(weight_vars) & (bias_vars == 0) & (np.abs(chi[:, 0] - 1) < 1e-6) & stable[:, 0]
    weight_vars[limit], q_stars[limit] = Q_MIN / phi.second(np.array([Q_MIN]))[0], 0.0
    return weight_vars, q_stars


def critical_weight_var(
    activation: Activation,
    bias_var: float | None = None,
    *,
    centred: bool = False,
    **params: Any,
) -> float | None:
    """σ_w² on the critical line (χ₁ = 1 with a finite q*) at ``bias_var``; None if none.

    Args:
        activation: Name (with ``params``), module or callable.
        bias_var: σ_b²; default :func:`default_bias_var` of the activation.

    Examples:
        >>> round(critical_weight_var("relu"), 12)
        2.0
        >>> critical_weight_var("relu", bias_var=0.1) is None
        True
    """
    caller = "meanfield.critical_weight_var"
    phi = _Phi(activation, params, caller, centred)
    _, weight_var, _ = _critical_point(phi, bias_var, caller)
    return None if math.isnan(weight_var) else weight_var


def critical_line(
    activation: Activation,
    bias_vars: Sequence[float] | np.ndarray,
    *,
    centred: bool = False,
    **params: Any,
) -> np.ndarray:
    """σ_w² on the critical line for each σ_b² (NaN where no critical point exists).

    Examples:
        >>> import signalprop as sp
        >>> sp.meanfield.critical_line('tanh', [0.0, 0.05]).round(4)   # σ_w² with χ₁ = 1
        array([1.   , 1.761])
    """
    caller = "meanfield.critical_line"
    b = np.asarray(bias_vars, dtype=np.float64).reshape(-1)
    if (b < 0).any() or not np.isfinite(b).all():
        raise invalid_parameter("bias_vars", caller, "finite variances >= 0", bias_vars)
    return _critical(_Phi(activation, params, caller, centred), b)[0]


#: σ_b² tried in turn when σ_b² = 0 has no critical point that keeps a signal: the
#: first that has one bounds the search for the smallest σ_b² that does.
BIAS_VARS_TRIED = (DEFAULT_BIAS_VAR, 0.1, 0.2, 0.5, 1.0, 2.0)
#: A default critical point keeps q* above this (below it the signal has all but faded).
_USABLE_Q = 1e-3
#: The variance map's slope a default critical point may have at q* at most. The
#: smallest σ_b² with a stable critical point (GELU ≈ 0.173, SiLU ≈ 0.555, mish ≈ 0.07)
#: has slope 1 there: the stable root is born tangent to the diagonal, q* is only
#: half-stable and attracts as 1/depth, and a finite-width fluctuation to the wrong side
#: sends the variance away. Slope ≤ 0.99 gives ξ_q ≤ 100 layers at a σ_b² a little above
#: the threshold (GELU ≈ 0.21, SiLU ≈ 0.63).
_DEFAULT_MAX_SLOPE = 0.99


def _usable(phi: _Phi, bias_vars: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(usable, σ_w², q*) per σ_b²: a critical point with q* > _USABLE_Q and slope ≤ 0.99."""
    weight_vars, q_stars = _critical(phi, bias_vars)
    usable = ~np.isnan(weight_vars) & (q_stars > _USABLE_Q)
    if usable.any():
        _, slope, _ = phi.variance_terms(np.where(usable, q_stars, 1.0))
        usable &= weight_vars * slope <= _DEFAULT_MAX_SLOPE
    return usable, weight_vars, q_stars


def _default_point(phi: _Phi) -> tuple[float, float, float]:
    """(σ_b², σ_w², q*) of the default edge of chaos; σ_w² and q* NaN where there is none.

    σ_b² = 0 when its critical point keeps a signal (the ReLU family, where every q is
    critical, is taken as it is); else :data:`DEFAULT_BIAS_VAR` when its critical point is
    usable (see :func:`_usable`); else the smallest usable σ_b², bisected between the last
    of :data:`BIAS_VARS_TRIED` without one and the first with one, to relative 1e-5.
    """
    weight_vars, q_stars = _critical(phi, np.array([0.0]))
    if not np.isnan(weight_vars[0]) and q_stars[0] > _USABLE_Q:
        return 0.0, float(weight_vars[0]), float(q_stars[0])
    candidates = np.array(BIAS_VARS_TRIED)
    usable, weight_vars, q_stars = _usable(phi, candidates)
    if not usable.any():
        return DEFAULT_BIAS_VAR, math.nan, math.nan
    first = int(np.argmax(usable))
    if first == 0:
        return float(candidates[0]), float(weight_vars[0]), float(q_stars[0])
    lo, hi = float(candidates[first - 1]), float(candidates[first])
    point = (hi, float(weight_vars[first]), float(q_stars[first]))
    for _ in range(4):  # 16 σ_b² at once (one vectorized scan): relative 1e-5 after 4
        grid = np.linspace(lo, hi, 18)[1:-1]
        ok, w, q = _usable(phi, grid)
        if ok.any():
            at = int(np.argmax(ok))
            lo, hi = (lo if at == 0 else float(grid[at - 1])), float(grid[at])
            point = (hi, float(w[at]), float(q[at]))
        else:
            lo = float(grid[-1])
    return point


def _critical_point(phi: _Phi, bias_var: float | None, caller: str) -> tuple[float, float, float]:
    """(σ_b², σ_w², q*) on the critical line at ``bias_var`` (None: the default σ_b²)."""
    if bias_var is None:
        return _default_point(phi)
    bias_var = check_real(bias_var, param="bias_var", caller=caller, low=0)
    weight_vars, q_stars = _critical(phi, np.array([bias_var]))
    return bias_var, float(weight_vars[0]), float(q_stars[0])


def default_bias_var(activation: Activation, *, centred: bool = False, **params: Any) -> float:
    """The σ_b² signalprop initializes at the edge of chaos with, when none is given.

    0 where the critical point at σ_b² = 0 keeps a signal (the ReLU family:
    He's variance, q* = 1; the logistic). Otherwise :data:`DEFAULT_BIAS_VAR`
    (0.05, where Schoenholz et al. train tanh) if it has a critical point with
    q* > 1e-3 at which the variance map's slope is at most 0.99: at σ_b² = 0
    the critical point of tanh, ELU and SELU has q* = 0 (the signal fades with
    depth). Otherwise the smallest σ_b² with such a point, found by bisection:
    GELU, SiLU and mish have no *stable* critical point below σ_b² ≈ 0.173,
    0.555 and 0.07, where it is born with slope 1 (half-stable, attracting only
    as 1/depth), so the default sits a little above (≈ 0.21, 0.63 and 0.11),
    where the variance settles within ξ_q ≤ 100 layers.
    :data:`DEFAULT_BIAS_VAR` when there is none at all (softplus).

    Examples:
        >>> default_bias_var("relu"), default_bias_var("tanh")
        (0.0, 0.05)
    """
    return _default_point(_Phi(activation, params, "meanfield.default_bias_var", centred))[0]


CRITERIA = ("critical", "variance")
"""Criteria for choosing (σ_w², σ_b²) for an activation; see :func:`init_point`.

Examples:
    >>> import signalprop as sp
    >>> sp.meanfield.CRITERIA
    ('critical', 'variance')
"""


@dataclass(frozen=True)
class InitPoint:
    """Where a criterion puts a layer that feeds an activation.

    Attributes:
        activation: Its name.
        criterion: ``"critical"`` or ``"variance"``.
        weight_var: σ_w²: weights of variance ``weight_var / fan_in``.
        bias_var: σ_b²: biases drawn from N(0, bias_var) (0: zeros).
        q_star: The pre-activations' variance the criterion keeps (1 for
            ``"variance"``).
        note: Why this point, when it is not the plain rule (SELU's fixed
            point; no critical point; a variance point that needs a bias to
            be stable).
        fallback: True when the critical criterion found no critical point
            and this is the variance point instead.
        centred: Whether the point is that of the centred activation
            ``φ − E[φ]``: a layer *reading* φ's output then also gets the
            bias ``−W·E[φ(√q* z)]𝟙``, which cancels the mean (see
            :func:`centres`).
        mean: ``E[φ(√q* z)]``, the mean a reading layer's bias cancels when
            ``centred``.

    Examples:
        >>> import signalprop as sp
        >>> point = sp.meanfield.init_point('tanh')   # critical, at the default σ_b²
        >>> round(point.weight_var, 3), point.bias_var
        (1.761, 0.05)
    """

    activation: str
    criterion: str
    weight_var: float
    bias_var: float
    q_star: float
    note: str = ""
    fallback: bool = False
    centred: bool = False
    mean: float = 0.0


#: An activation whose mean at unit variance is more than this many times its standard
#: deviation is centred by default: its shared mean dominates every next layer's input.
MEAN_DOMINATES = 1.0


def centres(activation: Activation, **params: Any) -> bool:
    """Whether signalprop cancels ``activation``'s mean by default (:func:`init_point`).

    An activation with a non-zero mean μ = E[φ] gives every unit of the next
    layer the same input component μ𝟙, which no σ_w² removes. Biases
    ``b = −W·μ𝟙`` cancel it, and the next layer then sees ``φ − μ``: for the
    logistic ``σ(x) − ½ = tanh(x/2)/2``, critical like tanh (σ_w² = 16 at
    σ_b² = 0). Centred by default are the activations that need it:

    those whose mean at unit variance exceeds their standard deviation
    (:data:`MEAN_DOMINATES`) and does not change with the variance: the
    logistic and hard sigmoid, whose mean is ½ at every q, so the biases'
    cancellation survives training. Softplus's mean grows with q (0.60 at
    q = 0.25, 1.13 at 4): centred, every critical point it has either leaves
    its basin at width 100 (σ_b² 0.05) or diverged in training within 4 SGD
    steps at lr 1e-3 (σ_b² 0.5 and 2, 100 layers), so it is not centred and
    keeps its note that it has no critical point. GELU, SiLU
    and mish keep their uncentred edge of chaos: centred, their critical
    points (σ_w² 2.7, 3.1, 2.3 at σ_b² = 0.05) have a variance map within 3 %
    of the identity from q* to 10 q*, so that at width 100 the variance drifts
    away from q* (measured: 0.3 to 6e8 over 100 GELU layers).

    An odd activation (tanh) is unchanged by centring; SELU's mean is zero at
    q = 1, its own fixed point, and it is not centred; the ReLU family keeps
    He's point, its uncentred edge of chaos at σ_b² = 0.

    Examples:
        >>> centres("sigmoid"), centres("tanh"), centres("relu")
        (True, False, False)
    """
    caller = "meanfield.centres"
    phi = _Phi(activation, params, caller)
    mean = float(phi.mean(np.array([1.0]))[0])
    variance = float(phi.second(np.array([1.0]))[0]) - mean**2
    if abs(mean) <= MEAN_DOMINATES * math.sqrt(max(variance, 0.0)):
        return False
    # Biases cancel the mean at one variance; training moves the variance, so the
    # cancellation lasts only where the mean does not depend on it (φ(x) + φ(−x)
    # constant: the logistic, hard sigmoid). Softplus's mean grows with q: centred at
    # σ_b² 0.05, 0.5 and 2 its 100-layer stack reached a NaN loss within 4 SGD steps.
    means = phi.mean(np.array([0.25, 4.0]))
    return bool(abs(means[1] - means[0]) <= 1e-6 * abs(mean))


def activation_mean(activation: Activation, q: float, **params: Any) -> float:
    """``E[φ(√q z)]``: the mean a layer's bias cancels when φ is centred.

    Examples:
        >>> round(activation_mean("sigmoid", 4.0), 12)
        0.5
    """
    caller = "meanfield.activation_mean"
    q = check_real(q, param="q", caller=caller, low=0)
    return float(_Phi(activation, params, caller).mean(np.array([max(q, Q_MIN)]))[0])


def _variance_point(phi: _Phi) -> InitPoint:
    """q* = 1 at a stable fixed point: σ_w² = 1/E[φ(z)²] with zero biases where that is stable.

    The variance map's slope at q = 1 is σ_w² V′(1) = V′(1)/V(1) with zero biases. Above 1
    (GELU 1.14, SiLU 1.17, mish 1.08: their V(q)/q grows at every q, so no σ_w² gives
    them a stable fixed point without a bias) the pre-activations' variance runs away
    from 1 with depth. Then σ_w² = 0.99/V′(1) and σ_b² = 1 − σ_w² V(1) keep q* = 1 with
    slope 0.99 (:data:`_DEFAULT_MAX_SLOPE`: deviations decay within ξ_q ≈ 100 layers).
    """
    second, slope, _ = phi.variance_terms(np.array([1.0]))
    weight_var = 1.0 / float(second[0])
    unstable = weight_var * float(slope[0])
    if unstable <= 1 + _MARGINAL:
        return InitPoint(phi.name, "variance", weight_var, 0.0, 1.0)
    stable_weight_var = _DEFAULT_MAX_SLOPE / float(slope[0])
    bias_var = 1.0 - stable_weight_var * float(second[0])
    return InitPoint(
        phi.name,
        "variance",
        stable_weight_var,
        bias_var,
        1.0,
        note=f"σ_w² = 1/E[φ(z)²] = {weight_var:.4g} makes q = 1 unstable (variance-map "
        f"slope {unstable:.3g} > 1): σ_w² = {stable_weight_var:.4g} with "
        f"σ_b² = {bias_var:.3g} keeps q* = 1 at slope {_DEFAULT_MAX_SLOPE}",
    )


def init_point(
    activation: Activation,
    criterion: str = "critical",
    bias_var: float | None = None,
    *,
    centred: bool | None = None,
    **params: Any,
) -> InitPoint:
    """The (σ_w², σ_b²) a criterion gives a layer whose output feeds ``activation``.

    * ``"variance"``: keep the pre-activations' variance at 1 with zero biases,
      σ_w² = 1 / E[φ(z)²] (He et al. 2015; the forward gain squared), where
      that fixed point is stable. Where it is not (GELU, SiLU, mish: the
      variance would run away with depth), a smaller σ_w² and a bias variance
      keep q* = 1 with the variance map's slope 0.99, and ``note`` says so.
    * ``"critical"``: the edge of chaos, χ₁ = 1 at a stable q*, at ``bias_var``
      (default :func:`default_bias_var`): He's variance 2/(1+α²) for the ReLU
      family, σ_w² ≈ 1.761 at σ_b² = 0.05 for tanh. SELU keeps its own fixed
      point (σ_w² = 1, σ_b² = 0; χ₁ ≈ 1.07, weakly chaotic), which fixes the
      mean as well as the variance (Klambauer et al. 2017) — the critical
      point at σ_b² = 0.05 would move the mean off it. Where no critical
      point exists the variance point is returned and ``note`` says so.

    ``centred`` (default :func:`centres`) gives the point of ``φ − E[φ]``:
    the layer reading φ's output must then also cancel the mean, with biases
    ``−W·mean·𝟙`` (``mean`` is E[φ(√q* z)]); :func:`signalprop.autoinit`
    does that.

    Examples:
        >>> init_point("relu").weight_var
        2.0
        >>> p = init_point("tanh")
        >>> round(p.weight_var, 3), p.bias_var
        (1.761, 0.05)
    """
    caller = "meanfield.init_point"
    check_option(criterion, CRITERIA, param="criterion", caller=caller)
    if centred is None:
        centred = criterion == "critical" and centres(activation, **params)
    raw = _Phi(activation, params, caller)
    phi = _Phi(activation, params, caller, True) if centred else raw

    def mean(q: float) -> float:
        return float(raw.mean(np.array([max(q, Q_MIN)]))[0]) if centred else 0.0

    variance = _variance_point(raw)
    if criterion == "variance":
        return variance
    name = _activations.name_of(activation) if isinstance(activation, nn.Module) else activation
    if name == "selu" and not params and bias_var is None:
        mf = analyze(activation, 1.0, 0.0)
        return InitPoint(
            phi.name,
            "critical",
            1.0,
            0.0,
            mf.q_star,
            note=f"SELU's self-normalizing fixed point (χ₁ = {mf.chi_1:.3f}, "
            f"trainable depth ≈ {_shown(mf.trainable_depth)})",
        )
    if centred and bias_var is None:
        bias_var, weight_var, q_star = _robust_centred_point(raw, phi)
    else:
        bias_var, weight_var, q_star = _critical_point(phi, bias_var, caller)
    if math.isnan(weight_var):
        return InitPoint(
            raw.name,
            "critical",
            variance.weight_var,
            variance.bias_var,
            1.0,
            note=f"no critical point at σ_b² = {bias_var:g}: variance-preserving instead"
            + (f" ({variance.note})" if variance.note else ""),
            fallback=True,
        )
    note = f"centred (its mean {mean(q_star):.3g} cancelled by the next layer's biases)"
    return InitPoint(
        raw.name,
        "critical",
        weight_var,
        bias_var,
        q_star,
        note=note if centred else "",
        centred=centred,
        mean=mean(q_star),
    )


#: A centred critical point is kept only if, with the offset fixed at its mean there,
#: the variance map stays below the identity from q* up to this factor × q*: the
#: basin a width-100 layer's fluctuations (≈ 14 % per layer) do not leave.
CENTRED_BASIN = 4.0


def _robust_centred_point(raw: _Phi, centred: _Phi) -> tuple[float, float, float]:
    """(σ_b², σ_w², q*) of the first σ_b² of :data:`BIAS_VARS_TRIED` whose centred critical
    point keeps q in its basin (:data:`CENTRED_BASIN`); NaN σ_w² where none does.

    The biases cancel the mean m = E[φ(√q* z)] at q* only: at another q the layer
    sees E[(φ − m)²] = E[φ²] − 2mμ(q) + m², whose growth with q can make a critical
    point that is stable for the centred map (slope < 1) a narrow one in practice.
    """
    candidates = np.array(BIAS_VARS_TRIED)
    weight_vars, q_stars = _critical(centred, candidates)
    for bias_var, weight_var, q_star in zip(candidates, weight_vars, q_stars, strict=True):
        if math.isnan(weight_var) or q_star <= 1e-3:
            continue
        m = float(raw.mean(np.array([q_star]))[0])
        q = q_star * np.geomspace(1.05, CENTRED_BASIN, 24)
        second = raw.second(q)
        mean = raw.mean(q)
        mapped = weight_var * (second - 2 * m * mean + m * m) + bias_var
        if (mapped < q).all():
            return float(bias_var), float(weight_var), float(q_star)
    return float(candidates[0]), math.nan, math.nan


# -------------------------------------------------------------- phase diagram


@dataclass(frozen=True)
class PhaseDiagram:
    """Mean-field quantities over a grid of (σ_w², σ_b²); arrays of shape (bias, weight).

    Attributes:
        activation: Its name.
        weight_vars, bias_vars: The grid's axes.
        q_star, chi_1, c_star, xi_c, xi_q: As in :class:`MeanField`.
        phase: ``"ordered"``, ``"critical"`` or ``"chaotic"`` per point.
        critical: σ_w² of the critical line at each σ_b² (NaN: none).

    Examples:
        >>> import signalprop as sp
        >>> diagram = sp.meanfield.phase_diagram('tanh', [1.0, 4.0], [0.0])
        >>> diagram.chi_1.shape, diagram.phase.tolist()
        ((1, 2), [['critical', 'chaotic']])
    """

    activation: str
    weight_vars: np.ndarray
    bias_vars: np.ndarray
    q_star: np.ndarray
    chi_1: np.ndarray
    c_star: np.ndarray
    xi_c: np.ndarray
    xi_q: np.ndarray
    phase: np.ndarray
    critical: np.ndarray


def phase_diagram(
    activation: Activation,
    weight_vars: Sequence[float] | np.ndarray,
    bias_vars: Sequence[float] | np.ndarray,
    *,
    centred: bool = False,
    **params: Any,
) -> PhaseDiagram:
    """Every mean-field quantity over a grid, vectorized (100 × 100 in a few seconds).

    Examples:
        >>> import signalprop as sp
        >>> diagram = sp.meanfield.phase_diagram('tanh', [0.5, 4.0], [0.05])
        >>> diagram.phase.tolist()
        [['ordered', 'chaotic']]
    """
    caller = "meanfield.phase_diagram"
    w = np.asarray(weight_vars, dtype=np.float64).reshape(-1)
    b = np.asarray(bias_vars, dtype=np.float64).reshape(-1)
    if not len(w) or (w <= 0).any() or not np.isfinite(w).all():
        raise invalid_parameter("weight_vars", caller, "finite variances > 0", weight_vars)
    if not len(b) or (b < 0).any() or not np.isfinite(b).all():
        raise invalid_parameter("bias_vars", caller, "finite variances >= 0", bias_vars)
    phi = _Phi(activation, params, caller, centred)
    grid_w, grid_b = np.meshgrid(w, b)
    solved = _solve(phi, grid_w.ravel(), grid_b.ravel(), 1.0)
    beyond = solved.pop("beyond")
    _refuse_beyond(
        beyond, w[np.unique(np.flatnonzero(beyond) % len(w))].tolist(), "weight_vars", caller
    )
    shape = grid_w.shape
    return PhaseDiagram(
        activation=phi.name,
        weight_vars=w,
        bias_vars=b,
        q_star=solved["q_star"].reshape(shape),
        chi_1=solved["chi_1"].reshape(shape),
        c_star=solved["c_star"].reshape(shape),
        xi_c=solved["xi_c"].reshape(shape),
        xi_q=solved["xi_q"].reshape(shape),
        phase=solved["phase"].reshape(shape),
        critical=_critical(phi, b)[0],
    )


# ------------------------------------------------------------ heterogeneous chains

#: A layer's pre-activation variance up to this factor above its consumer's own target
#: is still in the consumer's useful range; beyond it, χ is lowered to keep q there.
USEFUL_RANGE = 2.0
#: |Σ ln χ| over a chain's hidden layers beyond this: gradients change by more than e⁶
#: from the top hidden layer to the first, the bound 6ξ_c puts on a homogeneous stack.
CHAIN_LOG_LIMIT = TRAINABLE_DEPTH_FACTOR


@dataclass(frozen=True)
class ChainLayer:
    """One layer of a chain of dense layers whose activations may differ.

    Layer ``l`` reads ``φ_{l−1}(h_{l−1}) − m_l`` (``m_l``: the offset its
    biases cancel, 0 for plain biases) and writes ``h_l`` of variance
    ``q_l = σ_w² E[(φ_{l−1}(√q_{l−1} z) − m_l)²] + σ_b²``; the mean squared
    gradient grows through it by ``χ_l = σ_w² E[φ_{l−1}′(√q_{l−1} z)²]``
    on its way down.

    Attributes:
        reads: The producer's name, or ``"data"``.
        feeds: The consumer's name, or ``"output"``.
        weight_var, bias_var: σ_w² and σ_b² (σ_b² of the biases beyond the
            offset's part).
        offset: ``m``, the producer's mean the biases cancel.
        q: The pre-activations' variance (mean field).
        chi: The gradient factor χ (None for the layer reading the data).
        cumulative: Π χ_k over the layers above, the output layer included:
            the mean squared gradient at these pre-activations over the
            logits'.
        q_slope: dq_l / dq_{l−1}, how a change of the input's variance
            passes through (None for the layer reading the data).
        note: Why the layer is not at χ = 1 with q at its consumer's target,
            when it is not.
    """

    reads: str
    feeds: str
    weight_var: float
    bias_var: float
    offset: float
    q: float
    chi: float | None
    cumulative: float
    q_slope: float | None
    note: str = ""
    label: str = ""

    @property
    def phase(self) -> str:
        """In words true for one layer of any stack: ``"critical"`` (χ within
        :data:`CRITICAL_TOLERANCE` of 1), ``"expanding"`` (χ > 1: gradients grow
        through it toward the input), ``"contracting"``, or ``"input"`` and
        ``"output"`` for the first and last layers."""
        if self.reads == "data":
            return "input"
        if self.feeds == "output":
            return "output"
        if self.label:
            return self.label
        assert self.chi is not None
        phase = phase_of(self.chi)
        return {"ordered": "contracting", "chaotic": "expanding"}.get(phase, phase)


@dataclass(frozen=True)
class Chain:
    """The mean-field account of a chain of dense layers (:func:`chain`).

    Attributes:
        layers: Per layer, a :class:`ChainLayer`.
        log_gradient: Σ ln χ over the hidden layers that read an activation:
            ln of the mean squared gradient's growth from the top hidden
            layer down to the first.
        chi_mean: exp(log_gradient / n), the geometric mean of their χ.
        phase: The phase of ``chi_mean`` (for a homogeneous stack, that of χ₁).
        trainable: Whether |log_gradient| ≤ :data:`CHAIN_LOG_LIMIT`.
    """

    layers: list[ChainLayer]
    log_gradient: float
    chi_mean: float
    phase: str
    trainable: bool

    def summary(self) -> str:
        growth = math.exp(self.log_gradient) if abs(self.log_gradient) < 700 else math.inf
        return (
            f"{len(self.layers)} layers: gradient × {growth:.3g} from the top hidden layer to "
            f"the first (geometric mean χ = {self.chi_mean:.4g}, {self.phase})"
        )

    def table(self) -> str:
        """One line per layer: what it reads and feeds, σ_w², σ_b², q, χ, Π χ above, phase."""
        lines = [
            f"{'#':>4}  {'reads':>18}  {'feeds':>18}  {'σ_w²':>8}  {'σ_b²':>6}  {'offset':>7}  "
            f"{'q':>7}  {'χ':>7}  {'Π χ above':>9}  phase"
        ]
        for index, layer in enumerate(self.layers, start=1):
            chi = "-" if layer.chi is None else f"{layer.chi:7.4f}"
            lines.append(
                f"{index:>4}  {layer.reads:>18}  {layer.feeds:>18}  {layer.weight_var:8.4g}  "
                f"{layer.bias_var:6.3g}  {layer.offset:7.3g}  {layer.q:7.4g}  {chi:>7}  "
                f"{layer.cumulative:9.4g}  {layer.phase}"
                + (f"  ({layer.note})" if layer.note else "")
            )
        return "\n".join(lines)


class _Moments:
    """E[φ], E[φ²], their q-derivatives and E[φ′²] of one activation at given q, cached."""

    def __init__(self, activation: Activation, caller: str) -> None:
        self.phi = _Phi(activation, {}, caller)
        self._cache: dict[float, tuple[float, float, float, float, float]] = {}

    def at(self, q: float) -> tuple[float, float, float, float, float]:
        """(μ, dμ/dq, E[φ²], dE[φ²]/dq, E[φ′²]) at ``q``."""
        q = min(max(q, Q_MIN), Q_MAX)
        if q not in self._cache:
            mean, mean_slope = (float(v[0]) for v in self.phi.mean_terms(np.array([q])))
            second, slope, derivative = (
                float(v[0]) for v in self.phi.variance_terms(np.array([q]))
            )
            self._cache[q] = (mean, mean_slope, second, slope, derivative)
        return self._cache[q]


def _layer(
    moments: _Moments | None,
    name: str,
    feeds: str,
    q_in: float,
    weight_var: float,
    bias_var: float,
    offset: float,
    note: str = "",
) -> tuple[ChainLayer, float]:
    """The layer's mean-field record (cumulative still 1) and its pre-activations' variance."""
    if moments is None:  # reads the data, whose second moment is q_in
        q = weight_var * q_in + bias_var
        return ChainLayer("data", feeds, weight_var, bias_var, offset, q, None, 1.0, None, note), q
    mean, mean_slope, second, slope, derivative = moments.at(q_in)
    seen = second - 2 * offset * mean + offset**2
    q = weight_var * seen + bias_var
    q_slope = weight_var * (slope - 2 * offset * mean_slope)
    chi = weight_var * derivative
    return ChainLayer(name, feeds, weight_var, bias_var, offset, q, chi, 1.0, q_slope, note), q


def _finish(layers: list[ChainLayer]) -> Chain:
    """Fill in the cumulative factors and the chain's verdict."""
    cumulative = 1.0
    done: list[ChainLayer] = []
    for layer in reversed(layers):
        done.append(ChainLayer(**{**asdict(layer), "cumulative": cumulative}))
        if layer.chi is not None:
            cumulative *= layer.chi
    done.reverse()
    hidden = [layer.chi for layer in done if layer.chi is not None and layer.feeds != "output"]
    logs = [math.log(chi) if chi > 0 else -math.inf for chi in hidden]
    log_gradient = float(sum(logs)) if logs else 0.0
    chi_mean = math.exp(log_gradient / len(logs)) if logs and math.isfinite(log_gradient) else 1.0
    if logs and not math.isfinite(log_gradient):
        chi_mean = 0.0
    return Chain(
        layers=done,
        log_gradient=log_gradient,
        chi_mean=chi_mean,
        phase=phase_of(chi_mean) if chi_mean > 0 else "ordered",
        trainable=abs(log_gradient) <= CHAIN_LOG_LIMIT,
    )


def chain(
    layers: Sequence[tuple[Activation | None, Activation | None, float, float, float]],
    *,
    input_var: float = 1.0,
) -> Chain:
    """The mean-field account of a chain of dense layers whose activations may differ.

    The gradient factor of each layer is its producer's derivative at the
    variance that actually arrives there, ``χ_l = σ_{w,l}² E[φ_{l−1}′(√q_{l−1} z)²]``;
    the gradient from layer l to the output grows by Π_{k>l} χ_k, and the
    correlation map of the stack, the composition of the layers' maps, has
    that same product as its slope at c = 1.

    Args:
        layers: Per layer ``(producer, consumer, σ_w², σ_b², offset)``:
            the activation it reads (None: the data), the one it feeds (None:
            the output), its weights' variance times fan_in, its biases'
            variance beyond the offset's part, and the producer's mean its
            biases cancel (0 for plain biases).
        input_var: The data's second moment E[x²].

    Examples:
        >>> c = chain([(None, "tanh", 1.0, 0.0, 0.0), ("tanh", "relu", 2.0, 0.0, 0.0),
        ...            ("relu", None, 2.0, 0.0, 0.0)])
        >>> [layer.phase for layer in c.layers]
        ['input', 'contracting', 'output']
    """
    caller = "meanfield.chain"
    input_var = check_real(input_var, param="input_var", caller=caller, low=0)
    cache: dict[Any, _Moments] = {}
    records: list[ChainLayer] = []
    q = input_var
    for index, entry in enumerate(layers):
        if not isinstance(entry, tuple | list) or len(entry) != 5:
            raise invalid_parameter(
                "layers", caller, "(producer, consumer, σ_w², σ_b², offset) per layer", entry
            )
        producer, consumer, weight_var, bias_var, offset = entry
        weight_var, bias_var = _check_variances(weight_var, bias_var, caller)
        offset = check_real(offset, param="offset", caller=caller)
        moments = None
        if producer is not None:
            key = _activations.activation_key(producer)
            if key not in cache:
                cache[key] = _Moments(producer, caller)
            moments = cache[key]
        if producer is None and index:
            raise invalid_parameter(
                "layers", caller, "a producer for every layer but the first", entry
            )
        record, q = _layer(
            moments,
            _display_name(producer, {}) if producer is not None else "data",
            "output" if consumer is None else _display_name(consumer, {}),
            q,
            weight_var,
            bias_var,
            offset,
        )
        records.append(record)
    return _finish(records)


def init_chain(
    layers: Sequence[tuple[Activation | None, Activation | None]],
    *,
    criterion: str = "critical",
    bias_var: float | None = None,
    input_var: float = 1.0,
    chained: bool = True,
    centring: Sequence[bool] | None = None,
    producer_vars: Sequence[float | None] | None = None,
) -> Chain:
    """Per-layer (σ_w², σ_b², offset) that put every layer of a chain at χ = 1 where possible.

    For the layer reading φ_in (at the variance q_in that arrives) and
    feeding φ_out, whose own criterion point (:func:`init_point`) has
    pre-activation variance q_t and bias variance σ_t²:

    * a layer between two of the same activation, reached at q_t, sits on
      that point (the homogeneous edge of chaos, SELU's fixed point);
    * otherwise (``"critical"``) σ_w² = 1 / E[φ_in′²] makes χ = 1, which
      gives q = r + σ_b² with r = E[(φ_in − m)²] / E[φ_in′²]; σ_b² = q_t − r
      puts q at the target when r ≤ q_t. When r > q_t no σ_b² ≥ 0 can: q = r
      is kept while it is within :data:`USEFUL_RANGE` × q_t (χ = 1), beyond
      that σ_w² is lowered to keep q = USEFUL_RANGE·q_t (χ < 1), and the
      layer's note says so;
    * (``"variance"``) σ_w² = q_t / E[(φ_in − m)²], σ_b² = 0;
    * the layer reading the data gets (q_t − σ_t²) / E[x²] and σ_t²; the
      output layer, logits of variance 1 and zero biases.

    ``m`` is φ_in's mean at q_in when φ_in is centred (``centring``, default
    :func:`centres` for the critical criterion): the layer's biases then
    also hold ``−W·m𝟙``.

    Args:
        layers: Per layer ``(producer, consumer)``: None for the data (as
            producer) and for the output (as consumer).
        criterion: ``"critical"`` or ``"variance"``.
        bias_var: σ_b² of the criterion's points (default: each activation's own).
        input_var: The data's second moment E[x²].
        chained: Whether layer l reads layer l−1's output (a plain chain).
            Otherwise each layer is taken to read its producer at the
            producer's own target variance.
        centring: Per layer, whether it cancels its producer's mean
            (default: :func:`centres` of the producer).
        producer_vars: Per layer, the variance of its producer's input where
            something other than the layers fixes it (a normalization before
            the activation: γ² + β²), None where not. Read instead of the
            producer's own target variance by a layer that is not chained.

    Examples:
        >>> c = init_chain([(None, "tanh"), ("tanh", "relu"), ("relu", "tanh"),
        ...                 ("tanh", None)])
        >>> [round(layer.chi, 6) for layer in c.layers[1:-1]]
        [1.0, 1.0]
    """
    caller = "meanfield.init_chain"
    check_option(criterion, CRITERIA, param="criterion", caller=caller)
    if bias_var is not None:
        bias_var = check_real(bias_var, param="bias_var", caller=caller, low=0)
    input_var = check_real(input_var, param="input_var", caller=caller, low=0, low_inclusive=False)
    if centring is not None and len(centring) != len(layers):
        raise invalid_parameter("centring", caller, f"{len(layers)} flags, one per layer", centring)
    if producer_vars is not None and len(producer_vars) != len(layers):
        raise invalid_parameter(
            "producer_vars", caller, f"{len(layers)} variances, one per layer", producer_vars
        )
    fixed = [
        None
        if v is None
        else check_real(v, param="producer_vars", caller=caller, low=0, low_inclusive=False)
        for v in (producer_vars or [None] * len(layers))
    ]
    moments: dict[Any, _Moments] = {}

    def point(activation: Activation) -> InitPoint:
        return cached_point(activation, criterion, bias_var)

    def moments_of(activation: Activation) -> _Moments:
        key = _activations.activation_key(activation)
        if key not in moments:
            moments[key] = _Moments(activation, caller)
        return moments[key]

    def is_centred(index: int, producer: Activation) -> bool:
        return point(producer).centred if centring is None else bool(centring[index])

    def ratio(activation: Activation, centred: bool, q: float) -> float:
        mean, _, second, _, derivative = moments_of(activation).at(q)
        return (second - (mean**2 if centred else 0.0)) / max(derivative, 1e-300)

    # Each pre-activation's planned variance, top down: its consumer's own target, lowered
    # where the next layer could not then reach its plan at χ = 1 (r(q) above it), to the
    # q whose r is the next plan (r = E[(φ − m)²] / E[φ′²] grows with q).
    plans = [point(c).q_star if c is not None else 1.0 for _, c in layers]
    if chained and criterion == "critical":
        for index in range(len(layers) - 2, -1, -1):
            consumer = layers[index][1]
            after = layers[index + 1][1]
            if consumer is None or after is None:
                continue
            centred = is_centred(index + 1, consumer)
            key = (_activations.activation_key(consumer), centred, plans[index], plans[index + 1])
            if key not in _PLANS:
                _PLANS[key] = _plan(functools.partial(ratio, consumer, centred), *key[2:])
            plans[index] = _PLANS[key]

    records: list[ChainLayer] = []
    q = input_var
    for index, (producer, consumer) in enumerate(layers):
        target = point(consumer) if consumer is not None else None
        q_t = plans[index]
        b_t = min(target.bias_var, q_t) if target is not None else 0.0
        feeds = "output" if consumer is None else _display_name(consumer, {})
        if producer is None:
            weight_var = max(q_t - b_t, 1e-12) / input_var
            record, q = _layer(None, "data", feeds, input_var, weight_var, b_t, 0.0)
            records.append(record)
            continue
        if not chained or (index == 0):
            given = fixed[index]
            q = point(producer).q_star if given is None else given
        m = moments_of(producer)
        centred = is_centred(index, producer)
        mean, _, second, _, derivative = m.at(q)
        offset = mean if centred else 0.0
        seen = second - mean**2 if centred else second
        name = _display_name(producer, {}) + (" − E[·]" if centred else "")
        note = label = ""
        same = (
            target is not None
            and consumer is not None
            and _activations.activation_key(producer) == _activations.activation_key(consumer)
            and abs(q - target.q_star) <= 1e-6 * max(target.q_star, 1e-12)
            and abs(q_t - target.q_star) <= 1e-6 * max(target.q_star, 1e-12)
            and (centred == target.centred)
        )
        if target is None:
            weight_var, b = 1.0 / max(seen, 1e-300), 0.0
        elif same:
            weight_var, b = target.weight_var, b_t
            depth = _homogeneous_depth(producer, target)
            if abs(math.log(weight_var * derivative)) > CRITICAL_TOLERANCE and depth >= len(layers):
                # SELU's fixed point (χ₁ 1.072): chaotic only beyond 6ξ_c ≈ 200 layers.
                label = "near-critical"
        elif criterion == "variance" or derivative <= 0:
            weight_var, b = (q_t - b_t) / max(seen, 1e-300), b_t
        else:
            weight_var = 1.0 / derivative
            needed = seen * weight_var
            if needed <= q_t:
                b = q_t - needed
            elif needed <= USEFUL_RANGE * q_t:
                b = 0.0
            else:
                b = 0.0
                weight_var = USEFUL_RANGE * q_t / seen
                note = (
                    f"no σ_b² ≥ 0 gives χ = 1 with q within {USEFUL_RANGE:g}× {feeds}'s "
                    f"target {q_t:.3g}: {name} at q = {q:.3g} needs q ≥ {needed:.3g}"
                )
        b = b if b > 1e-12 * max(q_t, 1.0) else 0.0  # round-off of q_t − r at r = q_t
        record, q = _layer(m, name, feeds, q, weight_var, b, offset, note)
        records.append(ChainLayer(**{**asdict(record), "label": label}) if label else record)
    return _finish(records)


_DEPTHS: dict[Any, float] = {}


def _homogeneous_depth(activation: Activation, point: InitPoint) -> float:
    """6ξ_c of a homogeneous stack of ``activation`` at ``point``."""
    key = (_activations.activation_key(activation), point.weight_var, point.bias_var, point.centred)
    if key not in _DEPTHS:
        _DEPTHS[key] = analyze(
            activation, point.weight_var, point.bias_var, centred=point.centred
        ).trainable_depth
    return _DEPTHS[key]


#: Criterion points and planned variances already solved, across calls.
_POINTS: dict[Any, InitPoint] = {}


def cached_point(
    activation: Activation, criterion: str = "critical", bias_var: float | None = None
) -> InitPoint:
    """:func:`init_point` with default centring, solved once per process for each
    activation (a module by its class, arguments and parameters), criterion and σ_b²."""
    key = (_activations.activation_key(activation), criterion, bias_var)
    if key not in _POINTS:
        _POINTS[key] = init_point(activation, criterion, bias_var)
    return _POINTS[key]


_PLANS: dict[Any, float] = {}


def _plan(ratio: Callable[[float], float], own: float, following: float) -> float:
    """The planned variance of a layer whose own target is ``own`` and whose next plan is
    ``following``: ``own`` when r(own) ≤ USEFUL_RANGE × following, else the root of
    r(q) = following below ``own`` (bisection in log q)."""
    if ratio(own) <= USEFUL_RANGE * following:
        return own
    lo, hi = math.log(max(own, 1e-8)) - 30, math.log(max(own, 1e-8))
    if ratio(math.exp(lo)) > following:  # no q below gives it (softplus: r(0) = 4 ln² 2)
        return own
    for _ in range(50):
        mid = (lo + hi) / 2
        if ratio(math.exp(mid)) > following:
            hi = mid
        else:
            lo = mid
    return math.exp(lo)


# -------------------------------------------------------------- residual stacks

#: Block kinds of :func:`residual_stream`: ``"pre"`` (``x + α·branch``, the
#: pre-activation or "full" residual block), ``"post"`` (``φ(x + α·branch)``, the
#: original ResNet's), ``"normalized"`` (``x + α·γ·Norm(branch)``: the branch adds a
#: fixed variance).
BLOCKS = ("pre", "post", "normalized")


@dataclass
class ResidualStream:
    """The mean field of a residual stack, block by block.

    Attributes:
        q: The stream's second moment per unit at the input of block 1, …, N and
            after block N (N + 1 values).
        gradient: The mean squared gradient at the same places, over its value
            after block N (so ``gradient[-1] == 1`` and ``gradient[0]`` is the
            growth of the gradient from the top of the stack to its bottom).
        block: ``"pre"``, ``"post"`` or ``"normalized"``.

    Examples:
        >>> import signalprop as sp
        >>> stream = sp.meanfield.residual_stream(64, 'relu', weight_var=1 / 3)   # PyTorch's
        >>> round(stream.growth, 2), stream.q.shape
        (5.64, (65,))
    """

    q: np.ndarray
    gradient: np.ndarray
    block: str

    @property
    def growth(self) -> float:
        """The stream's RMS after the last block over its RMS entering the first."""
        return float(math.sqrt(self.q[-1] / self.q[0]))

    @property
    def gradient_growth(self) -> float:
        """The gradient's RMS at the bottom of the stack over its RMS at the top."""
        return float(math.sqrt(self.gradient[0]))


def residual_stream(
    blocks: int,
    activation: str | Activation = "relu",
    *,
    weight_var: float = 2.0,
    branch_weight_var: float | None = None,
    bias_var: float = 0.0,
    alpha: float = 1.0,
    block: str = "pre",
    norm_var: float = 1.0,
    input_var: float = 1.0,
) -> ResidualStream:
    """The stream's second moment and the gradient through ``blocks`` residual blocks.

    Each block's branch is ``W₂ φ(W₁ x + b₁) + b₂`` with weights of variance
    ``weight_var/fan_in`` (W₁: σ_w²) and ``branch_weight_var/fan_in`` (W₂: σ_v²,
    default σ_w²), biases of variance ``bias_var``, scaled by ``alpha``. With
    ``h = σ_w² q + σ_b²`` the branch's pre-activation variance:

    * ``"pre"``: ``q ← q + α²(σ_v² E[φ(√h z)²] + σ_b²)``; the mean squared
      gradient grows going down by ``1 + α² σ_v² σ_w² E[φ′(√h z)²]`` per block.
    * ``"post"``: the sum ``s = q + α²(…)`` goes through φ: ``q ← E[φ(√s z)²]``,
      the gradient factor times ``E[φ′(√s z)²]`` (the sum taken as Gaussian: a
      mean-field approximation, as the stream after a ReLU is not centred).
    * ``"normalized"``: the branch ends in a normalization of affine weight γ
      (``norm_var`` = γ²): ``q ← q + α² γ²``, linear growth (De & Smith 2020),
      and the gradient factor ``1 + α² γ² σ_v² σ_w² E[φ′²] / (σ_v² E[φ²] + σ_b²)``,
      which tends to 1 as the stream grows.

    Gaussian integrals are signalprop's (:func:`signalprop.meanfield.second_moments`).

    Examples:
        >>> stream = residual_stream(64, "relu", weight_var=1 / 3)  # PyTorch's default
        >>> round(stream.growth, 3)
        5.642
        >>> round(stream.growth ** 2, 3) == round((1 + 1 / 18) ** 64, 3)
        True
    """
    caller = "meanfield.residual_stream"
    blocks = check_int(blocks, param="blocks", caller=caller, low=1)
    check_option(block, BLOCKS, param="block", caller=caller)
    weight_var = check_real(weight_var, param="weight_var", caller=caller, low=0)
    branch_var = (
        weight_var
        if branch_weight_var is None
        else check_real(branch_weight_var, param="branch_weight_var", caller=caller, low=0)
    )
    bias_var = check_real(bias_var, param="bias_var", caller=caller, low=0)
    alpha = check_real(alpha, param="alpha", caller=caller)
    norm_var = check_real(norm_var, param="norm_var", caller=caller, low=0)
    q = check_real(input_var, param="input_var", caller=caller, low=0, low_inclusive=False)
    qs, factors = [q], []
    for _ in range(blocks):
        h = weight_var * q + bias_var
        second, derivative = second_moments(activation, h)
        branch = branch_var * second + bias_var
        jacobian = branch_var * weight_var * derivative
        if block == "pre":
            factors.append(1 + alpha**2 * jacobian)
            q = q + alpha**2 * branch
        elif block == "normalized":
            factors.append(1 + alpha**2 * norm_var * jacobian / branch if branch > 0 else 1.0)
            q = q + alpha**2 * norm_var
        else:
            total = q + alpha**2 * branch
            post_second, post_derivative = second_moments(activation, total)
            factors.append(post_derivative * (1 + alpha**2 * jacobian))
            q = post_second
        qs.append(q)
    gradient = np.cumprod(np.array(factors[::-1] or [1.0]))[::-1]
    return ResidualStream(np.array(qs), np.append(gradient, 1.0), block)


def relu_residual_growth(
    blocks: int, weight_var: float = 2.0, branch_weight_var: float | None = None, alpha: float = 1.0
) -> float:
    """The closed form for ReLU pre-activation blocks without biases: the stream's
    variance grows by ``(1 + α² σ_v² σ_w² / 2)^N`` (and the mean squared gradient by
    the same factor, since E[relu′²] = E[relu²]/q = 1/2). Returns the RMS growth,
    its square root.

    Examples:
        >>> round(relu_residual_growth(64, 1 / 3), 3)  # PyTorch's default, 64 blocks
        5.642
    """
    caller = "meanfield.relu_residual_growth"
    blocks = check_int(blocks, param="blocks", caller=caller, low=1)
    weight_var = check_real(weight_var, param="weight_var", caller=caller, low=0)
    branch = weight_var if branch_weight_var is None else branch_weight_var
    branch = check_real(branch, param="branch_weight_var", caller=caller, low=0)
    return float((1 + alpha**2 * branch * weight_var / 2) ** (blocks / 2))
