"""Fashion-MNIST from its IDX files: a checked reader, a data folder and a safe download.

:func:`load_fashion_mnist` reads the four standard files
(``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``) and returns them as
tensors in a :class:`FashionMNIST`. Every file is checked before it is parsed:

* its SHA-256 must match a known release, either Zalando's official files or the
  project's offline copy (same format, images assigned to train and test
  differently; see ``shared/data/fashion-mnist/README.md``);
* its IDX header must carry the expected magic number (2049 for labels, 2051 for
  images) and dimensions, and the payload must have exactly the announced length.

The folder is the ``data_dir`` argument, else the ``SIGNALPROP_DATA`` environment
variable, else a per-user cache (:func:`default_data_dir`). Missing files are
downloaded from the official mirror into that folder, atomically and only after
their checksum is verified; a read-only folder is never written to.

Examples:
    >>> from signalprop.data import load_fashion_mnist
    >>> data = load_fashion_mnist()  # doctest: +SKIP
    >>> data.x_train.shape, data.x_valid.shape, data.x_test.shape  # doctest: +SKIP
    (torch.Size([55000, 28, 28]), torch.Size([5000, 28, 28]), torch.Size([10000, 28, 28]))
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from signalprop._validation import check_int, invalid_parameter

__all__ = [
    "CLASS_NAMES",
    "ENV_VAR",
    "FashionMNIST",
    "default_data_dir",
    "load_fashion_mnist",
    "read_idx",
]

CLASS_NAMES: tuple[str, ...] = (
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
"""Fashion-MNIST's class names, in label order (label ``k`` is ``CLASS_NAMES[k]``).

Examples:
    >>> from signalprop.data import CLASS_NAMES
    >>> CLASS_NAMES[9]
    'Ankle boot'
"""

ENV_VAR = "SIGNALPROP_DATA"
"""The environment variable naming the data folder when ``data_dir`` is not given.

Examples:
    >>> from signalprop.data import ENV_VAR
    >>> ENV_VAR
    'SIGNALPROP_DATA'
