"""signalprop.Monitor: diagnose's numbers over a run, findings on time, NaNs found."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import signalprop as sp
from _agree import assert_first_record_is_the_report
from signalprop.monitor import QUANTITIES, MonitorHistory, read_log
from signalprop.train import fit

#: diagnose sums in float64 throughout; the monitor takes weight and weight-gradient norms
#: in float32 (one fused call for all layers): they agree to float32 round-off.
AGREE = 2e-6


def dense_net(activation: str, depth: int = 6, width: int = 40, inputs: int = 12) -> nn.Module:
    torch.manual_seed(0)
    layers = [sp.Dense(width, activation) for _ in range(depth)] + [sp.Dense(5)]
    return sp.Sequential(layers, input_shape=(inputs,))


def one_step(model: nn.Module, x: Any, y: torch.Tensor, loss_fn: Any = None) -> MonitorHistory:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        optimizer.zero_grad()
        (loss_fn or F.cross_entropy)(model(x), y).backward()
        optimizer.step()
    return monitor.history


class SharedActivationConv(nn.Module):
    """One activation module used twice, called from forward: matched by tensor, not name."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.act = nn.Tanh()
        self.head = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv2(self.act(self.conv(x)))).flatten(1))


class TokenModel(nn.Module):
    """Token ids in, a dict out: the model shape of a language model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.hidden = nn.Linear(16, 16)
        self.act = nn.GELU()
        self.out = nn.Linear(16, 5)

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.out(self.act(self.hidden(self.embed(ids)))).mean(1)}


def dict_loss(output: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output["logits"], y)


CASES = {
    "tanh": (lambda: dense_net("tanh"), (64, 12), None),
    "relu": (lambda: dense_net("relu"), (64, 12), None),
    "sigmoid": (lambda: dense_net("sigmoid"), (64, 12), None),
    "selu": (lambda: dense_net("selu"), (64, 12), None),
    "inplace-relu": (
        lambda: nn.Sequential(
            nn.Linear(12, 30), nn.ReLU(inplace=True), nn.Linear(30, 30), nn.ReLU(True)
        ),
        (64, 12),
        None,
    ),
    "dense-then-activation-layer": (  # a linear Dense and the activation after it: one row
        lambda: sp.Sequential(
            [sp.Dense(30), sp.activations.get("elu"), sp.Dense(30), nn.LeakyReLU(0.2), sp.Dense(5)],
            input_shape=(12,),
        ),
        (64, 12),
        None,
    ),
    # The linear Dense's output is overwritten by the ReLU: its gradient is caught on the
    # node that made it, not kept by the tensor (which would then hold dL/da).
    "dense-then-inplace-relu": (
        lambda: sp.Sequential(
            [sp.Dense(30), nn.ReLU(inplace=True), sp.Dense(30, "tanh"), sp.Dense(5)],
            input_shape=(12,),
        ),
        (64, 12),
        None,
    ),
    "conv-shared-activation": (SharedActivationConv, (16, 1, 8, 8), None),
    "token-ids-dict-output": (TokenModel, None, dict_loss),
}


@pytest.mark.parametrize("case", list(CASES))
def test_first_record_is_what_diagnose_measures(case: str) -> None:
    build, shape, loss_fn = CASES[case]
    torch.manual_seed(1)
    model = build()
    x = torch.randint(0, 50, (16, 7)) if shape is None else torch.randn(*shape)
    y = (
        torch.randint(0, 5, (x.shape[0],))
        if case != "inplace-relu"
        else torch.randint(0, 30, (64,))
    )
    report = sp.diagnose(model, x, y, loss_fn=loss_fn)
    history = one_step(model, x, y, loss_fn)
    assert_first_record_is_the_report(history, report, batch=x.shape[0], rel=AGREE)
    record = history.records[0]
    for index, layer in enumerate(report.layers):
        if layer.weight_var is not None:
            norm = record.values["weight_norm"][index]
            numel = history.layers[index].weight_numel
            assert norm * norm / numel == pytest.approx(layer.weight_var, rel=AGREE)
            assert 0 < record.values["update_ratio"][index] < 1


OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1),
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "sgd-weight-decay": lambda params: torch.optim.SGD(params, lr=0.1, weight_decay=0.01),
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_update_ratio_is_the_steps_change_over_the_weight(name: str) -> None:
    """The update is read from plain SGD's gradient or momentum buffer, and measured on a
    copy of the weights for any other optimizer. Against the weights' actual change:
    the copy is exact (1e-6); SGD's ``lr * v`` is the update before the weights round
    it to float32, which changes its norm by about 1e-7 / ratio relative (1e-4 here)."""
    model = dense_net("selu", depth=3)
    optimizer = OPTIMIZERS[name](model.parameters())
    layers = [m for m in model if isinstance(m, sp.Dense)]
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        for _ in range(3):  # momentum buffers and Adam's moments past their first step
            before = [m.weight.detach().clone() for m in layers]
            optimizer.zero_grad()
            F.cross_entropy(model(torch.randn(32, 12)), torch.randint(0, 5, (32,))).backward()
            optimizer.step()
    copied = name in ("adam", "sgd-weight-decay")
    record = monitor.history.records[-1]
    for index, (old, layer) in enumerate(zip(before, layers, strict=True)):
        expected = float((layer.weight.detach() - old).norm() / old.norm())
        ratio = record.values["update_ratio"][index]
        assert ratio == pytest.approx(expected, rel=1e-6 if copied else 1e-4)
        assert record.values["weight_norm"][index] == pytest.approx(float(old.norm()), rel=1e-6)


def layer_hooks(model: nn.Module) -> int:
    """Hooks on the model's layers (the model's own two are not counted)."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules() if m is not model
    )


