"""Keras 3 models on the PyTorch backend: read into their signalprop twin, same numbers."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import signalprop as sp
from _agree import assert_first_record_is_the_report
from signalprop import keras as sp_keras

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover (Keras imported earlier otherwise)
    pytest.skip("Keras was imported on another backend", allow_module_level=True)


def chapter_selu_net(swapped: int | None = None) -> Any:
    """The chapter's 100-layer SELU net, written as the chapter writes it, with the
    ``swapped``-th layer of its loop initialized with ``random_normal`` instead.

    Keras 3 warns that ``input_shape`` on a layer is the old way (an ``Input`` first
    is the new one), and builds the model all the same.
    """
    keras.utils.set_random_seed(0)
    with pytest.warns(UserWarning, match="input_shape"):
        model = keras.models.Sequential()
        model.add(keras.layers.Flatten(input_shape=[28, 28]))
    model.add(keras.layers.Dense(300, activation="selu", kernel_initializer="lecun_normal"))
    for layer in range(99):
        init = "random_normal" if layer == swapped else "lecun_normal"
        model.add(keras.layers.Dense(100, activation="selu", kernel_initializer=init))
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model


def small_selu_net(depth: int) -> Any:
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Input(shape=[28, 28]), keras.layers.Flatten()]
    layers += [keras.layers.Dense(100, activation="selu", kernel_initializer="lecun_normal")
               for _ in range(depth)]  # fmt: skip
    return keras.Sequential(layers)


def copied_to_signalprop(model: Any) -> sp.Sequential:
    """The same net written with signalprop, the Keras weights copied (kernels transposed)."""
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    layers: list[torch.nn.Module] = [sp.layers.Flatten()]
    for layer in dense:
        kernel = layer.kernel.value.detach()
        twin = sp.Dense(kernel.shape[1], layer.activation.__name__, input_dim=kernel.shape[0])
        with torch.no_grad():
            twin.weight.copy_(kernel.t())
            twin.bias.copy_(layer.bias.value.detach())
        layers.append(twin)
    return sp.Sequential(layers)


def test_diagnose_gives_the_numbers_of_the_same_net_written_with_signalprop() -> None:
    """Exactly: the twin runs the same kernels on the same weights (tolerance 0)."""
    model = chapter_selu_net()
    x = torch.randn(64, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    ours = sp.diagnose(model, x, y)
    theirs = sp.diagnose(copied_to_signalprop(model), x, y)
    names = [layer.name for layer in model.layers if type(layer).__name__ == "Dense"]
    assert [layer.name for layer in ours.layers] == names
    assert len(ours.layers) == len(theirs.layers) == 101
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        for quantity in ("pre_mean", "pre_std", "act_mean", "act_std", "grad_pre_rms",
                         "grad_weight_rms", "weight_scale_fan_in", "fan_out"):  # fmt: skip
            assert getattr(a, quantity) == getattr(b, quantity), quantity
    assert ours.loss == theirs.loss
    assert ours.meanfield is not None and ours.meanfield.phase == theirs.meanfield.phase  # type: ignore[union-attr]


def test_the_chapters_net_with_one_swapped_initializer_is_pointed_at() -> None:
    model = chapter_selu_net(swapped=37)
    x = torch.randn(256, 28, 28, generator=torch.Generator().manual_seed(0))
    report = sp.diagnose(model, x)
    swapped = model.layers[2 + 37].name  # after Flatten and Dense(300); numbered per session
    (finding,) = [f for f in report.findings if f.kind == "off_scale"]
    assert finding.layers == [swapped]
    assert "lecun_normal" in finding.message and "re-initialize it" in finding.fix
    check = sp.check_self_normalizing(model, x)
    (violated,) = [c for c in check.conditions if not c.met]
    assert violated.name == "lecun_normal_init" and violated.where == [swapped]


def test_alpha_dropout_is_accepted_and_plain_dropout_flagged() -> None:
    def net(dropout: Any) -> Any:
        keras.utils.set_random_seed(0)
        layers = [keras.layers.Input(shape=[20])]
        for _ in range(4):
            layers += [keras.layers.Dense(30, "selu", kernel_initializer="lecun_normal"), dropout]
        return keras.Sequential([*layers, keras.layers.Dense(3)])

    x = torch.randn(128, 20)
    alpha = sp.check_self_normalizing(net(keras.layers.AlphaDropout(0.1)), x)
    assert all(c.met for c in alpha.conditions if c.name == "no_ordinary_dropout")
    plain = sp.check_self_normalizing(net(keras.layers.Dropout(0.1)), x)
    assert not next(c for c in plain.conditions if c.name == "no_ordinary_dropout").met


def test_autoinit_writes_back_and_the_model_still_trains_and_saves(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.layers.Input(shape=[16])]
        + [keras.layers.Dense(32, activation="tanh") for _ in range(6)]
        + [keras.layers.Dense(4, activation="softmax")]
    )
    before = model.layers[2].kernel.value.detach().clone()
    result = sp.autoinit(model, torch.randn(256, 16))
    after = model.layers[2].kernel.value.detach()
    assert not torch.equal(before, after) and isinstance(result, sp.AutoInitResult)
    assert isinstance(model.layers[2].kernel, keras.Variable)  # assigned, not replaced
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    y = np.random.default_rng(1).integers(0, 4, size=64)
    path = tmp_path / "model.keras"
    with warnings.catch_warnings():  # NumPy 2 deprecations inside Keras's own fit and save
        warnings.simplefilter("ignore", DeprecationWarning)
        history = model.fit(x, y, epochs=1, verbose=0)
        model.save(path)
    assert np.isfinite(float(history.history["loss"][0]))
    assert path.stat().st_size > 0


def test_a_functional_chain_is_read_and_a_branching_model_refused() -> None:
    inputs = keras.Input(shape=(8,))
    hidden = keras.layers.Dense(16, activation="elu")(inputs)
    hidden = keras.layers.LeakyReLU(negative_slope=0.2)(keras.layers.Dense(16)(hidden))
    chain = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    report = sp.diagnose(chain, torch.randn(32, 8))
    assert [layer.name for layer in report.layers if layer.has_weight] == [
        layer.name for layer in chain.layers if type(layer).__name__ == "Dense"
    ]
    left = keras.layers.Dense(4)(inputs)
    right = keras.layers.Dense(4)(inputs)
    branching = keras.Model(inputs, keras.layers.Add()([left, right]))
    with pytest.raises(ValueError, match="one chain"):
        sp.diagnose(branching, torch.randn(4, 8))


def test_a_layer_signalprop_cannot_read_is_named() -> None:
    model = keras.Sequential(
        [keras.layers.Input(shape=[8]), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    )
    with pytest.raises(ValueError, match=r"batch_normalization.*\(BatchNormalization\)"):
        sp.diagnose(model, torch.randn(4, 8))


def test_another_backend_or_keras_2_gets_one_error_saying_how_to_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = small_selu_net(depth=2)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="KERAS_BACKEND=torch"):
        sp.diagnose(model, torch.randn(4, 28, 28))
    monkeypatch.undo()

    class OldKerasModel:  # what a tf.keras (Keras 2) model looks like from here
        pass

    OldKerasModel.__module__ = "tf_keras.src.engine.sequential"
    assert sp_keras.is_keras(OldKerasModel())
    with pytest.raises(ValueError, match=r"Keras 2 / tf.keras model.*KERAS_BACKEND=torch"):
        sp.diagnose(OldKerasModel(), torch.randn(4, 3))  # type: ignore[arg-type]


def test_conv_layers_are_read_channels_last_and_written_back() -> None:
    """The twin's output is the Keras model's to float32 round-off of two convolution
    algorithms (1e-5 absolute on outputs of order 1)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 2)),
            keras.layers.Conv2D(6, 3, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Conv2D(6, 3, padding="same", activation="elu"),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    x = torch.randn(8, 12, 12, 2)
    twin = sp_keras.twin(model)
    with torch.no_grad():
        torch.testing.assert_close(twin.model(x), model(x), rtol=0, atol=1e-5)
    report = sp.diagnose(model, x)
    convs = [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [r.name for r in report.layers if r.layer_type == "Conv2d"] == convs
    assert report.layers[0].activation == "relu"
    before = model.layers[1].kernel.value.detach().clone()
    sp.autoinit(model, x)
    assert not torch.equal(before, model.layers[1].kernel.value.detach())
    with torch.no_grad():  # written back in Keras's layout: the twin still is the model
        torch.testing.assert_close(sp_keras.twin(model).model(x), model(x), rtol=0, atol=1e-5)
    conv1d = keras.Sequential(
        [keras.Input((20, 3)), keras.layers.Conv1D(4, 3, activation="tanh"), keras.layers.Dense(2)]
    )
    x1 = torch.randn(4, 20, 3)
    with torch.no_grad():
        torch.testing.assert_close(sp_keras.twin(conv1d).model(x1), conv1d(x1), rtol=0, atol=1e-5)
    strided = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, strides=2, padding="same")]
    )
    with pytest.raises(ValueError, match="padding 'same' with strides"):
        sp.diagnose(strided, torch.randn(2, 8, 8, 1))