"""

_TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
_TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
_TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
_TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
_FILES = (_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS)
#: Images in the training file (before the validation split).
TRAIN_IMAGES = 60000

#: SHA-256 of each file, per release. The official digests are those of Zalando's
#: release (the files the mirror serves); the offline copy's are listed in its README.
#: The label files hold the same bytes once decompressed, but the ``.gz`` files
#: differ, so both releases are listed for every file.
_SHA256: dict[str, dict[str, str]] = {
    _TRAIN_IMAGES: {
        "official": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "offline copy": "4b5438525775014b468e10343af7f7a6a89cd1f5e6269778fcd69f768ebfbb94",
    },
    _TRAIN_LABELS: {
        "official": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "offline copy": "78cc45a86af8a62044c5931d2f17d26375a10dd63f875c366d156d8db0aad7d1",
    },
    _TEST_IMAGES: {
        "official": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "offline copy": "ee55bed18cd5427c9ca4d067f2b9f02d30427ae1094625958de323c9943fd430",
    },
    _TEST_LABELS: {
        "official": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "offline copy": "b42bcca6edaae83551c5913a1e52bb5ff59794a6e7bc7deb17cee585b7e13090",
    },
}

#: The official mirror, as torchvision and Zalando's README use it. It is an S3
#: *website* endpoint, which serves plain HTTP only; integrity comes from the
#: SHA-256 check above, which every download must pass before it is kept.
_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: The URL opener; tests replace it so that they never touch the network.
_urlopen: Callable[..., Any] = urllib.request.urlopen

_TIMEOUT_S = 60.0
_DOWNLOAD_CHUNK = 1 << 20

#: IDX magic numbers: two zero bytes, the type byte (0x08, unsigned byte) and the
#: number of dimensions.
_LABELS_MAGIC = 0x0801  # 2049
_IMAGES_MAGIC = 0x0803  # 2051
_MAGIC_KIND = {_LABELS_MAGIC: "a label file", _IMAGES_MAGIC: "an image file"}
_GZIP_MAGIC = b"\x1f\x8b"
#: IDX element types (the third header byte); only unsigned bytes are read.
_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_IMAGE_SHAPE = (28, 28)
_ROWS_PER_BLOCK = 4096


@dataclass(frozen=True, eq=False, repr=False)
class FashionMNIST:
    """Fashion-MNIST as tensors, split into train, validation and test.

    Images are float32 tensors of shape ``(N, 28, 28)``, C-contiguous, one image
    after the other in file order, each row-major (pixel ``[0, 0]`` top left);
    nothing is shuffled, so loading the same files always gives the same tensors,
    bit for bit. ``x_valid`` and ``x_train`` are views into one buffer holding the
    whole training file (valid first). Labels are int64 tensors of shape ``(N,)``
    with values in ``0..9``, indexing :attr:`class_names`.

    Attributes:
        x_train, y_train: The training images and labels (the training file after
            its first ``validation`` images).
        x_valid, y_valid: The first ``validation`` images of the training file.
        x_test, y_test: The 10,000 test images and labels.
        class_names: ``CLASS_NAMES``, in label order.
        data_dir: The folder the files were read from.
        source: ``"official"`` or ``"offline copy"``: the release whose checksums
            the image files matched.

    Examples:
        >>> data = load_fashion_mnist(validation=5000)  # doctest: +SKIP
        >>> data.class_names[int(data.y_test[0])]  # doctest: +SKIP
        'Ankle boot'
    """

    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: tuple[str, ...]
    data_dir: Path
    source: str

    def __repr__(self) -> str:
        return (
            f"FashionMNIST(train={len(self.x_train)}, valid={len(self.x_valid)}, "
            f"test={len(self.x_test)}, source={self.source!r}, data_dir={str(self.data_dir)!r})"
        )


# ------------------------------------------------------------------- data folder


def default_data_dir() -> Path:
    """The folder :func:`load_fashion_mnist` uses when ``data_dir`` is not given.

    ``$SIGNALPROP_DATA`` if set (and non-empty), else
    ``$XDG_CACHE_HOME/signalprop/fashion-mnist`` (if ``XDG_CACHE_HOME`` is an
    absolute path, as the XDG specification requires), else
    ``~/.cache/signalprop/fashion-mnist``. The folder need not exist.

    Examples:
        >>> default_data_dir().name  # doctest: +SKIP
        'fashion-mnist'
    """
    return _resolve_data_dir(None)[0]


def _resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The data folder and where it came from, for error messages."""
    if data_dir is not None:
        return Path(data_dir).expanduser().absolute(), "the data_dir argument"
    from_env = os.environ.get(ENV_VAR, "")
    if from_env:
        return Path(from_env).expanduser().absolute(), f"the {ENV_VAR} environment variable"
    return user_cache() / "fashion-mnist", "the default per-user cache"


