"""Keras models as Keras users hold them: convolutions with their activations, NumPy
batches, unbuilt Sequentials, float64 models, kernels of any shape."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import signalprop as sp
from signalprop import keras as sp_keras
from signalprop._validation import invalid_parameter

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover (Keras imported earlier otherwise)
    pytest.skip("Keras was imported on another backend", allow_module_level=True)

L = keras.layers


def numpy_batch(n: int, shape: tuple[int, ...], classes: int = 4) -> tuple[Any, Any]:
    """What Keras users pass: float32 arrays and int32 labels."""
    x = np.random.default_rng(0).normal(size=(n, *shape)).astype("float32")
    return x, np.random.default_rng(1).integers(0, classes, size=n).astype("int32")


def fit(model: Any, x: Any, y: Any, callbacks: list[Any]) -> None:
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    with warnings.catch_warnings():  # NumPy 2 deprecations inside Keras's own fit
        warnings.simplefilter("ignore", DeprecationWarning)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)


# ------------------------------------------------------- convolutions and their activations
#: The same ReLU written the ways Keras users write it (and the leaky one, whose He variance
#: is 2 / (1 + slope²): He et al. 2015, "Delving deep into rectifiers", eq. 15).
STYLES: dict[str, tuple[Callable[[], list[Any]], Callable[[], nn.Module], float]] = {
    "activation=relu": (lambda: [L.Conv2D(8, 3, activation="relu")], nn.ReLU, 2.0),
    "ReLU()": (lambda: [L.Conv2D(8, 3), L.ReLU()], nn.ReLU, 2.0),
    "Activation(relu)": (lambda: [L.Conv2D(8, 3), L.Activation("relu")], nn.ReLU, 2.0),
    "LeakyReLU(0.2)": (
        lambda: [L.Conv2D(8, 3), L.LeakyReLU(negative_slope=0.2)],
        lambda: nn.LeakyReLU(0.2),
        2.0 / (1 + 0.2**2),
    ),
    "ELU()": (lambda: [L.Conv2D(8, 3), L.ELU()], nn.ELU, float("nan")),  # compared with torch
}


@pytest.mark.parametrize("style", list(STYLES))
def test_a_keras_conv_net_is_initialized_as_the_same_net_in_torch(style: str) -> None:
    """autoinit's σ_w² for each layer of a Keras conv net equals its σ_w² for the same net
    written in PyTorch (exactly: the same reader and the same formula on the same inputs);
    for ReLU it is He's 2, not the 1 of a layer read as feeding "linear"."""
    block, torch_activation, expected = STYLES[style]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [L.Input((10, 10, 2)), *block(), *block(), *block(), L.Flatten(), L.Dense(3)]
    )
    x = torch.randn(16, 10, 10, 2, generator=torch.Generator().manual_seed(0))
    ours = sp.autoinit(model, x)
    same = nn.Sequential(
        nn.Conv2d(2, 8, 3), torch_activation(), nn.Conv2d(8, 8, 3), torch_activation(),
        nn.Conv2d(8, 8, 3), torch_activation(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3),
    )  # fmt: skip
    theirs = sp.autoinit(same, x.movedim(-1, 1))
    assert [layer.activation for layer in ours.layers] == [
        layer.activation for layer in theirs.layers
    ]
    assert [layer.producer for layer in ours.layers] == [layer.producer for layer in theirs.layers]
    assert [layer.weight_var for layer in ours.layers] == pytest.approx(
        [layer.weight_var for layer in theirs.layers], rel=1e-9
    )
    if expected == expected:  # not NaN: a rectifier, whose variance has a closed form
        assert [layer.weight_var for layer in ours.layers[1:]] == pytest.approx([expected] * 3)
        # Written back: the Keras kernels' var · fan_in (3·3·8 = 72 per output) is He's.
        # Tolerance 10 %: a 576-entry orthogonal draw, its mean not exactly 0.
        convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
        for conv in convs[1:]:
            kernel = conv.kernel.value.detach()
            assert float(kernel.var() * 72) == pytest.approx(expected, rel=0.1)


