"""The pieces of a round the strategies share: seeds, the aggregation rule, model hopping.

A worker may raise, hang past ``round_timeout``, disappear, or send an update
that is malformed or hostile. Every reply is checked
(:func:`fedlearn.execution.checked_fit`) before it may be aggregated; failures and
rejections are recorded with their reason, never averaged in. Aggregation is the
example-weighted mean (McMahan et al. 2017) or a robust rule from
:mod:`fedlearn.aggregation.robust`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from fedlearn.aggregation import AGGREGATION_RULES, apply_delta
from fedlearn.config import RobustnessConfig, TrainPlan, registered
from fedlearn.execution import checked_fit
from fedlearn.server.record import TrainingReport
from fedlearn.training import derive_seed, num_batches
from fedlearn.updates import State, Update


def aggregate(updates: list[Update], robust: RobustnessConfig) -> dict[str, torch.Tensor]:
    """The rule ``robust.aggregator`` names (:data:`fedlearn.aggregation.AGGREGATION_RULES`)."""
    rule = registered(AGGREGATION_RULES, robust.aggregator, "aggregator")
    return dict(rule([u.delta for u in updates], [u.num_examples for u in updates], robust))


def model_hopping_round(chosen, weights, velocity, plan: TrainPlan, robust: RobustnessConfig,
                 seed: int, round_: int, progress: bool
                 ) -> tuple[tuple[State, State] | None, TrainingReport]:
    """The model hops between the workers' batches, one SGD step each (momentum on the server).

    Returns the new weights and velocity (None with fewer than ``min_updates`` workers
    left), and the report. A worker that fails or sends an invalid step is dropped for the
    rest of the round.
    """
    report = TrainingReport()
    step_plan = dataclasses.replace(plan, momentum=0.0, epochs=1)
    counts = {w.name: num_batches(w.num_examples, plan.batch_size) for _, w in chosen}
    losses: dict[str, list[float]] = {w.name: [] for _, w in chosen}
    active = list(chosen)
    with tqdm(total=sum(counts.values()), desc=f"round {round_} hops", leave=False,
              disable=not progress) as bar:
        for b in range(max(counts.values())):
            for i, worker in list(active):
                if b >= counts[worker.name]:
                    continue
                reply = checked_fit(worker, weights, step_plan, robust,
                                    seed=derive_seed(seed, round_, i), batches=(b, b + 1))
                report.count(worker.name, reply)
                update = reply.update
                if update is None:
                    active.remove((i, worker))
                    continue
                report.examples[worker.name] = (report.examples.get(worker.name, 0)
                                                + update.num_examples)
                losses[worker.name].append(update.metrics["loss"])
                # heavy-ball momentum on the server: v = m v + delta, w = w + v
                velocity = {k: plan.momentum * velocity[k] + update.delta[k] for k in velocity}
                weights = apply_delta(weights, {**update.delta, **velocity})  # counters: as sent
                bar.update(1)
    report.train_loss = {n: float(np.mean(v)) for n, v in losses.items() if v}
    if len(active) < robust.min_updates:
        return None, report
    return (weights, velocity), report
