"""A round's maths and the state it keeps: FedAvg and the tutorial's model hopping.

The loop in :mod:`fedlearn.server.federation` only selects workers and evaluates;
a strategy turns the selected workers into new global weights (after Flower's
``Strategy``: one object owns a round's aggregation and its state).

- :class:`FedAvg` — McMahan et al. 2017, Algorithm 1: each selected worker trains
  locally from the global weights; the valid updates are aggregated (example-weighted
  mean, or a robust rule, through the update pipeline when one is configured) and a
  :class:`~fedlearn.server.optimizers.ServerOptimizer` applies the result.
- :class:`ModelHopping` — the original PySyft tutorial's federated SGD: one model
  hops between the workers' minibatches, one step each, with the momentum kept here
  on the server, which makes it exactly SGD with momentum over the interleaved batches.
"""
from __future__ import annotations

import torch

from fedlearn.config import ExperimentConfig
from fedlearn.execution import ClientExecutor, Sequential
from fedlearn.server.optimizers import ServerOptimizer
from fedlearn.server.record import TrainingReport
from fedlearn.server.rounds import fedavg_round, model_hopping_round
from fedlearn.updates import State, detached_cpu_state, trained


class Strategy:
    """Turns the chosen workers of one round into new global weights; ``executor`` runs the
    clients' calls (:mod:`fedlearn.execution`)."""

    def __init__(self, config: ExperimentConfig, pipeline=None,
                 executor: ClientExecutor | None = None):
        self.config, self.pipeline = config, pipeline
        self.executor = executor or Sequential()

    def round(self, chosen, weights: State, round_: int,
              progress: bool = False) -> tuple[State | None, TrainingReport]:
        """New weights (None when fewer than ``min_updates`` valid updates arrived), and
        what the workers' side of the round did."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        """Restore :meth:`state_dict`."""


class FedAvg(Strategy):
    def __init__(self, config: ExperimentConfig, pipeline=None,
                 executor: ClientExecutor | None = None):
        super().__init__(config, pipeline, executor)
        self.optimizer = ServerOptimizer(config.server)

    def round(self, chosen, weights, round_, progress=False):
        cfg = self.config
        delta, report = fedavg_round(chosen, weights, cfg.plan, cfg.robustness, cfg.seed,
                                     round_, self.pipeline, self.executor)
        return (None if delta is None else self.optimizer.step(weights, delta)), report

    def state_dict(self) -> dict:
        return {"server_state": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.optimizer.load_state_dict(state.get("server_state", {}), device)


class ModelHopping(Strategy):
    def __init__(self, config: ExperimentConfig, pipeline=None, *, weights: State):
        super().__init__(config, pipeline)
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


STRATEGIES = {"fedavg": FedAvg, "model_hopping": ModelHopping}


def make_strategy(config: ExperimentConfig, weights: State, pipeline=None,
                  executor: ClientExecutor | None = None) -> Strategy:
    """The strategy ``config.federation.algorithm`` names; unknown names raise."""
    algorithm = config.federation.algorithm
    if algorithm == "model_hopping":
        if executor is not None and not isinstance(executor, Sequential):
            raise ValueError(f"executor: model hopping visits one batch at a time, one client "
                             f"after the other; {executor.name!r} cannot run it")
        return ModelHopping(config, pipeline, weights=weights)
    if algorithm == "fedavg":
        return FedAvg(config, pipeline, executor)
    raise ValueError(f"algorithm: unknown {algorithm!r}; allowed: {', '.join(STRATEGIES)}")
