"""signalprop.data: the IDX reader, checksums, the data folder, download and the split.

Small IDX files are written here by a tiny writer and the module's checksum table is
patched to accept them; the URL opener is replaced so that no test touches the
network. One test reads the real offline copy beside the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import urllib.error
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from _data_dir import DATA as OFFLINE
from _data_dir import needs_data
from signalprop import data

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


N_TRAIN, N_TEST, N_VALID = 30, 20, 5


# ------------------------------------------------------------------------ helpers


class Arrays(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """A minimal IDX writer: zero, zero, type, ndim, big-endian sizes, C-order data."""
    sizes = b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return bytes([0, 0, type_code, array.ndim]) + sizes + np.ascontiguousarray(array).tobytes()


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def make_arrays() -> Arrays:
    """30 train and 20 test images; the first N_VALID train images are brighter, and
    pixel (0, 0) is constant (7) over the training part, to test the statistics."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 200, (N_TRAIN, 28, 28), dtype=np.uint8)
    x_train[:N_VALID] = rng.integers(150, 256, (N_VALID, 28, 28), dtype=np.uint8)
    x_train[N_VALID:, 0, 0] = 7
    x_test = rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)
    y_train = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    y_test = (np.arange(N_TEST)[::-1] % 10).astype(np.uint8)
    return Arrays(x_train, y_train, x_test, y_test)


def release_blobs(arrays: Arrays) -> dict[str, bytes]:
    return {
        TRAIN_IMAGES: gz(idx_bytes(arrays.x_train)),
        TRAIN_LABELS: gz(idx_bytes(arrays.y_train)),
        TEST_IMAGES: gz(idx_bytes(arrays.x_test)),
        TEST_LABELS: gz(idx_bytes(arrays.y_test)),
    }


def trust(
    monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes], source: str = "official"
) -> None:
    """Make the module's checksum table accept exactly these files."""
    table = {name: {source: sha256(blob)} for name, blob in blobs.items()}
    monkeypatch.setattr(data, "_SHA256", table)


def install(directory: Path, blobs: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        (directory / name).write_bytes(blob)
    return directory


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class Server:
    """Stands in for ``urllib.request.urlopen``: serves bytes by file name."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float | None = None) -> io.BytesIO:
        self.urls.append(url)
        return io.BytesIO(self.files[url.rsplit("/", 1)[1]])


def no_network(url: str, timeout: float | None = None) -> Any:
    raise AssertionError(f"a test tried to use the network: {url}")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the user's SIGNALPROP_DATA or cache, or reaches the network."""
    monkeypatch.delenv("SIGNALPROP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(data, "_urlopen", no_network)


@pytest.fixture
def arrays() -> Arrays:
    return make_arrays()


@pytest.fixture
def blobs(arrays: Arrays) -> dict[str, bytes]:
    return release_blobs(arrays)


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]) -> Path:
    """A folder with the four small files, trusted as the official release."""
    trust(monkeypatch, blobs)
    return install(tmp_path / "fashion", blobs)


# ----------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "raw"])
def test_read_idx_reads_gzip_and_raw_files(tmp_path: Path, arrays: Arrays, compressed: bool):
    raw = idx_bytes(arrays.x_test)
    path = tmp_path / "images.idx"
    path.write_bytes(gz(raw) if compressed else raw)
    out = data.read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arrays.x_test)
    assert out.flags.writeable  # a new array: torch.from_numpy takes it without a warning
    np.testing.assert_array_equal(data.read_idx(str(path)), arrays.x_test)


def test_read_idx_refuses_types_other_than_unsigned_byte(tmp_path: Path):
    path = tmp_path / "floats.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 3), dtype=">f4"), type_code=0x0D))
    with pytest.raises(ValueError, match=r"floats\.idx holds IDX type 0x0D \(float32\)"):
        data.read_idx(path)


