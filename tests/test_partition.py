import numpy as np
import pytest

from fedlearn.config import ConfigError, PartitionConfig
from fedlearn.data.partition import label_histograms, partition

LABELS = np.repeat(np.arange(10), 100)  # 1,000 samples, 100 of each digit
WORKERS = tuple(f"w{i}" for i in range(10))


def covers_disjointly(parts, n):
    joined = np.concatenate(parts)
    return len(joined) == n and len(np.unique(joined)) == n


@pytest.mark.parametrize("scheme", ["iid", "shards", "dirichlet", "unbalanced"])
def test_disjoint_covering_deterministic(scheme):
    cfg = PartitionConfig(workers=WORKERS, scheme=scheme, alpha=0.5, min_size=5)
    a = partition(LABELS, cfg, seed=7)
    b = partition(LABELS, cfg, seed=7)
    c = partition(LABELS, cfg, seed=8)
    assert covers_disjointly(a, len(LABELS))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert min(len(p) for p in a) >= 5


def test_iid_sizes_equal_and_labels_mixed():
    parts = partition(LABELS, PartitionConfig(workers=("bob", "alice")), seed=0)
    assert [len(p) for p in parts] == [500, 500]
    hist = label_histograms(LABELS, parts)
    assert hist.shape == (2, 10) and hist.sum() == 1000
    assert (hist > 30).all()


def test_shards_give_each_worker_at_most_k_labels():
    parts = partition(LABELS, PartitionConfig(workers=WORKERS, scheme="shards",
                                              shards_per_worker=2), seed=0)
    hist = label_histograms(LABELS, parts)
    # 20 shards of 50 sorted samples: each shard is one digit, so <= 2 digits per worker
    assert ((hist > 0).sum(axis=1) <= 2).all()
    assert [len(p) for p in parts] == [100] * 10


def test_dirichlet_small_alpha_is_skewed():
    skewed = label_histograms(LABELS, partition(
        LABELS, PartitionConfig(workers=WORKERS, scheme="dirichlet", alpha=0.1, min_size=1), 0))
    mild = label_histograms(LABELS, partition(
        LABELS, PartitionConfig(workers=WORKERS, scheme="dirichlet", alpha=100.0, min_size=1), 0))
    def top_share(h):
        return (h.max(axis=1) / h.sum(axis=1)).mean()
    assert top_share(skewed) > 0.5 > top_share(mild)


def test_unbalanced_sizes_differ():
    parts = partition(LABELS, PartitionConfig(workers=WORKERS, scheme="unbalanced", min_size=5), 0)
    sizes = [len(p) for p in parts]
    assert max(sizes) > 2 * min(sizes)


def test_more_workers_than_samples_is_explained():
    with pytest.raises(ConfigError, match="only 1000 available") as info:
        partition(LABELS, PartitionConfig(workers=tuple(f"w{i}" for i in range(200)),
                                          min_size=10), 0)
    assert info.value.path == "partition.workers"


def test_dirichlet_impossible_min_size_is_explained():
    with pytest.raises(ConfigError, match="min_size") as info:
        partition(LABELS, PartitionConfig(workers=WORKERS, scheme="dirichlet", alpha=0.01,
                                          min_size=95), 0)
    assert info.value.path == "partition.alpha"
