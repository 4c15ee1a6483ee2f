"""The client's side of a round — clip, compress, mask — and what the server does with it.

Where the client runs (its process, its Ray actor), its update goes through, in order:

1. **clip** to L2 norm ``dp.clip_norm`` (DP-FedAvg, McMahan et al. 2018), so no single
   client's contribution exceeds the bound the server's noise is calibrated to;
2. **compress** (:mod:`fedlearn.updates.compression`): stochastic quantization, or top-k with
   the residual kept here, on the client, for the next round (Stich et al. 2018);
3. **mask** (:mod:`fedlearn.updates.secagg`, after Bonawitz et al. 2017): the client makes
   its own key pair for the round, the server only relays the public keys, and what leaves
   the client is ``encode([w·Δ, w]) + masks`` modulo 2^64 (w = its example count, or 1 under
   DP's fixed denominator).

What crosses the wire is then an :class:`~fedlearn.updates.Update` whose ``encoding`` says
what it holds — ``"delta"`` (a plain weight change), ``"compressed"`` (the payload, decoded by
the server with :func:`decode`) or ``"masked"`` (a vector the server can only add to others);
:func:`wire_nbytes` counts what a compact wire format would carry.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedlearn.config import ExperimentConfig
from fedlearn.updates.compression import UpdateCompressor, payload_nbytes
from fedlearn.updates.privacy import clip_update
from fedlearn.updates.secagg import MaskingClient, flatten
from fedlearn.updates.update import State, Update, state_nbytes


@dataclass(frozen=True)
class RoundOrders:
    """What the server asks of one client this round, beside the weights and the seed (after
    Flower's ``FitIns.config``): the seed of its stochastic rounding, and under secure
    aggregation the public keys of every client selected with it."""

    round: int
    wire_seed: int
    peers: Mapping[str, bytes] | None = None


class ClientSide:
    """One client's clip → compress → mask, with the state it keeps between rounds: its top-k
    residual and the private key of the round in progress (neither ever leaves the client)."""

    def __init__(self, name: str, config: ExperimentConfig, *, clip: bool = True):
        """``clip=False``: the update arrives clipped already (where it was trained)."""
        self.name, self.config, self.clip = name, config, clip
        self.compressor = (UpdateCompressor(config.compression)
                           if config.compression.method != "none" else None)
        self._round_key: tuple[int, bytes] | None = None  # (round, raw X25519 private key)

    def public_key(self, round_: int) -> bytes:
        """A fresh key pair for ``round_`` (made here); its public half, for the server to relay."""
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        self._round_key = (round_, raw)
        return key.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)

    def _masker(self, round_: int) -> MaskingClient:
        if self._round_key is None or self._round_key[0] != round_:
            raise RuntimeError(f"client {self.name!r}: no key pair for round {round_} (the "
                               "server must collect public keys before the masked round)")
        return MaskingClient(self.name, X25519PrivateKey.from_private_bytes(self._round_key[1]))

    def encode(self, update: Update, orders: RoundOrders) -> Update:
        """``update`` as it leaves the client: clipped, compressed, masked as configured."""
        delta: State = update.delta
        if self.config.dp is not None and self.clip:
            delta, _ = clip_update(delta, self.config.dp.clip_norm)
        if self.compressor is not None:
            payload = self.compressor.encode(delta, torch.Generator().manual_seed(
                orders.wire_seed))
            if not self.config.secure_aggregation:
                return dataclasses.replace(update, delta={}, encoding="compressed",
                                           payload=payload)
            delta = UpdateCompressor.decode(payload, delta)  # what it would have sent
        if not self.config.secure_aggregation:
            return dataclasses.replace(update, delta=dict(delta))
        if orders.peers is None:
            raise RuntimeError(f"client {self.name!r}: secure aggregation without the round's "
                               "public keys")
        weight = 1.0 if self.config.dp is not None else float(update.num_examples)
        vector = np.append(flatten(delta) * weight, weight)  # the last slot carries the weight
        masked = self._masker(orders.round).mask(vector, orders.peers, orders.round)
        return dataclasses.replace(update, delta={}, encoding="masked",
                                   payload={"masked": torch.from_numpy(masked.view(np.int64))})

    def reveal(self, dropped: str, dropped_key: bytes, size: int, round_: int) -> np.ndarray:
        """This client's pairwise mask with a client that dropped out of ``round_``."""
        return self._masker(round_).reveal(dropped, dropped_key, size, round_)

    def state_dict(self) -> dict:
        return {"residual": self.compressor.state_dict() if self.compressor else {},
                "round_key": self._round_key}

    def load_state_dict(self, state: dict) -> None:
        if self.compressor is not None:
            self.compressor.load_state_dict(state.get("residual", {}))
        self._round_key = state.get("round_key")


def decode(update: Update, reference: State) -> Update:
    """The server's view of a compressed upload: the weight change it stands for."""
    if update.encoding != "compressed":
        return update
    return dataclasses.replace(update, delta=UpdateCompressor.decode(update.payload, reference),
                               encoding="delta", payload={})


def wire_nbytes(update: Update, bits: int = 8) -> int:
    """Bytes a compact wire format carries for ``update`` as it left the client."""
    if update.encoding == "compressed":
        return payload_nbytes(update.payload, bits)
    if update.encoding == "masked":
        return sum(t.numel() * t.element_size() for t in update.payload.values())
    return state_nbytes(update.delta)
