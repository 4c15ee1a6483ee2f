"""The federation loop: the server's side of a run.

Two algorithms:

- ``fedavg`` — Federated Averaging (McMahan et al. 2017, "Communication-Efficient
  Learning of Deep Networks from Decentralized Data", Algorithm 1): each round a
  fraction C of the workers trains E local epochs with batch B from the global
  weights; the server adds the example-weighted mean of their weight changes.
- ``model_hopping`` — the original PySyft tutorial's mode: one model hops between the
  workers' minibatches in turn, one SGD step per batch (federated SGD). A round
  is one pass over every selected worker's data. Momentum, if any, is kept by the
  server, which makes the run exactly SGD with momentum over the interleaved
  batch stream.

The server applies the aggregated change with plain addition (FedAvg), server
momentum, or Adam (:mod:`fedlearn.server.optimizers`). With an availability model
(:mod:`fedlearn.server.availability`) only eligible devices are selected, with
over-selection, and only those that report before the deadline count.

Every random choice is derived from ``(seed, round, worker)``, so a run resumed
from its checkpoint ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fedlearn.config import ConfigError, ExperimentConfig, model_label
from fedlearn.config.federation import workers_per_round
from fedlearn.errors import FedlearnError
from fedlearn.execution import ClientExecutor, make_executor
from fedlearn.models import build_model
from fedlearn.server.availability import client_profiles, plan_round, round_seconds, upload_nbytes
from fedlearn.server.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fedlearn.server.record import RoundRecord
from fedlearn.server.rounds import derive_seed  # noqa: F401 (re-export)
from fedlearn.server.strategies import make_strategy
from fedlearn.training import check_compute, evaluate
from fedlearn.updates import detached_cpu_state, state_nbytes
from fedlearn.workers.base import Worker
from fedlearn.workers.client_side import with_client_sides


class RoundFailedError(FedlearnError, RuntimeError):
    """Too few valid updates arrived, even after the configured retries."""

    exit_code = 1  # the run started and was stopped; its checkpoint is kept for --resume


@dataclass
class FederationResult:
    weights: dict[str, torch.Tensor]
    history: list[dict]
    reached_target: bool


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "'cuda' was asked for but no CUDA device is available; "
                          "use 'auto' or 'cpu'")
    return torch.device(device)


def select_workers(num_workers: int, fraction: float, seed: int, round_: int,
                   attempt: int = 0) -> list[int]:
    """Indices of the workers taking part in ``round_``: max(1, round(C * K)) of them.

    A retried round (``attempt`` > 0) draws a fresh sample.
    """
    rng = np.random.default_rng([seed, round_, attempt, 0x5E1EC7])
    m = workers_per_round(num_workers, fraction)
    return sorted(rng.choice(num_workers, size=m, replace=False).tolist())


def initial_weights(config: ExperimentConfig, device: torch.device) -> dict[str, torch.Tensor]:
    model = build_model(config.federation.model, seed=config.seed)
    return {k: v.detach().to(device) for k, v in model.state_dict().items()}


class FederatedServer:
    """The server's state and one-round step; ``run_federation`` loops over it.

    Holds the global weights, the strategy (with its state: server momentum or a
    server optimizer's) and the history. It never holds a worker's data or, after
    a round, any single worker's update.
    """

    def __init__(self, workers: Sequence, config: ExperimentConfig, test_x: torch.Tensor,
                 test_y: torch.Tensor, *, weights: Mapping[str, torch.Tensor] | None = None,
                 progress: bool = False, executor: ClientExecutor | None = None):
        self.names = [w.name for w in workers]
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError(f"workers: need distinct worker names, got {self.names}")
        self.workers = list(workers)
        self.config = config
        strangers = [w for w in self.workers if not isinstance(w, Worker)]
        if strangers:
            raise ConfigError("workers", f"{type(strangers[0]).__name__} is not a "
                              "fedlearn.workers.Worker: subclass it (it declares the whole "
                              "contract, with defaults for what a worker does not do)")
        config.check_workers(len(self.workers), remote=[w.name for w in self.workers if w.remote],
                             masking=[w.name for w in self.workers if w.masks_where_trained()],
                             compressing=[w.name for w in self.workers
                                          if w.compresses_where_trained(config.compression)])
        other = [w.name for w in self.workers
                 if w.model is not None and w.model != config.federation.model]
        if other:
            raise ConfigError("federation.model", f"the run is configured with "
                              f"{model_label(config.federation.model)} but workers "
                              f"{', '.join(other)} train another model: build them from the "
                              "same config (make_virtual_workers(x, y, config)) or set "
                              "federation.model to theirs")
        unlike = [w.name for w in self.workers if w.dp_sgd != config.dp_sgd]
        if unlike:
            raise ConfigError("dp_sgd.noise_multiplier", f"the run is configured with "
                              f"dp_sgd={config.dp_sgd} but workers {', '.join(unlike)} train "
                              "with other DP-SGD settings or none: build them as DPSGDWorker("
                              "..., dp=config.dp_sgd) (run_experiment does), or set dp_sgd to "
                              "what they do")
        # the client's side of the round (clip, compress, mask) runs where each worker runs
        self.workers = with_client_sides(self.workers, config)
        self.device = resolve_device(config.federation.device)
        self.test_x, self.test_y = test_x.to(self.device), test_y.to(self.device)
        initial = weights or initial_weights(config, self.device)
        self.weights = {k: v.to(self.device) for k, v in initial.items()}
        self.history: list[dict] = []
        self.progress = progress
        self._model = build_model(config.federation.model, seed=0).to(self.device)  # scratch
        check_compute(config.plan, self._model, self.device)
        # an executor the server makes is the server's to close; one passed in, the caller's
        self._owns_executor = executor is None
        # made from the workers already wrapped: the client's side runs where they run
        executor = executor or make_executor(config, self.workers, self._model, self.device)
        try:
            self.strategy = make_strategy(config, self.weights, executor,
                                          num_workers=len(self.workers))
        except BaseException:
            if self._owns_executor:  # a Ray runtime started for this server ends with it
                executor.close()
            raise
        self.retired: list[str] = []  # e.g. personalized clients, out of the training pool
        self.profiles = (client_profiles(len(self.workers), config.availability, config.seed)
                         if config.availability is not None else None)

    @property
    def round(self) -> int:
        return self.history[-1]["round"] if self.history else 0

    @property
    def reached_target(self) -> bool:
        target = self.config.federation.target_accuracy
        return bool(self.history) and target is not None and \
            self.history[-1]["test_accuracy"] >= target

    def evaluate(self) -> dict[str, float]:
        self._model.load_state_dict(self.weights)
        return evaluate(self._model, self.test_x, self.test_y,
                        self.config.federation.eval_batch_size)

    def step(self) -> RoundRecord:
        """Run the next round, evaluate the new global model, return its record.

        Failed or rejected workers are left out and recorded. With fewer than
        ``min_updates`` valid updates the round is retried with a fresh sample
        (``on_too_few="retry"``, up to ``max_retries`` times), kept unchanged
        (``"skip"``), or the run stops with :class:`RoundFailedError`.
        """
        fed, robust, seed = self.config.federation, self.config.robustness, self.config.seed
        round_ = self.round + 1
        t0 = time.perf_counter()
        indexed = list(enumerate(self.workers))
        retries = robust.max_retries if robust.on_too_few == "retry" else 0
        problems: list[str] = []
        for worker in self.workers:  # new local data arrives on some devices between rounds
            worker.set_round(round_)
        active = [i for i, w in indexed if w.name not in self.retired]
        if not active:
            raise RoundFailedError(f"round {round_}: every worker has left the training pool")
        for attempt in range(retries + 1):
            if self.profiles is None:
                chosen = [indexed[active[i]] for i in
                          select_workers(len(active), fed.fraction, seed, round_, attempt)]
                selection: dict = {"selected": [w.name for _, w in chosen]}
            else:
                chosen, selection = self._plan_availability(active, round_, attempt)
            outcome, report = self.strategy.round(chosen, self.weights, round_, self.progress)
            if outcome is not None:
                break
            problems.append(report.problems() or (f"devices: {selection['availability']}"
                                                  if selection.get("availability")
                                                  else "no updates"))
        else:
            if robust.on_too_few != "skip":
                raise RoundFailedError(
                    f"round {round_}: fewer than min_updates={robust.min_updates} valid updates "
                    f"after {len(problems)} attempt(s) ({' | '.join(problems)}). The weights of "
                    f"round {round_ - 1} are kept; fix the workers and resume.")
        if outcome is not None:
            self.weights = dict(outcome)
        if "availability" in selection:
            selection["availability"]["completed"] = len(report.examples)
        train_seconds = time.perf_counter() - t0
        metrics = self.evaluate()
        plan = self.config.plan
        compute = {"precision": plan.precision,
                   "memory_format": "channels_last" if plan.channels_last else "contiguous",
                   "clients": self.strategy.executor.name,
                   **self.strategy.executor.round_notes()}
        record = RoundRecord(round=round_, attempt=attempt, skipped=outcome is None,
                             compute=compute,
                             **selection, **dataclasses.asdict(report),
                             train_seconds=train_seconds, test_loss=metrics["loss"],
                             test_accuracy=metrics["accuracy"],
                             seconds=time.perf_counter() - t0)
        self.history.append(record.to_dict())
        return record

    def _plan_availability(self, active: list[int], round_: int,
                           attempt: int) -> tuple[list, dict]:
        """Eligible devices, over-selection, declines, drop-outs and stragglers (simulated):
        the workers that report, and the selection's part of the round's record."""
        fed, cfg, profiles = self.config.federation, self.config.availability, self.profiles
        assert cfg is not None and profiles is not None  # called only with an availability model
        down = state_nbytes(self.weights)
        up = upload_nbytes(down, self.config.compression) * (2 if self.config.secure_aggregation
                                                             else 1)
        epochs = self.config.plan.epochs

        def seconds(i: int) -> float:
            return round_seconds(profiles, i, down_nbytes=down, up_nbytes=up,
                                 examples=epochs * self.workers[i].num_examples)

        goal = workers_per_round(len(active), fed.fraction)
        plan = plan_round(profiles, active, goal, cfg, seed=self.config.seed, round_=round_,
                          attempt=attempt, seconds=seconds)
        names = {key: [self.names[i] for i in plan[key]]
                 for key in ("selected", "declined", "dropped", "stragglers", "late")}
        selected = names.pop("selected")
        selection = {"selected": selected,
                     "availability": {"available": len(plan["available"]),
                                      "selected": len(selected),
                                      **{k: len(v) for k, v in names.items()},
                                      "goal": goal,
                                      "simulated_seconds": plan["simulated_seconds"]},
                     **{f"{key}_clients": names[key]
                        for key in ("declined", "dropped", "stragglers", "late")}}
        return [(i, self.workers[i]) for i in plan["reporting"]], selection

    def close(self) -> None:
        """Release the executor the server made (a Ray runtime it started, its actors)."""
        if self._owns_executor:
            self.strategy.executor.close()

    def __enter__(self) -> FederatedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def retire(self, names) -> None:
        """Take workers out of the training pool (e.g. after personalizing)."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ValueError(f"retire: unknown workers {unknown}")
        self.retired = sorted(set(self.retired) | set(names))

    def state_dict(self) -> dict:
        return {"fingerprint": self.config.fingerprint(), "workers": self.names,
                "round": self.round, "weights": detached_cpu_state(self.weights),
                # the strategy's own state, only what it has: model hopping's momentum, a
                # server optimizer's moments (plain FedAvg: nothing)
                "strategy": self.strategy.state_dict(),
                "retired": list(self.retired),
                "history": json.dumps(self.history), "config": json.dumps(self.config.to_dict()),
                # kept apart: the workers' own state (a DP-SGD ledger, a top-k residual), which
                # in a deployment stays on each worker's device
                "worker_states": {w.name: state for w in self.workers
                                  if (state := w.state_dict()) is not None}}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        if (state["fingerprint"] != self.config.fingerprint()
                or list(state["workers"]) != self.names):
            changes = self.config.changes_from(json.loads(state["config"]))
            if list(state["workers"]) != self.names:
                changes.append(f"workers: {list(state['workers'])} -> {self.names}")
            raise CheckpointError(f"{source} comes from another configuration "
                                  f"({'; '.join(changes) or 'a field this version hashes'}); "
                                  "start a new run in another output directory or use the "
                                  "original settings")
        self.weights = {k: v.to(self.device) for k, v in state["weights"].items()}
        strategy = state.get("strategy")
        if strategy is None:  # a checkpoint written before the strategy kept its own part
            strategy = {"velocity": state.get("velocity", {}),
                        "server_state": state.get("server_state", {})}
        self.strategy.load_state_dict(strategy, self.device)
        self.retired = list(state.get("retired", []))
        self.history = json.loads(state["history"])
        for worker in self.workers:
            if worker.name in state.get("worker_states", {}):
                worker.load_state_dict(state["worker_states"][worker.name])


def run_federation(workers: Sequence[Worker], config: ExperimentConfig, test_x: torch.Tensor,
                   test_y: torch.Tensor, *, checkpoint: str | Path | None = None,
                   resume: bool = False, progress: bool = False,
                   weights: Mapping[str, torch.Tensor] | None = None,
                   executor: ClientExecutor | None = None) -> FederationResult:
    """Train ``config.federation.rounds`` rounds over ``workers``; evaluate every round.

    With ``checkpoint`` a checkpoint is written atomically after every round;
    ``resume=True`` continues from it (it must come from the same configuration
    and workers). Stops early once ``target_accuracy`` is reached. Returns the
    final weights and the per-round history. ``executor``: how the clients run (default: made
    from ``config.execution`` by :func:`fedlearn.execution.make_executor` after the workers
    get their client side, closed at the end;
    one passed in is the caller's to close).
    """
    server = FederatedServer(workers, config, test_x, test_y, weights=weights, progress=progress,
                             executor=executor)
    with server:  # an executor the server made ends with the run (Ray's processes, Ctrl-C too)
        if resume:
            if checkpoint is None:
                raise ConfigError("resume", "needs a checkpoint to resume from")
            server.load_state_dict(load_checkpoint(checkpoint), source=f"checkpoint {checkpoint}")
        total = config.federation.rounds
        # a terminal gets a live bar; a log file one plain line per round, not \r updates
        interactive = progress and sys.stderr.isatty()
        server.progress = interactive
        with tqdm(total=total, initial=min(server.round, total), desc="rounds",
                  disable=not interactive) as bar:
            while server.round < total and not server.reached_target:
                record = server.step()
                if checkpoint is not None:
                    save_checkpoint(checkpoint, server.state_dict())
                bar.update(1)
                bar.set_postfix(acc=f"{record.test_accuracy:.4f}", loss=f"{record.test_loss:.4f}")
                if progress and not interactive:
                    print(f"round {record.round}/{total}: test accuracy "
                          f"{record.test_accuracy:.4f}, loss {record.test_loss:.4f}, "
                          f"{record.seconds:.1f} s", file=sys.stderr, flush=True)
        return FederationResult(detached_cpu_state(server.weights), server.history,
                                server.reached_target)
