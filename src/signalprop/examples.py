"""Built-in example networks: the chapter's deep nets and the classic failures.

Each example is data (activation, initializer, depth); :func:`build_example`
turns one into a Fashion-MNIST-shaped dense net (784 inputs, 300 units, then
100-unit layers, 10 softmax outputs) and a batch of standardized inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from signalprop import activations as _activations
from signalprop import init as _init
from signalprop._validation import check_int, check_option, lookup
from signalprop.layers import Dense, Sequential

__all__ = [
    "EXAMPLES",
    "TORCH_DEFAULT",
    "Example",
    "build_example",
    "build_torch_default",
    "units",
]


@dataclass(frozen=True)
class Example:
    """A deep dense net described by its activation, initializer and depth."""

    activation: str
    init: str | _init.Initializer
    depth: int
    description: str


EXAMPLES: dict[str, Example] = {
    "chapter-selu": Example(
        "selu", "lecun_normal", 100, "the chapter's 100-layer SELU net (self-normalizing)"
    ),
    "chapter-relu": Example(
        "relu", "he_normal", 100, "the chapter's 100-layer ReLU net with He initialization"
    ),
    "relu-he-30": Example("relu", "he_normal", 30, "30-layer ReLU net, He init (He et al. 2015)"),
    "relu-glorot-30": Example(
        "relu", "glorot_uniform", 30, "30-layer ReLU net, Glorot init: stalls (He et al. 2015)"
    ),
    "logistic-normal": Example(
        "sigmoid",
        _init.RandomNormal(stddev=1.0),
        5,
        "logistic units with N(0, 1) weights: the top layers saturate (Glorot & Bengio 2010)",
    ),
    "logistic-glorot": Example(
        "sigmoid", "glorot_uniform", 5, "logistic units with Glorot init (Glorot & Bengio 2010)"
    ),
    "tanh-tiny": Example(
        "tanh",
        _init.RandomNormal(stddev=0.01),
        30,
        "30-layer tanh net with N(0, 0.01²) weights: the signal and gradient vanish",
    ),
    "relu-large": Example(
        "relu",
        _init.VarianceScaling(scale=20.0, mode="fan_in", distribution="normal"),
        30,
        "30-layer ReLU net with weights 10× He's variance: the signal and gradient explode",
    ),
}


#: The examples' shape: Fashion-MNIST's 784 inputs, 300 units, then 100 per layer, 10 classes.
INPUTS, FIRST, WIDTH, CLASSES = 784, 300, 100, 10
#: ``torch-default-<activation>``: this many layers of this many units.
TORCH_DEFAULT_DEPTH, TORCH_DEFAULT_WIDTH = 50, 100


def units(name: str) -> int:
    """Inputs and units of a built-in example (or ``torch-default-<activation>``) net."""
    if name.startswith("torch-default-"):
        return TORCH_DEFAULT_WIDTH * (TORCH_DEFAULT_DEPTH + 1) + CLASSES
    example = lookup(EXAMPLES, name, param="name", caller="units")
    return INPUTS + FIRST + WIDTH * (example.depth - 1) + CLASSES


def build_example(
    name: str, *, batch: int = 256, seed: int = 0
) -> tuple[Sequential, torch.Tensor, torch.Tensor]:
    """Build an example: ``(model, standardized inputs (batch, 784), random labels)``.

    Everything is drawn from generators seeded with ``seed``; the global RNG
    is left as it was.

    Example:
        >>> model, x, y = build_example("chapter-selu", batch=8)
        >>> model(x).shape
        torch.Size([8, 10])
    """
    example = lookup(EXAMPLES, name, param="name", caller="build_example")
    batch = check_int(batch, param="batch", caller="build_example", low=1)
    seed = check_int(seed, param="seed", caller="build_example", low=0)
    initializer = _init.get(example.init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [
            Dense(FIRST, example.activation, kernel_initializer=initializer, input_dim=INPUTS)
        ]
        layers += [
            Dense(WIDTH, example.activation, kernel_initializer=initializer)
            for _ in range(example.depth - 1)
        ]
        layers.append(Dense(CLASSES, "softmax"))
        model = Sequential(layers, input_shape=(INPUTS,))
    generator = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn(batch, INPUTS, generator=generator)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    return model, inputs, labels


#: Plain ``nn.Linear`` stacks with PyTorch's default initialization
#: (variance 1/(3·fan_in)), 50 hidden layers of 100 units: ``torch-default-<activation>``.
TORCH_DEFAULT = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "silu")


def build_torch_default(
    activation: str,
    *,
    depth: int = TORCH_DEFAULT_DEPTH,
    width: int = TORCH_DEFAULT_WIDTH,
    batch: int = 256,
    seed: int = 0,
) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A plain PyTorch dense net as a user would write it: ``(model, inputs, labels)``.

    ``nn.Linear`` layers keep PyTorch's default initialization; the activation
    modules come from :func:`signalprop.activations.create` (so the leaky
    ReLU's slope is 0.3). Inputs are standardized (batch, width) normals.
    """
    check_option(activation, TORCH_DEFAULT, param="activation", caller="build_torch_default")
    depth = check_int(depth, param="depth", caller="build_torch_default", low=1)
    width = check_int(width, param="width", caller="build_torch_default", low=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), _activations.create(activation)]
        layers.append(nn.Linear(width, CLASSES))
        model = nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn(batch, width, generator=generator)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    return model, inputs, labels
