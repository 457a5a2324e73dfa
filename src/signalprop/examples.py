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
    "BasicBlock",
    "Example",
    "ResidualBlock",
    "ResidualMLP",
    "SmallResNet",
    "build_example",
    "build_torch_default",
    "describe",
    "units",
]


@dataclass(frozen=True)
class Example:
    """A deep dense net described by its activation, initializer and depth.

    ``description`` says what the net shows; its size is written by :func:`describe`
    from ``depth``, so the two cannot disagree.

    Examples:
        >>> from signalprop.examples import Example
        >>> Example('tanh', 'glorot_uniform', 20, 'a 20-layer tanh net')
        Example(activation='tanh', init='glorot_uniform', depth=20, description='a ...
    """

    activation: str
    init: str | _init.Initializer
    depth: int
    description: str


EXAMPLES: dict[str, Example] = {
    "chapter-selu": Example(
        "selu", "lecun_normal", 100, "the chapter's SELU net, LeCun init (self-normalizing)"
    ),
    "chapter-relu": Example("relu", "he_normal", 100, "the chapter's ReLU net, He init"),
    "relu-he-30": Example("relu", "he_normal", 30, "ReLU, He init (He et al. 2015)"),
    "relu-glorot-30": Example(
        "relu", "glorot_uniform", 30, "ReLU, Glorot init: stalls (He et al. 2015)"
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
        "tanh with N(0, 0.01²) weights: the signal and gradient vanish",
    ),
    "relu-large": Example(
        "relu",
        _init.VarianceScaling(scale=20.0, mode="fan_in", distribution="normal"),
        30,
        "ReLU with weights 10× He's variance: the signal and gradient explode",
    ),
}
"""The built-in example nets by name (`signalprop diagnose --list`).

Examples:
    >>> from signalprop.examples import EXAMPLES
    >>> EXAMPLES['chapter-selu']
    Example(activation='selu', init='lecun_normal', depth=100, description="the ...
"""


#: The examples' shape: Fashion-MNIST's 784 inputs, 300 units, then 100 per layer, 10 classes.
INPUTS, FIRST, WIDTH, CLASSES = 784, 300, 100, 10
#: ``torch-default-<activation>``: this many layers of this many units.
TORCH_DEFAULT_DEPTH, TORCH_DEFAULT_WIDTH = 50, 100


def units(name: str) -> int:
    """Inputs and units of a built-in example (or ``torch-default-<activation>``) net.

    Examples:
        >>> from signalprop.examples import units
        >>> units('chapter-selu')
        10994
    """
    if name.startswith(TORCH_DEFAULT_PREFIX):
        return TORCH_DEFAULT_WIDTH * (TORCH_DEFAULT_DEPTH + 1) + CLASSES
    example = lookup(EXAMPLES, name, param="name", caller="units")
    return INPUTS + FIRST + WIDTH * (example.depth - 1) + CLASSES


TORCH_DEFAULT_PREFIX = "torch-default-"


def describe(name: str) -> str:
    """A built-in net's size and what it shows, its layers counted from its settings.

    Layers are counted as :func:`signalprop.diagnose` counts them: every weight
    layer, the output included.

    Example:
        >>> describe("relu-he-30")
        '30 hidden layers (300 units, then 29 of 100) and the output: 31 weight layers; ReLU, He init (He et al. 2015)'
    """  # noqa: E501
    if name.startswith(TORCH_DEFAULT_PREFIX):
        activation = name.removeprefix(TORCH_DEFAULT_PREFIX)
        check_option(activation, TORCH_DEFAULT, param="name", caller="describe")
        return (
            f"{TORCH_DEFAULT_DEPTH} hidden nn.Linear layers of {TORCH_DEFAULT_WIDTH} units and "
            f"the output: {TORCH_DEFAULT_DEPTH + 1} weight layers; {activation} with "
            "PyTorch's default initialization"
        )
    example = lookup(EXAMPLES, name, param="name", caller="describe")
    widths = f"{FIRST} units" + (
        f", then {example.depth - 1} of {WIDTH}" if example.depth > 1 else ""
    )
    return (
        f"{example.depth} hidden layers ({widths}) and the output: {example.depth + 1} weight "
        f"layers; {example.description}"
    )


