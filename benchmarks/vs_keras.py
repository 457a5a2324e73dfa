"""signalprop's ``fit`` against Keras 3 on TensorFlow, on the chapter's nets, same machine.

The chapter's 100-layer SELU and ReLU nets (784 -> 300 -> 99 x 100 -> 10) and the
300-100 ReLU net, batch 32, plain SGD lr 1e-3, standardized Fashion-MNIST. Each
system trains each net in its own process, and the processes alternate (Keras,
signalprop, plain PyTorch, then the other way round, for ``--rounds`` rounds).
A run trains ``--epochs`` epochs (3) on the first ``--train`` images (all
55,000); its speed is the second epoch's steps per second (the first pays for
start-up and compiling). signalprop's ``fit`` decides its path for the whole run
(``history.path`` is printed), so the run's length is the one a user would train.
Printed per net: median steps/s of each system, the ratios to Keras-TF and to
plain PyTorch, the peak memory of each process, and the fraction of the
matrix-product roof reached (the step's matrix products timed alone, one core;
the two-core roof is half of that time, an ideal split).

Systems:
  keras-tf      Keras 3 on TensorFlow (its defaults: both cores), ``model.fit``
  signalprop    ``signalprop.train.fit`` as a user calls it (``path="auto"``)
  pytorch       plain PyTorch eager: ``nn.Sequential``, autograd, ``torch.optim.SGD``

TensorFlow is not a dependency of signalprop. Install it into a separate
environment and point the script at its Python:

    python3.11 -m venv /tmp/tf-venv
    /tmp/tf-venv/bin/pip install "tensorflow-cpu==2.21.*" "keras==3.15.1"
    export SIGNALPROP_DATA=../shared/data/fashion-mnist
    python benchmarks/vs_keras.py --keras-python /tmp/tf-venv/bin/python [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

NETS = {
    "100-layer SELU": ("selu", "lecun_normal", [300] + [100] * 99),
    "100-layer ReLU": ("relu", "he_normal", [300] + [100] * 99),
    "300-100 ReLU": ("relu", "he_normal", [300, 100]),
}
BATCH = 32

# ---------------------------------------------------------------- the child processes
KERAS_CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, keras
activation, init, hidden, data, batch, epochs = json.loads(sys.argv[1])
x, y = np.load(data + "/x.npy"), np.load(data + "/y.npy")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.layers.Input(shape=[28, 28]), keras.layers.Flatten()])
for units in hidden:
    model.add(keras.layers.Dense(units, activation=activation, kernel_initializer=init))
model.add(keras.layers.Dense(10, activation="softmax"))
model.compile(loss="sparse_categorical_crossentropy",
              optimizer=keras.optimizers.SGD(learning_rate=1e-3))
class Times(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): seconds.append(time.perf_counter() - self.start)
seconds = []
model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True, callbacks=[Times()])
steps = -(-len(x) // batch)
import tensorflow
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
path = f"keras {keras.__version__} on tensorflow {tensorflow.__version__}"
print(json.dumps({"steps_per_s": steps / seconds[1], "peak_mb": peak, "path": path}))
"""

