"""Secure aggregation on the client's side: the vector it masks, and what it has revealed.

The protocol's cryptography is :mod:`fedlearn.secagg_portable` (Bonawitz et al. 2017 with
X25519, HKDF, AES-GCM, Shamir shares and ChaCha20 masks), the same source a Datasite's approved
code inlines; the server's stages are :mod:`fedlearn.server.secure_rounds`. What is left here is
what a client must remember between calls, because the protocol's secrecy rests on it
(Bonawitz et al. §4, "the server must not learn both shares"):

- it masks **one input per round**: two masked inputs for the same round (context) differ by
  the difference of the two updates, masks and all cancelling;
- for each peer it reveals **one kind of share per round**: the self-mask seed's share of a
  survivor, or the key's share of a client that dropped out — both would unmask that peer;
- it never masks the same global weights twice with a different set of clients: the two sums
  would differ by the updates of the clients in one set only (a differencing attack).

:class:`SecAggLedger` keeps these facts as plain data, so an in-process client keeps it in its
state and a Datasite in its persisted state (:mod:`fedlearn.backends.pysyft.state`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedlearn.errors import FedlearnError
from fedlearn.updates.update import cast_like


class SecAggRefused(FedlearnError):
    """A call that would let the server learn more than the sum (see the module's rules)."""


@dataclass(frozen=True)
class MaskingOrders:
    """What a client needs to mask its input (the protocol's stage 2), relayed by the server
    with its round orders: the context (run and round), the public keys of the clients that
    shared theirs (U2), and the ring."""

    context: str
    roster: Mapping[str, Mapping[str, str]]
    scale: float
    ring_bits: int
    value_range: float


def flatten(state: Mapping[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([v.detach().cpu().double().numpy().ravel() for v in state.values()])


def unflatten(vector: np.ndarray, reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for k, ref in reference.items():
        n = ref.numel()
        out[k] = cast_like(torch.from_numpy(vector[start:start + n].copy()).reshape(ref.shape),
                           ref)
        start += n
    return out


class SecAggLedger:
    """What one client has masked and revealed, by round context (plain data: :meth:`state`)."""

    def __init__(self, state: Mapping | None = None):
        state = state or {}
        self.masked: dict[str, list[str]] = {k: list(v) for k, v in
                                             state.get("masked", {}).items()}
        self.weights: dict[str, str] = dict(state.get("weights", {}))  # context -> digest
        self.revealed: dict[str, dict[str, str]] = {k: dict(v) for k, v in
                                                    state.get("revealed", {}).items()}

    def state(self) -> dict:
        return {"masked": {k: list(v) for k, v in self.masked.items()},
                "weights": dict(self.weights),
                "revealed": {k: dict(v) for k, v in self.revealed.items()}}

    def mask_refusal(self, context: str, roster: Sequence[str],
                     weights_digest: str | None = None) -> str | None:
        """Why masking an input for ``context`` with ``roster`` (U2) must be refused, or None."""
        if context in self.masked:
            return (f"an input was already masked for round {context!r}: a second one would "
                    "reveal the difference of the two updates")
        if weights_digest is not None:
            for earlier, digest in self.weights.items():
                if digest == weights_digest and sorted(self.masked[earlier]) != sorted(roster):
                    return (f"these weights were already masked in round {earlier!r} with "
                            f"clients {sorted(self.masked[earlier])}: a sum over "
                            f"{sorted(roster)} would reveal the difference")
        return None

    def record_mask(self, context: str, roster: Sequence[str],
                    weights_digest: str | None = None) -> None:
        reason = self.mask_refusal(context, roster, weights_digest)
        if reason is not None:
            raise SecAggRefused(reason)
        self.masked[context] = sorted(roster)
        if weights_digest is not None:
            self.weights[context] = weights_digest

    def reveal_refusal(self, context: str, me: str, survivors: Sequence[str],
                       dropped: Sequence[str]) -> str | None:
        """Why revealing shares for ``survivors`` (self-mask) and ``dropped`` (key) in
        ``context`` must be refused, or None."""
        if context not in self.masked:
            return f"no input was masked here for round {context!r}: nothing to unmask"
        both = sorted(set(survivors) & set(dropped))
        if both:
            return f"{both} named both as survivors and as dropped: that unmasks them"
        if me not in survivors:
            return f"{me} masked its input for round {context!r} but is named dropped"
        roster = set(self.masked[context])
        if set(survivors) | set(dropped) != roster:
            return (f"survivors and dropped must be exactly the round's clients "
                    f"{sorted(roster)} (got {sorted(set(survivors) | set(dropped))})")
        before = self.revealed.get(context, {})
        for peer in survivors:
            if before.get(peer) == "s":
                return f"{peer}'s key share was revealed in round {context!r}: not its seed's too"
        for peer in dropped:
            if before.get(peer) == "b":
                return f"{peer}'s seed share was revealed in round {context!r}: not its key's too"
        return None

    def record_reveal(self, context: str, me: str, survivors: Sequence[str],
                      dropped: Sequence[str]) -> None:
        reason = self.reveal_refusal(context, me, survivors, dropped)
        if reason is not None:
            raise SecAggRefused(reason)
        kinds = self.revealed.setdefault(context, {})
        kinds.update({p: "b" for p in survivors if p != me})
        kinds.update({p: "s" for p in dropped})
