"""What happens to updates between the workers and the global model, in order:

clip (DP) -> compress -> mask (secure aggregation) -> aggregate -> noise (DP).

The first two run on the worker's side of the link (in the in-process
simulation, on the worker's behalf); masking is done with the worker's own key;
the server only ever sees what crossed the wire — compressed payloads, or masked
vectors when secure aggregation is on — and the aggregate. Individual updates
live only inside one call of :meth:`UpdatePipeline.combine`: they are never
stored in the server's state, history or checkpoints.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fedlearn.aggregation import fedavg
from fedlearn.config import ExperimentConfig
from fedlearn.updates import state_nbytes
from fedlearn.updates.compression import UpdateCompressor, payload_nbytes
from fedlearn.updates.privacy import CentralPrivacy, clip_update, dp_average
from fedlearn.updates.secagg import (
    MaskingClient,
    decode_fixed,
    flatten,
    remove_revealed,
    sum_masked,
    unflatten,
)


class UpdatePipeline:
    def __init__(self, config: ExperimentConfig, *, num_workers: int, per_round: int):
        self.config = config
        self.privacy = (CentralPrivacy(config.dp, sample_rate=per_round / num_workers,
                                       rounds=config.federation.rounds)
                        if config.dp is not None else None)
        self.compressors: dict[str, UpdateCompressor] = {}

    def upload(self, name: str, delta: Mapping[str, torch.Tensor],
               generator: torch.Generator) -> tuple[dict[str, torch.Tensor], int]:
        """A worker's side: clip, compress; return what the server decodes, and its bytes."""
        if self.privacy is not None:
            delta, _ = clip_update(delta, self.privacy.config.clip_norm)
        compression = self.config.compression
        if compression.method == "none":
            nbytes = state_nbytes(delta)
        else:
            compressor = self.compressors.setdefault(name, UpdateCompressor(compression))
            payload = compressor.encode(delta, generator)
            nbytes = payload_nbytes(payload, compression.bits)
            delta = UpdateCompressor.decode(payload, delta)
        if self.config.secure_aggregation:
            nbytes = 8 * sum(v.numel() for v in delta.values()) + 8  # dense uint64 + the count
        return dict(delta), nbytes

    def combine(self, arrived: Sequence[tuple[str, Mapping[str, torch.Tensor], int]],
                selected: Sequence[str], reference: Mapping[str, torch.Tensor], round_: int,
                generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Aggregate the uploads of ``arrived`` (name, delta, examples) out of ``selected``.

        Returns the aggregate and what the round's record should say about it (the privacy
        spent, the masking).
        """
        report: dict[str, Any] = {}
        if self.config.secure_aggregation:
            aggregate = self._secure_sum(arrived, selected, reference, round_)
            report["secure_aggregation"] = {
                "masked_updates": len(arrived),
                "dropped": [n for n in selected if n not in {a[0] for a in arrived}]}
        elif self.privacy is not None:
            aggregate = dp_average([a[1] for a in arrived], len(selected))
        else:
            aggregate = fedavg([a[1] for a in arrived], [a[2] for a in arrived])
        if self.privacy is not None:
            aggregate = self.privacy.add_noise(aggregate, len(selected), generator)
            report["epsilon"] = self.privacy.epsilon()
            report["noise_multiplier"] = self.privacy.noise_multiplier
        return aggregate, report

    def _secure_sum(self, arrived, selected, reference, round_):
        # every selected client got the others' public keys before training
        clients = {name: MaskingClient(name) for name in selected}
        keys = {name: c.public_key for name, c in clients.items()}
        dp = self.privacy is not None
        masked = []
        for name, delta, examples in arrived:
            weight = 1.0 if dp else float(examples)
            vector = np.append(flatten(delta) * weight, weight)  # the last slot carries the weight
            masked.append(clients[name].mask(vector, keys, round_))
        total = sum_masked(masked)  # all the server ever holds: masked vectors and this sum
        dropped = [n for n in selected if n not in {a[0] for a in arrived}]
        for d in dropped:
            total = remove_revealed(total, [clients[s].reveal(d, keys[d], len(total), round_)
                                            for s, _, _ in arrived])
        plain = decode_fixed(total)
        denominator = len(selected) if dp else plain[-1]
        return unflatten(plain[:-1] / denominator, reference)

    def state_dict(self) -> dict:
        """The server's part: the privacy accountant. No worker's update is in it."""
        return {"privacy": self.privacy.state_dict() if self.privacy else {}}

    def client_state_dict(self) -> dict:
        """What each simulated worker keeps on its own device: its top-k residual."""
        return {n: c.state_dict() for n, c in self.compressors.items()}

    def load_state_dict(self, state: dict, client_state: dict) -> None:
        if self.privacy is not None and state.get("privacy"):
            self.privacy.load_state_dict(state["privacy"])
        for name, residual in client_state.items():
            compressor = self.compressors.setdefault(name,
                                                     UpdateCompressor(self.config.compression))
            compressor.load_state_dict(residual)
