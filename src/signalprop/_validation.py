"""Argument checks with one error wording for the whole library.

Every public function and constructor checks its arguments here, at the door,
so that a mistake is reported where it is made and always in the same words::

    The 'mode' parameter of variance_scaling_ must be one of ['fan_avg',
    'fan_in', 'fan_out']. Got 'fan_inn' instead. Did you mean 'fan_in'?
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "UnknownArgumentsError",
    "check_batch",
    "check_int",
    "check_option",
    "check_real",
    "construct",
    "describe",
    "external_stacklevel",
    "invalid_parameter",
    "lookup",
]


#: The longest ``repr`` an error message quotes whole; a longer one is cut, its length said.
MAX_REPR = 300


def describe(value: Any) -> str:
    """``value`` as an error message shows it: its ``repr``, but an array or tensor
    (anything with a ``shape`` and a ``dtype``: NumPy, PyTorch, JAX, TensorFlow) by its
    type, shape and dtype, in tuples, lists and dicts too, and a long ``repr`` cut.

    Examples:
        >>> import numpy as np
        >>> describe((np.zeros((64, 784), "float32"), [1, 2]))
        '(ndarray of shape (64, 784) and dtype float32, [1, 2])'
    """
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(value, numbers.Number):
        try:
            dims = tuple(int(n) for n in shape)
        except (TypeError, ValueError):  # an unknown dimension (None)
            dims = tuple(shape)
        return f"{type(value).__name__} of shape {dims} and dtype {dtype}"
    if type(value) in (tuple, list):
        items = ", ".join(describe(item) for item in value)
        if isinstance(value, tuple):
            text = f"({items},)" if len(value) == 1 else f"({items})"
        else:
            text = f"[{items}]"
    elif type(value) is dict:
        text = "{" + ", ".join(f"{key!r}: {describe(item)}" for key, item in value.items()) + "}"
    else:
        text = repr(value)
    if len(text) > MAX_REPR:
        return f"{text[:MAX_REPR]}… ({type(value).__name__}, {len(text)} characters)"
    return text


def invalid_parameter(
    param: str, caller: str, expected: str, got: Any, *, hint: str = ""
) -> ValueError:
    """Build the one `ValueError` wording used throughout signalprop.

    ``got`` is shown by :func:`describe`: an array by its type, shape and dtype, never
    its values.
    """
    shown = describe(got)
    message = f"The {param!r} parameter of {caller} must be {expected}. Got {shown} instead."
    if hint:
        message = f"{message} {hint}"
    return ValueError(message)


def _closest(value: Any, options: Iterable[str]) -> str:
    if not isinstance(value, str):
        return ""
    matches = difflib.get_close_matches(value.lower(), list(options), n=1, cutoff=0.5)
    return f"Did you mean {matches[0]!r}?" if matches else ""


def check_option(
    value: Any, options: Iterable[str], *, param: str, caller: str, what: str = ""
) -> str:
    """Return ``value`` if it is one of ``options``; otherwise raise listing them.

    ``what`` names the kind of value expected, before the list: with
    ``what="an elementwise activation"`` the message says *must be an elementwise
    activation (one of [...])*.
    """
    valid = sorted(options)
    if not isinstance(value, str) or value not in valid:
        expected = f"{what} (one of {valid})" if what else f"one of {valid}"
        raise invalid_parameter(param, caller, expected, value, hint=_closest(value, valid))
    return value


def lookup(registry: Mapping[str, T], key: str, *, param: str, caller: str) -> T:
    """Look ``key`` up in a name registry; unknown names list the valid ones."""
    try:
        return registry[key]
    except KeyError:
        valid = sorted(registry)
        raise invalid_parameter(
            param, caller, f"one of {valid}", key, hint=_closest(key, valid)
        ) from None


def check_real(
    value: Any,
    *,
    param: str,
    caller: str,
    low: float | None = None,
    low_inclusive: bool = True,
    high: float | None = None,
) -> float:
    """Return ``value`` as a float after checking it is a finite real in range.

    Booleans are refused: ``alpha=True`` is a mistake, not a slope of 1.
    """
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    expected = "a finite real number" + (f" {' and '.join(bounds)}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid_parameter(param, caller, expected, value)
    number = float(value)
    if not math.isfinite(number):
        raise invalid_parameter(param, caller, expected, value)
    if low is not None and (number < low or (not low_inclusive and number == low)):
        raise invalid_parameter(param, caller, expected, value)
    if high is not None and number > high:
        raise invalid_parameter(param, caller, expected, value)
    return number


def check_int(value: Any, *, param: str, caller: str, low: int | None = None) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= low``."""
    expected = "an integer" + (f" >= {low}" if low is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise invalid_parameter(param, caller, expected, value)
    number = int(value)
    if low is not None and number < low:
        raise invalid_parameter(param, caller, expected, value)
    return number


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def external_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside signalprop."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def check_batch(inputs: tuple[Any, ...], *, param: str, caller: str) -> None:
    """Refuse a batch no statistic can be read from: empty, all NaN, or all one value.

    The first tensor must hold at least one example; a floating-point tensor
    must not be all NaN; the first floating-point tensor of more than one
    value must not be constant (its statistics would be 0/0, and any verdict
    drawn from them wrong). Token ids and masks (integer tensors) are only
    checked for emptiness.
    """
    import torch  # the numeric floors import this module; torch is imported lazily here

    tensors = [a for a in inputs if isinstance(a, torch.Tensor)]
    if not tensors:
        return
    first = tensors[0]
    if first.numel() == 0 or (first.dim() > 0 and first.shape[0] == 0):
        raise invalid_parameter(
            param, caller, "a batch with at least one example", f"shape {tuple(first.shape)}"
        )
    floating = [t for t in tensors if t.is_floating_point() and t.numel()]
    for tensor in floating:
        if bool(torch.isnan(tensor).all()):
            raise invalid_parameter(
                param, caller, "a batch with numbers", f"all {tensor.numel()} values NaN"
            )
    if floating and floating[0].numel() > 1:
        values = floating[0].detach()
        finite = values[torch.isfinite(values)]
        if finite.numel() > 1 and bool((finite == finite.flatten()[0]).all()):
            raise invalid_parameter(
                param,
                caller,
                "a batch whose values vary",
                f"every value equal to {finite.flatten()[0].item():g}",
                hint="statistics of a constant batch say nothing about the network",
            )


class UnknownArgumentsError(ValueError):
    """Arguments a constructor does not take; ``unknown`` and ``valid`` name them."""

    def __init__(self, message: str, unknown: list[str], valid: list[str]) -> None:
        super().__init__(message)
        self.unknown = unknown
        self.valid = valid


def construct(cls: Callable[..., T], kwargs: Mapping[str, Any], *, name: str, caller: str) -> T:
    """``cls(**kwargs)``, with arguments ``cls`` does not take refused in the one wording.

    A misspelt or foreign argument (``relu`` with ``alpha``, ``leaky_relu`` with
    ``beta``) is an :class:`UnknownArgumentsError` (a ``ValueError``) that lists the
    arguments ``name`` takes, instead of Python's ``TypeError`` from deep inside
    the constructor.
    """
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        parameters = []
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    valid = sorted(p.name for p in parameters if p.kind in named)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        takes = f"arguments of {name}: {valid}" if valid else f"none: {name} takes no arguments"
        message = str(
            invalid_parameter("params", caller, takes, unknown, hint=_closest(unknown[0], valid))
        )
        raise UnknownArgumentsError(message, unknown, valid)
    try:
        return cls(**kwargs)
    except TypeError as error:
        message = str(
            invalid_parameter(
                "params", caller, f"arguments {name} accepts", dict(kwargs), hint=str(error)
            )
        )
        if unknown:  # passed on through **kwargs to a constructor that refused them
            raise UnknownArgumentsError(message, unknown, valid) from None
        raise ValueError(message) from None
