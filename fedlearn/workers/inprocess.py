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
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from fedlearn.config import ConfigError, ExperimentConfig, ModelSpec, TrainPlan
from fedlearn.data.partition import partition
from fedlearn.errors import FedlearnError
from fedlearn.models import build_model, check_data_fits
from fedlearn.training import evaluate, make_optimizer, num_batches, train_epochs
from fedlearn.updates import Update
from fedlearn.workers.base import Worker, own_storage, weight_change


@functools.lru_cache(maxsize=8)
def _cached_model(model_name: ModelSpec, device: str, thread: int) -> torch.nn.Module:
    return build_model(model_name, seed=0).to(device)  # scratch: weights are loaded


def _scratch_model(model_name: ModelSpec, device: str) -> torch.nn.Module:
    # one per thread: a worker call abandoned after a timeout keeps its own module
    return _cached_model(model_name, device, threading.get_ident())


class VirtualWorker(Worker):
    """``VirtualWorker("bob", x, y, model="tutorial_cnn")``: Bob and his private data."""

    def __init__(self, name: str, x: torch.Tensor, y: torch.Tensor, *, model: ModelSpec,
                 device: str | torch.device = "cpu", progress: bool = False,
                 holdout: float = 0.0, growth: tuple[float, float] | None = None,
                 seed: int = 0):
        """``holdout``: share of the local data kept aside to measure personalization.
        ``growth=(initial, per_round)``: only that share of the data exists at round 1,
        and ``per_round`` more arrives each round (in a seeded order), as on a device.
        """
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"worker {name!r}: need as many images as labels, and at least one "
                             f"(got {len(x)} images, {len(y)} labels)")
        if not 0 <= holdout < 1:
            raise ValueError(f"worker {name!r}: holdout must be in [0, 1) (got {holdout})")
        if growth is not None and not (0 < growth[0] <= 1 and growth[1] >= 0):
            raise ValueError(f"worker {name!r}: growth=(initial, per_round) needs 0 < initial "
                             f"<= 1 and per_round >= 0 (got {growth})")
        self.name = name
        self.model = model
        self._spec: ModelSpec = model  # the same, typed as never None
        self._device = str(torch.device(device))
        self._progress = progress
        # the data keeps its order unless some is held out or arrives later (the PySyft
        # backend holds it in this order, and same order + same seed = same weights)
        if holdout > 0 or growth is not None:
            order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
            kept = len(y) - int(holdout * len(y))
            train, held = order[:kept], order[kept:]
            self.__hx, self.__hy = x[held].to(self._device), y[held].to(self._device)
            x, y = x[train], y[train]
        else:  # no copy: a thousand small copies would fragment the heap
            self.__hx, self.__hy = x[:0].to(self._device), y[:0].to(self._device)
        self.__x, self.__y = x.to(self._device), y.to(self._device)
        self._growth = growth
        self._visible = len(y) if growth is None else max(1, int(growth[0] * len(y)))
        self.personal_weights: dict | None = None  # stays on the device

    def __getstate__(self) -> dict:
        return own_storage(self.__dict__)  # its shard only, not the tensor it is a view into

    def set_round(self, round_: int) -> None:
        """New samples arrive between rounds (a no-op without ``growth``)."""
        if self._growth is not None:
            share = min(1.0, self._growth[0] + self._growth[1] * (round_ - 1))
            self._visible = max(1, int(share * len(self.__y)))

    def __repr__(self) -> str:
        return f"VirtualWorker({self.name!r}, {self.num_examples} examples)"

    @property
    def num_examples(self) -> int:
        return self._visible

    def _load(self, weights: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        model = _scratch_model(self._spec, self._device)
        model.load_state_dict(weights)
        return model

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        model = self._load(weights)
        steps = (batches[1] - batches[0] if batches is not None
                 else plan.epochs * num_batches(self.num_examples, plan.batch_size))
        with tqdm(total=steps, desc=f"{self.name} local", leave=False,
                  disable=not self._progress or batches is not None) as bar:
            metrics = train_epochs(model, make_optimizer(model, plan), self.__x[:self._visible],
                                   self.__y[:self._visible], plan, seed=seed, batches=batches,
                                   progress=bar)
        return Update(self.name, weight_change(model, weights), metrics["examples"], metrics)

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return evaluate(self._load(weights), self.__x[:self._visible], self.__y[:self._visible])

    @staticmethod
    def fit_together(workers: Sequence[VirtualWorker], weights: Mapping[str, torch.Tensor],
                     plan: TrainPlan, seeds: Sequence[int]) -> list[Update]:
        """Train these workers as one batched computation (:mod:`fedlearn.workers.together`);
        the same updates as their own ``fit``, within float tolerance. All must share a model
        and a device."""
        from fedlearn.workers.together import fit_together

        specs = {(w.model, w._device) for w in workers}
        if len(specs) != 1:
            raise FedlearnError(f"fit_together: the workers differ in model or device: {specs}")
        clients = [(w.name, w.__x[:w._visible], w.__y[:w._visible]) for w in workers]
        local = {k: v.to(workers[0]._device) for k, v in weights.items()}
        return fit_together(clients, workers[0].model, local, plan, seeds)

    def personalize(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, steps: int,
                    seed: int) -> dict:
        """Fine-tune a copy of ``weights`` for ``steps`` minibatches on the local data.

        Returns accuracy on the held-out share before and after; the personalized
        weights stay here (``personal_weights``), the given ones are not touched.
        """
        if len(self.__hy) == 0:
            raise FedlearnError(f"worker {self.name!r}: personalization needs a held-out share "
                                "(create the worker with holdout > 0)")
        model = self._load({k: v.clone() for k, v in weights.items()})
        before = evaluate(model, self.__hx, self.__hy)["accuracy"]
        steps = min(steps, num_batches(self._visible, plan.batch_size))
        train_epochs(model, make_optimizer(model, plan), self.__x[:self._visible],
                     self.__y[:self._visible], plan, seed=seed, batches=(0, steps))
        self.personal_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        after = evaluate(model, self.__hx, self.__hy)["accuracy"]
        return {"worker": self.name, "before": before, "after": after, "steps": steps,
                "held_out": len(self.__hy)}


def make_virtual_workers(x: torch.Tensor, y: torch.Tensor, config: ExperimentConfig, *,
                         device: str | torch.device = "cpu", progress: bool = False
                         ) -> tuple[list[VirtualWorker], list[np.ndarray]]:
    """Split (x, y) between ``config.partition.workers`` as the config says; return the
    workers and their index sets.

    Every field is the config's: the partition scheme, the model (``federation.model``), the
    seed, each worker's held-out share (``partition.holdout``) and the growth of its data
    (``partition.initial_share``, ``partition.growth_per_round``). The index sets are the
    simulation's bookkeeping (for label histograms); a real deployment never has them.
    """
    if not isinstance(config, ExperimentConfig):
        raise ConfigError("config", f"make_virtual_workers takes the whole ExperimentConfig (it "
                          f"reads the partition, model and seed from it), got "
                          f"{type(config).__name__}: make_virtual_workers(x, y, config)")
    check_data_fits(config.federation.model, x, y)
    part = config.partition
    growth = ((part.initial_share, part.growth_per_round)
              if part.initial_share < 1 or part.growth_per_round > 0 else None)
    parts = partition(y.numpy(), part, config.seed)
    # one copy of the data in partition order; each worker holds a view of its slice, so a
    # thousand workers cost a thousand tensor headers, not a thousand small allocations
    order = torch.as_tensor(np.concatenate(parts))
    xs, ys = x[order], y[order]
    ends = np.cumsum([len(p) for p in parts])
    workers = [VirtualWorker(name, xs[end - len(p):end], ys[end - len(p):end],
                             model=config.federation.model, device=device, progress=progress,
                             holdout=part.holdout, growth=growth, seed=config.seed * 100_003 + i)
               for i, (name, p, end) in enumerate(zip(part.workers, parts, ends))]
    return workers, parts
