"""A round's maths and the state it keeps: FedAvg and the tutorial's model hopping.

The loop in :mod:`fedlearn.server.federation` only selects workers and evaluates; a
strategy turns the selected workers into new global weights, in two hooks after Flower's
``Strategy``: :meth:`Strategy.configure_fit` says what each selected client is asked (its
seed, its orders for the round) and :meth:`Strategy.aggregate_fit` turns the replies into
new weights. An executor (:mod:`fedlearn.execution`) runs the calls in between.

- :class:`FedAvg` — McMahan et al. 2017, Algorithm 1: each selected worker trains locally
  from the global weights; its client side clips, compresses and masks where it runs
  (:class:`~fedlearn.workers.client_side.ClientSideWorker`); the valid updates are
  aggregated (the example-weighted mean, a robust rule, DP-FedAvg's fixed denominator with
  noise, or the secure sum: :mod:`fedlearn.aggregation.server_side`) and a
  :class:`~fedlearn.server.optimizers.ServerOptimizer` applies the result.
- :class:`ModelHopping` — the original PySyft tutorial's federated SGD: one model hops
  between the workers' minibatches, one step each, with the momentum kept here on the
  server, which makes it exactly SGD with momentum over the interleaved batches.
"""
from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence

import torch

from fedlearn.aggregation.server_side import ServerSide
from fedlearn.config import ExperimentConfig, registered
from fedlearn.execution import ClientExecutor, Sequential
from fedlearn.server.optimizers import ServerOptimizer
from fedlearn.server.record import TrainingReport, WorkerReply
from fedlearn.server.rounds import aggregate, model_hopping_round
from fedlearn.server.secure_rounds import SecAggFailed, SecureRound, setup_round, unmask_round
from fedlearn.training import derive_seed
from fedlearn.updates import State, detached_cpu_state, trained
from fedlearn.updates.client_side import RoundOrders, decode, wire_nbytes
from fedlearn.workers.base import Worker
from fedlearn.workers.client_side import ClientSideWorker

Chosen = Sequence[tuple[int, Worker]]  # (index in the federation, worker)


