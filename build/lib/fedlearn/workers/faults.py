"""A worker wrapper that misbehaves on purpose, deterministically, for tests and demos.

``FaultInjectingWorker(bob, "sign_flip", rounds={2, 3})`` behaves like ``bob`` except
in the listed calls (counted from 1), where it:

- ``raise``: raises RuntimeError;             - ``hang``: sleeps ``hang_seconds`` first;
- ``nan``: returns an update full of NaN;     - ``wrong_shape``: drops a dimension;
- ``missing_key``: drops one tensor;          - ``inflate_examples``: claims 1000x its examples;
- ``sign_flip``: returns -scale * its update; - ``random``: returns Gaussian noise of std ``scale``;
- ``disappear``: raises ConnectionError, like a stopped Datasite.
"""
from __future__ import annotations

import time

import torch

from fedlearn.updates import Update
from fedlearn.workers.base import DelegatingWorker

FAULTS = ("raise", "hang", "nan", "wrong_shape", "missing_key", "inflate_examples",
          "sign_flip", "random", "disappear")


class FaultInjectingWorker(DelegatingWorker):
    def __init__(self, worker, fault: str, *, calls: set[int] | None = None, scale: float = 1.0,
                 hang_seconds: float = 5.0, seed: int = 0):
        if fault not in FAULTS:
            raise ValueError(f"fault: unknown {fault!r}; allowed: {', '.join(FAULTS)}")
        super().__init__(worker)
        self.fault, self._calls = fault, calls
        self._scale, self._hang, self._seed = scale, hang_seconds, seed
        self.count = 0

    def state_dict(self) -> dict:
        """How many calls it has had (its faults are counted in calls), and its inner state."""
        return {"calls": self.count, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["calls"]
        if state["inner"] is not None:
            self.inner.load_state_dict(state["inner"])

    def fit(self, weights, plan, *, seed, batches=None):
        self.count += 1
        if self._calls is not None and self.count not in self._calls:
            return self.inner.fit(weights, plan, seed=seed, batches=batches)
        if self.fault == "raise":
            raise RuntimeError(f"{self.name} crashed (injected)")
        if self.fault == "disappear":
            raise ConnectionError(f"{self.name} is unreachable (injected)")
        if self.fault == "hang":
            time.sleep(self._hang)
        update = self.inner.fit(weights, plan, seed=seed, batches=batches)
        delta, n = dict(update.delta), update.num_examples
        first = next(iter(delta))
        if self.fault == "nan":
            delta = {k: torch.full_like(v, float("nan")) for k, v in delta.items()}
        elif self.fault == "wrong_shape":
            delta[first] = delta[first].flatten()[:-1]
        elif self.fault == "missing_key":
            del delta[first]
        elif self.fault == "inflate_examples":
            n *= 1000
        elif self.fault == "sign_flip":
            delta = {k: -self._scale * v for k, v in delta.items()}
        elif self.fault == "random":
            g = torch.Generator().manual_seed(self._seed + self.count)
            delta = {k: self._scale * torch.randn(v.shape, generator=g).to(v)
                     for k, v in delta.items()}
        return Update(self.name, delta, n, update.metrics)
