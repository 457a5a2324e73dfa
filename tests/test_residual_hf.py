"""autoinit's residual criterion on models torch.fx cannot trace (Hugging Face's): branches
found in the autograd graph of one forward pass and scaled by measurement
(signalprop._residual.read_sums, measured_criterion)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import _real_models as real
import signalprop as sp
from signalprop import _residual
from signalprop.examples import ResidualMLP

#: The stream's RMS growth autoinit must keep a pre-LN stack under. The criterion makes
#: each of the N branches add 1/N of the stream's mean square at its sum, measured, so the
#: mean square grows to (1 + 1/N)^N ≤ e (RMS ≤ √e ≈ 1.65) up to the branch–stream
#: correlation of a finite batch (measured: GPT-2 12 blocks 1.53, 48 blocks 1.63; ViT 6
#: blocks 1.58); 2 leaves that margin. Left as drawn (residual='none') the same models grow
#: 167× (GPT-2, 12 blocks) and 2.95× (ViT, 6 blocks), so the band separates the two.
GROWTH_BAND = 2.0


def _stream_growth(
    model: nn.Module, blocks: nn.ModuleList, final_norm: nn.Module, x: Tensor
) -> float:
    """The hidden stream's RMS entering the first block over its RMS entering the final
    norm (after the last block), measured with hooks independent of signalprop."""
    seen: dict[str, Tensor] = {}

    def first(module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        assert isinstance(hidden, Tensor)
        seen.setdefault("first", hidden.detach())

    def last(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        seen["last"] = args[0].detach()

    handles = [
        blocks[0].register_forward_pre_hook(first, with_kwargs=True),
        final_norm.register_forward_pre_hook(last),
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    rms = {key: value.pow(2).mean().sqrt().item() for key, value in seen.items()}
    return rms["last"] / rms["first"]


def test_gpt2_branches_are_found_scaled_and_the_stream_stays_bounded() -> None:
    ids = real.token_ids()
    drawn = real.gpt2(n_layer=12)
    sp.autoinit(drawn, ids, residual="none")
    transformer = drawn.transformer
    before = _stream_growth(drawn, transformer.h, transformer.ln_f, ids)
    assert before > 10  # what the criterion is for: 12 blocks at full variance

    model = real.gpt2(n_layer=12).train()
    result = sp.autoinit(model, ids)
    wanted = [f"transformer.h.{i}.{part}.c_proj" for i in range(12) for part in ("attn", "mlp")]
    assert [b.target for b in result.branches] == wanted
    assert all(b.action == "scaled" and 0 < b.scale < 1 for b in result.branches)
    assert result.branches[1].layers == ["transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"]
    growth = _stream_growth(model, model.transformer.h, model.transformer.ln_f, ids)
    assert growth <= GROWTH_BAND, (before, growth)
    assert result.stream_growth is not None and result.stream_growth <= GROWTH_BAND
    assert any("autograd graph" in n and "24 residual branch" in n for n in result.notes)
    by_name = {layer.name: layer for layer in result.layers}
    assert "residual criterion" in by_name["transformer.h.5.mlp.c_proj"].note
    # the model otherwise as the user holds it: the tie, the modes, no gradients
    assert model.lm_head.weight is model.transformer.wte.weight
    model.train()
    sp.autoinit(model, ids)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_vit_pre_ln_branches_are_scaled() -> None:
    pixels = real.pixel_values()
    drawn = real.vit(n_layer=6)
    sp.autoinit(drawn, pixels, residual="none")
    before = _stream_growth(drawn, drawn.vit.layers, drawn.vit.layernorm, pixels)
    model = real.vit(n_layer=6)
    result = sp.autoinit(model, pixels)
    # transformers 5 names ViT's projections attention.o_proj and mlp.fc2
    wanted = [
        f"vit.layers.{i}.{part}" for i in range(6) for part in ("attention.o_proj", "mlp.fc2")
    ]
    assert [b.target for b in result.branches] == wanted
    growth = _stream_growth(model, model.vit.layers, model.vit.layernorm, pixels)
    assert growth <= GROWTH_BAND < before, (before, growth)


def test_bert_post_ln_blocks_are_left_alone_and_said() -> None:
    ids = real.token_ids()
    left, scaled = real.bert(n_layer=2), real.bert(n_layer=2)
    sp.autoinit(left, ids, residual="none", generator=torch.Generator().manual_seed(1))
    result = sp.autoinit(scaled, ids, generator=torch.Generator().manual_seed(1))
    assert result.branches == []
    assert any("post-norm" in note and "renormalized" in note for note in result.notes)
    for (name, a), b in zip(left.state_dict().items(), scaled.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_without_a_batch_the_note_asks_for_one() -> None:
    result = sp.autoinit(real.gpt2(n_layer=2))
    assert result.branches == []
    assert any("pass a batch" in note for note in result.notes)


def test_a_traceable_model_keeps_the_mean_field_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the measured path ran on a traceable model")

    monkeypatch.setattr(_residual, "measured_criterion", refuse)
    model = ResidualMLP(4, width=16)
    result = sp.autoinit(model, torch.randn(32, 28, 28))
    assert len(result.branches) == 4
    assert any("mean field predicts" in note for note in result.notes)
