"""What a Monitor leaves behind: TensorBoard event files and `signalprop plot monitor` figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import signalprop as sp
from _images import assert_png
from signalprop.cli import main
from signalprop.monitor import QUANTITIES


def monitored_run(tmp_path: Path, **options: object) -> sp.Monitor:
    torch.manual_seed(0)
    model = sp.Sequential(
        [sp.Dense(16, "tanh") for _ in range(3)] + [sp.Dense(4)], input_shape=(6,)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with sp.Monitor(model, every=2, optimizer=optimizer, **options) as monitor:  # type: ignore[arg-type]
        for _ in range(6):
            optimizer.zero_grad()
            F.cross_entropy(model(torch.randn(32, 6)), torch.randint(0, 4, (32,))).backward()
            optimizer.step()
    return monitor


def test_tensorboard_gets_a_scalar_per_layer_and_quantity_and_histograms(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitored_run(tmp_path, tensorboard=tmp_path / "tb", histograms_every=2)
    everything = {"scalars": 0, "histograms": 0, "tensors": 0}
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance=everything).Reload()
    tags = events.Tags()
    for quantity in QUANTITIES[:4]:  # the tanh layers have every moment
        assert f"{quantity}/001_0" in tags["scalars"]
    assert "grad_pre_rms/004_3" in tags["scalars"]  # the output layer
    assert "saturated/002_1" in tags["scalars"]
    assert "dead/002_1" not in tags["scalars"]  # tanh units do not die: nothing written
    assert [e.step for e in events.Scalars("grad_pre_rms/001_0")] == [1, 3, 5]
    # Histograms on every second record: steps 1 and 5.
    assert [e.step for e in events.Histograms("weights/001_0")] == [1, 5]
    assert "activations/003_2" in tags["histograms"]
    assert "signalprop/findings/text_summary" in tags["tensors"]


def scalars_read_back(board: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in ``board``'s event files, as TensorBoard's own reader loads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(board), size_guidance={"scalars": 0}).Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def scalars_recorded(monitor: sp.Monitor) -> dict[str, list[tuple[int, float]]]:
    """The scalars a Monitor's history holds, by tag, in float32 as TensorBoard keeps them."""
    from signalprop.monitor._tensorboard import tag

    wanted: dict[str, list[tuple[int, float]]] = {}
    for record in monitor.history.records:
        for quantity in QUANTITIES:
            for index, value in enumerate(record.values[quantity]):
                if value is not None:
                    name = tag(quantity, index, monitor.history.names[index])
                    wanted.setdefault(name, []).append((record.step, float(np.float32(value))))
    return wanted


def test_tensorboard_reader_loads_every_value_the_monitor_recorded(tmp_path: Path) -> None:
    """Each (quantity, layer, step) of the history is a scalar in the event files, equal
    to the recorded value rounded to float32 (TensorBoard's simple_value), NaN as NaN."""
    pytest.importorskip("tensorboard")
    monitor = monitored_run(tmp_path, tensorboard=tmp_path / "tb")
    wanted = scalars_recorded(monitor)
    assert sum(len(v) for v in wanted.values()) > 100  # 3 records x 4 layers x most quantities
    got = scalars_read_back(tmp_path / "tb")
    assert got.keys() == wanted.keys()
    for name, points in wanted.items():
        np.testing.assert_array_equal(np.array(got[name]), np.array(points), err_msg=name)


