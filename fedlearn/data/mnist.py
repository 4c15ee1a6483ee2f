"""MNIST as preloaded, normalised tensors.

A local directory holds the four IDX files, plain or ``.gz``, flat or in
torchvision's ``MNIST/raw`` layout; it is given by argument or the
``FEDLEARN_DATA`` environment variable. Without one, ``torchvision.datasets.MNIST``
downloads the files into the cache (imported only then: reading needs no torchvision).
The decompressed content is always checked against the published checksums before it
is read, so a truncated or corrupted file is named rather than trained on.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedlearn.config import ConfigError, DataConfig
from fedlearn.data.normalisation import MNIST_NORMALISATION, normalise
from fedlearn.errors import FedlearnError

# sha256 of the decompressed files (LeCun et al.), as in shared/datasets/mnist/README.md
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MEAN, MNIST_STD = MNIST_NORMALISATION.mean[0], MNIST_NORMALISATION.std[0]
HOW_TO_PROVIDE = (
    "Provide MNIST in one of these ways: (1) run once with internet access so torchvision "
    "can download it; or (2) put the four files train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz) "
    "in a directory and pass it as --data-dir DIR (Python: DataConfig(data_dir=DIR)) or set "
    "FEDLEARN_DATA=DIR."
)


class DataError(FedlearnError, RuntimeError):
    """MNIST is missing, incomplete or corrupted; the message says how to fix it."""


@dataclass(frozen=True)
class MnistTensors:
    """Train and test inputs as float tensors (MNIST: (N, 1, 28, 28)), labels as int64 (N,).

    Your own data set takes the same shape (:func:`check_tensors`): any float inputs with
    one row per example, normalised (:func:`fedlearn.data.normalise`), and class labels.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def check_tensors(data) -> MnistTensors:
    """``data`` — an :class:`MnistTensors` or a tuple (train_x, train_y, test_x, test_y) —
    checked: float inputs, int64-able class labels (N,), as many labels as inputs."""
    if isinstance(data, MnistTensors):
        data = (data.train_x, data.train_y, data.test_x, data.test_y)
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise ConfigError("data", "must be (train_x, train_y, test_x, test_y) or MnistTensors")
    tensors = []
    for name, x, y in (("train", data[0], data[1]), ("test", data[2], data[3])):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
            raise ConfigError("data", f"{name}_x must be a float tensor (N, ...): normalise raw "
                              "pixels first with fedlearn.data.normalise(x, Normalisation(...))")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x) or \
                y.is_floating_point() or y.dtype == torch.bool:
            raise ConfigError("data", f"{name}_y must be {len(x)} integer class labels (N,)")
        if len(y) == 0 or y.min() < 0:
            raise ConfigError("data", f"{name}_y must be non-empty class indices >= 0")
        tensors += [x, y.long()]
    if tensors[0].shape[1:] != tensors[2].shape[1:]:
        raise ConfigError("data", f"train_x {tuple(tensors[0].shape[1:])} and test_x "
                          f"{tuple(tensors[2].shape[1:])} differ in shape per example")
    return MnistTensors(*tensors)