TORCH_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from torch import nn
system, activation, init, hidden, data, batch, epochs = json.loads(sys.argv[1])
x = torch.from_numpy(np.load(data + "/x.npy")); y = torch.from_numpy(np.load(data + "/y.npy"))
torch.manual_seed(0)
steps = -(-len(x) // batch)
if system in ("signalprop", "warm-up"):
    import signalprop as sp
    from signalprop.train import fit
    model = sp.Sequential([sp.layers.Flatten()]
                          + [sp.Dense(u, activation, kernel_initializer=init) for u in hidden]
                          + [sp.Dense(10, "softmax")], input_shape=(28, 28))
    path = "compiled" if system == "warm-up" else "auto"
    history = fit(model, (x[:3200], y[:3200]) if system == "warm-up" else (x, y), None,
                  epochs=epochs, batch_size=batch, lr=1e-3, progress=False, path=path)
    seconds = history.epoch_time[min(1, epochs - 1)]
    result = {"steps_per_s": steps / seconds, "path": history.path}
else:
    sizes = [784, *hidden]
    layers = [nn.Flatten()]
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), {"selu": nn.SELU, "relu": nn.ReLU}[activation]()]
    model = nn.Sequential(*layers, nn.Linear(sizes[-1], 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    seconds = []
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        start = time.perf_counter()
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    path = f"autograd, {torch.get_num_threads()} threads"
    result = {"steps_per_s": steps / seconds[1], "path": path}
result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def run_child(python: str, code: str, argument: list[object]) -> dict[str, object]:
    done = subprocess.run(
        [python, "-c", code, json.dumps(argument)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"vs_keras: a child failed:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def roof_seconds(hidden: list[int]) -> float:
    """The step's matrix products alone, one core (as in benchmarks/train_speed.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch

    from train_speed import roof_seconds as roof

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return roof(hidden)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", default=os.environ.get("SIGNALPROP_KERAS_PYTHON"),
                        help="a Python with TensorFlow and Keras 3 (see above)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per net")
    parser.add_argument("--train", type=int, default=55000, help="training images per run")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2)")
    parser.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    args = parser.parse_args()
    if not args.keras_python:
        parser.error("--keras-python: give a Python that has TensorFlow (see --help)")
    if args.epochs < 2:
        parser.error(
            f"--epochs: the second epoch is the one timed, so at least 2, not {args.epochs}"
        )
    from signalprop.data import load_fashion_mnist

    data = load_fashion_mnist(standardize=True)
    folder = tempfile.mkdtemp(prefix="vs-keras-")
    import numpy as np

    np.save(f"{folder}/x.npy", data.x_train[: args.train].numpy())
    np.save(f"{folder}/y.npy", data.y_train[: args.train].numpy())
    print(
        f"batch {BATCH}, SGD lr 1e-3, {args.train:,} Fashion-MNIST images, {args.epochs} "
        f"epochs, steps/s of the second; {args.rounds} alternating rounds of processes per net"
    )
    # A user's first long run of an architecture leaves its compiled step in the per-user
    # cache; the runs below find it there, as a user's later runs do.
    for name in args.nets:
        activation, init, hidden = NETS[name]
        warm = run_child(sys.executable, TORCH_CHILD,
                         ["warm-up", activation, init, hidden, folder, BATCH, 1])  # fmt: skip
        print(f"  {name}: {warm['path']}", flush=True)
    for name in args.nets:
        activation, init, hidden = NETS[name]
        runs: dict[str, list[dict[str, object]]] = {"keras-tf": [], "signalprop": [], "pytorch": []}
        for round_ in range(args.rounds):
            order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
            for system in order:
                shape = [activation, init, hidden, folder, BATCH, args.epochs]
                if system == "keras-tf":
                    result = run_child(args.keras_python, KERAS_CHILD, shape)
                else:
                    result = run_child(sys.executable, TORCH_CHILD, [system, *shape])
                runs[system].append(result)
                print(f"  {name} round {round_ + 1} {system}: {result['steps_per_s']:.1f} steps/s",
                      flush=True)  # fmt: skip
        roof = roof_seconds(hidden)
        keras_rate = statistics.median(float(r["steps_per_s"]) for r in runs["keras-tf"])  # type: ignore[arg-type]
        torch_rate = statistics.median(float(r["steps_per_s"]) for r in runs["pytorch"])  # type: ignore[arg-type]
        print(f"\n{name}: matrix-product roof {1 / roof:.0f} steps/s on one core, "
              f"{2 / roof:.0f} on two (ideal split)")  # fmt: skip
        print(f"  {'system':11s} {'steps/s':>8s} {'× Keras':>8s} {'× PyTorch':>9s} "
              f"{'1-core roof':>11s} {'2-core roof':>11s} {'peak MB':>8s}  path")  # fmt: skip
        for system, results in runs.items():
            rates = [float(r["steps_per_s"]) for r in results]  # type: ignore[arg-type]
            rate = statistics.median(rates)
            memory = max(float(r["peak_mb"]) for r in results)  # type: ignore[arg-type]
            print(
                f"  {system:11s} {rate:8.1f} {rate / keras_rate:8.2f} {rate / torch_rate:9.2f} "
                f"{rate * roof:11.0%} {rate * roof / 2:11.0%} {memory:8.0f}  {results[-1]['path']}"
            )
        print(flush=True)


if __name__ == "__main__":
    main()