def test_read_idx_refuses_a_file_that_is_not_idx(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, world")
    with pytest.raises(ValueError, match=r"notes\.txt is not an IDX file"):
        data.read_idx(path)


# -------------------------------------------------------------- loading and split


def test_load_reads_images_in_unit_range_and_int64_labels(fake_dir: Path, arrays: Arrays):
    ds = data.load_fashion_mnist(fake_dir, validation=0)
    assert ds.x_train.shape == (N_TRAIN, 28, 28)
    assert ds.x_test.shape == (N_TEST, 28, 28)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float32
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert ds.x_train.is_contiguous() and ds.x_test.is_contiguous()
    torch.testing.assert_close(
        ds.x_train, torch.tensor(arrays.x_train, dtype=torch.float32) / 255, rtol=0, atol=0
    )
    torch.testing.assert_close(
        ds.x_test, torch.tensor(arrays.x_test, dtype=torch.float32) / 255, rtol=0, atol=0
    )
    assert float(ds.x_test.min()) >= 0.0 and float(ds.x_test.max()) <= 1.0
    assert ds.y_train.tolist() == arrays.y_train.tolist()
    assert ds.y_test.tolist() == arrays.y_test.tolist()
    assert int(ds.y_train.min()) >= 0 and int(ds.y_train.max()) <= 9
    assert ds.class_names == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    assert ds.data_dir == fake_dir
    assert ds.source == "official"
    assert "train=30, valid=0, test=20" in repr(ds)


def test_validation_set_is_the_first_images_of_the_training_file(fake_dir: Path, arrays: Arrays):
    ds = data.load_fashion_mnist(fake_dir, validation=7)
    scaled = torch.tensor(arrays.x_train, dtype=torch.float32) / 255
    assert torch.equal(ds.x_valid, scaled[:7])
    assert torch.equal(ds.x_train, scaled[7:])
    assert ds.y_valid.tolist() == arrays.y_train[:7].tolist()
    assert ds.y_train.tolist() == arrays.y_train[7:].tolist()
    assert torch.equal(data.load_fashion_mnist(fake_dir, validation=7).x_train, ds.x_train)


def test_validation_zero_gives_empty_validation_tensors(fake_dir: Path):
    ds = data.load_fashion_mnist(fake_dir, validation=0)
    assert ds.x_valid.shape == (0, 28, 28) and ds.x_valid.dtype == torch.float32
    assert ds.y_valid.shape == (0,) and ds.y_valid.dtype == torch.int64
    assert len(ds.x_train) == N_TRAIN


def test_standardize_uses_statistics_of_the_training_part_only(fake_dir: Path, arrays: Arrays):
    ds = data.load_fashion_mnist(fake_dir, validation=N_VALID, standardize=True)
    # On the training part every pixel has mean 0 and std 1 (ddof 0), except the
    # constant pixel (0, 0), whose std 0 is replaced by 1: it is only centred.
    mean = ds.x_train.double().mean(dim=0)
    std = ds.x_train.double().std(dim=0, correction=0)
    torch.testing.assert_close(mean, torch.zeros_like(mean), rtol=0, atol=1e-6)
    varying = torch.ones(28, 28, dtype=torch.bool)
    varying[0, 0] = False
    torch.testing.assert_close(std[varying], torch.ones_like(std[varying]), rtol=0, atol=1e-5)
    assert torch.all(ds.x_train[:, 0, 0] == 0)
    # Validation and test use the same statistics, computed here in float64.
    # (The constant pixel is found on the bytes: in floating point its computed std
    # need not be exactly 0.)
    raw_train = arrays.x_train[N_VALID:]
    train = raw_train.astype(np.float64) / 255
    mu, sigma = train.mean(axis=0), train.std(axis=0)
    sigma[(raw_train == raw_train[0]).all(axis=0)] = 1.0
    for tensor, raw in ((ds.x_valid, arrays.x_train[:N_VALID]), (ds.x_test, arrays.x_test)):
        expected = torch.from_numpy((raw / 255 - mu) / sigma).float()
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-5)
    assert torch.isfinite(ds.x_test).all()
    # The bright validation images would shift the statistics had they been included.
    assert float(ds.x_valid.mean()) > 1.0


