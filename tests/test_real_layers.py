"""The model reader, diagnose and the Monitor on the layers real models are built from:
normalizations between a layer and its activation, modules called twice, Hugging Face's
Conv1D and activation classes, nn.MultiheadAttention, in-place activations, and BERT,
GPT-2 and ViT built from small configurations (no download)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import signalprop as sp
from _agree import assert_first_record_is_the_report
from signalprop._model import (
    activation_kind,
    is_norm,
    is_weight_layer,
    layer_bias_split,
    read_model,
    refusal,
)
from signalprop.activations import probe
from signalprop.monitor import QUANTITIES, MonitorHistory

#: diagnose sums in float64; the monitor takes means and norms in float32 (see
#: test_monitor): relative agreement 2e-6, and 1e-7 absolute for a mean that is zero
#: but for round-off (a BatchNorm's output), float32's eps on values of order 1.
AGREE, AGREE_ABS = 2e-6, 1e-7


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


# ------------------------------------------------------------------ weight layers


def test_hf_conv1d_is_a_weight_layer_with_its_own_fans() -> None:
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(nf=12, nx=5)  # weight (in 5, out 12)
    assert is_weight_layer(layer)
    assert sp.init.fans_for(layer) == (5, 12)
    # A look-alike that is not stored (in, nf) is not taken for one.
    odd = Conv1D(nf=12, nx=5)
    odd.nf = 5
    assert not is_weight_layer(odd)


def test_bias_split_reads_conv1d_as_in_out() -> None:
    """A bias that cancels an input mean m is b = −m·W𝟙 summed over each unit's inputs:
    for Conv1D (in, out) that is a sum over dimension 0."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    layer = Conv1D(nf=6, nx=6)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.copy_(-0.7 * layer.weight.sum(dim=0))
    # float32 weights: the bias is exact to float32 round-off (eps 1.2e-7).
    assert layer_bias_split(layer)[0] == pytest.approx(0.7, rel=1e-6)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        return self.head(self.attention(h, h, h)[0].mean(1))


def test_multihead_attention_is_one_row_with_its_input_projection() -> None:
    torch.manual_seed(0)
    model = Attention()
    x = torch.randn(8, 5, 6)
    report = sp.diagnose(model, x, torch.randint(0, 3, (8,)))
    assert [layer.name for layer in report.layers] == ["embed", "attention", "head"]
    row = report.layers[1]
    attention = model.attention
    expected_var = float(attention.in_proj_weight.detach().double().pow(2).mean())
    assert row.weight_var == pytest.approx(expected_var, rel=1e-9)
    assert row.fan_in == 16
    with torch.no_grad():
        h = model.embed(x)
        out = attention(h, h, h)[0].double()
    assert row.pre_std == pytest.approx(float(out.std()), rel=1e-6)
    assert row.grad_weight_rms is not None and row.grad_weight_rms > 0
    assert [layer.name for layer in read_model(model).layers] == ["embed", "attention", "head"]
    history = _train(model, x, torch.randint(0, 3, (8,)), F.cross_entropy)
    assert history.names == ["embed", "attention", "head"]


class Adapter(nn.Module):
    """A LoRA-style layer as peft builds one: base(x) + B(A(x)) · scale."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.base_layer = nn.Linear(width, width)
        self.lora_A = nn.ModuleDict({"default": nn.Linear(width, 2, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(2, width, bias=False)})

    def forward(self, x: Tensor) -> Tensor:
        return self.base_layer(x) + 0.5 * self.lora_B["default"](self.lora_A["default"](x))


class Refused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 8)
        self.adapter = Adapter(8)
        self.pair = nn.Bilinear(8, 8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.first(x))
        return self.head(self.pair(self.adapter(h), h))


def test_bilinear_lora_and_recurrent_layers_are_refused_by_name() -> None:
    torch.manual_seed(0)
    model = Refused()
    view = read_model(model)
    assert [layer.name for layer in view.layers] == ["first", "head"]
    assert [(name, kind) for name, kind, _ in view.skipped] == [
        ("adapter", "Adapter"),
        ("pair", "Bilinear"),
    ]
    assert any("adapter (Adapter)" in note and "LoRA" in note for note in view.notes)
    report = sp.diagnose(model, torch.randn(8, 6))
    assert [layer.name for layer in report.layers] == ["first", "head"]
    assert any(note.startswith("not measured: pair (Bilinear)") for note in report.notes)
    assert any(note.startswith("not measured: adapter (Adapter)") for note in report.notes)
    assert refusal(nn.LSTM(4, 4)) is not None and refusal(nn.GRUCell(4, 4)) is not None
    assert refusal(nn.Linear(4, 4)) is None


class Scaled(nn.Module):
    """A layer with a weight whose layout signalprop cannot know."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight


