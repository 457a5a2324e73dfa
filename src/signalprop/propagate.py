"""The depth experiment without data: push a standardized batch through many layers.

As in the chapter's 1,000-layer SELU demo: a batch of standard-normal inputs
goes through ``depth`` dense layers of ``width`` units (no biases), each
weight drawn by ``init`` and followed by ``activation``; the mean and std of
every layer's output are recorded, and a random gradient is sent back from
the top to record how its std changes on the way down.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._progress import Progress
from signalprop._validation import check_int, check_option, invalid_parameter

__all__ = ["PropagationResult", "propagate"]


@dataclass
class PropagationResult:
    """Per-layer statistics of a :func:`propagate` run (index 0 is the first layer).

    Attributes:
        activation: The activation's repr.
        init: The initializer's repr.
        depth, width, batch, seed: The run's settings.
        forward_mean: Mean of each layer's output.
        forward_std: Std of each layer's output.
        grad_std: Std of ∂L/∂(layer output) for ``L = Σ top ⊙ g``,
            ``g ~ N(0, 1)``: about 1 at the top.

    Examples:
        >>> import signalprop as sp
        >>> result = sp.propagate('selu', 'lecun_normal', depth=20, width=32, batch=64)
        >>> result.forward_std.shape
        (20,)
    """

    activation: str
    init: str
    depth: int
    width: int
    batch: int
    seed: int
    forward_mean: np.ndarray
    forward_std: np.ndarray
    grad_std: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serializable)."""
        data = asdict(self)
        for key in ("forward_mean", "forward_std", "grad_std"):
            data[key] = [float(v) for v in data[key]]
        return data

    def table(self, every: int | None = None) -> str:
        """Every ``every``-th layer (about 10 rows by default) as a text table."""
        step = every or max(1, self.depth // 10)
        rows = sorted({*range(step - 1, self.depth, step), 0, self.depth - 1})
        lines = [f"{'layer':>6}  {'mean':>9}  {'std':>9}  {'grad std':>9}"]
        for i in rows:
            lines.append(
                f"{i + 1:>6}  {self.forward_mean[i]:>+9.4f}  {self.forward_std[i]:>9.4f}  "
                f"{self.grad_std[i]:>9.3g}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        head = (
            f"{self.activation} + {self.init}: {self.depth} layers of {self.width} units, "
            f"batch {self.batch}, seed {self.seed}"
        )
        return f"{head}\n{self.table()}\n{self.gradient_note()}"

    def gradient_note(self) -> str:
        """What the grad std column means, and what this run's activation and initializer
        did to the signal both ways: per layer and over the whole depth."""
        top, bottom = self.grad_std[-1], self.grad_std[0]
        if self.depth < 2 or not (top > 0 and bottom > 0 and np.isfinite(bottom / top)):
            return "grad std: the backward signal's std at each layer (≈ 1 at the top layer)"
        layers = self.depth - 1
        backward = float(bottom / top)
        forward = float(self.forward_std[-1] / self.forward_std[0])
        pair = f"{self.activation} + {self.init}"
        head = (
            f"grad std: the backward signal's std, ≈ 1 at the top layer (a N(0, 1) signal); "
            f"toward the input it changes ×{backward ** (1 / layers):.4g} per layer, √χ₁ in "
            f"mean-field terms."
        )
        if not (np.isfinite(forward) and forward > 0):
            return f"{head} With {pair} the forward std does not stay finite and positive."
        steady = 1 / STEADY <= forward <= STEADY, 1 / STEADY <= backward <= STEADY
        change = (
            f"from layer 1 to layer {self.depth} the forward std changes ×{forward:.3g} and the "
            f"gradient, from the top down, ×{backward:.3g}"
        )
        if all(steady):
            verdict = f"both stay within ×{STEADY:g}, a steady signal both ways"
        elif steady[0]:
            verdict = (
                f"the forward std stays within ×{STEADY:g} and the gradient does not: a steady "
                "forward std does not make a steady gradient"
            )
        elif steady[1]:
            verdict = f"the gradient stays within ×{STEADY:g} and the forward std does not"
        else:
            verdict = f"neither stays within ×{STEADY:g}"
        return f"{head} With {pair}, {change}: {verdict}"


#: A change over the whole depth within this factor either way counts as steady in
#: :meth:`PropagationResult.gradient_note`.
STEADY = 2.0


def memory_needed(depth: int, width: int, batch: int, itemsize: int = 4) -> int:
    """Bytes :func:`propagate` holds at its peak: every layer's weight, and its input,
    output and their gradients, kept for the one backward pass."""
    return depth * (width * width + 4 * batch * width) * itemsize


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def beyond_memory(needed: int) -> str | None:
    """Why ``needed`` bytes are refused (more than half of this machine's memory), or None."""
    total = physical_memory()
    if total is None or needed <= total / 2:
        return None
    return f"≈ {needed / 1e9:.3g} GB, more than half of this machine's {total / 1e9:.3g} GB"


def _check_memory(depth: int, width: int, batch: int, itemsize: int, caller: str) -> None:
    """Refuse, with the estimate, a run that would not fit in half the machine's memory."""
    refused = beyond_memory(memory_needed(depth, width, batch, itemsize))
    if refused is not None:
        raise invalid_parameter(
            "depth, width and batch",
            caller,
            "small enough to fit in memory",
            (depth, width, batch),
            hint=f"depth × (width² + 4·batch·width) × {itemsize} bytes {refused}",
        )


def propagate(
    activation: str | nn.Module,
    init: str | _init.Initializer,
    depth: int,
    width: int = 100,
    batch: int = 500,
    seed: int = 0,
    *,
    dtype: str = "float32",
    progress: bool = False,
) -> PropagationResult:
    """Run the data-free depth experiment and return per-layer statistics.

    Args:
        activation: An elementwise activation's name or module (see
            :func:`signalprop.activations.get`); softmax is refused.
        init: Initializer name or object (see :func:`signalprop.init.get`).
        depth: Number of layers, ≥ 1.
        width: Units per layer, ≥ 1.
        batch: Number of standard-normal input rows, ≥ 2.
        seed: Seeds the inputs, the weights and the backward signal; the
            global RNG is not used (nor changed) except by random activations
            such as RReLU, which run in eval mode here.
        dtype: ``"float32"`` or ``"float64"``.
        progress: Show the forward pass's progress on stderr (a bar on a
            terminal, a line at each tenth of the layers otherwise).

    Returns:
        A :class:`PropagationResult`.

    Examples:
        >>> r = propagate("selu", "lecun_normal", depth=100)
        >>> bool(0.8 < r.forward_std[-1] < 1.2)
        True
    """
    caller = "propagate"
    _activations.check_elementwise(activation, caller=caller)
    module = _activations.get(activation).eval()
    initializer = _init.get(init)
    depth = check_int(depth, param="depth", caller=caller, low=1)
    width = check_int(width, param="width", caller=caller, low=1)
    batch = check_int(batch, param="batch", caller=caller, low=2)
    seed = check_int(seed, param="seed", caller=caller, low=0)
    check_option(dtype, ("float32", "float64"), param="dtype", caller=caller)
    torch_dtype = getattr(torch, dtype)
    _check_memory(depth, width, batch, torch.finfo(torch_dtype).bits // 8, caller)

    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, width, generator=generator, dtype=torch_dtype).requires_grad_(True)
    means = np.empty(depth)
    stds = np.empty(depth)
    grads = np.empty(depth)
    outputs: list[Tensor] = []
    statistics: list[Tensor] = []
    with torch.enable_grad():
        bar = Progress(depth, f"propagate: {depth} layers", enabled=progress)
        try:
            for _ in range(depth):
                weight = torch.empty(width, width, dtype=torch_dtype)
                initializer(weight, generator=generator, fans=(width, width))
                h = module(h @ weight.T)
                std, mean = torch.std_mean(h.detach())
                statistics.append(torch.stack([mean, std]))
                outputs.append(h)
                bar.update()
        finally:
            bar.close()
        g = torch.randn(batch, width, generator=generator, dtype=torch_dtype)
        gradients = torch.autograd.grad((outputs[-1] * g).sum(), outputs, allow_unused=True)
    forward = torch.stack(statistics).double().numpy()
    means[:], stds[:] = forward[:, 0], forward[:, 1]
    for i, grad in enumerate(gradients):
        grads[i] = float("nan") if grad is None else float(grad.double().std().item())
    return PropagationResult(
        activation=repr(module),
        init=repr(initializer),
        depth=depth,
        width=width,
        batch=batch,
        seed=seed,
        forward_mean=means,
        forward_std=stds,
        grad_std=grads,
    )