# ------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"validation": -1},
            "The 'validation' parameter of load_fashion_mnist must be an integer >= 0. "
            "Got -1 instead.",
        ),
        (
            {"validation": True},
            "The 'validation' parameter of load_fashion_mnist must be an integer >= 0. "
            "Got True instead.",
        ),
        (
            {"validation": N_TRAIN},
            "The 'validation' parameter of load_fashion_mnist must be an integer smaller "
            "than the number of training images (30). Got 30 instead.",
        ),
        (
            {"standardize": "yes"},
            "The 'standardize' parameter of load_fashion_mnist must be a bool. Got 'yes' instead.",
        ),
        (
            {"download": 1},
            "The 'download' parameter of load_fashion_mnist must be a bool. Got 1 instead.",
        ),
    ],
)
def test_bad_arguments_are_refused_in_one_wording(
    fake_dir: Path, kwargs: dict[str, Any], message: str
):
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load_fashion_mnist(fake_dir, **kwargs)


@pytest.mark.parametrize("bad", [3, ""])
def test_bad_data_dir_is_refused(bad: Any):
    with pytest.raises(ValueError, match=r"The 'data_dir' parameter of load_fashion_mnist"):
        data.load_fashion_mnist(bad)


# --------------------------------------------------------------------- data folder


def test_environment_variable_names_the_folder(fake_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNALPROP_DATA", str(fake_dir))
    assert data.default_data_dir() == fake_dir
    assert data.load_fashion_mnist(validation=N_VALID).data_dir == fake_dir


def test_argument_takes_precedence_over_environment(
    fake_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SIGNALPROP_DATA", str(tmp_path / "elsewhere"))
    assert data.load_fashion_mnist(fake_dir, validation=N_VALID).data_dir == fake_dir


def test_default_folder_is_the_per_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "xdg" / "signalprop" / "fashion-mnist"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in ("", "relative/cache"):  # unset, or not absolute: ignored (XDG spec)
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        expected = tmp_path / "home" / ".cache" / "signalprop" / "fashion-mnist"
        assert data.default_data_dir() == expected
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_data_dir() == expected


@pytest.mark.parametrize("origin", ["argument", "environment", "cache"])
def test_missing_folder_says_where_it_looked_and_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str
):
    if origin == "argument":
        folder, given, phrase = tmp_path / "nowhere", tmp_path / "nowhere", "data_dir argument"
    elif origin == "environment":
        folder, given, phrase = tmp_path / "env-dir", None, "SIGNALPROP_DATA environment"
        monkeypatch.setenv("SIGNALPROP_DATA", str(folder))
    else:
        folder, given, phrase = data.default_data_dir(), None, "per-user cache"
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist(given, download=False)
    message = str(info.value)
    assert str(folder) in message and phrase in message
    assert "does not exist" in message and "download=False" in message
    assert "data_dir=" in message and "SIGNALPROP_DATA=/path/to/fashion-mnist" in message
    assert not folder.exists()


def test_missing_files_are_named(tmp_path: Path, blobs: dict[str, bytes]):
    folder = install(tmp_path / "partial", {TRAIN_IMAGES: blobs[TRAIN_IMAGES]})
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist(folder, download=False)
    message = str(info.value)
    assert f"missing from {folder}" in message
    assert all(name in message for name in (TRAIN_LABELS, TEST_IMAGES, TEST_LABELS))
    assert f"missing from {folder} (from the data_dir argument): {TRAIN_LABELS}" in message


# ----------------------------------------------------------- corrupt or wrong files


def _truncated_gzip(raw: bytes) -> bytes:
    return gz(raw)[:-100]


def _gzip_of_truncated_payload(raw: bytes) -> bytes:
    return gz(raw[:-28])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncated_gzip, "is not a readable gzip file"),
        (_gzip_of_truncated_payload, r"announces shape \(30, 28, 28\).*truncated"),
    ],
    ids=["gzip-cut", "payload-cut"],
)
def test_truncated_file_is_refused_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arrays: Arrays, damage: Any, message: str
):
    blobs = release_blobs(arrays)
    blobs[TRAIN_IMAGES] = damage(idx_bytes(arrays.x_train))
    trust(monkeypatch, blobs)  # the checksum passes: the IDX checks must catch it
    folder = install(tmp_path / "fashion", blobs)
    pattern = re.escape(str(folder / TRAIN_IMAGES)) + ".*" + message
    with pytest.raises(ValueError, match=pattern):
        data.load_fashion_mnist(folder)
    with pytest.raises(ValueError, match=pattern):
        data.read_idx(folder / TRAIN_IMAGES)