def test_diagnose_names_every_weight_it_does_not_measure() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.PReLU(), Scaled(8), nn.LayerNorm(8), nn.Linear(8, 2))
    recurrent = nn.Sequential(nn.Linear(4, 8), nn.GRUCell(8, 8), nn.Linear(8, 2))
    notes = sp.diagnose(model, torch.randn(8, 4)).notes
    assert [note for note in notes if note.startswith("not measured")] == [
        "not measured: 2 (Scaled), a layer with a weight whose layout signalprop does not know"
    ]
    notes = sp.diagnose(recurrent, torch.randn(8, 4)).notes
    assert [note.split(",")[0] for note in notes if note.startswith("not measured")] == [
        "not measured: 1 (GRUCell)"
    ]


# ------------------------------------------------------------------ activations


class HandMadeTanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


class HandMadeNorm(nn.Module):
    """No parameters, shape kept, every position treated alike: but units interact."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:])


class PositionMixer(nn.Module):
    """Elementwise on values but reads a neighbour: positions matter."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x.roll(1, dims=-1))


class PositionWeighted(nn.Module):
    """Each value scaled by its flat position: local, but positions matter."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape)


class Centred(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x - x.mean())


def test_probe_names_hugging_face_activations_and_refuses_the_rest() -> None:
    from transformers import activations as hf

    assert probe(hf.GELUActivation()) == "gelu"
    assert probe(hf.NewGELUActivation()) == "gelu"  # the tanh approximation, as nn.GELU's
    assert probe(hf.SiLUActivation()) == "silu"
    assert probe(hf.MishActivation()) == "mish"
    assert probe(hf.QuickGELUActivation()) == "other"  # x·σ(1.702x): none of the registry
    assert probe(HandMadeTanh()) == "tanh"
    assert activation_kind(hf.GELUActivation()) == "gelu"
    for refused in (
        nn.Softmax(dim=-1),
        HandMadeNorm(),
        PositionMixer(),
        PositionWeighted(),
        Centred(),
        hf.LinearActivation(),  # the identity: passes the signal through
    ):
        assert probe(refused) is None, refused
    assert activation_kind(nn.LayerNorm(5)) is None
    assert activation_kind(nn.Dropout(0.5)) is None


# ------------------------------------------------------------------ normalization rows


def norm_net(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(inplace=inplace),
        nn.Linear(16, 16),
        nn.LayerNorm(16),
        nn.Tanh(),
        nn.Linear(16, 3),
    )


def test_diagnose_reads_the_normalized_pre_activation() -> None:
    model = norm_net()
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    report = sp.diagnose(model, x, y)
    assert [(layer.name, layer.activation) for layer in report.layers] == [
        ("0", "relu"),
        ("3", "tanh"),
        ("6", None),
    ]
    # Brute force: the pre-activation is the norm's output, its gradient dL/d(norm output).
    bn_out = model[1](model[0](x))
    bn_out.retain_grad()
    ln_out = model[4](model[3](model[2](bn_out.clone())))
    ln_out.retain_grad()
    F.cross_entropy(model[6](model[5](ln_out)), y).backward()
    model.zero_grad()
    for row, z in ((report.layers[0], bn_out), (report.layers[1], ln_out)):
        assert row.pre_std == pytest.approx(float(z.detach().double().std()), rel=1e-6)
        grad = z.grad
        assert grad is not None
        expected = float(grad.double().pow(2).mean().sqrt())
        assert row.grad_pre_rms == pytest.approx(expected, rel=1e-6)
    assert report.layers[0].dead == pytest.approx(
        1 - float((bn_out > 0).any(0).double().mean()), abs=1e-12
    )
    history = _train(model, x, y, F.cross_entropy)
    assert_first_record_is_the_report(history, report, batch=32, rel=AGREE, abs_tol=AGREE_ABS)


# ------------------------------------------------------------------ in-place activations

INPLACE = {
    "relu": lambda inplace: nn.ReLU(inplace=inplace),
    "elu": lambda inplace: nn.ELU(inplace=inplace),
    "leaky_relu": lambda inplace: nn.LeakyReLU(0.1, inplace=inplace),
    "silu": lambda inplace: nn.SiLU(inplace=inplace),
    "hardswish": lambda inplace: nn.Hardswish(inplace=inplace),
}


def inplace_net(kind: str, inplace: bool) -> nn.Module:
    torch.manual_seed(0)
    make = INPLACE[kind]
    return nn.Sequential(
        nn.Linear(6, 16),
        make(inplace),
        nn.Linear(16, 16),
        nn.BatchNorm1d(16),
        make(inplace),
        nn.Linear(16, 3),
    )


@pytest.mark.parametrize("kind", list(INPLACE))
def test_in_place_activations_measure_as_their_out_of_place_twins(kind: str) -> None:
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    twin, model = inplace_net(kind, False), inplace_net(kind, True)
    expected = sp.diagnose(twin, x, y)
    got = sp.diagnose(model, x, y)
    assert [layer.activation for layer in got.layers][:2] == [
        layer.activation for layer in expected.layers
    ][:2]
    for a, b in zip(got.layers, expected.layers, strict=True):
        for quantity in QUANTITIES[:8]:
            value, reference = getattr(a, quantity), getattr(b, quantity)
            assert (value is None) == (reference is None), (quantity, a.name)
            if reference is not None:
                # float32 kernels: in-place ones may sum in another order (eps 1.2e-7).
                assert value == pytest.approx(reference, rel=1e-6, abs=1e-12), (quantity, a.name)
    assert all(module.inplace for module in (model[1], model[4]))  # type: ignore[attr-defined]
    history = _train(model, x, y, F.cross_entropy)
    assert_first_record_is_the_report(history, expected, batch=32, rel=AGREE, abs_tol=AGREE_ABS)
    assert all(module.inplace for module in (model[1], model[4]))  # type: ignore[attr-defined]


# ------------------------------------------------------------------ output shapes


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.fc(x), x


class DictOut(TupleOut):
    def forward(self, x: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        return {"logits": self.fc(x)}


def test_the_loss_fn_hint_reads_the_output_as_it_is() -> None:
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match=r"out\[0\]"):
        sp.diagnose(TupleOut(), x)
    with pytest.raises(ValueError, match=r"out\['logits'\]"):
        sp.diagnose(DictOut(), x)


# ------------------------------------------------------------------ untraceable models


class Untraceable(nn.Module):
    """Registers its activation first and calls it between its layers, as ViT's MLP does,
    with a data-dependent branch torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.fc1 = nn.Linear(6, 16)
        self.drop = nn.Dropout(0.0)
        self.norm = nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 1e9:
            x = x * 0
        return self.fc2(self.act(self.norm(self.drop(self.fc1(x)))))


