"""The test matrix of real models: every tool on BERT, GPT-2, ViT, a ResNet and a
MobileNet-like net with squeeze-excite (tests/_real_models.py: Hugging Face classes from
small configs, torchvision's architectures written out; nothing is downloaded).

For each model: ``diagnose`` has one row per weight layer and measures every activation
module call; the Monitor records every weight layer over a few training steps;
``autoinit`` runs, leaves ties intact and puts the eval-mode output in a stated band;
``check_self_normalizing`` reads the model (with a ``loss_fn`` where the output is not a
tensor) and says which of SELU's conditions it misses.

The counts are taken independently of signalprop's reader: weight layers by their class
(Linear, Conv*, Embedding, Hugging Face's Conv1D) and activation calls by forward hooks on
the activation classes these models use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import _real_models as real
import signalprop as sp

pytest.importorskip("transformers")

#: Activation classes of these five models, by class name (counted without signalprop).
ACTIVATION_CLASSES = {
    "ReLU",
    "Hardswish",
    "Hardsigmoid",
    "Tanh",
    "GELUActivation",
    "NewGELUActivation",
}
#: Classes whose weight is a dense or convolutional map, or an embedding.
WEIGHT_CLASSES = (nn.Linear, nn.Conv2d, nn.Embedding)

#: Eval-mode output std on a batch of standardized inputs after autoinit: the output
#: layer aims at variance 1; above 3 a softmax starts saturated (ResNet-18's logits went
#: to std 22.1 before signalprop read normalization and residual branches), below 0.1 the
#: signal has not reached the output. Base transformers end in a LayerNorm (std ≈ 1).
OUTPUT_STD_BAND = (0.1, 3.0)

MODELS = ["bert", "gpt2", "vit", "resnet", "mobilenet"]


def _build(name: str) -> tuple[nn.Module, Tensor, Tensor, Callable[..., Tensor] | None]:
    """The model, a batch, targets and the loss_fn (None: the output is a tensor)."""
    if name == "bert":
        ids = real.token_ids(8)
        return real.bert(num_labels=3), ids, ids[:, 0] % 3, _logits_loss
    if name == "gpt2":
        ids = real.token_ids(8)
        return real.gpt2(lm_head=True), ids, ids, _lm_loss
    if name == "vit":
        return real.vit(num_labels=10), real.pixel_values(8), torch.arange(8), _logits_loss
    if name == "resnet":
        return real.resnet18(width=8), real.images(8), torch.arange(8), None
    return real.mobilenet_like(), real.images(8), torch.arange(8), None


def _logits_loss(out: Any, y: Tensor) -> Tensor:
    return F.cross_entropy(out.logits, y)


def _lm_loss(out: Any, y: Tensor) -> Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), y.flatten())


def _output(out: Any) -> Tensor:
    return out if isinstance(out, Tensor) else out.logits


def _weight_layers(model: nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, WEIGHT_CLASSES) or type(module).__name__ == "Conv1D"
    ]


def _activation_calls(model: nn.Module, x: Tensor) -> int:
    """How many times forward calls an activation module, counted by hooks."""
    calls = [0]
    handles = [
        module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        for module in model.modules()
        if type(module).__name__ in ACTIVATION_CLASSES
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls[0]


@pytest.mark.parametrize("name", MODELS)
def test_diagnose_has_a_row_per_weight_layer_and_measures_every_activation(name: str) -> None:
    model, x, y, loss_fn = _build(name)
    report = sp.diagnose(model, x, y, loss_fn)
    expected = _weight_layers(model)
    if name == "gpt2":  # lm_head's weight *is* wte's: a layer of its own all the same
        assert model.lm_head.weight is model.transformer.wte.weight
    rows = [layer.name for layer in report.layers if layer.has_weight]
    assert sorted(rows) == sorted(expected)
    measured = [layer for layer in report.layers if layer.act_std is not None]
    assert len(measured) == _activation_calls(model, x)
    assert all(layer.activation is not None for layer in measured)
    assert all(layer.finite for layer in report.layers)
    assert all(layer.grad_weight_rms for layer in report.layers if layer.has_weight)


@pytest.mark.parametrize("name", MODELS)
def test_the_monitor_records_every_weight_layer_while_training(name: str) -> None:
    model, x, y, loss_fn = _build(name)
    loss_of = loss_fn or (lambda out, y: F.cross_entropy(out, y))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            loss_of(model(x), y).backward()
            optimizer.step()
    history = monitor.history
    assert len(history.records) == 3
    assert sorted(info.name for info in history.layers if info.weight_numel) == sorted(
        _weight_layers(model)
    )
    assert not monitor.events


@pytest.mark.parametrize("name", MODELS)
def test_autoinit_keeps_ties_and_puts_the_output_in_band(name: str) -> None:
    model, x, y, loss_fn = _build(name)
    tied_before = None
    if name == "gpt2":
        tied_before = model.transformer.wte.weight.detach().clone()
        model.eval()
        with torch.no_grad():
            logits_before = float(_output(model(x)).std())
        model.train()
    result = sp.autoinit(model, generator=torch.Generator().manual_seed(0))
    assert result.layers
    if name == "gpt2":
        assert model.lm_head.weight is model.transformer.wte.weight
        assert torch.equal(model.transformer.wte.weight, tied_before)
        assert "lm_head" not in {layer.name for layer in result.layers}
    names = [layer.name for layer in result.layers]
    assert len(names) == len(set(names))
    model.eval()
    with torch.no_grad():
        out = _output(model(x))
    assert torch.isfinite(out).all()
    if name == "gpt2":
        # Its logits read the final LayerNorm (std 1) through the tied embedding, which is
        # left alone: their scale is the embedding's (0.02·√width), before and after.
        assert float(out.std()) == pytest.approx(logits_before, rel=0.25)
    else:
        low, high = OUTPUT_STD_BAND
        assert low < float(out.std()) < high, (name, float(out.std()))
    # What autoinit wrote, diagnose accepts: no finding's fix is the call just made.
    report = sp.diagnose(model, x, y, loss_fn)
    assert not any("autoinit" in finding.fix for finding in report.findings), report


@pytest.mark.parametrize("name", MODELS)
def test_check_self_normalizing_reads_the_model(name: str) -> None:
    model, x, y, loss_fn = _build(name)
    if loss_fn is None:
        check = sp.check_self_normalizing(model, x)
    else:
        check = sp.check_self_normalizing(model, x, y, loss_fn=loss_fn)
    conditions = {c.name: c for c in check.conditions}
    assert not check.ok
    assert not conditions["selu_activations"].met
    if name in ("resnet", "mobilenet"):  # skip connections are not a plain stack
        assert not conditions["sequential"].met


def test_token_ids_are_judged_by_the_embedding_they_become() -> None:
    """Token ids are not features: standardized_inputs reads the embedding's output
    (BERT's std-0.02 embedding: violated there; a std-1 embedding: met)."""
    model, ids, y, loss_fn = _build("bert")
    condition = sp.check_self_normalizing(model, ids, y, loss_fn=loss_fn).condition(
        "standardized_inputs"
    )
    assert not condition.met
    assert condition.where == ["bert.embeddings.word_embeddings"]
    assert "token ids" in condition.detail and "std 0.0" in condition.detail  # BERT's 0.02
    torch.manual_seed(0)
    embedding = nn.Embedding(50, 64)  # PyTorch's N(0, 1): standardized
    selu = nn.Sequential(embedding, nn.Flatten(), nn.Linear(64 * 16, 32), nn.SELU())
    standardized = sp.check_self_normalizing(selu, ids).condition("standardized_inputs")
    assert standardized.met, standardized


def test_an_in_place_residual_sum_is_not_the_branch_s_pre_activation() -> None:
    """torchvision's blocks add the skip in place (``out += identity``) to bn2's output and
    then apply the ReLU: the sum is a new signal (its own row, named after the ReLU), not
    conv2's pre-activation; diagnose and the Monitor read it the same way."""
    model, x, y, _ = _build("resnet")
    report = sp.diagnose(model, x, y)
    rows = {layer.name: layer for layer in report.layers}
    for stage in range(1, 5):
        for block in range(2):
            conv2 = rows[f"layer{stage}.{block}.conv2"]
            assert conv2.activation is None and conv2.act_std is None
            stream = rows[f"layer{stage}.{block}.relu"]
            assert stream.activation == "relu" and stream.layer_type == "ReLU"
    # layer1's stream carries the stem's ReLU mean through the identity skips
    assert rows["layer1.0.relu"].pre_mean > 0.5 > abs(rows["layer1.0.conv2"].pre_mean)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    activations = {info.name: info.activation for info in monitor.history.layers}
    assert activations["layer1.0.conv2"] is None
    assert activations["layer1.0.relu"] == "relu"


def test_off_scale_leaves_out_layers_a_norm_follows() -> None:
    """torchvision initializes ResNet-18's stem with a fan-out variance (var·fan_in 0.09)
    and its other convolutions with He's 2: every one is followed by a BatchNorm, which
    sets the scale, so no layer is off scale."""
    model, x, y = real.resnet18(), real.images(8), torch.arange(8)  # torchvision's width
    report = sp.diagnose(model, x, y)
    assert report.layers[0].normalized and report.layers[0].weight_scale_fan_in < 0.2
    assert "off_scale" not in {finding.kind for finding in report.findings}
    assert not next(layer for layer in report.layers if layer.name == "fc").normalized


def test_autoinit_says_when_it_could_not_look_for_residual_branches() -> None:
    """Hugging Face models are not traceable: without a batch autoinit cannot find their
    residual blocks and says so (and to pass one) instead of passing over them in silence;
    with a batch it finds them in the autograd graph (tests/test_residual_hf.py)."""
    model, x, _, _ = _build("gpt2")
    notes = sp.autoinit(model).notes
    assert any(
        note.startswith("residual: ") and "no branch was scaled" in note and "pass a batch" in note
        for note in notes
    )
    assert sp.autoinit(model, x).branches
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))  # traceable, no sums
    assert not any(note.startswith("residual") for note in sp.autoinit(plain).notes)


def test_a_mean_a_normalization_takes_out_is_not_a_mean_shift() -> None:
    """The logistic's mean of 1/2 shifts the next layer's input, unless a norm follows that
    layer; ResNet-18's post-activation stream (mean ≈ 1.5 in layer1) feeds normalized
    convolutions only."""

    def logistic_net(norm: bool) -> nn.Module:
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Linear(32, 64), nn.Sigmoid()]
        layers += [nn.Linear(64, 64), *([nn.LayerNorm(64)] if norm else []), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(64, 4))

    x = torch.randn(64, 32)
    kinds = [{f.kind for f in sp.diagnose(logistic_net(norm), x).findings} for norm in (0, 1)]
    assert "mean_shift" in kinds[0] and "mean_shift" not in kinds[1]
    model, x, y, _ = _build("resnet")
    report = sp.diagnose(model, x, y)
    assert next(r for r in report.layers if r.name == "layer1.0.relu").act_mean > 1
    assert "mean_shift" not in {finding.kind for finding in report.findings}
