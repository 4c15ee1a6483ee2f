"""The scientist's side of secure aggregation: the sum of the survivors' updates, unmasked.

Bonawitz et al., CCS 2017, "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", Fig. 4, Unmasking (server): sum the masked vectors of the survivors U3 in
Z_{2^ring_bits}; rebuild each survivor's self-mask seed ``b`` and each drop-out's (U2 \\ U3)
pairwise-mask key ``s_sk`` from at least t Shamir shares; remove PRG(b) and the drop-outs'
pairwise masks with the survivors; decode. The owners' side, and the PRG, Shamir and decoding
this module reuses, are in :mod:`fedlearn.secagg_portable`: both ends run the same code.
"""
from collections.abc import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedlearn.secagg_portable import (
    secagg_decode,
    secagg_lagrange_zero,
    secagg_pair_mask,
    secagg_prg,
    secagg_ring_dtype,
)


def reconstruct_secret(shares: Sequence[Sequence], threshold: int, whose: str) -> bytes:
    """The 32-byte secret behind Shamir shares ``[x, hex y]``; needs at least ``threshold``.

    Interpolates through every share given: consistent extra shares do not change f(0),
    and a result that is not a 32-byte value means the shares do not fit one polynomial.
    """
    if len(shares) < threshold:
        raise ValueError(f"secagg: {len(shares)} shares of {whose}'s secret, fewer than the "
                         f"threshold {threshold}")
    secret = secagg_lagrange_zero([(int(x), int(y, 16)) for x, y in shares])
    if secret >= 2 ** 256:
        raise ValueError(f"secagg: the shares of {whose}'s secret are inconsistent")
    return secret.to_bytes(32, "big")


def _collect(shares: Mapping[str, Mapping], kind: str, owner: str) -> list:
    return [answer[kind][owner] for _, answer in sorted(shares.items())
            if owner in answer.get(kind, {})]


def unmask_sum(context: str, roster_u2: Mapping[str, Mapping[str, str]],
               masked: Mapping[str, np.ndarray], shares: Mapping[str, Mapping],
               threshold: int, ring_bits: int, scale: float) -> np.ndarray:
    """The float64 sum of the survivors' (quantized) vectors.

    ``masked``: the survivors' (U3) masked vectors, by owner. ``shares``: each responder's
    answer from :func:`~fedlearn.secagg_portable.secagg_unmask_shares`. Every owner of U2 not in
    ``masked`` is a drop-out whose pairwise masks are removed. Raises ValueError for a
    responder outside U3, an owner both masked and treated as dropped, an owner with fewer than
    ``threshold`` shares, or a rebuilt key that does not match its advertised public key.
    """
    survivors, dropped = sorted(masked), sorted(set(roster_u2) - set(masked))
    # t > |U1|/2 >= |U2|/2 (U2 is part of U1): a smaller t was never accepted at ShareKeys
    if not len(roster_u2) / 2 < threshold:
        raise ValueError(f"secagg: threshold {threshold} is not a majority of U2's "
                         f"{len(roster_u2)} owners")
    if not survivors or not set(survivors) <= set(roster_u2):
        raise ValueError(f"secagg: the masked vectors must come from U2 {sorted(roster_u2)}, "
                         f"got {survivors}")
    if not set(shares) <= set(survivors):
        raise ValueError(f"secagg: responders {sorted(set(shares) - set(survivors))} sent no "
                         f"masked vector")
    for responder, answer in shares.items():
        both = set(answer.get("s", {})) & set(survivors)
        if both or set(answer.get("b", {})) & set(dropped):
            raise ValueError(f"secagg: {responder!r} answered with the wrong kind of share for "
                             f"{sorted(both) or 'a drop-out'}: an owner is either masked "
                             f"(its b) or dropped (its s_sk), never both")
    dtype = secagg_ring_dtype(ring_bits)
    lengths = {len(masked[u]) for u in survivors}
    if len(lengths) != 1 or any(np.asarray(masked[u]).dtype != dtype for u in survivors):
        raise ValueError(f"secagg: the masked vectors must be {np.dtype(dtype)} of one length, "
                         f"got lengths {sorted(lengths)}")
    (length,) = lengths
    total: np.ndarray = np.zeros(length, dtype=dtype)
    for u in survivors:
        total = total + masked[u]
    for u in survivors:
        b = reconstruct_secret(_collect(shares, "b", u), threshold, u)
        total = total - secagg_prg(b, length, ring_bits)
    for v in dropped:
        s_sk = reconstruct_secret(_collect(shares, "s", v), threshold, v)
        s_pk = X25519PrivateKey.from_private_bytes(s_sk).public_key().public_bytes_raw().hex()
        if s_pk != roster_u2[v]["s_pk"]:
            raise ValueError(f"secagg: the key rebuilt from the shares of {v!r} does not match "
                             f"its advertised s_pk")
        for u in survivors:
            total = total - secagg_pair_mask(s_sk, roster_u2[u]["s_pk"], context, u, v,
                                             length, ring_bits)
    return secagg_decode(total, scale)
