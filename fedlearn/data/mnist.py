"""MNIST as preloaded, normalised tensors.

``torchvision.datasets.MNIST`` does the reading (and, on a user's machine, the
usual download). A local directory may be given instead, by argument or the
``FEDLEARN_DATA`` environment variable; it may hold the four IDX files plain or
``.gz``, flat or in torchvision's ``MNIST/raw`` layout. The decompressed content
is always checked against the published checksums, so a truncated or corrupted
file is named rather than trained on.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from fedlearn.config import ConfigError, DataConfig
from fedlearn.data.normalisation import MNIST_NORMALISATION, normalise
from fedlearn.errors import FedlearnError
from fedlearn.files import atomic_write

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


def subset(data: MnistTensors, config: DataConfig, seed: int, what: str) -> MnistTensors:
    """``config.train_size``/``test_size`` seeded random examples of ``data`` (None: all)."""
    train_x, train_y = _subset(data.train_x, data.train_y, config.train_size, seed,
                               "data.train_size", what)
    test_x, test_y = _subset(data.test_x, data.test_y, config.test_size, seed + 1,
                             "data.test_size", what)
    return MnistTensors(train_x, train_y, test_x, test_y)


def cache_dir() -> Path:
    return Path(os.environ.get("FEDLEARN_CACHE", Path.home() / ".cache" / "fedlearn"))


def _sha256_of_content(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.sha256()
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError; truncation is EOFError
        raise DataError(f"MNIST file {path} is corrupted or truncated ({exc}). "
                        f"Replace it with a good copy. {HOW_TO_PROVIDE}") from exc
    return digest.hexdigest()


def _find(directory: Path, name: str) -> Path | None:
    for folder in (directory, directory / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def verify_file(path: Path, name: str) -> None:
    """Raise DataError unless ``path`` (plain or .gz) decompresses to the real ``name``."""
    got = _sha256_of_content(path)
    if got != MNIST_FILES[name]:
        raise DataError(f"MNIST file {path} has the wrong content (sha256 {got[:12]}..., "
                        f"expected {MNIST_FILES[name][:12]}...): it is truncated, corrupted "
                        f"or not {name}. Replace it with a good copy. {HOW_TO_PROVIDE}")


def _root_from_local(directory: Path, names=MNIST_FILES) -> Path:
    """A torchvision root holding verified, decompressed files taken from ``directory``."""
    if not directory.is_dir():
        raise DataError(f"MNIST directory {directory} does not exist. {HOW_TO_PROVIDE}")
    found = {name: _find(directory, name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise DataError(f"MNIST directory {directory} lacks {', '.join(missing)} "
                        f"(plain or .gz). {HOW_TO_PROVIDE}")
    files = {name: path for name, path in found.items() if path is not None}
    for name, path in files.items():
        verify_file(path, name)
    if all(path.parent == directory / "MNIST" / "raw" and path.suffix != ".gz"
           for path in files.values()):
        return directory
    # torchvision reads only decompressed files under <root>/MNIST/raw: unpack once.
    root = cache_dir() / "mnist"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        target = raw / name
        if target.is_file() and _sha256_of_content(target) == MNIST_FILES[name]:
            continue
        # a private temporary name: several processes (e.g. data owners) may unpack at once
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as src:
            atomic_write(target, lambda dst: shutil.copyfileobj(src, dst))
    return root


def _root_from_download(names=MNIST_FILES) -> Path:
    from torchvision.datasets import MNIST

    root = cache_dir() / "mnist"
    try:
        for train in (True, False):
            if any(name.startswith("train" if train else "t10k") for name in names):
                MNIST(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError offline
        raise DataError(f"Could not download MNIST into {root} ({type(exc).__name__}: {exc}). "
                        f"{HOW_TO_PROVIDE}") from exc
    for name in names:
        verify_file(root / "MNIST" / "raw" / name, name)
    return root


_LOADED: dict[str, MnistTensors] = {}


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
    from torchvision.datasets import MNIST

    config = config or DataConfig()
    names = MNIST_FILES if train else [n for n in MNIST_FILES if n.startswith("t10k")]
    data_dir = config.data_dir or os.environ.get("FEDLEARN_DATA")
    root = _root_from_local(Path(data_dir).expanduser(), names) if data_dir \
        else _root_from_download(names)
    key = str(root.resolve())
    if key not in _LOADED and not train:  # the test set alone; the full set is cached below
        from torchvision.datasets.mnist import read_image_file, read_label_file

        raw = root / "MNIST" / "raw"  # torchvision's MNIST wants all four files present
        empty = MnistTensors(torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long),
                             _normalise(read_image_file(str(raw / "t10k-images-idx3-ubyte"))),
                             read_label_file(str(raw / "t10k-labels-idx1-ubyte")).long())
        return subset(empty, dataclasses.replace(config, train_size=None), seed, "MNIST")
    if key not in _LOADED:
        train_set, test = (MNIST(str(root), train=t, download=False) for t in (True, False))
        _LOADED[key] = MnistTensors(_normalise(train_set.data), train_set.targets.long(),
                                    _normalise(test.data), test.targets.long())
    loaded = _LOADED[key]
    if not train:
        loaded = dataclasses.replace(loaded, train_x=loaded.train_x[:0],
                                     train_y=loaded.train_y[:0])
        config = dataclasses.replace(config, train_size=None)
    return subset(loaded, config, seed, "MNIST")


def _subset(x, y, size, seed, argument, what):
    if size is None or size == len(y):
        return x, y
    if size > len(y):
        raise ConfigError(argument, f"asked for {size} examples but {what} has only {len(y)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)[:size].sort().values
    return x[idx], y[idx]
