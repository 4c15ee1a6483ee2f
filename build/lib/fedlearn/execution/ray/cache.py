"""A least-recently-used cache bounded by bytes: the shards (workers' data) an actor keeps.

Without a bound an actor serving many clients over a run would end up holding every shard it
was ever handed. With one, it keeps the most recently used shards that fit in ``max_bytes``
and evicts the least recently used first (as ``functools.lru_cache`` does by count); an
evicted shard is fetched again from Ray's object store when its client next comes. A shard
larger than the whole bound is not kept at all. Pure Python, tested by hand examples
(tests/test_ray_parts.py).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch


class ShardCache:
    """``ShardCache(max_bytes)``: :meth:`get` marks an entry used; :meth:`put` returns what it
    evicted, oldest first."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"ShardCache: max_bytes must be >= 0 (got {max_bytes})")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # oldest first

    def get(self, key: str) -> Any | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key][0]

    def put(self, key: str, value: Any, nbytes: int) -> list[str]:
        if key in self._entries:
            self.nbytes -= self._entries.pop(key)[1]
        if nbytes > self.max_bytes:  # would evict everything and still not fit
            return []
        evicted = []
        while self.nbytes + nbytes > self.max_bytes:
            old, (_, size) = self._entries.popitem(last=False)
            self.nbytes -= size
            evicted.append(old)
        self._entries[key] = (value, nbytes)
        self.nbytes += nbytes
        return evicted

    def resize(self, max_bytes: int) -> list[str]:
        """A new bound; what no longer fits is evicted, least recently used first."""
        if max_bytes < 0:
            raise ValueError(f"ShardCache: max_bytes must be >= 0 (got {max_bytes})")
        self.max_bytes, evicted = max_bytes, []
        while self.nbytes > self.max_bytes:
            old, (_, size) = self._entries.popitem(last=False)
            self.nbytes -= size
            evicted.append(old)
        return evicted

    def keys(self) -> list[str]:
        """Held keys, least recently used first."""
        return list(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def shard_nbytes(obj: Any, depth: int = 4) -> int:
    """The bytes of the tensors and numpy arrays ``obj`` holds (through its attributes, lists,
    tuples and dicts, ``depth`` levels down), each storage counted once: a worker's data."""
    seen: set[int] = set()

    def walk(o: Any, level: int) -> int:
        if isinstance(o, torch.Tensor):
            storage = o.untyped_storage()
            key = storage.data_ptr() if storage.data_ptr() else id(storage)
            if key in seen:
                return 0
            seen.add(key)
            return storage.nbytes()
        if isinstance(o, np.ndarray):
            base = o if o.base is None else o.base
            if id(base) in seen:
                return 0
            seen.add(id(base))
            return int(getattr(base, "nbytes", o.nbytes))
        if level == 0 or id(o) in seen:
            return 0
        seen.add(id(o))
        if isinstance(o, dict):
            return sum(walk(v, level - 1) for v in o.values())
        if isinstance(o, (list, tuple)):
            return sum(walk(v, level - 1) for v in o)
        if hasattr(o, "__dict__") and not isinstance(o, type):
            return sum(walk(v, level - 1) for v in vars(o).values())
        return 0

    return walk(obj, depth)
