"""How the server applies the aggregated weight change: FedAvg, FedAvgM, FedAdam.

The aggregate Δ of a round is a "pseudo-gradient" (its negative). FedAvg adds it
(server learning rate 1). FedAvgM (Hsu, Qi & Brown 2019, "Measuring the Effects
of Non-Identical Data Distribution") keeps server momentum v ← βv + Δ and adds
η·v. FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2)
keeps m ← β₁m + (1-β₁)Δ and v ← β₂v + (1-β₂)Δ² and adds η·m / (√v + τ).
Pure functions on state dicts; the state lives in the server's checkpoint. Momentum and
Adam act on the floating entries; a counter (an integer buffer) takes its aggregated change as
it is, so BatchNorm's ``num_batches_tracked`` stays an exact integer under every rule.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from fedlearn.aggregation import apply_delta
from fedlearn.config import ServerOptimizerConfig, registered
from fedlearn.updates.update import State, add_change, is_counter


def fedavg_step(weights: State, delta: State, lr: float = 1.0) -> dict[str, torch.Tensor]:
    return apply_delta(weights, delta, lr)


def momentum_step(weights: State, delta: State, velocity: State | None, *, lr: float,
                  beta: float) -> tuple[dict, dict]:
    velocity = {k: (beta * velocity[k] if velocity else 0) + delta[k] for k in weights
                if not is_counter(weights[k])}
    return apply_delta(weights, {**delta, **velocity}, lr), velocity


def adam_step(weights: State, delta: State, m: State | None, v: State | None, *, lr: float,
              beta1: float, beta2: float, tau: float) -> tuple[dict, dict, dict]:
    keys = [k for k in weights if not is_counter(weights[k])]
    m = {k: (beta1 * m[k] if m else 0) + (1 - beta1) * delta[k] for k in keys}
    v = {k: (beta2 * v[k] if v else 0) + (1 - beta2) * delta[k] ** 2 for k in keys}
    step = {**delta, **{k: lr * m[k] / (v[k].sqrt() + tau) for k in keys}}
    return add_change(weights, step), m, v


def _sgd(weights: State, delta: State, state: dict, cfg: ServerOptimizerConfig):
    return fedavg_step(weights, delta, cfg.learning_rate), state


def _momentum(weights: State, delta: State, state: dict, cfg: ServerOptimizerConfig):
    new, velocity = momentum_step(weights, delta, state.get("velocity"), lr=cfg.learning_rate,
                                  beta=cfg.momentum)
    return new, {"velocity": velocity}


def _adam(weights: State, delta: State, state: dict, cfg: ServerOptimizerConfig):
    new, m, v = adam_step(weights, delta, state.get("m"), state.get("v"), lr=cfg.learning_rate,
                          beta1=cfg.momentum, beta2=cfg.adam_beta2, tau=cfg.adam_tau)
    return new, {"m": m, "v": v}


# The registry of server optimizers, by the name ``server.optimizer`` takes (its Literal,
# fedlearn.config.ServerOptimizerName, lists the same names; tests/test_registries.py).
SERVER_OPTIMIZERS: dict[str, Callable[[State, State, dict, ServerOptimizerConfig],
                                      tuple[dict, dict]]] = {
    "sgd": _sgd, "momentum": _momentum, "adam": _adam}


def server_step(weights: State, delta: State, state: dict,
                cfg: ServerOptimizerConfig) -> tuple[dict, dict]:
    """Apply ``delta`` as ``cfg.optimizer`` says; return new weights and state."""
    return registered(SERVER_OPTIMIZERS, cfg.optimizer, "server optimizer")(weights, delta,
                                                                             state, cfg)


class ServerOptimizer:
    """One of the rules above with the state it keeps between rounds (and checkpoints)."""

    def __init__(self, cfg: ServerOptimizerConfig):
        self.cfg = cfg
        self.state: dict[str, dict[str, torch.Tensor]] = {}

    def step(self, weights: State, delta: State) -> dict[str, torch.Tensor]:
        """Apply one round's aggregate ``delta`` to ``weights``; update the state."""
        new, self.state = server_step(weights, delta, self.state, self.cfg)
        return new

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {k: v.detach().to("cpu", copy=True) for k, v in part.items()}
                for name, part in self.state.items()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.state = {name: {k: v.to(device) for k, v in part.items()}
                      for name, part in state.items()}
