"""Small real models for the tests, built from code and configurations, never downloaded.

The transformers are Hugging Face's own classes built from small configurations (width 32, 2
heads, vocabulary 50, 16 positions; ViT: 16-pixel images in 4-pixel patches), so the tests see
the modules users hold: ``Conv1D`` projections, ``GELUActivation``/``NewGELUActivation``, tied
embeddings, LayerNorm. Their dropout probabilities are 0 so two forward passes agree; the
``nn.Dropout`` modules are still there.

``resnet18`` is torchvision's ResNet-18 written out (torchvision's wheel does not match the
installed torch): the same modules, names, forward and initialization, so a test on it is a
test on what torchvision users hold. ``mobilenet_like`` is a MobileNetV3-style net (inverted
residual blocks, depthwise convolutions, squeeze-excite, Hardswish) with torchvision's
MobileNetV3 initialization, shrunk to five blocks.

Every builder takes ``seed`` and draws its weights from it without touching the global
generator, so a test can build the same model twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")

VOCAB = 50
"""Vocabulary size of the small transformers."""
SEQ = 16
"""Positions (sequence length) of the small transformers."""
WIDTH = 32
"""Hidden size of the small transformers."""
HEADS = 2
"""Attention heads of the small transformers."""
IMAGE = 16
"""Side of the ViT's images, in pixels."""
PATCH = 4
"""Side of the ViT's patches, in pixels."""


def _seeded(seed: int, build: Callable[[], T]) -> T:
    """``build()`` with the global generator seeded by ``seed`` and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# --- transformers ------------------------------------------------------------------------


def gpt2(n_layer: int = 2, lm_head: bool = True, seed: int = 0) -> nn.Module:
    """Hugging Face GPT-2 from a small config: ``GPT2LMHeadModel`` (``lm_head.weight`` *is*
    ``transformer.wte.weight``, tied as in the released model) or, with ``lm_head=False``,
    the bare ``GPT2Model``. Input: :func:`token_ids`."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    config = GPT2Config(
        n_layer=n_layer,
        n_embd=WIDTH,
        n_head=HEADS,
        vocab_size=VOCAB,
        n_positions=SEQ,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    cls = GPT2LMHeadModel if lm_head else GPT2Model
    return _seeded(seed, lambda: cls(config))


def bert(n_layer: int = 2, num_labels: int | None = None, seed: int = 0) -> nn.Module:
    """Hugging Face BERT from a small config: ``BertModel`` (pooler included) or, with
    ``num_labels``, ``BertForSequenceClassification``. Input: :func:`token_ids`."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    config = BertConfig(
        hidden_size=WIDTH,
        num_hidden_layers=n_layer,
        num_attention_heads=HEADS,
        intermediate_size=4 * WIDTH,
        vocab_size=VOCAB,
        max_position_embeddings=SEQ,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if num_labels is None:
        return _seeded(seed, lambda: BertModel(config))
    config.num_labels = num_labels
    return _seeded(seed, lambda: BertForSequenceClassification(config))


def vit(n_layer: int = 2, num_labels: int | None = 10, seed: int = 0) -> nn.Module:
    """Hugging Face ViT from a small config (16-pixel images, 4-pixel patches):
    ``ViTForImageClassification`` or, with ``num_labels=None``, the bare ``ViTModel``.
    Input: :func:`pixel_values`."""
    from transformers import ViTConfig, ViTForImageClassification, ViTModel

    config = ViTConfig(
        hidden_size=WIDTH,
        num_hidden_layers=n_layer,
        num_attention_heads=HEADS,
        intermediate_size=4 * WIDTH,
        image_size=IMAGE,
        patch_size=PATCH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if num_labels is None:
        return _seeded(seed, lambda: ViTModel(config))
    config.num_labels = num_labels
    return _seeded(seed, lambda: ViTForImageClassification(config))


def token_ids(batch: int = 4, seq: int = SEQ, vocab: int = VOCAB, seed: int = 0) -> torch.Tensor:
    """A ``(batch, seq)`` long tensor of token ids uniform over the vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=generator)


def pixel_values(
    batch: int = 4, image: int = IMAGE, channels: int = 3, seed: int = 0
) -> torch.Tensor:
    """A ``(batch, channels, image, image)`` batch of standardized pixels (standard normal, as
    after the usual per-channel normalization)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, image, image, generator=generator)


def images(batch: int = 8, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Standardized images for the convolutional nets (same draw as :func:`pixel_values`)."""
    return pixel_values(batch, size, channels, seed)