def test_a_conv_and_its_activation_layer_are_one_row_as_in_torch() -> None:
    """diagnose on a Keras conv net with separate ReLU layers gives the rows and numbers of
    the same net in PyTorch (1e-5: two convolution algorithms in float32); its dead units
    are channels (2 of 8 here, biases −100), in diagnose and the monitor callback alike."""
    keras.utils.set_random_seed(0)
    layers = [L.Input((8, 8, 3)), L.Conv2D(8, 3), L.ReLU(), L.Conv2D(4, 3), L.ReLU()]
    model = keras.Sequential([*layers, L.Flatten(), L.Dense(4, activation="softmax")])
    conv = model.layers[0]
    conv.bias.assign(torch.tensor([-100.0, -100.0] + [0.0] * 6))  # two dead channels
    x, y = numpy_batch(32, (8, 8, 3))
    ours = sp.diagnose(model, x, y)
    assert [(row.name, row.activation) for row in ours.layers] == [
        (conv.name, "relu"), (model.layers[2].name, "relu"), (model.layers[5].name, "softmax"),
    ]  # fmt: skip
    assert ours.layers[0].dead == pytest.approx(2 / 8)
    monitor = sp_keras.Monitor(every=1)
    fit(model, x, y, [monitor])
    record = monitor.history.records[0]
    assert [layer.name for layer in monitor.history.layers] == [row.name for row in ours.layers]
    assert record.values["dead"][0] == pytest.approx(2 / 8)


# ------------------------------------------------------------ kernels of any shape
#: Non-square kernels with strides, padding and dilation: an axis swap in the kernel's
#: transposition (kh ↔ kw, in ↔ out) changes every one of these outputs.
CONVS: dict[str, tuple[Callable[[], Any], tuple[int, ...]]] = {
    "(3, 5)": (lambda: L.Conv2D(4, (3, 5)), (9, 11, 2)),
    "(3, 5) strides (2, 1)": (lambda: L.Conv2D(4, (3, 5), strides=(2, 1)), (9, 11, 2)),
    "(3, 5) strides (1, 3)": (lambda: L.Conv2D(4, (3, 5), strides=(1, 3)), (9, 11, 2)),
    "(3, 5) same": (lambda: L.Conv2D(4, (3, 5), padding="same"), (9, 11, 2)),
    "(3, 5) dilation (2, 1)": (lambda: L.Conv2D(4, (3, 5), dilation_rate=(2, 1)), (9, 11, 2)),
    "(3, 5) groups 2": (lambda: L.Conv2D(4, (3, 5), groups=2), (9, 11, 2)),
    "depthwise (3, 5)": (lambda: L.DepthwiseConv2D((3, 5), depth_multiplier=2), (9, 11, 3)),
    "Conv1D 5 strides 2": (lambda: L.Conv1D(4, 5, strides=2), (13, 2)),
    "Conv3D (2, 3, 4)": (lambda: L.Conv3D(3, (2, 3, 4)), (5, 6, 7, 2)),
}


def in_keras_layout(layer: Any, weight: torch.Tensor) -> torch.Tensor:
    """The twin's weight as the Keras kernel, written out axis by axis for each kind."""
    w = weight.detach()
    if type(layer).__name__ == "DepthwiseConv2D":  # (in·m, 1, kh, kw) -> (kh, kw, in, m)
        channels = layer.kernel.shape[2]
        return torch.einsum("cmhw->hwcm", w.reshape(channels, -1, *w.shape[2:]))
    return torch.einsum({3: "oik->kio", 4: "oihw->hwio", 5: "oidhw->dhwio"}[w.dim()], w)


@pytest.mark.parametrize("case", list(CONVS))
def test_a_kernel_of_any_shape_is_the_keras_layers_forward_and_written_back(case: str) -> None:
    """The twin's forward equals Keras's (1e-5 absolute on outputs of order 1: float32
    round-off of two convolution algorithms); after autoinit the Keras kernel is the twin's
    weight in Keras's layout, exactly, and the model computes what the twin computes."""
    make, shape = CONVS[case]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([L.Input(shape), make(), L.ReLU(), L.Flatten(), L.Dense(3)])
    layer = model.layers[0]
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    read = sp_keras.twin(model)
    with torch.no_grad():
        torch.testing.assert_close(read.model(x), model(x), rtol=0, atol=1e-5)
    sp.autoinit(read.model, x, generator=torch.Generator().manual_seed(3))
    read.write_back()
    weight = getattr(read.model, layer.name.replace(".", "_")).weight
    assert torch.equal(layer.kernel.value.detach(), in_keras_layout(layer, weight))
    with torch.no_grad():
        torch.testing.assert_close(read.model(x), model(x), rtol=0, atol=1e-5)
    # sp.autoinit on the Keras model itself does the same (same twin, same generator).
    keras.utils.set_random_seed(0)
    again = keras.Sequential([L.Input(shape), make(), L.ReLU(), L.Flatten(), L.Dense(3)])
    sp.autoinit(again, x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.layers[0].kernel.value.detach(), layer.kernel.value.detach())