def test_corrupt_gzip_is_refused_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arrays: Arrays
):
    blobs = release_blobs(arrays)
    damaged = bytearray(blobs[TEST_IMAGES])
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = bytes(64)
    blobs[TEST_IMAGES] = bytes(damaged)
    trust(monkeypatch, blobs)
    folder = install(tmp_path / "fashion", blobs)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is not a readable gzip"):
        data.load_fashion_mnist(folder)


@pytest.mark.parametrize(
    ("name", "content", "found", "expected"),
    [
        (TRAIN_LABELS, "x_train", 2051, 2049),
        (TEST_IMAGES, "y_test", 2049, 2051),
    ],
)
def test_wrong_magic_number_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arrays: Arrays,
    name: str,
    content: str,
    found: int,
    expected: int,
):
    blobs = release_blobs(arrays)
    blobs[name] = gz(idx_bytes(getattr(arrays, content)))
    trust(monkeypatch, blobs)
    folder = install(tmp_path / "fashion", blobs)
    with pytest.raises(ValueError, match=rf"{re.escape(name)} has IDX magic number {found}, "):
        data.load_fashion_mnist(folder)
    with pytest.raises(ValueError, match=rf"must have {expected}\."):
        data.load_fashion_mnist(folder)


def test_label_out_of_range_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arrays: Arrays
):
    y_test = arrays.y_test.copy()
    y_test[3] = 10
    blobs = release_blobs(arrays._replace(y_test=y_test))
    trust(monkeypatch, blobs)
    folder = install(tmp_path / "fashion", blobs)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz holds label 10"):
        data.load_fashion_mnist(folder)


def test_checksum_mismatch_is_refused_before_any_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]
):
    # The real table: the small files match neither the official nor the offline release.
    folder = install(tmp_path / "fashion", blobs)

    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a file was parsed before its checksum was verified")

    monkeypatch.setattr(data, "_parse_idx", must_not_parse)
    with pytest.raises(ValueError) as info:
        data.load_fashion_mnist(folder)
    message = str(info.value)
    assert str(folder / TRAIN_IMAGES) in message
    assert sha256(blobs[TRAIN_IMAGES])[:12] in message
    assert "official 3aede38d6186" in message and "offline copy 4b5438525775" in message


def test_source_names_the_release_whose_checksums_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]
):
    trust(monkeypatch, blobs, source="offline copy")
    folder = install(tmp_path / "fashion", blobs)
    assert data.load_fashion_mnist(folder, validation=N_VALID).source == "offline copy"


def test_image_files_from_two_releases_are_refused(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]
):
    table = {name: {"official": sha256(blob)} for name, blob in blobs.items()}
    table[TEST_IMAGES] = {"offline copy": sha256(blobs[TEST_IMAGES])}
    monkeypatch.setattr(data, "_SHA256", table)
    with pytest.raises(ValueError, match="come from different releases"):
        data.load_fashion_mnist(fake_dir)


# ------------------------------------------------------------------------ download


