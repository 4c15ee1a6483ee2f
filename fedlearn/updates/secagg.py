"""Secure aggregation by pairwise additive masking.

Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", simplified: every pair of clients (i, j) agrees on a secret
seed by X25519 Diffie-Hellman (the ``cryptography`` package) and HKDF; each
client encodes its weighted update as fixed-point integers modulo 2^64 and adds
the PRG mask of every pair, with opposite signs for i < j and i > j. The masks
cancel in the sum, so the server learns the total and nothing else about any one
update.

Drop-outs: if a client received the public keys but its masked update never
arrives, the surviving clients reveal their pairwise masks with it (not their
own updates), the server removes them, and the total of the survivors is exact.
Without double masking (the full protocol's second mask), a drop-out's late
update must never be accepted afterwards: the server forgets that client for the
round. Fixed-point scale 2^24: each update is exact to 2^-25 per coordinate.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedlearn.updates.update import cast_like

SCALE = 2.0 ** 24


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


def encode_fixed(x: np.ndarray) -> np.ndarray:
    """float64 -> uint64 two's complement fixed point (wraps modulo 2^64)."""
    return np.round(x * SCALE).astype(np.int64).view(np.uint64)


def decode_fixed(u: np.ndarray) -> np.ndarray:
    return u.view(np.int64).astype(np.float64) / SCALE


def prg_mask(seed: bytes, size: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(int.from_bytes(seed, "big"))).integers(
        0, 2 ** 64, size=size, dtype=np.uint64, endpoint=False)


class MaskingClient:
    """A client's side of one round: a fresh key pair, then masking its own update."""

    def __init__(self, name: str, key: X25519PrivateKey | None = None):
        self.name = name
        self._key = key if key is not None else X25519PrivateKey.generate()

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)

    def _pair_mask(self, peer: str, peer_key: bytes, size: int, round_: int) -> np.ndarray:
        shared = self._key.exchange(X25519PublicKey.from_public_bytes(peer_key))
        a, b = sorted((self.name, peer))
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=f"fedlearn-secagg|{round_}|{a}|{b}".encode()).derive(shared)
        mask = prg_mask(seed, size)
        return mask if self.name < peer else (np.uint64(0) - mask)

    def mask(self, vector: np.ndarray, peers: Mapping[str, bytes], round_: int) -> np.ndarray:
        """encode(vector) + sum of the signed pairwise masks with every other peer."""
        masked = encode_fixed(vector)
        for peer, key in peers.items():
            if peer != self.name:
                masked = masked + self._pair_mask(peer, key, len(vector), round_)
        return masked

    def reveal(self, dropped: str, dropped_key: bytes, size: int, round_: int) -> np.ndarray:
        """This client's mask with a peer that dropped out, so the server can remove it."""
        return self._pair_mask(dropped, dropped_key, size, round_)


def sum_masked(masked: Sequence[np.ndarray]) -> np.ndarray:
    """The server's whole job: add the masked vectors modulo 2^64."""
    total = np.zeros_like(masked[0])
    for m in masked:
        total = total + m
    return total


def remove_revealed(total: np.ndarray, revealed: Sequence[np.ndarray]) -> np.ndarray:
    for r in revealed:
        total = total - r
    return total
