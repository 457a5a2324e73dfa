"""diagnose and autoinit on models nobody here wrote, and on batches no statistic can be read from.

Token-id models (an embedding first, a small transformer with a dict output read by the
user's loss_fn), and empty, all-NaN or constant batches: each crashed or got a confident
wrong verdict before.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import signalprop as sp


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Transformer(nn.Module):
    """Token ids -> embedding -> 2 encoder layers -> LayerNorm -> mean -> logits, in a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.1)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 10)

    def forward(self, ids: Tensor) -> dict[str, Tensor]:
        return {"logits": self.head(self.norm(self.enc(self.emb(ids))).mean(1))}


def _snapshot(model: nn.Module) -> tuple[dict[str, Tensor], list[bool], list[Tensor | None]]:
    state = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return state, modes, grads


def _assert_unchanged(model: nn.Module, before) -> None:
    state, modes, grads = before
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert [m.training for m in model.modules()] == modes
    assert [None if p.grad is None else p.grad for p in model.parameters()] == grads


def test_token_ids_through_an_embedding_are_diagnosed():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Embedding(100, 32), nn.Flatten(), nn.Linear(8 * 32, 64), nn.ReLU(), nn.Linear(64, 10)
        )
    ids = torch.randint(0, 100, (64, 8), generator=gen(1))
    labels = torch.randint(0, 10, (64,), generator=gen(2))
    before = _snapshot(model)
    report = sp.diagnose(model, ids, labels)
    _assert_unchanged(model, before)
    # The embedding's output is the first signal: its row comes first, with the table's
    # N(0, 1) statistics (mean ≈ 0, std ≈ 1 over 64 × 8 × 32 looked-up values).
    first = report.layers[0]
    assert first.layer_type == "Embedding"
    assert abs(first.pre_std - 1) < 0.1
    # Brute force: the gradient of the same loss w.r.t. the embedding's output.
    captured: list[Tensor] = []

    def keep(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        out.retain_grad()
        captured.append(out)

    handle = model[0].register_forward_hook(keep)
    try:
        F.cross_entropy(model(ids), labels).backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    grad = captured[0].grad
    expected = (grad.double().norm() / grad.numel() ** 0.5).item()
    assert first.grad_pre_rms == pytest.approx(expected, rel=1e-6)
    assert [r.layer_type for r in report.layers] == ["Embedding", "Linear", "Linear"]
    assert report.input_mean is None  # token ids have no statistics
    assert report.loss is not None and torch.isfinite(torch.tensor(report.loss))


def test_a_transformer_with_a_dict_output_is_diagnosed_through_the_loss_fn():
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = _Transformer()
    model.train()
    ids = torch.randint(0, 100, (16, 12), generator=gen(4))
    labels = torch.randint(0, 10, (16,), generator=gen(5))
    before = _snapshot(model)
    report = sp.diagnose(
        model, ids, labels, loss_fn=lambda out, y: F.cross_entropy(out["logits"], y)
    )
    _assert_unchanged(model, before)
    names = [r.name for r in report.layers]
    assert names[0] == "emb"
    assert "enc.layers.0.linear1" in names and names[-1] == "head"
    assert all(r.finite for r in report.layers)
    assert report.meanfield is None  # attention, LayerNorm and sums: not a plain stack
    # Without a loss_fn, a dict output is refused in one sentence that says what to pass.
    with pytest.raises(ValueError, match=r"'model' parameter of diagnose .* loss_fn"):
        sp.diagnose(model, ids, labels)


def test_a_residual_model_with_layernorm_gets_a_table():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(16, 32)
            self.blocks = nn.ModuleList(nn.Linear(32, 32) for _ in range(4))
            self.norms = nn.ModuleList(nn.LayerNorm(32) for _ in range(4))
            self.out = nn.Linear(32, 3)

        def forward(self, x: Tensor) -> Tensor:
            h = self.inp(x)
            for block, norm in zip(self.blocks, self.norms, strict=True):
                h = h + torch.relu(block(norm(h)))
            return self.out(h)

    model = Residual()
    x = torch.randn(32, 16, generator=gen(6))
    before = _snapshot(model)
    report = sp.diagnose(model, x)
    _assert_unchanged(model, before)
    assert [r.name for r in report.layers] == ["inp", *(f"blocks.{i}" for i in range(4)), "out"]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.randn(0, 28, 28), "a batch with at least one example"),
        (torch.full((8, 28, 28), float("nan")), "a batch with numbers"),
        (torch.zeros(8, 28, 28), "a batch whose values vary"),
    ],
    ids=["empty", "all NaN", "constant"],
)
@pytest.mark.parametrize("tool", ["diagnose", "autoinit"])
def test_batches_without_a_signal_are_refused_up_front(batch, message, tool):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10))
    before = _snapshot(model)
    with pytest.raises(ValueError, match=rf"The 'inputs' parameter of {tool} must be {message}"):
        getattr(sp, tool)(model, batch)
    _assert_unchanged(model, before)  # refused before anything was touched
