"""``signalprop autoinit``: re-initialize an example network, diagnosed before and after."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from signalprop._validation import check_int, check_option
from signalprop.autoinit import CRITERIA, DISTRIBUTIONS
from signalprop.cli._common import (
    PROG,
    Config,
    fitting_batch,
    made_by,
    writable_directory,
)
from signalprop.examples import EXAMPLES

if TYPE_CHECKING:
    from signalprop.cli._common import Subparsers

NAME = "autoinit"


def _presets() -> list[str]:
    from signalprop.examples import TORCH_DEFAULT

    return [*EXAMPLES, *(f"torch-default-{name}" for name in TORCH_DEFAULT)]


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    auto = subparsers.add_parser(
        NAME, help="re-initialize an example network and diagnose it before and after"
    )
    auto.add_argument(
        "--preset",
        required=True,
        help=f"example network: one of {sorted(_presets())}",
    )
    auto.add_argument("--mode", choices=["analytic", "data"], default="analytic")
    auto.add_argument(
        "--criterion",
        choices=sorted(CRITERIA),
        default=None,
        help="critical: the edge of chaos (chi_1 = 1); variance: pre-activations of "
        "variance 1 (default: autoinit's)",
    )
    auto.add_argument(
        "--distribution",
        choices=sorted(DISTRIBUTIONS),
        default=None,
        help="how the weights are drawn (default: autoinit's)",
    )
    auto.add_argument("--batch", type=int, default=256, help="inputs (default 256)")
    auto.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the inputs, the labels and autoinit's new weights (default 0)",
    )
    auto.add_argument("--report", metavar="DIR", help="write a Markdown report and figures here")
    return auto


def config(args: argparse.Namespace) -> Config:
    check_option(args.preset, _presets(), param="--preset", caller=f"{PROG} autoinit")
    return Config(
        NAME,
        {
            "preset": args.preset,
            "mode": args.mode,
            "criterion": args.criterion,
            "distribution": args.distribution,
            "batch": fitting_batch(args.batch, args.preset, "autoinit"),
            "seed": check_int(args.seed, param="seed", caller=PROG, low=0),
            "report": args.report,
        },
    )


def run(options: dict[str, Any]) -> int:
    import torch

    from signalprop.autoinit import autoinit
    from signalprop.diagnostics import diagnose
    from signalprop.examples import build_example, build_torch_default, describe
    from signalprop.plots import plot_layers

    directory = writable_directory(options["report"], "--report") if options["report"] else None
    name = options["preset"]
    if name.startswith("torch-default-"):
        model, inputs, labels = build_torch_default(
            name.removeprefix("torch-default-"), batch=options["batch"], seed=options["seed"]
        )
    else:
        model, inputs, labels = build_example(name, batch=options["batch"], seed=options["seed"])
    title = f"{name}: {describe(name)}"
    before = diagnose(model, inputs, labels)
    chosen = {k: options[k] for k in ("criterion", "distribution") if options.get(k)}
    # The new weights come from --seed too, so that a report comes out the same again
    # (seed + 2: the drawn model takes the seed itself, the inputs seed + 1).
    generator = torch.Generator().manual_seed(options["seed"] + 2)
    result = autoinit(model, inputs, mode=options["mode"], generator=generator, **chosen)
    after = diagnose(model, inputs, labels)
    print(title, "\n\nBEFORE autoinit:\n" + before.summary())
    print("\n" + str(result))
    print("\nAFTER autoinit:\n" + after.summary())
    if directory is not None:
        plot_layers(before).savefig(directory / "before.png", dpi=110)
        plot_layers(after).savefig(directory / "after.png", dpi=110)
        (directory / "autoinit.md").write_text(
            f"# autoinit ({result.criterion}, {options['mode']}): {title}\n\n"
            f"Standardized random inputs (batch "
            f"{options['batch']}, seed {options['seed']}) with random labels.\n\n"
            f"# Before\n\n{before.to_markdown()}\n![before](before.png)\n\n"
            f"# What autoinit did\n\n```\n{result}\n```\n\n"
            f"# After\n\n{after.to_markdown()}\n![after](after.png)\n\n{made_by()}\n"
        )
        print(f"\nreport written to {directory}/autoinit.md")
    return 0