def test_download_fetches_verifies_and_renames_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes], arrays: Arrays
):
    trust(monkeypatch, blobs)
    server = Server(blobs)
    monkeypatch.setattr(data, "_urlopen", server)
    folder = data.default_data_dir()
    assert not folder.exists()
    ds = data.load_fashion_mnist(validation=N_VALID)
    assert server.urls == [MIRROR + name for name in FILES]
    assert listing(folder) == sorted(FILES)  # no temporary file left over
    assert all((folder / name).read_bytes() == blobs[name] for name in FILES)
    assert ds.data_dir == folder and ds.source == "official"
    assert ds.y_test.tolist() == arrays.y_test.tolist()
    # Once there, the files are read without the network.
    monkeypatch.setattr(data, "_urlopen", no_network)
    data.load_fashion_mnist(validation=N_VALID)


def test_download_fetches_only_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]
):
    trust(monkeypatch, blobs)
    folder = install(tmp_path / "fashion", {TRAIN_IMAGES: blobs[TRAIN_IMAGES]})
    server = Server(blobs)
    monkeypatch.setattr(data, "_urlopen", server)
    data.load_fashion_mnist(folder, validation=N_VALID)
    assert server.urls == [MIRROR + name for name in FILES[1:]]
    assert listing(folder) == sorted(FILES)


def test_download_with_wrong_checksum_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]
):
    trust(monkeypatch, blobs)
    served = {name: blob[:-1] + bytes([blob[-1] ^ 0xFF]) for name, blob in blobs.items()}
    monkeypatch.setattr(data, "_urlopen", Server(served))
    folder = tmp_path / "fashion"
    with pytest.raises(ValueError) as info:
        data.load_fashion_mnist(folder)
    message = str(info.value)
    assert MIRROR + TRAIN_IMAGES in message and "matches no known release" in message
    assert listing(folder) == []


def _refused(url: str, timeout: float | None = None) -> Any:
    raise urllib.error.URLError("connection refused")


class _DropsMidway(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        if self.tell():
            raise ConnectionResetError("connection reset by peer")
        return super().read(10)


@pytest.mark.parametrize(
    ("opener", "reason"),
    [
        (_refused, "connection refused"),
        (lambda url, timeout=None: _DropsMidway(b"x" * 100), "reset"),
    ],
    ids=["unreachable", "dropped"],
)
def test_network_failure_is_a_clear_error_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    blobs: dict[str, bytes],
    opener: Any,
    reason: str,
):
    trust(monkeypatch, blobs)
    monkeypatch.setattr(data, "_urlopen", opener)
    folder = tmp_path / "fashion"
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist(folder)
    message = str(info.value)
    assert f"downloading {MIRROR}{TRAIN_IMAGES} failed" in message and reason in message
    assert str(folder) in message and "data_dir=" in message
    assert listing(folder) == []


def test_read_only_folder_is_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)  # refused even for root, who could write anyway
    try:
        with pytest.raises(FileNotFoundError, match="is not writable") as info:
            data.load_fashion_mnist(folder)  # the autouse opener fails if it is called
        assert "SIGNALPROP_DATA=/path/to/fashion-mnist" in str(info.value)
        assert listing(folder) == []
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------- the real offline copy


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    entries = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}
    entries["."] = (folder.stat().st_mtime_ns, 0)
    return entries


@needs_data
def test_real_offline_copy_loads_checked_and_untouched():
    before = _snapshot(OFFLINE)
    ds = data.load_fashion_mnist(OFFLINE)
    assert _snapshot(OFFLINE) == before
    assert ds.source == "offline copy"
    assert ds.x_train.shape == (55000, 28, 28)
    assert ds.x_valid.shape == (5000, 28, 28)
    assert ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (55000,) and ds.y_valid.shape == (5000,)
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    train_counts = torch.bincount(torch.cat([ds.y_valid, ds.y_train]), minlength=10)
    assert train_counts.tolist() == [6000] * 10
    total = ds.x_valid.numpy().sum(dtype=np.float64) + ds.x_train.numpy().sum(dtype=np.float64)
    assert total / (60000 * 28 * 28) == pytest.approx(0.28602, abs=1e-4)  # README
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