def test_every_nth_step_is_recorded_and_idle_steps_have_no_layer_hook() -> None:
    """Between recorded steps only the model's own hooks stay (a counter check, and the
    NaN watch): a layer with any hook takes PyTorch's slower call path."""
    model = dense_net("tanh", depth=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    monitor = sp.Monitor(model, every=4)
    seen: list[int] = []
    probe = model[1].register_forward_hook(lambda *_: seen.append(layer_hooks(model) - 1))
    for _ in range(10):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(16, 12)), torch.randint(0, 5, (16,))).backward()
        optimizer.step()
        with torch.no_grad():  # validation between steps is not recorded
            model(torch.randn(8, 12))
        monitor.step()
    probe.remove()
    assert [r.step for r in monitor.history.records] == [1, 5, 9]
    assert monitor.steps == 10
    # During the forward passes: layer hooks on steps 1, 5 and 9, none otherwise or in eval.
    recorded = [count > 0 for count in seen[::2]]
    assert recorded == [s in (1, 5, 9) for s in range(1, 11)]
    assert not any(seen[1::2])
    assert model._forward_hooks and layer_hooks(model) == 0
    monitor.close()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(RuntimeError, match="closed"):
        monitor.step()


def test_a_crash_in_the_loop_leaves_no_hook_behind() -> None:
    model = dense_net("relu", depth=2)
    with pytest.raises(ZeroDivisionError), sp.Monitor(model, every=1):
        model(torch.randn(4, 12))
        _ = 1 / 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    first = next(m for m in model if isinstance(m, sp.Dense))
    assert not first.weight._post_accumulate_grad_hooks  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"every": 0}, "every"),
        ({"every": 2.5}, "every"),
        ({"histograms_every": 0}, "histograms_every"),
        ({"thresholds": {"dead": 0.2}}, "thresholds"),
        ({"optimizer": "sgd"}, "optimizer"),
    ],
)
def test_invalid_arguments_name_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ValueError, match=f"'{param}' parameter of Monitor"):
        sp.Monitor(dense_net("relu", depth=1), **kwargs)


def test_unwritable_log_and_model_without_layers_are_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(
        ValueError, match=r"'log' parameter of Monitor.*file path that can be written"
    ):
        sp.Monitor(dense_net("relu", depth=1), log=blocker / "monitor.jsonl")
    with pytest.raises(ValueError, match=r"'model' parameter of Monitor.*layers to monitor"):
        sp.Monitor(nn.Sequential(nn.Flatten()))
    with pytest.raises(ValueError, match="'model' parameter"):
        sp.Monitor("model")  # type: ignore[arg-type]
    model = dense_net("relu", depth=1)
    with pytest.raises(ValueError, match="'log'"):
        sp.Monitor(model, log=blocker / "x.jsonl")
    assert all(not m._forward_hooks for m in model.modules())  # nothing half-installed


class NanGradient(torch.autograd.Function):
    """The identity forward; a NaN gradient backward, once switched on."""

    on = False

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * math.nan if NanGradient.on else grad


class Poison(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return NanGradient.apply(x)  # type: ignore[no-any-return]


def train(model: nn.Module, monitor: sp.Monitor, steps: int, at: int, action: Any) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        if step == at:
            action()
        x = torch.randn(16, 12, generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x), torch.randint(0, 5, (16,), generator=generator)).backward()
        optimizer.step()
        monitor.step()


