"""The interface every worker backend implements."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch

from fedlearn.config import TrainPlan
from fedlearn.updates import Update


@runtime_checkable
class Worker(Protocol):
    """A data owner. The server may send weights and a plan; it never sees samples.

    ``num_examples`` is the size of the local training set: metadata a data owner
    reports (it is also the FedAvg weight), not data.
    """

    name: str

    @property
    def num_examples(self) -> int: ...

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        """Train from ``weights`` as ``plan`` says; return the weight change."""
        ...

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict:
        """Loss and accuracy of ``weights`` on the local data."""
        ...