# ---------------------------------------------------------------- the training monitor
def conv_dense_net() -> Any:
    """Convolutions, Dense layers with and without their own activation, activation layers."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.layers.Input((10, 10, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Conv2D(4, 3),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Flatten(),
        ]
        + [keras.layers.Dense(30, activation="tanh") for _ in range(3)]
        + [
            keras.layers.Dense(16),
            keras.layers.ELU(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )


def batches(n: int = 64, shape: tuple[int, ...] = (10, 10, 2)) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(n, *shape)).astype("float32")
    return x, np.random.default_rng(1).integers(0, 4, size=n)


def keras_fit(model: Any, x: Any, y: Any, callbacks: list[Any], **options: Any) -> Any:
    with warnings.catch_warnings():  # NumPy 2 deprecations inside Keras's own fit and save
        warnings.simplefilter("ignore", DeprecationWarning)
        return model.fit(x, y, verbose=0, shuffle=False, callbacks=callbacks, **options)


def test_the_monitor_callback_records_what_diagnose_measures() -> None:
    """The first record, against diagnose on the same batch and loss before the step.

    Tolerance 2e-6 relative: float32 round-off. Keras multiplies by the kernel and the
    twin by its transpose, and Keras's cross-entropy renormalizes and clips the
    probabilities before the log; this 64-sample batch differs by 2e-7 at most.
    """
    model = conv_dense_net()
    x, y = batches()
    report = sp.diagnose(
        model,
        torch.from_numpy(x),
        torch.from_numpy(y),
        loss_fn=lambda p, t: torch.nn.functional.nll_loss(torch.log(p), t),
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(0.01))
    kernels = [layer.kernel.value.detach().clone() for layer in model.layers if layer.weights]
    monitor = sp_keras.Monitor(every=1)
    keras_fit(model, x, y, [monitor], batch_size=64, epochs=1)
    history = monitor.history
    assert_first_record_is_the_report(history, report, batch=64, rel=2e-6)
    record = history.records[0]
    # Adam's update, from a copy of the weights: the kernels' actual change over their norm.
    ratios = [r for r in record.values["update_ratio"] if r is not None]
    after = [layer.kernel.value.detach() for layer in model.layers if layer.weights]
    actual = [float((b - a).norm() / a.norm()) for a, b in zip(kernels, after, strict=True)]
    assert ratios == pytest.approx(actual, rel=1e-5)
    assert history.layers[0].fan_in == 3 * 3 * 2 and history.layers[0].fan_out == 3 * 3 * 4


def test_the_monitor_callback_logs_a_fit_and_leaves_a_model_that_saves(tmp_path: Path) -> None:
    from signalprop.monitor import read_log

    model = keras.Sequential(
        [keras.layers.Input([20])]
        + [keras.layers.Dense(30, activation="tanh") for _ in range(4)]
        + [keras.layers.Dense(4, activation="softmax")]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    tanh = model.layers[0].activation
    x, y = batches(256, (20,))
    monitor = sp_keras.Monitor(
        every=3, log=tmp_path / "monitor.jsonl", tensorboard=tmp_path / "tensorboard"
    )
    # Saved after every batch, the monitor's activation wrappers still in place.
    saver = keras.callbacks.ModelCheckpoint(str(tmp_path / "model.keras"), save_freq=1)
    keras_fit(model, x, y, [monitor, saver], batch_size=32, epochs=2, validation_data=(x, y))
    assert [record.step for record in monitor.history.records] == [1, 4, 7, 10, 13, 16]
    logged = read_log(tmp_path / "monitor.jsonl")  # 9 significant digits
    assert [record.step for record in logged.records] == [1, 4, 7, 10, 13, 16]
    last = monitor.history.records[-1].values["grad_pre_rms"]
    assert logged.records[-1].values["grad_pre_rms"] == pytest.approx(last, rel=1e-8)
    assert monitor.history.steps == 16  # the validation passes are not steps
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert model.layers[0].activation is tanh  # the Keras layers' own functions, back
    saved = keras.models.load_model(tmp_path / "model.keras")
    assert saved.layers[0].activation.__name__ == "tanh"
    with pytest.raises(ValueError, match="make a new one for each fit"):
        keras_fit(model, x, y, [monitor], batch_size=32, epochs=1)
    # A new callback on the same log: refused (a log is never appended to), unless told.
    again = sp_keras.Monitor(every=3, log=tmp_path / "monitor.jsonl")
    with pytest.raises(ValueError, match="overwrite=True"):
        keras_fit(model, x, y, [again], batch_size=32, epochs=1)
    with pytest.raises(ValueError, match="'overwrite'"):
        sp_keras.Monitor(log=tmp_path / "monitor.jsonl", overwrite="yes")
    again = sp_keras.Monitor(every=3, log=tmp_path / "monitor.jsonl", overwrite=True)
    keras_fit(model, x, y, [again], batch_size=32, epochs=1)
    assert [record.step for record in read_log(tmp_path / "monitor.jsonl").records] == [1, 4, 7]


def test_the_monitor_callback_localizes_a_nan_to_its_keras_layer() -> None:
    model = keras.Sequential(
        [keras.layers.Input([20])]
        + [keras.layers.Dense(30, activation="relu") for _ in range(5)]
        + [keras.layers.Dense(4, activation="softmax")]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    broken = model.layers[2]

    class Break(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if batch == 5:
                broken.kernel.assign(torch.full(broken.kernel.shape, float("nan")))

    x, y = batches(256, (20,))
    monitor = sp_keras.Monitor(every=16)
    keras_fit(model, x, y, [Break(), monitor], batch_size=32, epochs=1)
    (event,) = monitor.events
    assert (event.step, event.pass_, event.layer) == (6, "forward", broken.name)
    assert "its weights are not finite" in event.message


def test_the_monitor_callback_refuses_what_it_cannot_watch() -> None:
    with pytest.raises(ValueError, match="every"):
        sp_keras.Monitor(every=0)
    with pytest.raises(ValueError, match="histograms_every"):
        sp_keras.Monitor(histograms_every=-1)
    model = keras.Sequential([keras.layers.Input([4]), keras.layers.Dense(4, activation="tanh")])
    x, y = batches(32, (4,))
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", jit_compile=True)
    with pytest.raises(ValueError, match="jit_compile=False"):
        keras_fit(model, x, y, [sp_keras.Monitor()], batch_size=8)
    unread = keras.Sequential(
        [keras.layers.Input([4]), keras.layers.Dense(3), keras.layers.BatchNormalization()]
    )
    unread.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match=r"\(BatchNormalization\)"):
        keras_fit(unread, x, np.zeros((32, 3), "float32"), [sp_keras.Monitor()], batch_size=8)


def test_a_fit_that_raised_leaves_no_second_wrapper_behind() -> None:
    model = keras.Sequential([keras.layers.Input([4]), keras.layers.Dense(4, activation="tanh")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    tanh = model.layers[0].activation
    x, y = batches(32, (4,))

    class Stop(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        keras_fit(model, x, y, [sp_keras.Monitor(every=1), Stop()], batch_size=8)
    assert model.layers[0].activation.__wrapped__ is tanh  # the interrupted monitor's
    monitor = sp_keras.Monitor(every=1)
    keras_fit(model, x, y, [monitor], batch_size=8)
    assert model.layers[0].activation is tanh and len(monitor.history.records) == 4


def test_the_mean_field_phase_of_a_keras_net_and_its_fix_at_the_edge_of_chaos() -> None:
    """The issue's example: 30 tanh layers with Keras's random_normal (σ_w² = 0.25) are
    deep in the ordered phase; autoinit(criterion="critical") puts them on the edge."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.layers.Input([100])]
        + [
            keras.layers.Dense(100, activation="tanh", kernel_initializer="random_normal")
            for _ in range(30)
        ]
        + [keras.layers.Dense(10, activation="softmax")]
    )
    x = torch.randn(256, 100, generator=torch.Generator().manual_seed(0))
    report = sp.diagnose(model, x)
    assert report.meanfield is not None and report.meanfield.phase == "ordered"
    assert {"ordered", "vanishing_gradients"} <= {f.kind for f in report.findings}
    sp.autoinit(model, x, criterion="critical")
    fixed = sp.diagnose(model, x)
    assert fixed.meanfield is not None and fixed.meanfield.phase == "critical"
    assert not fixed.findings