class Strategy:
    """Turns the chosen workers of one round into new global weights; ``executor`` runs the
    clients' calls."""

    def __init__(self, config: ExperimentConfig, executor: ClientExecutor | None = None, *,
                 weights: State, num_workers: int):
        self.config = config
        self.executor = executor or Sequential()

    def round(self, chosen: Chosen, weights: State, round_: int,
              progress: bool = False) -> tuple[State | None, TrainingReport]:
        """New weights (None when fewer than ``min_updates`` valid updates arrived), and
        what the workers' side of the round did."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        """Restore :meth:`state_dict`."""


class FedAvg(Strategy):
    def __init__(self, config: ExperimentConfig, executor: ClientExecutor | None = None, *,
                 weights: State, num_workers: int):
        super().__init__(config, executor, weights=weights, num_workers=num_workers)
        self.optimizer = ServerOptimizer(config.server)
        extras = (config.dp is not None or config.secure_aggregation
                  or config.compression.method != "none")
        self.server_side = (ServerSide(config, num_workers=num_workers,
                                       per_round=config.workers_per_round(num_workers))
                            if extras else None)
        self.secure: SecureRound | None = None  # the round in progress, under secure aggregation
        self.left_out: dict[str, str] = {}  # clients secure aggregation's setup dropped, and why

    def configure_fit(self, round_: int, chosen: Chosen) -> list[tuple[Worker, int]]:
        """Each client's call: its seed from (seed, round, index); a client side gets its
        orders. Under secure aggregation the protocol's first two stages run here
        (:func:`~fedlearn.server.secure_rounds.setup_round`): only the clients that finished
        them are called, and :attr:`left_out` says why the others are not."""
        seed = self.config.seed
        masking = self._setup_secure(round_, chosen) if self.config.secure_aggregation else None
        jobs = []
        for i, worker in chosen:
            if worker.name in self.left_out:
                continue
            if isinstance(worker, ClientSideWorker):
                worker.configure(RoundOrders(round_, derive_seed(seed, round_, 10_000 + i),
                                             masking))
            jobs.append((worker, derive_seed(seed, round_, i)))
        return jobs

    def _setup_secure(self, round_: int, chosen: Chosen):
        participants = [w for _, w in chosen if isinstance(w, ClientSideWorker)]
        if len(participants) != len(chosen):
            raise ValueError("secure aggregation: every client needs its client side "
                             "(fedlearn.workers.with_client_sides)")
        runs = {w.secagg_run for w in participants}
        if len(runs) != 1:
            raise ValueError(f"secure aggregation: the clients belong to different runs {runs}")
        # a fresh round id per attempt: a client masks one input per id (a retried round,
        # or a resumed one, is a new id; the masks never change the sum)
        context = f"{runs.pop()}|{round_}|{secrets.token_hex(8)}"
        try:
            self.secure = setup_round(participants, context, self.config.secagg)
        except SecAggFailed as exc:
            self.secure = None
            self.left_out = {w.name: exc.dropped.get(w.name, str(exc)) for w in participants}
            return None
        self.left_out = dict(self.secure.dropped)
        return self.secure.orders

    def aggregate_fit(self, round_: int, chosen: Chosen, replies: Sequence[WorkerReply | None],
                      weights: State) -> tuple[State | None, TrainingReport]:
        """The new weights from the valid replies, and the round's report."""
        cfg, report = self.config, TrainingReport()
        arrived = []
        for (_, worker), reply in zip(chosen, replies):
            if reply is None:  # never called: dropped by secure aggregation's setup
                reply = WorkerReply(None, 0, failed=self.left_out[worker.name])
            report.count(worker.name, reply)
            if reply.update is None:
                continue
            # what crossed the wire, counted as a compact format carries it
            report.bytes_up[worker.name] = wire_nbytes(reply.update, cfg.compression.bits)
            update = decode(reply.update, weights)
            report.train_loss[worker.name] = update.metrics.get("loss")
            report.examples[worker.name] = update.num_examples
            if "epsilon" in update.metrics:  # a DP-SGD worker's own, cumulative epsilon
                report.worker_epsilon = {**(report.worker_epsilon or {}),
                                         worker.name: update.metrics["epsilon"]}
            arrived.append(update)
        if len(arrived) < cfg.robustness.min_updates:
            return None, report
        if self.server_side is None:
            return self.optimizer.step(weights, aggregate(arrived, cfg.robustness)), report
        secure, survivors = self.secure, [w for _, w in chosen]

        def unmask(masked):
            if secure is None:
                raise SecAggFailed("secure aggregation: the round's setup failed")
            return unmask_round(secure, survivors, masked)

        noise = torch.Generator().manual_seed(derive_seed(cfg.seed, round_, 2 ** 31))
        try:
            delta, extra = self.server_side.combine(arrived, [w.name for _, w in chosen],
                                                    weights, round_, noise, unmask)
        except SecAggFailed as exc:  # too few clients left to unmask: no aggregate this round
            report.secure_aggregation = {"failed": str(exc), "dropped": exc.dropped}
            return None, report
        return self.optimizer.step(weights, delta), dataclasses.replace(report, **extra)

    def round(self, chosen, weights, round_, progress=False):
        jobs = self.configure_fit(round_, chosen)
        replies = iter(self.executor.fit(jobs, weights, self.config.plan,
                                         self.config.robustness, round_) if jobs else [])
        called = {w.name for w, _ in jobs}
        return self.aggregate_fit(round_, chosen, [next(replies) if w.name in called else None
                                                  for _, w in chosen], weights)

    def state_dict(self) -> dict:
        state: dict = {"server_state": self.optimizer.state_dict()}
        if self.server_side is not None:
            state["server_side"] = self.server_side.state_dict()
        return state

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.optimizer.load_state_dict(state.get("server_state", {}), device)
        if self.server_side is not None:
            self.server_side.load_state_dict(state.get("server_side", {}))


class ModelHopping(Strategy):
    def __init__(self, config: ExperimentConfig, executor: ClientExecutor | None = None, *,
                 weights: State, num_workers: int):
        if executor is not None and not isinstance(executor, Sequential):
            raise ValueError(f"executor: model hopping visits one batch at a time, one client "
                             f"after the other; {executor.name!r} cannot run it")
        super().__init__(config, executor, weights=weights, num_workers=num_workers)
        self.velocity = {k: torch.zeros_like(v) for k, v in trained(weights).items()}

    def round(self, chosen, weights, round_, progress=False):
        cfg = self.config
        outcome, report = model_hopping_round(chosen, weights, self.velocity, cfg.plan,
                                              cfg.robustness, cfg.seed, round_, progress)
        if outcome is None:
            return None, report
        new, self.velocity = outcome
        return new, report

    def state_dict(self) -> dict:
        return {"velocity": detached_cpu_state(self.velocity)}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if "velocity" in state:
            self.velocity = {k: v.to(device) for k, v in state["velocity"].items()}


# The registry of algorithms, by the name federation.algorithm takes (its Literal,
# fedlearn.config.Algorithm, lists the same names: tests/test_registries.py).
STRATEGIES: dict[str, type[Strategy]] = {"fedavg": FedAvg, "model_hopping": ModelHopping}


def make_strategy(config: ExperimentConfig, weights: State,
                  executor: ClientExecutor | None = None, *, num_workers: int = 1) -> Strategy:
    """The strategy ``config.federation.algorithm`` names; unknown names raise."""
    cls = registered(STRATEGIES, config.federation.algorithm, "algorithm")
    return cls(config, executor, weights=weights, num_workers=num_workers)