def user_cache() -> Path:
    """signalprop's per-user cache folder: ``$XDG_CACHE_HOME/signalprop`` (if
    ``XDG_CACHE_HOME`` is absolute, as the XDG specification requires), else
    ``~/.cache/signalprop``. It need not exist."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "signalprop"


def missing_files(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str, list[str]]:
    """The data folder, where it came from, and which of the four files it lacks.

    ``where`` is ``"data_dir"``, ``"env"`` (``$SIGNALPROP_DATA``) or ``"cache"``,
    so that callers can name the setting in their own words.

    Examples:
        >>> folder, where, missing = missing_files("/nonexistent")
        >>> where, len(missing)
        ('data_dir', 4)
    """
    directory, origin = _resolve_data_dir(data_dir)
    where = (
        "data_dir" if origin == "the data_dir argument" else "env" if ENV_VAR in origin else "cache"
    )
    return directory, where, [name for name in _FILES if not (directory / name).is_file()]


def _not_found(
    directory: Path, origin: str, missing: list[str], reason: str, *, offer_download: bool
) -> FileNotFoundError:
    """The one message for data that is not there and cannot be fetched."""
    where = f"{directory} (from {origin})"
    if directory.is_dir():
        looked = f"Fashion-MNIST files are missing from {where}: {', '.join(missing)}"
    else:
        looked = f"The Fashion-MNIST folder {where} does not exist"
    hint = (
        f"Point at a folder holding the four IDX files ({', '.join(_FILES)}) with "
        f"load_fashion_mnist(data_dir=...) or {ENV_VAR}=/path/to/fashion-mnist"
    )
    if offer_download:
        hint += f", or pass download=True to fetch them from {_MIRROR}"
    return FileNotFoundError(f"{looked}, and {reason}. {hint}.")


def _writable(path: Path) -> bool:
    """Whether we may write in ``path``.

    A folder without any write permission bit counts as read-only even for root,
    who could write anyway: a data folder made read-only on purpose (as in CI,
    which runs as root) is never written to.
    """
    return os.access(path, os.W_OK | os.X_OK) and path.stat().st_mode & 0o222 != 0


def _prepare_folder(directory: Path, origin: str, missing: list[str]) -> None:
    """Create ``directory`` if needed, or explain why files cannot be saved there."""
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if directory.exists() and not directory.is_dir():
        reason = "that path is not a folder, so nothing can be downloaded into it"
        raise _not_found(directory, origin, missing, reason, offer_download=False)
    if not _writable(existing):
        reason = f"{existing} is not writable, so the files cannot be downloaded into it"
        raise _not_found(directory, origin, missing, reason, offer_download=False)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"the folder could not be created ({exc})"
        raise _not_found(directory, origin, missing, reason, offer_download=False) from exc


# ---------------------------------------------------------------------- checksums


def _expected(name: str) -> str:
    return ", ".join(f"{source} {digest[:12]}..." for source, digest in _SHA256[name].items())


def _release_of(name: str, digest: str, what: str) -> str:
    """The release whose checksum ``digest`` matches; otherwise a ValueError."""
    for source, known in _SHA256[name].items():
        if digest == known:
            return source
    raise ValueError(
        f"{what} has SHA-256 {digest[:12]}..., which matches no known release of {name} "
        f"(expected {_expected(name)}). It is truncated, corrupt or not Fashion-MNIST; "
        "delete it (it will be downloaded again) or point data_dir= at a verified copy."
    )


# ---------------------------------------------------------------------- download


def _download(directory: Path, origin: str, missing: list[str]) -> None:
    """Fetch the ``missing`` files from the official mirror into ``directory``."""
    _prepare_folder(directory, origin, missing)
    for name in missing:
        _fetch(name, directory, origin, missing)


def _fetch(name: str, directory: Path, origin: str, missing: list[str]) -> None:
    """Download one file to a temporary file beside it, verify, then rename it in place.

    The file appears under its name only once complete and verified; on any
    failure the temporary file is removed and nothing is left behind.
    """
    url = _MIRROR + name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=_TIMEOUT_S) as response:
                while chunk := response.read(_DOWNLOAD_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as exc:
            reason = f"downloading {url} failed ({exc})"
            raise _not_found(directory, origin, missing, reason, offer_download=False) from exc
        _release_of(name, digest.hexdigest(), f"The download of {url}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read an IDX file (gzip-compressed or raw) into a new numpy array.

    The IDX format: two zero bytes, a type byte, the number of dimensions ``d``,
    ``d`` big-endian uint32 sizes, then the values in C order. Only the type
    ``0x08`` (unsigned byte, as in MNIST and Fashion-MNIST) is read. A gzip file is
    recognised by its first bytes, whatever its name.

    Raises:
        ValueError: Naming the file, if it is not valid gzip, not IDX, of another
            type than 0x08, or if its payload is not exactly as long as its
            header announces (a truncated file).

    Examples:
        >>> labels = read_idx("train-labels-idx1-ubyte.gz")  # doctest: +SKIP
        >>> labels.shape, labels.dtype  # doctest: +SKIP
        ((60000,), dtype('uint8'))
    """
    path = Path(path)
    return _parse_idx(path.read_bytes(), path).copy()