def test_the_callback_without_keras_on_torch_says_how_to_get_it() -> None:
    """In a process where Keras cannot be imported (here: its backend's package is
    missing), asking for the callback gets one ImportError that says what to do."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['keras'] = None\n"  # importing keras raises ImportError
        "import signalprop as sp\n"
        "try:\n    sp.keras.Monitor\nexcept ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'signalprop[keras]'" in done.stdout and "KERAS_BACKEND=torch" in done.stdout


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam"])
def test_the_callbacks_update_ratio_is_the_kernels_change(optimizer: str) -> None:
    """Plain SGD's update is read as lr × the gradient, any other optimizer's from a copy
    of the weights: both equal the kernels' actual change over their norm (1e-5)."""
    model = keras.Sequential(
        [keras.layers.Input([20])]
        + [keras.layers.Dense(30, activation="tanh") for _ in range(3)]
        + [keras.layers.Dense(4, activation="softmax")]
    )
    chosen = {
        "sgd": lambda: keras.optimizers.SGD(learning_rate=0.05),
        "sgd-momentum": lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        "adam": lambda: keras.optimizers.Adam(0.01),
    }[optimizer]()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=chosen)
    kernels = [layer.kernel.value.detach().clone() for layer in model.layers]
    monitor = sp_keras.Monitor(every=1)
    x, y = batches(32, (20,))
    keras_fit(model, x, y, [monitor], batch_size=32, epochs=1)
    after = [layer.kernel.value.detach() for layer in model.layers]
    actual = [float((b - a).norm() / a.norm()) for a, b in zip(kernels, after, strict=True)]
    assert monitor.history.records[0].values["update_ratio"] == pytest.approx(actual, rel=1e-5)
    plain = monitor.monitor._plain_sgd()  # type: ignore[attr-defined]
    assert (plain is not None) == (optimizer == "sgd")


