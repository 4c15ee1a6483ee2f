"""Seeded ways of splitting a labelled dataset between workers.

Every partitioner owns its RNG (``np.random.default_rng(seed)``), returns disjoint
index arrays that together cover every sample exactly once, and refuses to make a
worker with fewer than ``min_size`` samples.

- IID: a random permutation cut into equal parts.
- Shards: McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
  from Decentralized Data" — sort by label, cut into ``k * workers`` shards, give
  each worker ``k`` of them (pathological non-IID).
- Dirichlet: Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data
  Distribution" — each class is split between workers by Dirichlet(alpha) shares.
- Unbalanced: IID labels, log-normal sizes (some owners hold much more data).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedlearn.config import ConfigError, PartitionConfig, registered

MAX_DIRICHLET_TRIES = 100


def iid_partition(n: int, num_workers: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(p) for p in np.array_split(rng.permutation(n), num_workers)]


def shard_partition(labels: np.ndarray, num_workers: int, shards_per_worker: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    num_shards = num_workers * shards_per_worker
    if num_shards > len(labels):
        raise ConfigError("partition.shards_per_worker", f"{num_shards} shards need at least "
                          f"as many samples; have {len(labels)}")
    # shuffle first so that ties inside a label are broken by the seed, not by file order
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards).reshape(num_workers, shards_per_worker)
    return [np.sort(np.concatenate([shards[s] for s in row])) for row in order]


def dirichlet_partition(labels: np.ndarray, num_workers: int, alpha: float,
                        rng: np.random.Generator, min_size: int) -> list[np.ndarray]:
    classes = np.unique(labels)
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[int]] = [[] for _ in range(num_workers)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(num_workers, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for worker, chunk in enumerate(np.split(idx, cuts)):
                parts[worker].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError("partition.alpha", f"Dirichlet(alpha={alpha}) left some of the "
                      f"{num_workers} workers with fewer than min_size={min_size} samples "
                      f"in {MAX_DIRICHLET_TRIES} seeded tries; raise alpha, lower min_size or "
                      "use fewer workers")


def unbalanced_partition(n: int, num_workers: int, rng: np.random.Generator,
                         min_size: int, sigma: float = 1.0) -> list[np.ndarray]:
    weights = rng.lognormal(mean=0.0, sigma=sigma, size=num_workers)
    spare = n - min_size * num_workers
    sizes = min_size + np.floor(weights / weights.sum() * spare).astype(int)
    sizes[np.argmax(sizes)] += n - sizes.sum()  # hand the rounding remainder to the largest
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(p) for p in np.split(rng.permutation(n), cuts)]


Partitioner = Callable[[np.ndarray, PartitionConfig, np.random.Generator], list[np.ndarray]]

# The registry of partition schemes: config.partition.scheme names one (its Literal, Scheme,
# lists the same names; tests/test_registries.py keeps the two equal).
PARTITIONERS: dict[str, Partitioner] = {
    "iid": lambda labels, c, rng: iid_partition(len(labels), len(c.workers), rng),
    "shards": lambda labels, c, rng: shard_partition(labels, len(c.workers),
                                                     c.shards_per_worker, rng),
    "dirichlet": lambda labels, c, rng: dirichlet_partition(labels, len(c.workers), c.alpha,
                                                            rng, c.min_size),
    "unbalanced": lambda labels, c, rng: unbalanced_partition(len(labels), len(c.workers), rng,
                                                              c.min_size),
}


def partition(labels, config: PartitionConfig, seed: int) -> list[np.ndarray]:
    """Split sample indices between ``config.workers`` as ``config.scheme`` says."""
    labels = np.asarray(labels)
    n, k = len(labels), len(config.workers)
    if k * config.min_size > n:
        raise ConfigError("partition.workers", f"{k} workers with at least "
                          f"min_size={config.min_size} samples each need "
                          f"{k * config.min_size} samples; only {n} available")
    split = registered(PARTITIONERS, config.scheme, "partition")
    parts = split(labels, config, np.random.default_rng(seed))
    smallest = min(len(p) for p in parts)
    if smallest < config.min_size:
        raise ConfigError("partition.workers", f"the {config.scheme} partition gives a worker only "
                          f"{smallest} samples (< min_size={config.min_size}); use fewer "
                          "workers or more data")
    return parts


def label_histograms(labels, parts: list[np.ndarray], num_classes: int = 10) -> np.ndarray:
    """(workers, classes) counts: how many samples of each label every worker holds."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