def build_example(
    name: str, *, batch: int = 256, seed: int = 0
) -> tuple[Sequential, torch.Tensor, torch.Tensor]:
    """Build an example: ``(model, standardized inputs (batch, 784), random labels)``.

    Everything is drawn from generators seeded with ``seed``; the global RNG
    is left as it was.

    Examples:
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


TORCH_DEFAULT = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "silu")
"""Plain ``nn.Linear`` stacks with PyTorch's default initialization (variance
1/(3·fan_in)), :data:`TORCH_DEFAULT_DEPTH` hidden layers of :data:`TORCH_DEFAULT_WIDTH`
units and the output layer: ``torch-default-<activation>``.

Examples:
    >>> from signalprop.examples import TORCH_DEFAULT
    >>> TORCH_DEFAULT
    ('sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', 'selu', 'gelu', 'silu')
"""


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

    Examples:
        >>> from signalprop.examples import build_torch_default
        >>> model, x, y = build_torch_default('tanh', depth=5, width=16, batch=8)
        >>> len(model), x.shape, y.shape
        (11, torch.Size([8, 16]), torch.Size([8]))
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


class ResidualBlock(nn.Module):
    """A pre-activation ("full") residual block of an MLP: ``x + fc2(relu(fc1(x)))``
    (Yang & Schoenholz 2017's full residual network with ReLU).

    Examples:
        >>> import torch, signalprop as sp
        >>> from signalprop.examples import ResidualBlock
        >>> block = ResidualBlock(32)   # x + fc2(relu(fc1(x)))
        >>> block(torch.randn(4, 32)).shape
        torch.Size([4, 32])
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.fc2(self.relu(self.fc1(x)))
        return out


class ResidualMLP(nn.Module):
    """Flatten → Linear(inputs, width) → ``blocks`` × :class:`ResidualBlock` → Linear(width, 10).

    PyTorch's default initialization, as a user would write it. The stream's
    variance grows by ``1 + σ₁²σ₂²/2`` per block (1 + 1/18 with PyTorch's default
    variance 1/(3·fan_in), 256 blocks: ×10⁶): see :mod:`signalprop.meanfield` 's
    residual functions.

    Examples:
        >>> ResidualMLP(3, width=8)(torch.randn(2, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, blocks: int, width: int = 64, inputs: int = INPUTS) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.input = nn.Linear(inputs, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.output = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.output(self.blocks(self.input(self.flatten(x))))
        return out


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x))``,
    the skip a 1×1 convolution and BatchNorm when the shape changes (He et al. 2016).

    Examples:
        >>> import torch, signalprop as sp
        >>> from signalprop.examples import BasicBlock
        >>> block = BasicBlock(16, 32, stride=2)
        >>> block(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(self, inputs: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or inputs != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class SmallResNet(nn.Module):
    """A ResNet for 28×28 grey images, in torchvision's layout at a small size.

    Stem conv 3×3 (stride 2: 14×14) → BN → ReLU, then two stages of ``blocks``
    :class:`BasicBlock` each (``width`` channels, then ``2·width`` at 7×7), global
    average pooling, Linear → 10. PyTorch's default initialization (torchvision's
    own draws He-normal convolutions; both leave the BN weights at 1).

    Examples:
        >>> SmallResNet(1, width=4)(torch.randn(2, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, blocks: int = 2, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        inputs = width
        for stage, channels in enumerate((width, 2 * width)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                stages.append(BasicBlock(inputs, channels, stride))
                inputs = channels
        self.blocks = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inputs, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (batch, 28, 28) grey images, as signalprop.data gives them
        out: torch.Tensor = self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))
        return out
