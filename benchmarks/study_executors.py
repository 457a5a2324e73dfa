"""Throughput of a study on the local process pool against a local Dask cluster.

Runs the same study, from scratch each time, as ``signalprop study ... --jobs 2``
and as ``signalprop study ... --cluster local:2``, in alternating processes
(A B, B A, ...), and prints each one's wall time and runs per hour, their
medians and the ratio (goal: Dask's throughput >= 0.97 x the pool's). Whole
commands are timed, cluster and pool start-up included.

The default study: 8 runs of 50 dense layers (SELU, ELU, ReLU, tanh with their
matching initializations, 2 seeds) for one epoch of the full Fashion-MNIST
training set. Needs ``$SIGNALPROP_DATA`` (or ``--data-dir``) and the ``dask`` extra.

    python benchmarks/study_executors.py [--rounds 3] [--preset FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = {
    "name": "executors",
    "description": "Throughput benchmark: 8 one-epoch runs of 50 layers.",
    "defaults": {"epochs": 1, "batch_size": 32, "lr": 0.001, "validation": 5000},
    "grid": {
        "activation": ["selu", "elu", "relu", "tanh"],
        "init": ["matching"],
        "depth": [50],
        "seed": [0, 1],
    },
}
VARIANTS = {"--jobs 2": ["--jobs", "2"], "--cluster local:2": ["--cluster", "local:2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant (3)")
    parser.add_argument("--preset", help="a study preset or JSON file (default: see above)")
    parser.add_argument("--data-dir", help="Fashion-MNIST files (default $SIGNALPROP_DATA)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="signalprop-executors-"))
    preset = args.preset
    if preset is None:
        preset = str(folder / "grid.json")
        Path(preset).write_text(json.dumps(GRID))
    extra = ["--data-dir", args.data_dir] if args.data_dir else []
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    runs = 0
    for round_ in range(args.rounds):
        order = list(VARIANTS.items())
        for name, flags in order if round_ % 2 == 0 else order[::-1]:
            out = folder / f"{name.replace(' ', '').replace(':', '')}-{round_}"
            command = [sys.executable, "-m", "signalprop", "study", "--preset", preset]
            command += ["--out", str(out), "--no-report", *flags, *extra]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            elapsed = time.perf_counter() - start
            lines = (out / "results.jsonl").read_text().splitlines()
            runs = len(lines)
            assert not any(json.loads(line).get("error") for line in lines), out
            times[name].append(elapsed)
            print(
                f"  round {round_ + 1} {name:18s} {elapsed:6.1f} s  "
                f"{runs / elapsed * 3600:6.0f} runs/h",
                flush=True,
            )
    print(f"{runs} runs per study, {args.rounds} rounds, whole commands timed ({folder})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"  {name:18s} median {median:6.1f} s  {runs / median * 3600:6.0f} runs/h")
    ratio = medians["--jobs 2"] / medians["--cluster local:2"]
    print(f"  throughput Dask / process pool: {ratio:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
