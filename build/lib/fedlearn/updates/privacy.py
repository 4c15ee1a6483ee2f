"""Clipping and server-side Gaussian noise: DP-FedAvg with privacy accounting.

McMahan, Ramage, Talwar & Zhang 2018, "Learning Differentially Private Recurrent
Language Models" (DP-FedAvg): each sampled client's update is clipped to L2 norm
at most C; the server averages the clipped updates over the number of sampled
clients and adds Gaussian noise of standard deviation z * C / m to the average.
Each round is one step of the sampled Gaussian mechanism with sampling rate
q = m / K; privacy over the whole run is tracked by Opacus's RDP accountant
(Mironov 2017, "Rényi Differential Privacy"), one accountant for the run.

The maths are pure functions on dicts of tensors; :class:`CentralPrivacy` keeps
the run's accountant and its state for checkpoints.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch

from fedlearn.config import DPConfig
from fedlearn.portable import clip_change
from fedlearn.updates.update import State, cast_like, is_counter
from fedlearn.updates.update import update_norm as global_norm


def clip_update(update: State, max_norm: float) -> tuple[dict[str, torch.Tensor], float]:
    """Scale ``update`` so that its global L2 norm is at most ``max_norm``; return it and the old
    norm. Counters (integer buffers) pass unchanged and outside the norm. The clipping itself is
    :func:`fedlearn.portable.clip_change`, the code a Datasite's approved function runs too."""
    if not max_norm > 0:
        raise ValueError(f"clip_norm: must be > 0 (got {max_norm!r})")
    return clip_change(dict(update), max_norm), global_norm(update)


def add_gaussian_noise(update: State, std: float,
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
    """update + N(0, std^2) on every floating coordinate, drawn from ``generator`` (CPU);
    counters (integer buffers) are left as they are."""
    if std < 0:
        raise ValueError(f"noise std must be >= 0 (got {std!r})")
    return {k: v if is_counter(v)
            else v + std * torch.randn(v.shape, generator=generator, dtype=torch.float32).to(v)
            for k, v in update.items()}


def dp_average(clipped: Sequence[State], num_sampled: int) -> dict[str, torch.Tensor]:
    """Sum of the clipped updates over the number of clients sampled (a fixed denominator:
    a client that drops out must not change the sensitivity)."""
    keys = clipped[0].keys()
    return {k: cast_like(cast(torch.Tensor, sum(u[k].double() for u in clipped)) / num_sampled,
                         clipped[0][k]) for k in keys}


def noise_std(noise_multiplier: float, clip_norm: float, num_sampled: int) -> float:
    return noise_multiplier * clip_norm / num_sampled


def noise_for_target_epsilon(target_epsilon: float, delta: float, sample_rate: float,
                             rounds: int) -> float:
    """The smallest noise multiplier whose RDP epsilon after ``rounds`` is <= the target."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                      sample_rate=sample_rate, steps=rounds, accountant="rdp"))


class CentralPrivacy:
    """DP-FedAvg state for one run: the noise multiplier and ONE accountant, never reset."""

    def __init__(self, config: DPConfig, *, sample_rate: float, rounds: int):
        from opacus.accountants import RDPAccountant

        self.config = config
        self.sample_rate = sample_rate
        if config.noise_multiplier is not None:
            self.noise_multiplier = config.noise_multiplier
        else:
            assert config.target_epsilon is not None  # DPConfig asks for one of the two
            self.noise_multiplier = noise_for_target_epsilon(config.target_epsilon, config.delta,
                                                             sample_rate, rounds)
        self.accountant = RDPAccountant()

    def add_noise(self, average: State, num_sampled: int,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Noise the average of ``num_sampled`` clipped updates and count the round."""
        std = noise_std(self.noise_multiplier, self.config.clip_norm, num_sampled)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        return add_gaussian_noise(average, std, generator)

    def epsilon(self) -> float:
        """The run's ε at δ so far: 0 before the first round, infinite once a round had no
        noise (z = 0: clipping alone bounds nothing; asked, Opacus warns and says the same)."""
        history = self.accountant.history
        if not history:
            return 0.0
        if any(noise == 0 for noise, _, _ in history):
            return math.inf
        return float(self.accountant.get_epsilon(delta=self.config.delta))

    def state_dict(self) -> dict:
        return {"noise_multiplier": self.noise_multiplier,
                "history": [list(h) for h in self.accountant.history]}

    def load_state_dict(self, state: dict) -> None:
        self.noise_multiplier = float(state["noise_multiplier"])
        self.accountant.history = [tuple(h) for h in state["history"]]