def _parse_idx(data: bytes, path: Path, *, magic: int | None = None) -> npt.NDArray[np.uint8]:
    """Parse IDX bytes (gzip or raw) into a read-only array over them."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path} is not a readable gzip file ({exc}); it is truncated or corrupt."
            ) from exc
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(
            f"{path} is not an IDX file: it must start with two zero bytes, a type byte "
            f"and a dimension count, but starts with 0x{data[:4].hex()}."
        )
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise ValueError(
            f"{path} has IDX magic number {found}, but {_MAGIC_KIND[magic]} must have {magic}."
        )
    type_code, ndim = data[2], data[3]
    if type_code != 0x08:
        kind = _IDX_TYPES.get(type_code, "unknown")
        raise ValueError(
            f"{path} holds IDX type 0x{type_code:02X} ({kind}); "
            "only 0x08 (unsigned byte) is supported."
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path} has an incomplete IDX header ({ndim} dimensions).")
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected, payload = math.prod(shape), len(data) - header
    if payload != expected:
        raise ValueError(
            f"{path} announces shape {shape}, i.e. {expected} bytes of data, but holds "
            f"{payload}; it is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_release(directory: Path) -> tuple[dict[str, bytes], str]:
    """Read the four files, refusing any whose checksum matches no release.

    All checksums are verified before anything is parsed. The image files must
    come from the same release: the offline copy puts some official test images
    into its training file, so mixing the two would leak test images into training.
    """
    blobs: dict[str, bytes] = {}
    sources: dict[str, str] = {}
    for name in _FILES:
        path = directory / name
        blobs[name] = path.read_bytes()
        sources[name] = _release_of(name, hashlib.sha256(blobs[name]).hexdigest(), str(path))
    train, test = sources[_TRAIN_IMAGES], sources[_TEST_IMAGES]
    if train != test:
        raise ValueError(
            f"The image files in {directory} come from different releases: {_TRAIN_IMAGES} "
            f"is the {train} one, {_TEST_IMAGES} the {test} one. The two releases split "
            "the images into train and test differently, so mixing them would put test "
            "images into training; use the four files of one release."
        )
    return blobs, train


def _images_and_labels(
    blobs: Mapping[str, bytes], directory: Path, images: str, labels: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Parse one images/labels pair and check that they fit together."""
    x = _parse_idx(blobs[images], directory / images, magic=_IMAGES_MAGIC)
    y = _parse_idx(blobs[labels], directory / labels, magic=_LABELS_MAGIC)
    if x.shape[1:] != _IMAGE_SHAPE:
        raise ValueError(
            f"{directory / images} holds images of {x.shape[1]}x{x.shape[2]} pixels, "
            f"not {_IMAGE_SHAPE[0]}x{_IMAGE_SHAPE[1]}."
        )
    if len(x) != len(y):
        raise ValueError(
            f"{directory / images} holds {len(x)} images but {directory / labels} "
            f"holds {len(y)} labels."
        )
    if len(y) and int(y.max()) >= len(CLASS_NAMES):
        raise ValueError(
            f"{directory / labels} holds label {int(y.max())}; labels must be in "
            f"0..{len(CLASS_NAMES) - 1}."
        )
    return x, y


# ------------------------------------------------------------------------ tensors


