"""The client's side of a round — clip, compress, mask — and what the server does with it.

Where the client runs (its process, its Ray actor), its update goes through, in order:

1. **clip** to L2 norm ``dp.clip_norm`` (DP-FedAvg, McMahan et al. 2018), so no single
   client's contribution exceeds the bound the server's noise is calibrated to;
2. **compress** (:mod:`fedlearn.updates.compression`): stochastic quantization, or top-k with
   the residual kept here, on the client, for the next round (Stich et al. 2018);
3. **mask** (Bonawitz et al. 2017; :mod:`fedlearn.secagg_portable`): the client's round
   secrets are derived from a long-term key it alone holds; the server relays public keys and
   encrypted Shamir shares (:mod:`fedlearn.server.secure_rounds`), and what leaves the client
   is ``[w·Δ, w]`` quantized into the ring plus its self mask and pairwise masks (w = its
   example count, or 1 under DP's fixed denominator).

What crosses the wire is then an :class:`~fedlearn.updates.Update` whose ``encoding`` says
what it holds — ``"delta"`` (a plain weight change), ``"compressed"`` (the payload, decoded by
the server with :func:`decode`) or ``"masked"`` (a vector the server can only add to others);
:func:`wire_nbytes` counts what a compact wire format would carry.
"""
from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedlearn.config import ExperimentConfig
from fedlearn.secagg_portable import (
    secagg_mask,
    secagg_public_keys,
    secagg_ring_dtype,
    secagg_share_keys,
    secagg_unmask_shares,
)
from fedlearn.updates.compression import UpdateCompressor, payload_nbytes
from fedlearn.updates.privacy import clip_update
from fedlearn.updates.secagg import MaskingOrders, SecAggLedger, flatten
from fedlearn.updates.update import State, Update, state_nbytes


@dataclass(frozen=True)
class RoundOrders:
    """What the server asks of one client this round, beside the weights and the seed (after
    Flower's ``FitIns.config``): the seed of its stochastic rounding, and under secure
    aggregation what it needs to mask its input."""

    round: int
    wire_seed: int
    secagg: MaskingOrders | None = None


class ClientSide:
    """One client's clip → compress → mask, with the state it keeps between rounds: its top-k
    residual, its secure-aggregation key and ledger (none of which ever leaves the client)."""

    def __init__(self, name: str, config: ExperimentConfig, *, clip: bool = True,
                 compress: bool = True):
        """``clip=False``, ``compress=False``: the update arrives clipped, or compressed,
        already (where it was trained)."""
        self.name, self.config, self.clip = name, config, clip
        self.compressor = (UpdateCompressor(config.compression)
                           if config.compression.method != "none" and compress else None)
        # the long-term secret every round's keys, seeds and shares are derived from
        self._master = secrets.token_bytes(32) if config.secure_aggregation else None
        self.ledger = SecAggLedger()

    def _key(self) -> bytes:
        if self._master is None:
            raise RuntimeError(f"client {self.name!r}: secure aggregation is off")
        return self._master

    def secagg_keys(self, context: str) -> dict[str, str]:
        """Stage 0: this round's public keys, derived here from the client's own secret."""
        return secagg_public_keys(self._key(), context)

    def secagg_share(self, context: str, roster: Mapping[str, Mapping[str, str]],
                     threshold: int) -> dict[str, str]:
        """Stage 1: this client's shares for each peer, encrypted to that peer."""
        return secagg_share_keys(self._key(), context, self.name, _plain(roster), threshold)

    def secagg_reveal(self, context: str, roster: Mapping[str, Mapping[str, str]],
                      ciphertexts: Mapping[str, str], survivors: Sequence[str],
                      dropped: Sequence[str], threshold: int) -> dict:
        """Stage 3: one kind of share per peer, never both (the ledger remembers)."""
        self.ledger.record_reveal(context, self.name, survivors, dropped)
        return secagg_unmask_shares(self._key(), context, self.name, _plain(roster),
                                    dict(ciphertexts), list(survivors), list(dropped), threshold)

    def encode(self, update: Update, orders: RoundOrders) -> Update:
        """``update`` as it leaves the client: clipped, compressed, masked as configured."""
        if update.encoding in ("masked", "compressed"):  # where it was trained (a Datasite)
            return update
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
        if orders.secagg is None:
            raise RuntimeError(f"client {self.name!r}: secure aggregation without the round's "
                               "public keys")
        weight = 1.0 if self.config.dp is not None else float(update.num_examples)
        vector = np.append(flatten(delta) * weight, weight)  # the last slot carries the weight
        sa = orders.secagg
        self.ledger.record_mask(sa.context, list(sa.roster))
        masked = secagg_mask(self._key(), sa.context, self.name, _plain(sa.roster), vector,
                             value_range=sa.value_range, scale=sa.scale, ring_bits=sa.ring_bits)
        return dataclasses.replace(update, delta={}, encoding="masked",
                                   payload=masked_payload(masked))

    def state_dict(self) -> dict:
        return {"residual": self.compressor.state_dict() if self.compressor else {},
                "secagg_key": self._master.hex() if self._master is not None else None,
                "secagg_ledger": self.ledger.state()}

    def load_state_dict(self, state: dict) -> None:
        if self.compressor is not None:
            self.compressor.load_state_dict(state.get("residual", {}))
        if state.get("secagg_key"):
            self._master = bytes.fromhex(state["secagg_key"])
        self.ledger = SecAggLedger(state.get("secagg_ledger"))


def _plain(roster: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    return {name: dict(keys) for name, keys in roster.items()}


def masked_payload(ring_elements: np.ndarray) -> dict[str, torch.Tensor]:
    """A masked upload's payload: the ring elements as the signed tensor of their width (torch
    has no unsigned 32- and 64-bit tensors)."""
    signed = np.dtype(ring_elements.dtype.str.replace("u", "i"))
    return {"masked": torch.from_numpy(ring_elements.view(signed).copy())}


def masked_vector(update: Update, ring_bits: int) -> np.ndarray:
    """The unsigned ring elements of a masked upload (:func:`masked_payload`'s inverse)."""
    return update.payload["masked"].numpy().view(secagg_ring_dtype(ring_bits))


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
