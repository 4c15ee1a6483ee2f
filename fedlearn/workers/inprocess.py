"""In-process workers: fast simulation of many data owners in one Python process.

A worker holds only its shard of the data and a name. Its model is a scratch
module shared by all in-process workers of the same architecture in a thread
(they run one after another), so memory grows with data, not with the number
of workers.

Python cannot stop code in the same process from reaching into an object; the
guarantee here is the API: nothing public returns samples. Real isolation is
what the PySyft backend adds.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Mapping

import numpy as np
import torch
from tqdm import tqdm

from fedlearn.config import PartitionConfig, TrainPlan
from fedlearn.models import build_model
from fedlearn.partition import partition
from fedlearn.training import evaluate, make_optimizer, num_batches, train_epochs
from fedlearn.updates import Update


@functools.lru_cache(maxsize=8)
def _cached_model(model_name: str, device: str, thread: int) -> torch.nn.Module:
    return build_model(model_name).to(device)


def _scratch_model(model_name: str, device: str) -> torch.nn.Module:
    # one per thread: a worker call abandoned after a timeout keeps its own module
    return _cached_model(model_name, device, threading.get_ident())


class VirtualWorker:
    """``VirtualWorker("bob", x, y, model="tutorial_cnn")``: Bob and his private data."""

    def __init__(self, name: str, x: torch.Tensor, y: torch.Tensor, *, model: str,
                 device: str | torch.device = "cpu", progress: bool = False):
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"worker {name!r}: need as many images as labels, and at least one "
                             f"(got {len(x)} images, {len(y)} labels)")
        self.name = name
        self._model_name = model
        self._device = str(torch.device(device))
        self._progress = progress
        self.__x = x.to(self._device)
        self.__y = y.to(self._device)

    def __repr__(self) -> str:
        return f"VirtualWorker({self.name!r}, {self.num_examples} examples)"

    @property
    def num_examples(self) -> int:
        return len(self.__y)

    def _load(self, weights: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        model = _scratch_model(self._model_name, self._device)
        model.load_state_dict(weights)
        return model

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        model = self._load(weights)
        steps = (batches[1] - batches[0] if batches is not None
                 else plan.epochs * num_batches(self.num_examples, plan.batch_size))
        with tqdm(total=steps, desc=f"{self.name} local", leave=False,
                  disable=not self._progress or batches is not None) as bar:
            metrics = train_epochs(model, make_optimizer(model, plan), self.__x, self.__y, plan,
                                   seed=seed, batches=batches, progress=bar)
        delta = {k: v.detach() - weights[k].to(v.device) for k, v in model.state_dict().items()}
        return Update(self.name, delta, metrics["examples"], metrics)

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict:
        return evaluate(self._load(weights), self.__x, self.__y)


def make_virtual_workers(x: torch.Tensor, y: torch.Tensor, config: PartitionConfig, *,
                         model: str, seed: int, device: str | torch.device = "cpu",
                         progress: bool = False) -> tuple[list[VirtualWorker], list[np.ndarray]]:
    """Partition (x, y) between ``config.workers``; return the workers and their index sets.

    The index sets are the simulation's bookkeeping (for label histograms); a
    real deployment never has them.
    """
    parts = partition(y.numpy(), config, seed)
    workers = [VirtualWorker(name, x[torch.as_tensor(p)], y[torch.as_tensor(p)], model=model,
                             device=device, progress=progress)
               for name, p in zip(config.workers, parts)]
    return workers, parts
