"""The per-layer quantities, as pure functions on tensors: one place for the arithmetic.

``diagnose`` (one batch), the :class:`~signalprop.Monitor` (a training run),
the Keras callback (through the Monitor) and the study records (``diagnose``
snapshots taken by ``fit``) all measure a layer with these functions. The
instruments that find the tensors (hooks, the fast path, a Keras model's own
tensors) live where they are used; this module knows nothing of models or
hooks, only of tensors and the numbers made of them (Cockpit's split of
``quantities/`` from ``instruments/``).

Two ways of reducing, one per instrument:

* one tensor at a time, as ``diagnose``'s hooks see them: :func:`moments`,
  :func:`norm_of`, :func:`alive_units`, :func:`saturated_count`,
  :func:`similarity`, kept as 0-d tensors until :func:`mean_std` and
  :func:`rms` turn them into floats;
* packed, as the Monitor reduces every layer of a record at once
  (:func:`packed_moments`, :func:`packed_squares`): per-row sums that can be
  summed over processes, then read back to the host in one go and turned
  into the quantities by :func:`mean_std_of_packed`, :func:`rms_of_squares`,
  :func:`dead_of_flags` and :func:`update_ratio`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DYING",
    "SATURATING",
    "Moments",
    "Norm",
    "Workspace",
    "alive_units",
    "bias_split",
    "bias_splits",
    "change_norms",
    "dead_of_flags",
    "finite_flags",
    "mean_std",
    "mean_std_of_packed",
    "mean_std_of_sums",
    "moments",
    "norm_of",
    "norms_by_id",
    "norms_of",
    "packed_moments",
    "packed_squares",
    "packed_weight_scales",
    "read_back",
    "rms",
    "rms_of_squares",
    "saturated_count",
    "similarity",
    "squared_norms",
    "stacked",
    "update_ratio",
    "weight_scales",
]

#: Activations whose outputs saturate, with their output range (low, high).
SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
#: Activations whose units die: zero output and zero gradient for z <= 0.
DYING = {"relu"}

# ------------------------------------------------------------ one tensor at a time

Moments = tuple[Tensor, Tensor, int]


def moments(x: Tensor) -> Moments:
    """Sum and 2-norm in float64, and the count: two fast reductions, no sync.

    Mean and std follow at the end (:func:`mean_std`); float64 accumulation
    keeps the variance accurate, and a NaN or Inf anywhere shows in the sums.
    """
    x = x.detach()
    return (
        x.sum(dtype=torch.float64),
        torch.linalg.vector_norm(x, dtype=torch.float64),
        x.numel(),
    )


def mean_std(moments: Moments) -> tuple[float, float, bool]:
    """``(mean, std, finite)`` from :func:`moments` (std with Bessel's correction)."""
    total, norm, n = moments
    return mean_std_of_sums(total.item(), norm.item() ** 2, n)


def mean_std_of_sums(s1: float, s2: float, n: int) -> tuple[float, float, bool]:
    """``(mean, std, finite)`` from the sum, the sum of squares and the count."""
    finite = math.isfinite(s1) and math.isfinite(s2)
    if n == 0:
        return math.nan, math.nan, finite
    mean = s1 / n
    if n < 2 or not finite:
        return mean, 0.0 if finite else math.nan, finite
    return mean, math.sqrt(max(0.0, (s2 - n * mean * mean) / (n - 1))), finite


Norm = tuple[Tensor, int]


def norm_of(x: Tensor) -> Norm:
    """The 2-norm in float64 and the count: all a gradient's RMS needs."""
    x = x.detach()
    return torch.linalg.vector_norm(x, dtype=torch.float64), x.numel()


def rms(norm: Norm) -> float:
    """Root mean square from :func:`norm_of`."""
    value, n = norm
    return value.item() / math.sqrt(max(1, n))


def similarity(z: Tensor) -> Tensor:
    """How alike the examples' pre-activations are: B·‖mean_b v‖² / Σ_b ‖v_b‖².

    1 when every example has the same pre-activations, about 1/B when they
    are independent with mean 0. Deep ReLU stacks drive it toward 1, and then
    a unit negative for one example is negative for all ("dead on the batch").
    """
    v = z.detach().reshape(z.shape[0], -1).float()
    mean = v.mean(dim=0)
    return z.shape[0] * mean.dot(mean) / v.pow(2).sum().clamp_min(1e-30)


def _unit_dims(x: Tensor, unit: int) -> list[int]:
    """Dimensions reduced to find a unit: all but ``unit``."""
    return [d for d in range(x.dim()) if d != unit % x.dim()] if x.dim() > 1 else [0]


def alive_units(z: Tensor, unit: int = 1) -> Tensor:
    """Per unit, whether it is positive for any example: a ReLU unit that is not is
    *dead* on the batch (zero output, zero gradient). A unit with a NaN or -Inf
    pre-activation is not counted as dead: it is not finite, which the finite flags
    report, and counting it dead would call a blown-up layer a dead one.

    A unit is an index along dimension ``unit`` of ``z``: a convolution's channel
    (1), any other layer's feature (-1, whatever token or position dimensions come
    before); :func:`signalprop._model.unit_axis` says which for a layer.
    """
    z = z.detach()
    dead = (z <= 0) & (z > -math.inf)  # NaN and -Inf: neither
    return ~dead.all(dim=_unit_dims(z, unit)) if z.dim() > 1 else ~dead


def saturated_count(y: Tensor, kind: str, margin: float) -> Tensor:
    """How many of a saturating activation's outputs lie within ``margin`` of its
    range's width from either end (see :class:`~signalprop.diagnostics.Thresholds`)."""
    low, high = SATURATING[kind]
    width = margin * (high - low)
    y = y.detach()
    return ((y <= low + width) | (y >= high - width)).sum()


def finite_flags(tensors: list[Tensor]) -> list[bool]:
    """Per tensor, whether every value is finite.

    One sum of sums answers for all at once when it is finite (as it is on all but
    a failing step); only otherwise, or when finite values overflow float32, is
    each tensor looked at.
    """
    if not tensors:
        return []
    with torch.no_grad():
        total = tensors[0].sum()
        for tensor in tensors[1:]:
            total = total + tensor.sum()
    if bool(torch.isfinite(total)):
        return [True] * len(tensors)
    return [bool(torch.isfinite(t).all()) for t in tensors]


# ------------------------------------------------------------ weights


def weight_scales(
    weight: Tensor, bias: Tensor | None, fan_in: float, fan_out: float
) -> dict[str, float]:
    """The weight's mean square ("variance", the mean being ~0), times fan_in and fan_avg,
    and the bias's mean square (σ_b², 0 without a bias).

    ``var · fan_in`` is 1 for LeCun, 2 for He; ``var · fan_avg`` is 1 for
    Glorot; about ``fan_in`` for the N(0, 1) weights of the pre-2010 habit.
    """
    return packed_weight_scales([weight], [bias], [(fan_in, fan_out)])[0]


def packed_weight_scales(
    weights: list[Tensor], biases: list[Tensor | None], fans: list[tuple[float, float]]
) -> list[dict[str, float]]:
    """:func:`weight_scales` of many layers: their norms in one fused pass, read back
    to the host at once."""
    if not weights:
        return []
    with torch.no_grad():
        has_bias = [isinstance(b, Tensor) and b.numel() > 0 for b in biases]
        tensors = [w.detach() for w in weights]
        tensors += [b.detach() for b, has in zip(biases, has_bias, strict=True) if has]  # type: ignore[union-attr]
        norms = iter(torch.stack(torch._foreach_norm(tensors, 2, dtype=torch.float64)).tolist())
    weight_norms = [next(norms) for _ in weights]
    scales = []
    for weight, bias, has, norm, (fan_in, fan_out) in zip(
        weights, biases, has_bias, weight_norms, fans, strict=True
    ):
        variance = norm**2 / max(1, weight.numel())
        scales.append(
            {
                "weight_var": variance,
                "weight_scale_fan_in": variance * fan_in,
                "weight_scale_fan_avg": variance * (fan_in + fan_out) / 2,
                "fan_in": float(fan_in),
                "fan_out": float(fan_out),
                "bias_var": next(norms) ** 2 / bias.numel() if has else 0.0,  # type: ignore[union-attr]
            }
        )
    return scales


def bias_split(weight: Tensor | None, bias: Tensor | None) -> tuple[float, float]:
    """(m, σ_b²): the input mean ``m`` the biases cancel (``b = −m·W𝟙 + r``, least
    squares) and the mean square of the rest ``r``, for a weight in ``(out, in, …)``
    layout. (0, 0) without a bias."""
    return bias_splits([weight], [bias])[0]


def bias_splits(
    weights: list[Tensor | None], biases: list[Tensor | None]
) -> list[tuple[float, float]]:
    """:func:`bias_split` of many layers: those of one shape stacked and split together,
    all read back to the host at once (each row's arithmetic is the one of a layer
    alone, so the numbers do not depend on the company)."""
    splits = [(0.0, 0.0)] * len(weights)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        if bias is not None and weight is not None and weight.dim() >= 2:
            key = (weight.shape, weight.dtype, weight.device, bias.shape, bias.dtype)
            groups.setdefault(key, []).append(index)
    columns: list[Tensor] = []
    with torch.no_grad():
        for rows in groups.values():
            b = torch.stack([biases[i].detach() for i in rows]).double().reshape(len(rows), -1)  # type: ignore[union-attr]
            sums = torch.stack([weights[i].detach() for i in rows]).double().flatten(2).sum(2)  # type: ignore[union-attr]
            if sums.shape != b.shape:  # no unit per bias: the bias is all rest
                columns.append(torch.zeros(6, len(rows), dtype=torch.float64, device=b.device))
                columns[-1][4:] = b.pow(2).mean(1)
                continue
            norm = sums.pow(2).sum(1)
            m = torch.where(norm > 0, -(b * sums).sum(1) / norm, 0.0)
            rest = b + m[:, None] * sums
            columns.append(
                torch.stack(
                    [
                        norm,
                        m,
                        rest.pow(2).sum(1),
                        b.pow(2).sum(1),
                        b.pow(2).mean(1),
                        rest.pow(2).mean(1),
                    ]
                )
            )
        if not columns:
            return splits
        values = torch.cat([c.cpu() for c in columns], dim=1).T.tolist()
    order = [i for rows in groups.values() for i in rows]
    for index, (norm, m, rest_sq, b_sq, b_mean_sq, rest_mean_sq) in zip(order, values, strict=True):
        # Only a clear alignment counts: a random bias has |m| ≈ σ_b / (σ_w √n).
        if norm > 0 and rest_sq > 0.5 * b_sq:
            splits[index] = (0.0, b_mean_sq)
        else:
            splits[index] = (m, rest_mean_sq)
    return splits


def norms_of(tensors: list[Tensor]) -> list[Tensor]:
    """Each tensor's 2-norm in float64 (as :func:`norm_of`'s), in one fused pass."""
    if not tensors:
        return []
    with torch.no_grad():
        return list(torch._foreach_norm([t.detach() for t in tensors], 2, dtype=torch.float64))


def read_back(tensors: list[Tensor]) -> list[float]:
    """The values of 0-d tensors (no gradient) as floats, read back to the host in one go per dtype
    and device instead of one ``.item()`` each (the same floats: float32 and integer
    values are exact in float64)."""
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault((tensor.dtype, tensor.device), []).append(index)
    values = [0.0] * len(tensors)
    with torch.no_grad():
        for where in groups.values():
            stacked = torch.stack([tensors[i] for i in where])
            for index, value in zip(where, stacked.double().tolist(), strict=True):
                values[index] = value
    return values


def norms_by_id(tensors: Iterable[Tensor]) -> dict[int, Tensor]:
    """The 2-norm of each distinct tensor, keyed by its identity, in one fused pass: a
    tensor named twice is reduced once (plain SGD's step is the gradient itself)."""
    unique = {id(t): t for t in tensors}
    if not unique:
        return {}
    return dict(zip(unique, torch._foreach_norm(list(unique.values())), strict=True))


def squared_norms(norms: list[Tensor], rates: list[float] | None = None) -> Tensor:
    """The squares of ``norms`` (of :func:`norms_by_id`) in float64, each first times its
    rate if ``rates`` are given: ``‖lr · g‖²``, the squared length of an SGD step."""
    lengths = torch.stack(norms).to(torch.float64)
    if rates is not None:
        lengths = lengths * torch.tensor(rates, dtype=torch.float64, device=lengths.device)
    return lengths.square()


def change_norms(copies: list[Tensor], tensors: list[Tensor]) -> Tensor:
    """In float64, the norm of how far each of ``tensors`` moved since ``copies`` of it
    were taken (the update of a step). The copies are overwritten with the change."""
    with torch.no_grad():
        torch._foreach_sub_(copies, tensors)
    return torch.stack(torch._foreach_norm(copies)).to(torch.float64)


# ------------------------------------------------------------ packed, all rows at once


#: Buffers a caller keeps for the packed reductions, reused from record to record.
Workspace = dict[tuple[Any, ...], Tensor]


def _buffer(
    workspace: Workspace | None, shape: tuple[int, ...], like: Tensor, use: str
) -> Tensor | None:
    """``workspace``'s buffer for ``use`` of ``shape`` and ``like``'s dtype and device, made
    on first use; None without a workspace."""
    if workspace is None:
        return None
    key = (use, shape, like.dtype, like.device)
    buffer = workspace.get(key)
    if buffer is None:
        buffer = workspace[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buffer


def stacked(
    tensors: dict[int, Tensor], workspace: Workspace | None = None
) -> Iterator[tuple[list[int], Tensor]]:
    """Tensors of one shape stacked into one ``(count, elements)`` tensor, with their keys.

    A few large reductions instead of several small ones per layer: on a CPU a
    small reduction costs its dispatch, not its arithmetic. With a ``workspace``
    the stacks are written into buffers kept there: on a CPU a fresh buffer of a
    few megabytes is fresh pages from the system, and touching them costs more
    than the reductions.
    """
    groups: dict[tuple[torch.Size, torch.dtype], list[int]] = {}
    for key, tensor in tensors.items():
        groups.setdefault((tensor.shape, tensor.dtype), []).append(key)
    for (shape, _), keys in groups.items():
        parts = [tensors[k] for k in keys]
        out = _buffer(workspace, (len(keys), *shape), parts[0], "stack")
        yield keys, torch.stack(parts, out=out).reshape(len(keys), -1)


def _indexed(keys: list[int], counts: list[float], device: torch.device) -> tuple[Tensor, Tensor]:
    """``keys`` as an index and ``counts`` as float64, for one indexed write of all rows."""
    return (
        torch.tensor(keys, device=device),
        torch.tensor(counts, dtype=torch.float64, device=device),
    )


def packed_moments(
    tensors: dict[int, Tensor],
    rows: int,
    device: torch.device,
    workspace: Workspace | None = None,
) -> Tensor:
    """Per row, in float64: the count n, the sum n·m, the centred sum of squares M2
    and n·m², where m is the mean.

    Mean and M2 are taken in two float32 passes, which keeps the variance accurate
    when |mean| ≫ std, as :func:`moments`' float64 sums do, at half their cost here.
    Sums over processes combine as M2 = ΣM2ᵣ + Σnᵣmᵣ² − (Σnᵣmᵣ)²/Σnᵣ
    (:func:`mean_std_of_packed`). Rows of one shape are reduced together, and all
    are written to the result at once: a record of two quantities (pre-activations
    and activations) is cheapest packed as one call with twice the rows. A
    ``workspace`` keeps the temporary buffers (see :func:`stacked`).
    """
    out = torch.zeros(4, rows, dtype=torch.float64, device=device)
    keys: list[int] = []
    counts: list[float] = []
    means: list[Tensor] = []
    squares: list[Tensor] = []
    for group, x in stacked(tensors, workspace):
        mean = x.mean(1, keepdim=True)
        centred = torch.sub(x, mean, out=_buffer(workspace, tuple(x.shape), x, "centred"))
        squares.append(centred.square_().sum(1).to(torch.float64))
        means.append(mean.squeeze(1).to(torch.float64))
        keys += group
        counts += [float(x.shape[1])] * len(group)
    if keys:
        where, n = _indexed(keys, counts, device)
        mean64 = torch.cat(means)
        out[:, where] = torch.stack([n, mean64 * n, torch.cat(squares), mean64.square() * n])
    return out


def packed_squares(
    tensors: dict[int, Tensor],
    rows: int,
    device: torch.device,
    workspace: Workspace | None = None,
) -> Tensor:
    """Per row, in float64: the count and the sum of squares (``workspace``: see
    :func:`stacked`)."""
    out = torch.zeros(2, rows, dtype=torch.float64, device=device)
    keys: list[int] = []
    counts: list[float] = []
    norms: list[Tensor] = []
    for group, x in stacked(tensors, workspace):
        norms.append(torch.linalg.vector_norm(x, dim=1).to(torch.float64))
        keys += group
        counts += [float(x.shape[1])] * len(group)
    if keys:
        where, n = _indexed(keys, counts, device)
        out[:, where] = torch.stack([n, torch.cat(norms).square()])
    return out


def mean_std_of_packed(
    n: np.ndarray, total: np.ndarray, m2: np.ndarray, n_mean_sq: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the mean and std (Bessel's correction) from :func:`packed_moments`'
    four rows, summed over processes or not: NaN mean where a row has no count, NaN
    std where the sums are not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, total / n, np.nan)
        # Over processes, the spread of their means adds to their own M2s.
        spread = np.maximum(m2 + n_mean_sq - total * mean, 0.0)
        std = np.where(n > 1, np.sqrt(spread / (n - 1)), 0.0)
    finite = np.isfinite(total) & np.isfinite(m2)
    return mean, np.where(finite, std, np.nan)


def rms_of_squares(squares: np.ndarray, n: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Root mean square from sums of squares and counts (of :func:`packed_squares`),
    the squares first multiplied by ``scale``."""
    with np.errstate(divide="ignore", invalid="ignore"):  # no count: NaN
        root: np.ndarray = np.sqrt(squares * scale / n)
    return root


def update_ratio(update_sq: np.ndarray, weight_sq: np.ndarray) -> np.ndarray:
    """‖ΔW‖ / ‖W‖ from the squared norms of the update and of the weight before it."""
    with np.errstate(divide="ignore", invalid="ignore"):  # no weight: NaN or Inf
        ratio: np.ndarray = np.sqrt(update_sq) / np.sqrt(weight_sq)
    return ratio


def dead_of_flags(flags: np.ndarray) -> float:
    """The dead fraction from per-unit alive flags (1.0 alive, 0.0 dead) read back to
    the host, as :func:`alive_units` gives them (maxima over processes)."""
    return 1.0 - float(flags.sum()) / len(flags)