def test_untraceable_model_is_read_in_the_order_its_forward_calls() -> None:
    model = Untraceable()
    view = read_model(model)
    assert not view.traced
    first, second = view.layers
    assert (first.name, first.reads_data, first.consumer, first.norm) == (
        "fc1",
        True,
        model.act,
        model.norm,
    )
    assert (second.name, second.producer, second.consumer) == ("fc2", model.act, None)


# ------------------------------------------------------------------ Hugging Face models


def _train(model: nn.Module, x: Any, y: Tensor, loss_fn: Any, steps: int = 1) -> MonitorHistory:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    return monitor.history


def _hidden_loss(out: Any, _: Tensor) -> Tensor:
    return out.last_hidden_state.pow(2).mean()


def _weight_names(model: nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if is_weight_layer(module) or isinstance(module, nn.Embedding)
    ]


def test_gpt2_every_weight_layer_and_gelu_is_measured() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    model = GPT2Model(config)
    ids = torch.randint(0, 50, (4, 16))
    report = sp.diagnose(model, ids, ids, loss_fn=_hidden_loss)
    weighted = [layer for layer in report.layers if layer.has_weight]
    assert len(weighted) == 4 * 12 + 2 == len(report.layers)
    assert [layer.layer_type for layer in weighted].count("Conv1D") == 48
    gelus = [layer for layer in report.layers if layer.activation == "gelu"]
    assert [layer.name for layer in gelus] == [f"h.{i}.mlp.c_fc" for i in range(12)]
    assert all(layer.act_std is not None and layer.act_std > 0 for layer in gelus)
    # Conv1D's fans from its (in, out) layout: c_fc reads 32, writes 128.
    c_fc = report.layers[[layer.name for layer in report.layers].index("h.0.mlp.c_fc")]
    assert (c_fc.fan_in, c_fc.fan_out) == (32, 128)
    assert not any("functions inside forward" in note for note in report.notes)
    history = _train(model, ids, ids, _hidden_loss, steps=2)
    assert sorted(info.name for info in history.layers if info.weight_numel) == sorted(
        _weight_names(model)
    )
    assert [info.activation for info in history.layers].count("gelu") == 12
    head = GPT2LMHeadModel(config)
    loss = lambda out, y: F.cross_entropy(out.logits.flatten(0, 1), y.flatten())  # noqa: E731
    assert sum(layer.has_weight for layer in sp.diagnose(head, ids, ids, loss).layers) == 51


