"""The federation loop: the server's side of a run.

Two algorithms:

- ``fedavg`` — Federated Averaging (McMahan et al. 2017, "Communication-Efficient
  Learning of Deep Networks from Decentralized Data", Algorithm 1): each round a
  fraction C of the workers trains E local epochs with batch B from the global
  weights; the server adds the example-weighted mean of their weight changes.
- ``fedsgd`` — the original PySyft tutorial's mode: one model hops between the
  workers' minibatches in turn, one SGD step per batch (federated SGD). A round
  is one pass over every selected worker's data. Momentum, if any, is kept by the
  server, which makes the run exactly SGD with momentum over the interleaved
  batch stream.

Every random choice is derived from ``(seed, round, worker)``, so a run resumed
from its checkpoint ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fedlearn.aggregation import apply_delta, fedavg
from fedlearn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fedlearn.config import ExperimentConfig
from fedlearn.models import build_model
from fedlearn.training import evaluate, num_batches
from fedlearn.updates import detached_cpu_state, state_nbytes


@dataclass
class FederationResult:
    weights: dict[str, torch.Tensor]
    history: list[dict]
    reached_target: bool


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is available; "
                         "use 'auto' or 'cpu'")
    return torch.device(device)


def derive_seed(seed: int, round_: int, worker: int) -> int:
    return int(np.random.SeedSequence([seed, round_, worker]).generate_state(1)[0])


def select_workers(num_workers: int, fraction: float, seed: int, round_: int) -> list[int]:
    """Indices of the workers taking part in ``round_``: max(1, round(C * K)) of them."""
    m = max(1, int(round(fraction * num_workers)))
    rng = np.random.default_rng([seed, round_, 0x5E1EC7])
    return sorted(rng.choice(num_workers, size=m, replace=False).tolist())


def initial_weights(config: ExperimentConfig, device: torch.device) -> dict[str, torch.Tensor]:
    model = build_model(config.federation.model, seed=config.seed)
    return {k: v.detach().to(device) for k, v in model.state_dict().items()}


def _fedavg_round(workers, weights, plan, seed, round_, record):
    updates = []
    for i, w in workers:
        record["bytes_down"][w.name] = state_nbytes(weights)
        update = w.fit(weights, plan, seed=derive_seed(seed, round_, i))
        record["bytes_up"][w.name] = state_nbytes(update.delta)
        record["train_loss"][w.name] = update.metrics.get("loss")
        record["examples"][w.name] = update.num_examples
        updates.append(update)
    aggregate = fedavg([u.delta for u in updates], [u.num_examples for u in updates])
    return apply_delta(weights, aggregate)


def _fedsgd_round(workers, weights, velocity, plan, seed, round_, record, progress):
    step_plan = dataclasses.replace(plan, momentum=0.0, epochs=1)
    counts = {w.name: num_batches(w.num_examples, plan.batch_size) for _, w in workers}
    losses = {w.name: [] for _, w in workers}
    for _, w in workers:
        record["bytes_down"][w.name] = record["bytes_up"][w.name] = record["examples"][w.name] = 0
    with tqdm(total=sum(counts.values()), desc=f"round {round_} hops", leave=False,
              disable=not progress) as bar:
        for b in range(max(counts.values())):
            for i, w in workers:
                if b >= counts[w.name]:
                    continue
                record["bytes_down"][w.name] += state_nbytes(weights)
                update = w.fit(weights, step_plan, seed=derive_seed(seed, round_, i),
                               batches=(b, b + 1))
                record["bytes_up"][w.name] += state_nbytes(update.delta)
                record["examples"][w.name] += update.num_examples
                losses[w.name].append(update.metrics["loss"])
                # heavy-ball momentum on the server: v = m v + delta, w = w + v
                velocity = {k: plan.momentum * velocity[k] + update.delta[k] for k in velocity}
                weights = apply_delta(weights, velocity)
                bar.update(1)
    record["train_loss"] = {n: float(np.mean(v)) for n, v in losses.items()}
    return weights, velocity


def run_federation(workers: Sequence, config: ExperimentConfig, test_x: torch.Tensor,
                   test_y: torch.Tensor, *, checkpoint: str | Path | None = None,
                   resume: bool = False, progress: bool = False,
                   weights: Mapping[str, torch.Tensor] | None = None) -> FederationResult:
    """Train ``config.federation.rounds`` rounds over ``workers``; evaluate every round.

    With ``checkpoint`` a checkpoint is written atomically after every round;
    ``resume=True`` continues from it (it must come from the same configuration
    and workers). Returns the final weights and the per-round history.
    """
    fed, plan, seed = config.federation, config.plan, config.seed
    names = [w.name for w in workers]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"workers: need distinct worker names, got {names}")
    device = resolve_device(fed.device)
    test_x, test_y = test_x.to(device), test_y.to(device)
    weights = {k: v.to(device) for k, v in (weights or initial_weights(config, device)).items()}
    velocity = {k: torch.zeros_like(v) for k, v in weights.items()}
    history: list[dict] = []
    start = 1
    if resume:
        state = load_checkpoint(checkpoint)
        if state["fingerprint"] != config.fingerprint() or list(state["workers"]) != names:
            raise CheckpointError(f"checkpoint {checkpoint} comes from another configuration "
                                  f"(workers {list(state['workers'])}); start a new run in "
                                  "another output directory or use the original settings")
        weights = {k: v.to(device) for k, v in state["weights"].items()}
        velocity = {k: v.to(device) for k, v in state["velocity"].items()}
        history = json.loads(state["history"])
        start = state["round"] + 1
    reached = bool(history) and fed.target_accuracy is not None and \
        history[-1]["test_accuracy"] >= fed.target_accuracy
    model = build_model(fed.model).to(device)
    indexed = list(enumerate(workers))
    rounds = tqdm(range(start, fed.rounds + 1), desc="rounds", initial=start - 1,
                  total=fed.rounds, disable=not progress or reached)
    for round_ in rounds:
        if reached:
            break
        t0 = time.perf_counter()
        chosen = [indexed[i] for i in select_workers(len(workers), fed.fraction, seed, round_)]
        record = {"round": round_, "selected": [w.name for _, w in chosen], "train_loss": {},
                  "examples": {}, "bytes_down": {}, "bytes_up": {}}
        if fed.algorithm == "fedavg":
            weights = _fedavg_round(chosen, weights, plan, seed, round_, record)
        else:
            weights, velocity = _fedsgd_round(chosen, weights, velocity, plan, seed, round_,
                                              record, progress)
        record["train_seconds"] = time.perf_counter() - t0
        model.load_state_dict(weights)
        metrics = evaluate(model, test_x, test_y, fed.eval_batch_size)
        record.update(test_loss=metrics["loss"], test_accuracy=metrics["accuracy"],
                      seconds=time.perf_counter() - t0)
        history.append(record)
        reached = fed.target_accuracy is not None and metrics["accuracy"] >= fed.target_accuracy
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "fingerprint": config.fingerprint(), "workers": names, "round": round_,
                "weights": detached_cpu_state(weights), "velocity": detached_cpu_state(velocity),
                "history": json.dumps(history), "config": json.dumps(config.to_dict())})
        rounds.set_postfix(acc=f"{metrics['accuracy']:.4f}", loss=f"{metrics['loss']:.4f}")
    rounds.close()
    return FederationResult(detached_cpu_state(weights), history, reached)
