"""A round's in-process clients as one batched computation; every update is still checked.

The batched maths (weights stacked, ``torch.func.vmap`` over each client's gradient) lives in
:mod:`fedlearn.workers.together`; this is only the executor around it and the reasons a run's
clients cannot take that path.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from fedlearn.config import ExperimentConfig
from fedlearn.execution.base import ClientExecutor, WorkerReply, checked, trainer
from fedlearn.updates import state_nbytes
from fedlearn.workers.base import Worker
from fedlearn.workers.client_side import ClientSideWorker
from fedlearn.workers.inprocess import VirtualWorker
from fedlearn.workers.together import can_train_together


class Together(ClientExecutor):
    """``executor='together'`` (:meth:`fedlearn.workers.VirtualWorker.fit_together`)."""

    name = "together"

    def fit(self, jobs, weights, plan, robust, round_=None):
        down = state_nbytes(weights)
        try:
            updates = VirtualWorker.fit_together([trainer(w) for w, _ in jobs], weights, plan,
                                                 [seed for _, seed in jobs])
            # each client's own side (clip, compress, mask) after the batched training
            updates = [w.upload(u) if isinstance(w, ClientSideWorker) else u
                       for (w, _), u in zip(jobs, updates)]
        except Exception as exc:  # the batch failed: every client in it did
            return [WorkerReply(None, down, failed=f"{type(exc).__name__}: {exc}")
                    for _ in jobs]
        return [checked(worker, update, weights, plan, robust, down=down)
                for (worker, _), update in zip(jobs, updates)]


def together_refusals(config: ExperimentConfig, workers: Sequence[Worker],
                      model: torch.nn.Module) -> list[str]:
    """Why this run's clients cannot be trained together (none: they can)."""
    reasons = [why for why, broken in (
        ("model hopping visits one batch at a time", config.federation.algorithm != "fedavg"),
        ("a round timeout needs each client's own call", config.robustness.round_timeout
         is not None),
        ("channels-last is for one client at a time", config.plan.channels_last),
        ("every client must be a plain in-process VirtualWorker",
         any(type(trainer(w)) is not VirtualWorker for w in workers))) if broken]
    return reasons + ([why] if (why := can_train_together(model)) else [])
