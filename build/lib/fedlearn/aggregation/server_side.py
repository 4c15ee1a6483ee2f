"""The server's side of the update path: aggregate what arrived, then noise (DP).

The clients have already clipped, compressed and masked their updates where they run
(:mod:`fedlearn.updates.client_side`); the server holds only what crossed the wire — plain or
decoded changes, or masked vectors — and the aggregate. Individual updates live only inside
one call of :meth:`ServerSide.combine`, never in the server's state, history or checkpoints.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fedlearn.aggregation import fedavg
from fedlearn.config import ExperimentConfig
from fedlearn.updates.client_side import masked_vector
from fedlearn.updates.privacy import CentralPrivacy, dp_average
from fedlearn.updates.secagg import unflatten
from fedlearn.updates.update import Update

# unmask(masked vectors by client) -> (their plain sum, what the round's record says of it):
# secure aggregation's last stage (fedlearn.server.secure_rounds.unmask_round)
Unmask = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, dict]]


def secure_mean(total: np.ndarray, reference: Mapping[str, torch.Tensor],
                fixed_denominator: int | None = None) -> dict[str, torch.Tensor]:
    """The aggregate behind the unmasked sum of vectors [w·Δ, w]: divided by the summed weight
    (its last slot), or by ``fixed_denominator`` (DP-FedAvg's number of clients sampled)."""
    denominator = fixed_denominator if fixed_denominator is not None else total[-1]
    return unflatten(total[:-1] / denominator, reference)


class ServerSide:
    """Combines a round's uploads — the plain example-weighted mean, DP-FedAvg's fixed
    denominator, or the secure sum — then adds DP noise and counts the privacy spent."""

    def __init__(self, config: ExperimentConfig, *, num_workers: int, per_round: int):
        self.config = config
        self.privacy = (CentralPrivacy(config.dp, sample_rate=per_round / num_workers,
                                       rounds=config.federation.rounds)
                        if config.dp is not None else None)

    def combine(self, arrived: Sequence[Update], selected: Sequence[str],
                reference: Mapping[str, torch.Tensor], round_: int, generator: torch.Generator,
                unmask: Unmask | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The aggregate of ``arrived`` out of ``selected``, and what the round's record says
        of it (the privacy spent, the masking)."""
        report: dict[str, Any] = {}
        dp = self.privacy is not None
        if self.config.secure_aggregation:
            if unmask is None:
                raise ValueError("secure aggregation: nobody to unmask the round's inputs")
            bits = self.config.secagg.ring_bits
            total, report["secure_aggregation"] = unmask(
                {u.worker: masked_vector(u, bits) for u in arrived})
            aggregate = secure_mean(total, reference, len(selected) if dp else None)
        elif dp:
            aggregate = dp_average([u.delta for u in arrived], len(selected))
        else:
            aggregate = fedavg([u.delta for u in arrived], [u.num_examples for u in arrived])
        if self.privacy is not None:
            aggregate = self.privacy.add_noise(aggregate, len(selected), generator)
            report["epsilon"] = self.privacy.epsilon()
            report["noise_multiplier"] = self.privacy.noise_multiplier
        return aggregate, report

    def state_dict(self) -> dict:
        """The server's part: the privacy accountant. No client's update or residual is in it."""
        return {"privacy": self.privacy.state_dict() if self.privacy else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.privacy is not None and state.get("privacy"):
            self.privacy.load_state_dict(state["privacy"])