def _unit_float(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """``images / 255`` as a new, writable float32 array."""
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    return x


def _pixel_statistics(
    images: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per-pixel mean and standard deviation (ddof 0) of ``images / 255``.

    Computed exactly from integer sums of the bytes, so a constant pixel has a
    standard deviation of exactly 0 (then replaced by 1) and the result does not
    depend on summation order or thread count. The int64 sums are exact for up
    to about 10**8 images.
    """
    n = len(images)
    flat = images.reshape(n, -1)
    s1 = flat.sum(axis=0, dtype=np.int64)
    s2 = np.zeros_like(s1)
    for start in range(0, n, _ROWS_PER_BLOCK):
        block = flat[start : start + _ROWS_PER_BLOCK].astype(np.uint16)  # 255**2 fits
        s2 += (block * block).sum(axis=0, dtype=np.int64)
    spread = n * s2 - s1 * s1  # n**2 * 255**2 * variance, exact
    mean = s1 / (255.0 * n)
    std = np.sqrt(spread) / (255.0 * n)
    std[spread == 0] = 1.0
    shape = images.shape[1:]
    return mean.astype(np.float32).reshape(shape), std.astype(np.float32).reshape(shape)


def _check_bool(value: Any, param: str, caller: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_parameter(param, caller, "a bool", value)
    return value


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    validation: int = 5000,
    standardize: bool = False,
    *,
    download: bool = True,
) -> FashionMNIST:
    """Load Fashion-MNIST, checked, as float32 images in [0, 1] and int64 labels.

    The validation set is the *first* ``validation`` images of the training file
    and the training set the rest (55,000 / 5,000 by default, as in Géron's
    book); the test set is the 10,000 test images. Nothing is shuffled: the
    result is deterministic. Memory: about 220 MB of float32 for the images.

    Args:
        data_dir: The folder holding the four IDX ``.gz`` files. ``None`` uses
            ``$SIGNALPROP_DATA``, else the per-user cache; see :func:`default_data_dir`.
        validation: How many images of the training file to hold out, ``>= 0``
            and smaller than the training file; ``0`` gives empty validation tensors.
        standardize: Subtract each pixel's mean and divide by each pixel's
            standard deviation (ddof 0), both computed on the training part only
            (after the split) and applied to train, validation and test alike. A
            pixel that is constant over the training part keeps a divisor of 1
            (it is only centred), so no value becomes infinite or NaN.
        download: Fetch missing files from the official mirror into the folder
            (created if needed). Each is written to a temporary file beside its
            final name, verified, then renamed into place. A folder without
            write permission is never written to.

    Returns:
        A :class:`FashionMNIST` with ``x_train, y_train, x_valid, y_valid, x_test,
        y_test``, ``class_names``, ``data_dir`` and ``source`` (``"official"`` or
        ``"offline copy"``).

    Raises:
        FileNotFoundError: When files are missing and cannot be downloaded
            (``download=False``, a read-only folder, a network failure). The
            message says which folder was searched, where that folder came from
            and how to point at the data.
        ValueError: For bad arguments, and for a file whose SHA-256 matches no
            known release or whose IDX content is invalid; the message names it.

    Examples:
        >>> data = load_fashion_mnist("data/fashion-mnist", standardize=True)  # doctest: +SKIP
        >>> data.y_train.dtype, data.x_train.dtype  # doctest: +SKIP
        (torch.int64, torch.float32)
    """
    caller = "load_fashion_mnist"
    if data_dir is not None and (
        not isinstance(data_dir, (str, os.PathLike)) or os.fspath(data_dir) == ""
    ):
        raise invalid_parameter(
            "data_dir", caller, "None or a non-empty path (str or os.PathLike)", data_dir
        )
    validation = check_int(validation, param="validation", caller=caller, low=0)
    standardize = _check_bool(standardize, "standardize", caller)
    download = _check_bool(download, "download", caller)

    directory, origin = _resolve_data_dir(data_dir)
    missing = [name for name in _FILES if not (directory / name).is_file()]
    if missing:
        if not download:
            reason = "downloading is disabled (download=False)"
            raise _not_found(directory, origin, missing, reason, offer_download=True)
        _download(directory, origin, missing)

    blobs, source = _read_release(directory)
    train_images, train_labels = _images_and_labels(blobs, directory, _TRAIN_IMAGES, _TRAIN_LABELS)
    test_images, test_labels = _images_and_labels(blobs, directory, _TEST_IMAGES, _TEST_LABELS)
    if validation >= len(train_labels):
        raise invalid_parameter(
            "validation",
            caller,
            f"an integer smaller than the number of training images ({len(train_labels)})",
            validation,
        )

    x_file, x_test = _unit_float(train_images), _unit_float(test_images)
    if standardize:
        mean, std = _pixel_statistics(train_images[validation:])
        for x in (x_file, x_test):
            x -= mean
            x /= std
    x_all = torch.from_numpy(x_file)
    y_all = torch.from_numpy(train_labels.astype(np.int64))
    return FashionMNIST(
        x_train=x_all[validation:],
        y_train=y_all[validation:],
        x_valid=x_all[:validation],
        y_valid=y_all[:validation],
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(test_labels.astype(np.int64)),
        class_names=CLASS_NAMES,
        data_dir=directory,
        source=source,
    )