# --- ResNet-18, as torchvision writes it ---------------------------------------------------


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: conv-bn-relu-conv-bn, plus the (downsampled) input, relu.
    Its one ``nn.ReLU(inplace=True)`` is called twice per forward, as in torchvision."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class ResNet(nn.Module):
    """torchvision's ``ResNet`` for ``BasicBlock`` (``zero_init_residual=False``)."""

    def __init__(
        self, layers: Sequence[int], num_classes: int, in_channels: int, width: int
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers: list[nn.Module] = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)  # type: ignore[no-any-return]


def resnet18(
    num_classes: int = 10, in_channels: int = 3, width: int = 64, seed: int = 0
) -> nn.Module:
    """torchvision's ``resnet18(num_classes=...)`` with ``in_channels`` input planes. ``width``
    is the first stage's planes (torchvision: 64; pass 8 or 16 for a fast test: same modules,
    narrower). Input: :func:`images` (32 pixels or more)."""
    return _seeded(seed, lambda: ResNet([2, 2, 2, 2], num_classes, in_channels, width))


# --- MobileNetV3-style --------------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never below 90 % of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` as MobileNetV3 uses it: average pool, 1x1 conv,
    ReLU, 1x1 conv, Hardsigmoid, and the input multiplied by that per-channel scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x  # type: ignore[no-any-return]


def _conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int, groups: int, act: type[nn.Module] | None
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: conv (no bias), BatchNorm, in-place activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1x1 expand, depthwise kxk, optional squeeze-excite, 1x1 project
    (BatchNorm, no activation), plus the input when the shapes allow."""

    def __init__(
        self,
        cin: int,
        kernel: int,
        expanded: int,
        cout: int,
        use_se: bool,
        act: type[nn.Module],
        stride: int,
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_conv_bn_act(cin, expanded, 1, 1, 1, act))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride, expanded, act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
        layers.append(_conv_bn_act(expanded, cout, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out  # type: ignore[no-any-return]


_MOBILE_BLOCKS: tuple[tuple[int, int, int, int, bool, type[nn.Module], int], ...] = (
    # cin, kernel, expanded, cout, squeeze-excite, activation, stride (MobileNetV3-Small's
    # first blocks, narrowed)
    (16, 3, 16, 16, True, nn.ReLU, 2),
    (16, 3, 48, 24, False, nn.ReLU, 2),
    (24, 3, 64, 24, False, nn.ReLU, 1),
    (24, 5, 64, 32, True, nn.Hardswish, 2),
    (32, 5, 96, 32, True, nn.Hardswish, 1),
)


class MobileNetLike(nn.Module):
    """Stem conv-BN-Hardswish, five inverted residual blocks, 1x1 conv-BN-Hardswish, average
    pool, classifier Linear-Hardswish-Dropout-Linear: MobileNetV3-Small's layout, narrowed."""

    def __init__(self, num_classes: int, in_channels: int, last_channel: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(in_channels, 16, 3, 2, 1, nn.Hardswish)]
        layers += [InvertedResidual(*spec) for spec in _MOBILE_BLOCKS]
        last_in = _MOBILE_BLOCKS[-1][3]
        layers.append(_conv_bn_act(last_in, 6 * last_in, 1, 1, 1, nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_in, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=0.2, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        # torchvision's MobileNetV3 initialization.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)  # type: ignore[no-any-return]


def mobilenet_like(num_classes: int = 10, in_channels: int = 3, seed: int = 0) -> nn.Module:
    """A MobileNetV3-style net (see :class:`MobileNetLike`). Input: :func:`images`
    (32 pixels: five stride-2 stages bring it to 1x1)."""
    return _seeded(seed, lambda: MobileNetLike(num_classes, in_channels))


# --- residual MLP -------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """``x + fc2(act(fc1(x)))``: a residual MLP block, no activation after the sum."""

    def __init__(self, width: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.act = act()
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))  # type: ignore[no-any-return]


def residual_mlp(
    blocks: int = 4,
    width: int = 32,
    in_features: int = 16,
    out_features: int = 10,
    act: Callable[[], nn.Module] = nn.ReLU,
    seed: int = 0,
) -> nn.Sequential:
    """Input Linear, ``blocks`` :class:`ResidualBlock` s, output Linear (PyTorch's default
    init). Input: ``torch.randn(batch, in_features)``."""

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(in_features, width),
            *(ResidualBlock(width, act) for _ in range(blocks)),
            nn.Linear(width, out_features),
        )

    return _seeded(seed, build)


def kwargs_for(model: nn.Module, batch: int = 4, seed: int = 0) -> dict[str, Any]:
    """Forward keyword arguments for one of the transformers above (``input_ids`` or
    ``pixel_values``), so a test can loop over them."""
    name = type(model).__name__
    if name.startswith("ViT"):
        return {"pixel_values": pixel_values(batch, seed=seed)}
    return {"input_ids": token_ids(batch, seed=seed)}
