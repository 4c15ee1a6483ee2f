"""Secure aggregation's four stages, driven from the server: the server only relays.

Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(CCS), §4, with each client's secrets derived on its side from a long-term key it keeps
(:mod:`fedlearn.secagg_portable`), so a Datasite needs no state between the stages:

0. **advertise keys** — every selected client answers its two public keys for the round
   (clients that do not answer are out: U1);
1. **share keys** — each client of U1 Shamir-shares its mask-agreement key and its
   self-mask seed, t of n, encrypted to each peer; the server relays the ciphertexts
   (those that answer: U2);
2. **masked input** — each client of U2 trains and uploads ``[w·Δ, w]`` quantized into the
   ring plus its self mask and its pairwise masks with U2 (the executor runs this as the
   round's ordinary ``fit``; those that arrive: U3);
3. **unmask** — each survivor decrypts what the others shared with it and reveals, per peer,
   exactly one kind of share: of the self-mask seed for a survivor, of the key for a client
   that dropped out. With t of them the server removes every mask and holds only the sum.

Datasites over HTTP are asked each stage all at once (:mod:`fedlearn.execution.concurrent`),
so a stage takes the slowest owner's time, not the sum of all. A stage a client fails (an
exception, a refusal) drops that client, as a network would; fewer
than t clients left at any stage ends the round without an aggregate (:class:`SecAggFailed`).
A participant is anything with ``secagg_keys``, ``secagg_share`` and ``secagg_reveal``: an
in-process client side (:class:`fedlearn.updates.client_side.ClientSide`) or a Datasite, whose
approved code does the same on the owner's server.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fedlearn.aggregation.secagg_unmask import unmask_sum
from fedlearn.config import SecAggConfig
from fedlearn.errors import FedlearnError
from fedlearn.execution.concurrent import all_at_once
from fedlearn.secagg_portable import secagg_scale
from fedlearn.updates.secagg import MaskingOrders


class SecAggFailed(FedlearnError):
    """Too few clients were left at a stage of secure aggregation to finish the round."""

    def __init__(self, message: str, dropped: Mapping[str, str] | None = None):
        super().__init__(message)
        self.dropped = dict(dropped or {})  # who dropped out, and at which stage


class Participant(Protocol):
    name: str

    def secagg_keys(self, context: str) -> dict[str, str]: ...

    def secagg_share(self, context: str, roster: Mapping[str, Mapping[str, str]],
                     threshold: int) -> dict[str, str]: ...

    def secagg_reveal(self, context: str, roster: Mapping[str, Mapping[str, str]],
                      ciphertexts: Mapping[str, str], survivors: Sequence[str],
                      dropped: Sequence[str], threshold: int) -> dict: ...


@dataclass
class SecureRound:
    """One round's relayed state on the server: public keys and ciphertexts, never a secret."""

    context: str
    threshold: int
    orders: MaskingOrders
    ciphertexts: dict[str, dict[str, str]]  # recipient -> sender -> ciphertext
    dropped: dict[str, str] = field(default_factory=dict)  # name -> the stage it failed

    @property
    def roster(self) -> Mapping[str, Mapping[str, str]]:
        return self.orders.roster


def _attempt(stage: str, participants, call, dropped: dict[str, str]) -> dict:
    """Each participant's answer to a stage; Datasites over HTTP are asked all at once."""
    def answer(p):
        try:
            return call(p), None
        except Exception as exc:  # a client that fails a stage drops out, as over a network
            return None, f"{stage}: {type(exc).__name__}: {exc}"

    remote = all(getattr(p, "waits_on_network", lambda: False)() for p in participants)
    results = (all_at_once if remote else lambda ps, f: [f(p) for p in ps])(participants, answer)
    answers = {}
    for p, (value, failure) in zip(participants, results):
        if failure is None:
            answers[p.name] = value
        else:
            dropped[p.name] = failure
    return answers


def _enough(stage: str, have: int, threshold: int, dropped: Mapping[str, str]) -> None:
    if have < threshold:
        raise SecAggFailed(f"secure aggregation: {have} clients left after {stage}, fewer than "
                           f"the threshold {threshold}", dropped)


def setup_round(participants: Sequence[Participant], context: str, config: SecAggConfig
                ) -> SecureRound:
    """Stages 0 and 1 for ``participants`` (the round's selected clients)."""
    n = len(participants)
    threshold = config.threshold if config.threshold is not None else n // 2 + 1
    dropped: dict[str, str] = {}
    keys = _attempt("advertise keys", participants, lambda p: p.secagg_keys(context), dropped)
    _enough("advertising keys", len(keys), threshold, dropped)
    sharing = [p for p in participants if p.name in keys]
    shared = _attempt("share keys", sharing,
                      lambda p: p.secagg_share(context, keys, threshold), dropped)
    _enough("sharing keys", len(shared), threshold, dropped)
    ciphertexts: dict[str, dict[str, str]] = {name: {} for name in shared}
    for sender, out in shared.items():
        for recipient, text in out.items():
            if recipient in ciphertexts:  # its own too: a client keeps nothing between calls
                ciphertexts[recipient][sender] = text
    orders = MaskingOrders(context, {name: keys[name] for name in shared},
                           secagg_scale(config.value_range, n, config.ring_bits),
                           config.ring_bits, config.value_range)
    return SecureRound(context, threshold, orders, ciphertexts, dropped)


def unmask_round(secure: SecureRound, survivors: Sequence[Participant],
                 masked: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Stage 3: the plain sum of the survivors' inputs, and what the round's record says."""
    names = sorted(masked)
    dropped_late = [n for n in secure.roster if n not in masked]
    _enough("masked input", len(names), secure.threshold, secure.dropped)
    silent: dict[str, str] = {}  # survivors whose shares did not come: their input still counts
    shares = _attempt("unmask", [p for p in survivors if p.name in masked],
                      lambda p: p.secagg_reveal(secure.context, secure.roster,
                                                secure.ciphertexts[p.name], names, dropped_late,
                                                secure.threshold), silent)
    _enough("unmasking", len(shares), secure.threshold, {**secure.dropped, **silent})
    total = unmask_sum(secure.context, secure.roster, masked, shares, secure.threshold,
                       secure.orders.ring_bits, secure.orders.scale)
    report = {"masked_updates": len(names), "dropped": sorted(set(secure.dropped) |
                                                              set(dropped_late)),
              "threshold": secure.threshold, "ring_bits": secure.orders.ring_bits}
    if silent:
        report["no_shares_from"] = sorted(silent)
    return total, report
