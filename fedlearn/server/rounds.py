"""One round of training, on the server's side, with the faults of the real world.

A worker may raise, hang past ``round_timeout``, disappear, or send an update
that is malformed or hostile. Every reply is checked
(:func:`fedlearn.server.executors.checked_fit`) before it may be aggregated; failures and
rejections are recorded with their reason, never averaged in. Aggregation is FedAvg
(McMahan et al. 2017) or a robust rule from :mod:`fedlearn.aggregation.robust`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from fedlearn.aggregation import AGGREGATION_RULES, apply_delta
from fedlearn.config import RobustnessConfig, TrainPlan, registered
from fedlearn.server.executors import ClientExecutor, OneAfterTheOther, checked_fit
from fedlearn.server.record import TrainingReport
from fedlearn.training import num_batches
from fedlearn.updates import State, Update


def derive_seed(seed: int, round_: int, worker: int) -> int:
    return int(np.random.SeedSequence([seed, round_, worker]).generate_state(1)[0])


def aggregate(updates: list[Update], robust: RobustnessConfig) -> dict[str, torch.Tensor]:
    """The rule ``robust.aggregator`` names (:data:`fedlearn.aggregation.AGGREGATION_RULES`)."""
    rule = registered(AGGREGATION_RULES, robust.aggregator, "aggregator")
    return dict(rule([u.delta for u in updates], [u.num_examples for u in updates], robust))


def fedavg_round(chosen, weights, plan: TrainPlan, robust: RobustnessConfig, seed: int,
                 round_: int, pipeline=None, executor: ClientExecutor | None = None
                 ) -> tuple[State | None, TrainingReport]:
    """Every chosen worker trains locally; the aggregate of the valid updates, and the report.

    The selected clients are run by ``executor`` (default: one after the other, here); the
    aggregate is the combined weight change (the server applies it, see
    :mod:`fedlearn.server.optimizers`), or None with fewer than ``min_updates``. With a
    :class:`fedlearn.updates.pipeline.UpdatePipeline`, updates are clipped, compressed and
    masked on their way and noised after aggregation.
    """
    report = TrainingReport()
    arrived = []
    jobs = [(worker, derive_seed(seed, round_, i)) for i, worker in chosen]
    replies = (executor or OneAfterTheOther()).fit(jobs, weights, plan, robust, round_)
    for (i, worker), reply in zip(chosen, replies):
        report.count(worker.name, reply)
        update = reply.update
        if update is None:
            continue
        report.train_loss[worker.name] = update.metrics.get("loss")
        report.examples[worker.name] = update.num_examples
        if "epsilon" in update.metrics:  # a DP-SGD worker's own, cumulative epsilon
            report.worker_epsilon = {**(report.worker_epsilon or {}),
                                     worker.name: update.metrics["epsilon"]}
        delta = update.delta
        if pipeline is not None:
            wire = torch.Generator().manual_seed(derive_seed(seed, round_, 10_000 + i))
            delta, report.bytes_up[worker.name] = pipeline.upload(worker.name, delta, wire)
        arrived.append(Update(worker.name, delta, update.num_examples, update.metrics))
    if len(arrived) < robust.min_updates:
        return None, report
    if pipeline is None:
        return aggregate(arrived, robust), report
    noise = torch.Generator().manual_seed(derive_seed(seed, round_, 2 ** 31))
    combined, privacy = pipeline.combine([(u.worker, u.delta, u.num_examples) for u in arrived],
                                         [w.name for _, w in chosen], weights, round_, noise)
    return combined, dataclasses.replace(report, **privacy)


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