def test_convolutions_the_twin_cannot_stand_for_are_refused_by_name() -> None:
    """With why: one twin weight layer cannot stand for two kernels, nor for a transposed
    convolution (read as a convolution, its fans would be swapped)."""
    for layer, why in (
        (L.SeparableConv2D(4, 3), "its depthwise and pointwise kernels are two weight layers"),
        (L.Conv2DTranspose(4, 3), "a transposed convolution is not"),
    ):
        model = keras.Sequential([L.Input((8, 8, 2)), layer])
        kind = type(layer).__name__
        with pytest.raises(ValueError, match=rf"{layer.name}.*\({kind}\) is not read: {why}"):
            sp.diagnose(model, torch.randn(2, 8, 8, 2))


# ------------------------------------------------------------ NumPy, unbuilt, float64
def dense_net(*first: Any) -> Any:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [*first, L.Dense(32, activation="tanh"), L.Dense(32, activation="tanh"), L.Dense(4)]
    )


def test_numpy_inputs_and_labels_are_taken_as_keras_takes_them() -> None:
    """NumPy float32 inputs and int32 labels give the numbers of the same tensors."""
    model = dense_net(L.Input((20,)))
    x, y = numpy_batch(64, (20,))
    ours = sp.diagnose(model, x, y)
    theirs = sp.diagnose(model, torch.from_numpy(x), torch.from_numpy(y).long())
    assert ours.loss == theirs.loss
    assert [row.pre_std for row in ours.layers] == [row.pre_std for row in theirs.layers]
    check = sp.check_self_normalizing(model, x)
    assert check.report.loss == sp.check_self_normalizing(model, torch.from_numpy(x)).report.loss
    result = sp.autoinit(model, x)
    assert result.layers[0].producer == "data"


def test_an_array_in_the_wrong_place_is_described_not_printed() -> None:
    """The message names the array's type, shape and dtype, in a line, not its 1280 values."""
    model = dense_net(L.Input((20,)))
    x, y = numpy_batch(64, (20,))
    with pytest.raises(ValueError, match="inputs") as raised:
        sp.diagnose(model, [x, y])  # a list: Keras users' habit, diagnose wants a tuple
    message = str(raised.value)
    assert "[ndarray of shape (64, 20) and dtype float32, ndarray of shape (64,)" in message
    assert len(message) < 300 and "\n" not in message
    error = invalid_parameter("x", "f", "a number", torch.zeros(1000, 10))
    assert str(error) == (
        "The 'x' parameter of f must be a number. "
        "Got Tensor of shape (1000, 10) and dtype torch.float32 instead."
    )
    assert "… (list, " in str(invalid_parameter("x", "f", "short", list(range(1000))))


def test_an_unbuilt_sequential_is_built_from_the_batch_or_refused_in_one_line() -> None:
    x, y = numpy_batch(64, (20,))
    with pytest.raises(ValueError, match=r"unbuilt.*model\.build\(\(None, 784\)\)") as raised:
        sp.autoinit(dense_net())
    assert "\n" not in str(raised.value) and "autoinit" in str(raised.value)
    report = sp.diagnose(dense_net(), x, y)
    assert [row.fan_in for row in report.layers] == [20, 32, 32]
    model = dense_net()
    sp.autoinit(model, x)
    assert model.built and tuple(model.layers[0].kernel.shape) == (20, 32)
    fit(model, x, y, [])  # still the Keras model, trained by Keras


@pytest.fixture
def float64() -> Iterator[None]:
    """Keras's float64 default (restored afterwards): floatx, and the dtype policy that
    Keras caches from it once any layer has been made in the process."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


@pytest.mark.usefixtures("float64")
def test_a_float64_keras_model_is_diagnosed_initialized_and_monitored() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [L.Input((8, 8, 2)), L.Conv2D(4, 3), L.ReLU(), L.Flatten(), L.Dense(4, "softmax")]
    )
    assert model.layers[0].kernel.value.dtype == torch.float64
    # The twin computes in float64 too, not in float32 with the kernels rounded.
    assert {p.dtype for p in sp_keras.twin(model).model.parameters()} == {torch.float64}
    x, y = numpy_batch(32, (8, 8, 2))  # float32 data, as it usually comes
    report = sp.diagnose(model, x, y)
    assert report.layers[0].activation == "relu" and np.isfinite(report.loss)
    before = model.layers[0].kernel.value.detach().clone()
    result = sp.autoinit(model, x)
    assert result.layers[1].producer == "ReLU" and result.layers[1].weight_var == 2.0
    kernel = model.layers[0].kernel.value.detach()
    assert kernel.dtype == torch.float64 and not torch.equal(before, kernel)
    monitor = sp_keras.Monitor(every=1)
    fit(model, x, y, [monitor])
    assert len(monitor.history.records) == 2
    assert all(np.isfinite(v) for v in monitor.history.records[0].values["pre_std"])
