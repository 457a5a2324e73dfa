"""``signalprop gain``: the variance-preserving gain of an activation, computed numerically."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from signalprop import activations as _activations
from signalprop.cli._common import (
    PROG,
    Config,
    UsageError,
    add_param_argument,
    check_params,
    parse_params,
)

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "gain"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    gain = subparsers.add_parser(
        NAME, help="the variance-preserving gain of an activation, computed numerically"
    )
    gain.add_argument("activation", nargs="?", help="activation name (default: a table of all)")
    add_param_argument(gain)
    return gain


def config(args: argparse.Namespace) -> Config:
    params = parse_params(args.param)
    if args.activation is None and params:
        raise UsageError("gain: --param needs an activation name")
    if args.activation is not None:
        _activations.check_elementwise(args.activation, caller=f"{PROG} gain")
        check_params(args.activation, params, "gain")
    return Config(NAME, {"activation": args.activation, "params": params})


def _torch_gain(name: str, params: dict[str, float]) -> str:
    import torch

    torch_name = {"sigmoid": "sigmoid", "logistic": "sigmoid", "linear": "linear"}.get(name, name)
    try:
        slope = params.get("alpha", 0.3) if name == "leaky_relu" else None  # signalprop's default
        value = torch.nn.init.calculate_gain(torch_name, slope)  # type: ignore[arg-type]
    except ValueError:
        return "-"
    return f"{value:.6g}"


def run(options: dict[str, Any]) -> int:
    from signalprop.gains import moments

    names = (
        [options["activation"]]
        if options["activation"]
        else [n for n in _activations.elementwise_names() if n not in ("logistic", "swish")]
    )
    # Every number first, so that an error is never printed below a table's header.
    table = [(name, moments(name, **options["params"])) for name in names]
    print(
        f"{'activation':>12}  {'E[f(z)²]':>10}  {'E[f′(z)²]':>10}  {'forward gain':>12}  "
        f"{'backward gain':>13}  {'torch calculate_gain':>20}"
    )
    for name, m in table:
        print(
            f"{name:>12}  {m.second:10.6f}  {m.derivative_second:10.6f}  {m.forward_gain:12.6f}  "
            f"{m.backward_gain:13.6f}  {_torch_gain(name, options['params']):>20}"
        )
    print("z ~ N(0, 1); forward gain 1/√E[f(z)²] keeps the signal's variance (the default),")
    print("backward gain 1/√E[f′(z)²] keeps the gradient's; weights: variance gain² / fan_in.")
    return 0
