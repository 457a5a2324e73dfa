"""Cost of ``sp.keras.Monitor`` on a Keras 3 fit (torch backend), same process.

The chapter's 100-layer SELU net written in Keras (784 -> 300 -> 99 x 100 -> 10,
batch 32, SGD lr 1e-3) trains one model in interleaved blocks of ``--steps``
batches: ``model.fit`` without a callback, then with a new
``sp.keras.Monitor(every=16)``, then the other way round (A B, B A, ...). The
script prints the median steps/s of each, the ratio of the medians and the
median of the per-round ratios.

    KERAS_BACKEND=torch python benchmarks/keras_monitor_overhead.py [--rounds 8] [--steps 160]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import torch

import signalprop as sp


def chapter_net() -> keras.Model:
    keras.utils.set_random_seed(42)
    model = keras.Sequential([keras.layers.Input(shape=[28, 28]), keras.layers.Flatten()])
    model.add(keras.layers.Dense(300, activation="selu", kernel_initializer="lecun_normal"))
    for _ in range(99):
        model.add(keras.layers.Dense(100, activation="selu", kernel_initializer="lecun_normal"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(learning_rate=1e-3)
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=160, help="batches per block")
    parser.add_argument("--every", type=int, default=16, help="the monitor's every")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)  # NumPy 2, inside Keras's fit
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32 * args.steps, 28, 28)).astype("float32")
    y = rng.integers(0, 10, size=32 * args.steps)
    model = chapter_net()
    model.fit(x[:320], y[:320], batch_size=32, verbose=0)  # warm-up

    def block(monitored: bool) -> float:
        callbacks = [sp.keras.Monitor(every=args.every)] if monitored else []
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
        return args.steps / (time.perf_counter() - start)

    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        for monitored in (False, True) if round_ % 2 == 0 else (True, False):
            rates[monitored].append(block(monitored))
    plain, monitored = statistics.median(rates[False]), statistics.median(rates[True])
    paired = statistics.median(a / b for a, b in zip(rates[False], rates[True], strict=True))
    print(
        f"Keras {keras.__version__} (torch backend), the chapter's 100-layer SELU net, batch 32, "
        f"1 thread, {args.rounds} interleaved rounds x {args.steps} batches"
    )
    print(f"  model.fit                      {plain:6.1f} steps/s (median)")
    print(f"  with sp.keras.Monitor(every={args.every}) {monitored:6.1f} steps/s (median)")
    print(f"  ratio of medians {plain / monitored:.3f}; median of per-round ratios {paired:.3f}")


if __name__ == "__main__":
    main()
