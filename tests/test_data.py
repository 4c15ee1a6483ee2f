import gzip
import shutil
from pathlib import Path

import pytest
import torch

from fedlearn.config import ConfigError, DataConfig
from fedlearn.data import MNIST_FILES, DataError, load_mnist


def test_real_mnist_loads_normalised(mnist_dir):
    d = load_mnist(DataConfig(data_dir=mnist_dir))
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert abs(d.train_x.mean().item()) < 0.01 and abs(d.train_x.std().item() - 1) < 0.01
    assert torch.equal(torch.bincount(d.test_y)[:3], torch.tensor([980, 1135, 1032]))


def test_env_var_and_subsets_are_seeded(mnist_dir, monkeypatch):
    monkeypatch.setenv("FEDLEARN_DATA", mnist_dir)
    a = load_mnist(DataConfig(train_size=100, test_size=50), seed=3)
    b = load_mnist(DataConfig(train_size=100, test_size=50), seed=3)
    c = load_mnist(DataConfig(train_size=100, test_size=50), seed=4)
    assert len(a.train_y) == 100 and len(a.test_y) == 50
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_y, c.train_y)


def test_plain_files_in_torchvision_layout(mnist_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        with gzip.open(Path(mnist_dir) / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    d = load_mnist(DataConfig(data_dir=str(tmp_path), test_size=10))
    assert len(d.train_y) == 60000


def _copy(mnist_dir, dest):
    dest.mkdir()
    for name in MNIST_FILES:
        shutil.copy(Path(mnist_dir) / f"{name}.gz", dest / f"{name}.gz")
    return dest


def test_truncated_file_is_named(mnist_dir, tmp_path):
    d = _copy(mnist_dir, tmp_path / "m")
    victim = d / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_mnist(DataConfig(data_dir=str(d)))


def test_corrupted_content_is_named(mnist_dir, tmp_path):
    d = _copy(mnist_dir, tmp_path / "m")
    victim = d / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(victim.read_bytes()))
    content[100] ^= 0xFF
    victim.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*wrong content"):
        load_mnist(DataConfig(data_dir=str(d)))


def test_missing_file_and_missing_dir(mnist_dir, tmp_path):
    d = _copy(mnist_dir, tmp_path / "m")
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-images-idx3-ubyte.*FEDLEARN_DATA"):
        load_mnist(DataConfig(data_dir=str(d)))
    with pytest.raises(DataError, match="does not exist.*--data-dir"):
        load_mnist(DataConfig(data_dir=str(tmp_path / "nowhere")))


def test_offline_without_data_says_how_to_fix(tmp_path, monkeypatch):
    import torchvision.datasets

    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.delenv("FEDLEARN_DATA", raising=False)
    monkeypatch.setenv("FEDLEARN_CACHE", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    with pytest.raises(DataError, match="Could not download MNIST.*FEDLEARN_DATA=DIR"):
        load_mnist(DataConfig())


def test_subset_larger_than_mnist(mnist_dir):
    with pytest.raises(ConfigError, match="only 10000") as info:
        load_mnist(DataConfig(data_dir=mnist_dir, test_size=20000))
    assert info.value.path == "data.test_size"


def test_to_uint8_round_trips_exactly():
    """What a Datasite stores is exactly what the in-process workers train on (no MNIST needed:
    every byte value appears)."""
    from fedlearn.data.mnist import _normalise, to_uint8

    raw = torch.arange(256 * 28 * 28 * 2, dtype=torch.int64).remainder(256).to(torch.uint8)
    raw = raw.reshape(-1, 28, 28)[torch.randperm(512, generator=torch.Generator().manual_seed(0))]
    x = _normalise(raw)
    back = to_uint8(x)
    assert back.dtype == torch.uint8 and back.shape == (512, 28, 28)
    assert torch.equal(back, raw) and torch.equal(_normalise(back), x)


def test_the_test_set_alone_needs_only_the_t10k_files(mnist_dir, tmp_path, monkeypatch):
    """A data scientist whose training data stays with the owners loads the test set only."""
    monkeypatch.setenv("FEDLEARN_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "t10k"
    d.mkdir()
    for name in MNIST_FILES:
        if name.startswith("t10k"):
            shutil.copy(Path(mnist_dir) / f"{name}.gz", d / f"{name}.gz")
    got = load_mnist(DataConfig(data_dir=str(d), test_size=500), train=False)
    assert got.train_x.shape == (0, 1, 28, 28) and got.train_y.shape == (0,)
    full = load_mnist(DataConfig(data_dir=mnist_dir, test_size=500))
    assert torch.equal(got.test_x, full.test_x) and torch.equal(got.test_y, full.test_y)
    assert load_mnist(DataConfig(data_dir=mnist_dir, test_size=500), train=False).train_y \
        .numel() == 0  # from the full set already loaded, too
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte, train-labels"):
        load_mnist(DataConfig(data_dir=str(d)))


def test_read_idx_reads_a_hand_made_file_and_refuses_others():
    from fedlearn.data.mnist import read_idx

    content = b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + \
        bytes([0, 1, 2, 253, 254, 255])
    got = read_idx(content)
    assert got.dtype == torch.uint8
    assert torch.equal(got, torch.tensor([[0, 1, 2], [253, 254, 255]], dtype=torch.uint8))
    with pytest.raises(DataError, match="unsigned bytes"):
        read_idx(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + bytes(4))  # float32 values
    with pytest.raises(DataError, match=r"shape \(2, 3\) holds 5 values"):
        read_idx(content[:-1])
    with pytest.raises(DataError, match="ends inside its header"):
        read_idx(content[:9])


def test_reading_needs_no_torchvision(mnist_dir, monkeypatch):
    """torchvision is imported only to download (about 1.7 s of every process's start)."""
    import sys

    from fedlearn.data import mnist

    monkeypatch.setitem(sys.modules, "torchvision", None)  # importing it would fail
    monkeypatch.setattr(mnist, "_LOADED", {})
    d = load_mnist(DataConfig(data_dir=mnist_dir, train_size=10, test_size=10))
    assert d.train_x.shape == (10, 1, 28, 28)