def test_a_nan_in_the_backward_pass_of_an_unmonitored_step_is_localized(tmp_path: Path) -> None:
    model = nn.Sequential(
        nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 20), Poison(), nn.Tanh(), nn.Linear(20, 5)
    )
    NanGradient.on = False
    try:
        with sp.Monitor(model, every=16, save_batches=tmp_path) as monitor:
            train(model, monitor, 10, 7, lambda: setattr(NanGradient, "on", True))
    finally:
        NanGradient.on = False
    (event,) = monitor.events  # one event for the whole non-finite stretch
    assert (event.step, event.pass_, event.layer) == (7, "backward", "2")
    assert "backward pass at layer 2" in event.message
    assert event.batch_file is not None
    saved = torch.load(event.batch_file)
    assert saved["step"] == 7 and saved["args"][0].shape == (16, 12)


def test_a_nan_in_the_forward_pass_is_localized_to_its_layer() -> None:
    model = nn.Sequential(
        nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 20),
        nn.ReLU(), nn.Linear(20, 5),
    )  # fmt: skip

    def poison() -> None:
        with torch.no_grad():
            model[2].weight[3, 3] = math.nan

    with sp.Monitor(model, every=4) as monitor:
        train(model, monitor, 9, 6, poison)
    (event,) = monitor.events
    assert (event.step, event.pass_, event.layer) == (6, "forward", "2")
    assert "its weights are not finite" in event.message


def test_nan_inputs_are_named_as_such() -> None:
    model = dense_net("tanh", depth=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with sp.Monitor(model, every=1, optimizer=optimizer) as monitor:
        x = torch.randn(8, 12)
        x[0, 0] = math.inf
        optimizer.zero_grad()
        F.cross_entropy(model(x), torch.randint(0, 5, (8,))).backward()
        optimizer.step()
    (event,) = monitor.events
    assert event.layer is None and "inputs of step 1" in event.message


def test_log_is_written_per_record_and_reads_back(tmp_path: Path) -> None:
    log = tmp_path / "runs" / "a" / "monitor.jsonl"
    model = dense_net("relu", depth=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    monitor = sp.Monitor(model, every=2, log=log, optimizer=optimizer)
    for step in range(1, 6):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(32, 12)), torch.randint(0, 5, (32,))).backward()
        optimizer.step()
        if step == 3:  # flushed as made: readable while the run goes on
            lines = log.read_text().splitlines()
            assert [json.loads(line)["kind"] for line in lines] == ["header", "record", "record"]
    monitor.close()
    back = read_log(log)
    assert back.layers == monitor.history.layers
    assert [r.step for r in back.records] == [1, 3, 5]
    for read, kept in zip(back.records, monitor.history.records, strict=True):
        for quantity in QUANTITIES:  # the log keeps 9 significant digits
            for u, v in zip(read.values[quantity], kept.values[quantity], strict=True):
                assert u == v if v is None else u == pytest.approx(v, rel=1e-8)
    assert back.steps == 5 and back.every == 2
    # A killed run leaves at most a cut line: every record before it still counts.
    text = log.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(text[:3]) + "\n" + text[3][:40])
    assert [r.step for r in read_log(cut).records] == [1, 3]
    with pytest.raises(ValueError, match="'path' parameter of read_log"):
        read_log(tmp_path / "missing.jsonl")


def relu_net_that_dies() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Healthy at first; a large bias step then pushes layer 2's units below zero for good."""
    torch.manual_seed(0)
    model = sp.Sequential(
        [sp.Dense(40, "relu", kernel_initializer="he_normal") for _ in range(5)] + [sp.Dense(5)],
        input_shape=(12,),
    )
    return model, torch.randn(512, 12), torch.randint(0, 5, (512,))


def test_findings_say_when_they_began_and_where() -> None:
    model, x, y = relu_net_that_dies()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    layer = model[2]
    with sp.Monitor(model, every=5, optimizer=optimizer) as monitor:
        for step in range(1, 41):
            if step == 23:
                with torch.no_grad():
                    layer.bias.fill_(-50.0)  # every unit of layer 2 dies here
            index = torch.arange(32) + 32 * (step % 16)
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    # Layer 2 dies at step 23; what follows it may die with it (its input is then constant).
    (finding,) = [f for f in monitor.findings() if f.kind == "dead_units" and "2" in f.layers]
    assert finding.layers[0] == "2"
    assert (finding.clean_before, finding.began, finding.ended) == (21, 26, None)
    assert (
        "units died between steps 21 and 26; seen in every record from then on, to step 36"
        in finding.message
    )
    assert "up to 100% of units never positive" in finding.message
    assert "units died between steps 21 and 26" in monitor.summary()