def keras_crossentropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Keras's sparse categorical cross-entropy on probabilities, as its torch backend
    computes it: renormalized, clipped to [1e-7, 1 − 1e-7], then the log."""
    p = (p / p.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
    return torch.nn.functional.nll_loss(torch.log(p), y)


def test_the_monitor_callback_finds_a_blow_up_as_diagnose_does_on_the_same_steps() -> None:
    """A 5-layer He-ReLU net fitted with SGD at lr 1e4: after step 1 the output's
    pre-activations reach ~1e18, the loss is stuck at 13–16 and every gradient is 0.
    diagnose, run on the model before each batch with Keras's loss, and the callback's
    summary find the same kinds: at the first step, at the last, and over the run."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.layers.Input([784])]
        + [keras.layers.Dense(300, "relu", kernel_initializer="he_normal") for _ in range(4)]
        + [keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(1e4))
    rng = np.random.default_rng(0)
    x, y = rng.random((512, 784), dtype="float32"), rng.integers(0, 10, 512)
    diagnosed: list[set[str]] = []

    class Diagnose(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            rows = slice(32 * batch, 32 * (batch + 1))
            report = sp.diagnose(self.model, x[rows], y[rows], keras_crossentropy)
            diagnosed.append({f.kind for f in report.findings})

    monitor = sp_keras.Monitor(every=1)
    losses = keras_fit(model, x, y, [Diagnose(), monitor], batch_size=32, epochs=1)
    assert 10 < losses.history["loss"][-1] < 17
    assert {"chaotic", "exploding_signal", "vanishing_gradients"} <= diagnosed[-1]
    findings = monitor.findings()
    assert {f.kind for f in findings if f.began == 1} == diagnosed[0]
    assert {f.kind for f in findings if f.last_seen == 16} == diagnosed[-1]
    assert {f.kind for f in findings} == set().union(*diagnosed)
    assert "healthy" not in monitor.summary()