@pytest.mark.parametrize("name", ["bert", "vit"])
def test_bert_and_vit_every_weight_layer_in_diagnose_and_the_monitor(name: str) -> None:
    import transformers as hf

    torch.manual_seed(0)
    size = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2}
    if name == "bert":
        config = hf.BertConfig(
            **size, intermediate_size=64, vocab_size=50, max_position_embeddings=16
        )
        model: nn.Module = hf.BertModel(config)
        x = torch.randint(0, 50, (4, 16))
    else:
        model = hf.ViTModel(hf.ViTConfig(**size, intermediate_size=64, image_size=16, patch_size=4))
        x = torch.randn(4, 3, 16, 16)
    report = sp.diagnose(model, x, x, loss_fn=_hidden_loss)
    expected = sorted(_weight_names(model))  # the rows are in forward order
    assert sorted(layer.name for layer in report.layers if layer.has_weight) == expected
    intermediate = [layer for layer in report.layers if layer.activation == "gelu"]
    assert len(intermediate) == 2 and all(layer.act_std for layer in intermediate)
    history = _train(model, x, x, _hidden_loss, steps=3)
    assert len(history.records) == 3
    assert sorted(info.name for info in history.layers if info.weight_numel) == expected
    assert [info.activation for info in history.layers].count("gelu") == 2


def test_autoinit_draws_attention_through_its_input_projection() -> None:
    torch.manual_seed(0)
    model = Attention()
    before = model.attention.in_proj_weight.detach().clone()
    result = sp.autoinit(model, torch.randn(8, 5, 6))
    assert [layer.name for layer in result.layers] == ["embed", "attention", "head"]
    after = model.attention.in_proj_weight.detach()
    assert not torch.equal(before, after)
    drawn = result.layers[1].weight_var / 16  # σ_w² / fan_in, fan_in = embed_dim
    # 768 draws: the sample variance's relative sd is √(2/768) ≈ 0.05; 3 sd allowed.
    assert float(after.double().pow(2).mean()) == pytest.approx(drawn, rel=0.15)