def digest(data: MnistTensors) -> str:
    """SHA-256 of the four tensors' shapes, dtypes and bytes: the same data, the same digest."""
    h = hashlib.sha256()
    for t in (data.train_x, data.train_y, data.test_x, data.test_y):
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)} {t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def subset(data: MnistTensors, config: DataConfig, seed: int, what: str) -> MnistTensors:
    """``config.train_size``/``test_size`` seeded random examples of ``data`` (None: all)."""
    train_x, train_y = _subset(data.train_x, data.train_y, config.train_size, seed,
                               "data.train_size", what)
    test_x, test_y = _subset(data.test_x, data.test_y, config.test_size, seed + 1,
                             "data.test_size", what)
    return MnistTensors(train_x, train_y, test_x, test_y)


def cache_dir() -> Path:
    return Path(os.environ.get("FEDLEARN_CACHE", Path.home() / ".cache" / "fedlearn"))


def _content(path: Path, name: str) -> bytes:
    """The decompressed content of ``path`` (plain or .gz), checked against the published
    sha256 of ``name``: a truncated or corrupted file is named, never read as data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            content = f.read()
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError; truncation is EOFError
        raise DataError(f"MNIST file {path} is corrupted or truncated ({exc}). "
                        f"Replace it with a good copy. {HOW_TO_PROVIDE}") from exc
    got = hashlib.sha256(content).hexdigest()
    if got != MNIST_FILES[name]:
        raise DataError(f"MNIST file {path} has the wrong content (sha256 {got[:12]}..., "
                        f"expected {MNIST_FILES[name][:12]}...): it is truncated, corrupted "
                        f"or not {name}. Replace it with a good copy. {HOW_TO_PROVIDE}")
    return content


def read_idx(content: bytes) -> torch.Tensor:
    """An IDX file of unsigned bytes (LeCun et al.'s MNIST format) as a uint8 tensor: two zero
    bytes, the type code 0x08, the number of dimensions, each size as a big-endian uint32,
    then the values in row-major order."""
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise DataError("not an IDX file of unsigned bytes")
    ndim = content[3]
    if len(content) < 4 + 4 * ndim:
        raise DataError(f"an IDX file of {ndim} dimensions ends inside its header")
    dims = struct.unpack(f">{ndim}I", content[4:4 + 4 * ndim])
    values = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != math.prod(dims):
        raise DataError(f"an IDX file of shape {dims} holds {values.size} values")
    return torch.from_numpy(values.reshape(dims).copy())


def _find(directory: Path, name: str) -> Path | None:
    for folder in (directory, directory / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _local_files(directory: Path, names) -> dict[str, Path]:
    """Where each of ``names`` lies in ``directory`` (flat or torchvision's layout)."""
    if not directory.is_dir():
        raise DataError(f"MNIST directory {directory} does not exist. {HOW_TO_PROVIDE}")
    found = {name: _find(directory, name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise DataError(f"MNIST directory {directory} lacks {', '.join(missing)} "
                        f"(plain or .gz). {HOW_TO_PROVIDE}")
    return {name: path for name, path in found.items() if path is not None}


def _downloaded_files(names) -> dict[str, Path]:
    """torchvision's download into the cache (a user's machine with internet access)."""
    from torchvision.datasets import MNIST

    root = cache_dir() / "mnist"
    try:
        for train in (True, False):
            if any(name.startswith("train" if train else "t10k") for name in names):
                MNIST(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError offline
        raise DataError(f"Could not download MNIST into {root} ({type(exc).__name__}: {exc}). "
                        f"{HOW_TO_PROVIDE}") from exc
    return {name: root / "MNIST" / "raw" / name for name in names}


def _read(files: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's verified images (N, 28, 28) uint8 and labels (N,) int64."""
    images, labels = (read_idx(_content(files[name], name)) for name in
                      (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"))
    return images, labels.long()


# what this process read, by folder, as stored (uint8: a quarter of the memory, and only the
# subset asked for is normalised): the whole set, or (train=False) the test set alone
_LOADED: dict[tuple[str, bool], tuple[torch.Tensor, ...]] = {}


def _normalise(images: torch.Tensor) -> torch.Tensor:
    # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32: MNIST's declared normalisation
    return normalise(images, MNIST_NORMALISATION)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation exactly: (N, 1, 28, 28) float -> (N, 28, 28) uint8.

    Normalised values come from integers 0..255, so rounding recovers them, and
    normalising the result again gives bit-identical floats.
    """
    return ((images.squeeze(1) * MNIST_STD + MNIST_MEAN) * 255.0).round().clamp(0, 255) \
        .to(torch.uint8)


def load_mnist(config: DataConfig | None = None, *, seed: int = 0,
               train: bool = True) -> MnistTensors:
    """Load MNIST as tensors; ``train_size``/``test_size`` take a seeded random subset.

    ``train=False``: the test set only (the training tensors are empty), for a data scientist
    whose training data stays with the owners: only the two ``t10k`` files are needed.
    """
    config = config or DataConfig()
    names = [n for n in MNIST_FILES if train or n.startswith("t10k")]
    data_dir = config.data_dir or os.environ.get("FEDLEARN_DATA")
    folder = str(Path(data_dir).expanduser().resolve()) if data_dir else ""
    stored = _LOADED.get((folder, True)) or _LOADED.get((folder, train))
    if stored is None:
        files = _local_files(Path(data_dir).expanduser(), names) if data_dir \
            else _downloaded_files(names)
        empty = torch.empty(0, 28, 28, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        stored = (*(_read(files, "train") if train else empty), *_read(files, "t10k"))
        _LOADED[(folder, train)] = stored
    train_images, train_y, test_images, test_y = stored
    if not train:
        train_images, train_y = train_images[:0], train_y[:0]
    # the same seeded subsets as subset(), taken before normalising
    train_images, train_y = _subset(train_images, train_y, config.train_size if train else None,
                                    seed, "data.train_size", "MNIST")
    test_images, test_y = _subset(test_images, test_y, config.test_size, seed + 1,
                                  "data.test_size", "MNIST")
    return MnistTensors(_normalise(train_images), train_y, _normalise(test_images), test_y)


def _subset(x, y, size, seed, argument, what):
    if size is None or size == len(y):
        return x, y
    if size > len(y):
        raise ConfigError(argument, f"asked for {size} examples but {what} has only {len(y)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)[:size].sort().values
    return x[idx], y[idx]