def test_fit_feeds_the_monitor_and_fast_path_numbers_equal_autograds() -> None:
    """The fast path hands its own tensors over: the same numbers as the hooks on autograd.

    The two paths compute the same step with the same kernels except the weight
    gradient's matrix product (transposed on the fast path), so they agree to
    float32 round-off, which compounds over the steps: 1e-5 relative, as the fast
    path's own agreement test.
    """
    torch.manual_seed(0)
    x, y = torch.randn(256, 12), torch.randint(0, 5, (256,))
    for activation in ("relu", "tanh", "selu"):
        for momentum in (0.0, 0.9):
            base = dense_net(activation, depth=4)
            histories = {}
            for path in ("autograd", "fast"):
                model = copy.deepcopy(base)
                with sp.Monitor(model, every=3) as monitor:
                    history = fit(
                        model, (x, y), None, epochs=2, lr=0.05, momentum=momentum,
                        path=path, progress=False, monitor=monitor,
                    )  # fmt: skip
                assert history.path.startswith(path)
                histories[path] = monitor.history
            slow, fast = histories["autograd"], histories["fast"]
            assert fast.layers == slow.layers
            assert (
                [r.step for r in fast.records]
                == [r.step for r in slow.records]
                == list(range(1, 17, 3))
            )
            for a, b in zip(slow.records, fast.records, strict=True):
                for quantity in QUANTITIES:
                    # A mean near 0 is a sum that cancels: its round-off is relative to the std.
                    scale = a.values[quantity.replace("mean", "std")]
                    pairs = zip(a.values[quantity], b.values[quantity], strict=True)
                    for i, (u, v) in enumerate(pairs):
                        if u is None or v is None:
                            assert u is v is None, quantity
                        else:
                            tolerance = 1e-5 * (scale[i] or 0.0) if "mean" in quantity else 0.0
                            assert v == pytest.approx(u, rel=1e-5, abs=tolerance), (quantity, i)
                if a.step == 1:  # the same weights: the forward pass is the same to the bit
                    for quantity in ("pre_mean", "pre_std", "act_mean", "act_std", "dead"):
                        assert a.values[quantity] == b.values[quantity]


def test_fit_localizes_a_nan_batch_on_the_fast_path() -> None:
    model = dense_net("tanh", depth=4)
    x, y = torch.randn(128, 12), torch.randint(0, 5, (128,))
    x[70, 3] = math.nan  # in the third batch of 32 (no shuffling across this check)
    with sp.Monitor(model, every=8) as monitor:
        history = fit(model, (x, y), None, epochs=1, progress=False, monitor=monitor, seed=0)
    assert history.path.startswith("fast") and history.stopped is not None
    (event,) = monitor.events
    assert event.pass_ == "forward" and event.layer is None and "inputs of step" in event.message
    assert event.step == history.stopped["step"]


def test_fit_refuses_a_monitor_of_another_model() -> None:
    x, y = torch.randn(16, 12), torch.randint(0, 5, (16,))
    with (
        sp.Monitor(dense_net("relu", depth=1)) as other,
        pytest.raises(ValueError, match="'monitor' parameter of fit"),
    ):
        fit(dense_net("relu", depth=1), (x, y), None, epochs=1, progress=False, monitor=other)


def test_the_compiled_path_records_its_monitored_steps_eagerly_with_autograds_numbers() -> None:
    """The compiled step is one graph with no tensors to hand over: the steps the monitor
    records run on the eager fast path (the same step up to float32 rounding), and the
    others compiled. Against autograd: 1e-5 relative, as the eager path's own test."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 12), torch.randint(0, 5, (256,))
    base = dense_net("tanh", depth=3)
    histories = {}
    for path in ("autograd", "compiled"):
        model = copy.deepcopy(base)
        with sp.Monitor(model, every=3) as monitor:
            history = fit(
                model, (x, y), None, epochs=1, lr=0.05, path=path, progress=False,
                monitor=monitor,
            )  # fmt: skip
        assert history.path.startswith(path), history.path
        histories[path] = monitor.history
    slow, fast = histories["autograd"], histories["compiled"]
    assert [r.step for r in fast.records] == [r.step for r in slow.records] == [1, 4, 7]
    for a, b in zip(slow.records, fast.records, strict=True):
        for quantity in ("pre_std", "act_std", "saturated", "grad_pre_rms", "update_ratio"):
            for u, v in zip(a.values[quantity], b.values[quantity], strict=True):
                assert v is u is None or v == pytest.approx(u, rel=1e-5), quantity
