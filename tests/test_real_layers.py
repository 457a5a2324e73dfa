"""The model reader, diagnose and the Monitor on the layers real models are built from:
normalizations between a layer and its activation, modules called twice, Hugging Face's
Conv1D and activation classes, nn.MultiheadAttention, in-place activations, and BERT,
GPT-2 and ViT built from small configurations (no download)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from signalprop._model import is_norm, read_model

# ------------------------------------------------------------------ normalizations


class _LookAlikeLayerNorm(nn.Module):
    """A LayerNorm written by hand, as Hugging Face and timm write theirs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True).clamp_min(1e-6)
        return x * self.weight


class _Normalizer(nn.Module):
    """'Normal' is not 'Norm': a module so named is not a normalization."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 2.0


def test_norm_between_layer_and_activation_is_looked_through() -> None:
    bn = nn.BatchNorm1d(5)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 5), bn, relu, nn.Linear(5, 3))
    first, last = read_model(model).layers
    assert first.consumer is relu and first.norm is bn
    assert last.producer is relu and last.norm is None and last.consumer is None


def test_look_alike_norm_is_a_leaf_and_looked_through() -> None:
    norm = _LookAlikeLayerNorm(5)
    gelu = nn.GELU()
    model = nn.Sequential(nn.Linear(4, 5), norm, gelu, nn.Linear(5, 3))
    view = read_model(model)
    assert view.traced
    assert view.layers[0].norm is norm and view.layers[0].consumer is gelu
    assert is_norm(norm) and is_norm(nn.GroupNorm(1, 4)) and is_norm(nn.LocalResponseNorm(2))
    assert not is_norm(_Normalizer()) and not is_norm(nn.Linear(2, 2)) and not is_norm(model)


def test_module_called_twice_is_one_layer() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))

    layers = read_model(Twice()).layers
    assert [(layer.name, layer.calls) for layer in layers] == [("shared", 2), ("head", 1)]