def test_tensorboard_events_queued_at_a_crash_reach_the_files(tmp_path: Path) -> None:
    """A loop that raises and never closes its Monitor: the writer thread's queue is
    written out at the interpreter's exit, every record in it."""
    pytest.importorskip("tensorboard")
    script = f"""
import time, torch, torch.nn.functional as F, signalprop as sp
from signalprop.monitor._tensorboard import TensorBoardLog
write = TensorBoardLog._write_scalars
def slow(self, *args):  # a slow disk: the queue is full when the loop ends
    time.sleep(0.02)
    write(self, *args)
TensorBoardLog._write_scalars = slow
torch.manual_seed(0)
model = sp.Sequential([sp.Dense(16, "tanh") for _ in range(3)] + [sp.Dense(4)], input_shape=(6,))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
monitor = sp.Monitor(model, every=1, optimizer=optimizer, tensorboard={str(tmp_path / "tb")!r})
for _ in range(40):
    optimizer.zero_grad()
    F.cross_entropy(model(torch.randn(32, 6)), torch.randint(0, 4, (32,))).backward()
    optimizer.step()
raise SystemExit(3)  # no close()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    got = scalars_read_back(tmp_path / "tb")
    assert [step for step, _ in got["grad_pre_rms/001_0"]] == list(range(1, 41))
    assert len(got) > 4 * 8  # every layer's quantities


def test_histograms_read_back_are_add_histograms_numbers_for_the_weights(tmp_path: Path) -> None:
    """TensorBoard's reader gets, for a weight at the last record, the histogram
    ``add_histogram(weight, bins=BUCKETS)`` would write: its min, max, count, sum, sum
    of squares and buckets, from the weight after that step's update."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard.summary import make_histogram

    from signalprop.monitor._tensorboard import BUCKETS

    torch.manual_seed(0)
    model = sp.Sequential([sp.Dense(16, "relu"), sp.Dense(4)], input_shape=(6,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with sp.Monitor(
        model, every=1, optimizer=optimizer, tensorboard=tmp_path / "tb", histograms_every=1
    ):
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(model(torch.randn(32, 6)), torch.randint(0, 4, (32,))).backward()
            optimizer.step()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0}).Reload()
    for index, layer in enumerate(model):
        written = events.Histograms(f"weights/{index + 1:03d}_{index}")
        assert [e.step for e in written] == [1, 2, 3]
        got = written[-1].histogram_value
        expected = make_histogram(layer.weight.detach().double().numpy(), BUCKETS)
        assert list(got.bucket_limit) == list(expected.bucket_limit)
        assert list(got.bucket) == list(expected.bucket)
        assert sum(got.bucket) == layer.weight.numel()
        for field in ("min", "max", "num", "sum", "sum_squares"):
            assert getattr(got, field) == getattr(expected, field), field


def test_the_event_checksum_is_tensorboards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C checksum of google-crc32c and TensorBoard's own pure-Python one (used when
    google-crc32c is missing) give the same masked CRC-32C."""
    pytest.importorskip("google_crc32c")
    pytest.importorskip("tensorboard")
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    from signalprop.monitor._tensorboard import _masked_crc32c

    fast = _masked_crc32c()
    monkeypatch.setitem(sys.modules, "google_crc32c", None)
    fallback = _masked_crc32c()
    assert fallback is masked_crc32c and fast is not masked_crc32c
    rng = np.random.default_rng(0)
    for size in (0, 1, 8, 1000, 47_305):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert fast(data) == masked_crc32c(data), size


def test_tensorboard_without_the_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    model = sp.Sequential([sp.Dense(4, "relu")], input_shape=(3,))
    with pytest.raises(ImportError, match=r"signalprop\[tensorboard\]"):
        sp.Monitor(model, tensorboard=tmp_path / "tb")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_plot_monitor_draws_each_quantity_and_prints_the_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monitored_run(tmp_path, log=tmp_path / "monitor.jsonl")
    assert main(["plot", "monitor", str(tmp_path / "monitor.jsonl"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("monitor", "monitor-grad_pre_rms", "monitor-act_std", "monitor-saturated"):
        assert_png(tmp_path / f"{name}.png")
    assert not (tmp_path / "monitor-dead.png").exists()  # no layer can die
    assert "4 layers, 3 monitored steps (every 2) of 6" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["plot", "monitor", "--out", "x"], ["give the Monitor's log file"]),
        (["plot", "activations", "log.jsonl", "--out", "x"], ["takes no log file"]),
        (["plot", "monitor", __file__, "--out", "x"], ["is not a Monitor log"]),
        (["plot", "monitor", "/nonexistent/monitor.jsonl", "--out", "x"], ["is not a Monitor log"]),
    ],
)
def test_plot_monitor_user_errors_are_one_line(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("signalprop: error: ")
    for word in words:
        assert word in err
