"""An owner's side of secure aggregation, as stateless functions shipped inside a code request.

Bonawitz et al., CCS 2017, "Practical Secure Aggregation for Privacy-Preserving Machine
Learning" (Fig. 4, the semi-honest protocol): AdvertiseKeys -> :func:`secagg_public_keys`,
ShareKeys -> :func:`secagg_share_keys`, MaskedInputCollection -> :func:`secagg_mask`,
Unmasking -> :func:`secagg_unmask_shares`. An owner keeps one long-term secret ``master`` (32
random bytes, a private asset of its Datasite) and re-derives every per-round secret from it
with HKDF-SHA256 and ``context`` (``f"{run}|{round_id}"``): the key pairs ``c`` (encrypting
shares) and ``s`` (pairwise masks), the self-mask seed ``b`` and the Shamir coefficients. So the
Datasite keeps no state between calls, and the same inputs always give the same outputs:
repeating a call reveals nothing new. Only public keys and AES-GCM ciphertexts leave it.

Masks are ChaCha20 keystreams under 256-bit keys; updates are quantized into Z_{2^ring_bits}
(16, 32 or 64 bits, two's complement), and a value outside [-value_range, value_range] or not
finite is refused, never clipped. Shamir t-of-n over GF(2^521 - 1) with n/2 < t <= n; owner v's
x-coordinate is 1 + its index in the sorted roster. n >= 2 owners are accepted, but with two
each owner learns the other's update from the sum, and t = 2 tolerates no drop-out.

Like fedlearn/portable.py: the standard library, numpy and ``cryptography`` only, no import of
fedlearn, no module-level state; every name starts ``secagg_`` or ``_sa_`` so the two files can
be inlined side by side. fedlearn.aggregation.secagg_unmask (the scientist's side) imports the
PRG, Shamir and decoding functions from here: both ends run the same code.
"""
import hashlib
import json
import math

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _sa_hkdf(key: bytes, label: str, *parts: str, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869); JSON keeps ``info`` unambiguous whatever the names contain."""
    info = json.dumps(["fedlearn-secagg", label, *parts]).encode()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def _sa_private(master: bytes, label: str, context: str) -> X25519PrivateKey:
    if not isinstance(master, bytes) or len(master) != 32:
        raise ValueError("secagg: the owner's master secret must be 32 bytes")
    return X25519PrivateKey.from_private_bytes(_sa_hkdf(master, label, context))


def _sa_public(hex_key: object, what: str) -> X25519PublicKey:
    try:
        raw = bytes.fromhex(hex_key) if isinstance(hex_key, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"secagg: {what} must be 64 hex digits (an X25519 public key)")
    return X25519PublicKey.from_public_bytes(raw)


def _sa_check_roster(roster: dict, me: str) -> list:
    if me not in roster:
        raise ValueError(f"secagg: {me!r} is not in the roster {sorted(roster)}")
    for name, keys in roster.items():
        _sa_public(keys.get("c_pk"), f"{name}'s c_pk")
        _sa_public(keys.get("s_pk"), f"{name}'s s_pk")
    return sorted(roster)


def secagg_public_keys(master: bytes, context: str) -> dict[str, str]:
    """AdvertiseKeys: this round's public keys ``{"c_pk": hex, "s_pk": hex}``."""
    return {name: _sa_private(master, name, context).public_key().public_bytes_raw().hex()
            for name in ("c_pk", "s_pk")}


def secagg_prime() -> int:
    """The Shamir field's prime, the Mersenne prime 2^521 - 1 (> 2^256: any 32-byte secret)."""
    return 2 ** 521 - 1


def secagg_shamir_eval(coefficients: list[int], x: int) -> int:
    """f(x) mod p for f = coefficients[0] + coefficients[1]·x + ... (Shamir 1979); f(0) is
    the secret."""
    y = 0
    for a in reversed(coefficients):
        y = (y * x + a) % secagg_prime()
    return y


def secagg_lagrange_zero(points: list[tuple[int, int]]) -> int:
    """f(0) from points (x, f(x)) with distinct nonzero x, by Lagrange interpolation mod p."""
    p, xs = secagg_prime(), [x for x, _ in points]
    if len(set(xs)) != len(xs) or any(x % p == 0 for x in xs):
        raise ValueError(f"secagg: share x-coordinates must be distinct and nonzero, got {xs}")
    secret = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num, den = num * xj % p, den * (xj - xi) % p
        secret = (secret + yi * num * pow(den, -1, p)) % p
    return secret


def _sa_share_cipher(master: bytes, context: str, peer_c_pk: str, sender: str,
                     recipient: str) -> tuple[AESGCM, bytes, bytes]:
    """The AES-GCM key for sender -> recipient (one key per direction), its nonce key, the AAD."""
    shared = _sa_private(master, "c_pk", context).exchange(_sa_public(peer_c_pk, "c_pk"))
    aad = json.dumps(["fedlearn-secagg share", context, sender, recipient]).encode()
    return (AESGCM(_sa_hkdf(shared, "enc", context, sender, recipient)),
            _sa_hkdf(shared, "nonce", context, sender, recipient), aad)


def secagg_share_keys(master: bytes, context: str, me: str, roster: dict[str, dict[str, str]],
                      threshold: int) -> dict[str, str]:
    """ShareKeys: t-of-n shares of this owner's ``s_sk`` and ``b``, one ciphertext per owner.

    ``roster`` maps every owner who advertised (U1, ``me`` included) to its public keys.
    Returns ``{v: hex(nonce || AES-GCM ciphertext)}`` for every v in the roster, ``me``
    included (an owner needs its own shares when unmasking, and keeps nothing between calls).
    The Shamir polynomials are derived from master, context, threshold and roster, so a repeat
    call gives identical ciphertexts and a changed roster gives independent polynomials.
    """
    names = _sa_check_roster(roster, me)
    n = len(names)
    if n < 2:
        raise ValueError(f"secagg: needs at least 2 owners, the roster has {n}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) \
            or not n / 2 < threshold <= n:
        raise ValueError(f"secagg: threshold must be an integer with n/2 < t <= n = {n}, "
                         f"got {threshold!r}")
    digest = hashlib.sha256(json.dumps(roster, sort_keys=True).encode()).hexdigest()
    secrets = {"s": _sa_private(master, "s_pk", context).private_bytes_raw(),
               "b": _sa_hkdf(master, "b", context)}
    polys = {kind: [int.from_bytes(secret, "big")] + [
        int.from_bytes(_sa_hkdf(master, "coef", kind, context, str(threshold), digest, str(i),
                                length=80), "big") % secagg_prime()
        for i in range(1, threshold)] for kind, secret in secrets.items()}
    out = {}
    for index, v in enumerate(names):
        x = index + 1
        shares = {kind: [x, format(secagg_shamir_eval(poly, x), "x")]
                  for kind, poly in polys.items()}
        plain = json.dumps({"context": context, "from": me, "to": v, "threshold": threshold,
                            **shares}, sort_keys=True).encode()
        aead, nonce_key, aad = _sa_share_cipher(master, context, roster[v]["c_pk"], me, v)
        # synthetic nonce: a deterministic function of the plaintext, so repeats are identical
        # and two different plaintexts never share a (key, nonce)
        nonce = hashlib.sha256(nonce_key + plain).digest()[:12]
        out[v] = (nonce + aead.encrypt(nonce, plain, aad)).hex()
    return out


def secagg_prg(key: bytes, length: int, ring_bits: int) -> np.ndarray:
    """``length`` words of Z_{2^ring_bits}: the ChaCha20 keystream (RFC 8439) under a 256-bit
    key, counter and nonce zero, read as little-endian words. Every key here is used once."""
    if len(key) != 32:
        raise ValueError(f"secagg: a PRG key is 32 bytes, got {len(key)}")
    dtype = secagg_ring_dtype(ring_bits)
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    stream = encryptor.update(bytes(length * ring_bits // 8))
    return np.frombuffer(stream, dtype=f"<u{ring_bits // 8}").astype(dtype)


def secagg_ring_dtype(ring_bits: int) -> type:
    """The numpy type of Z_{2^ring_bits}: uint16, uint32 or uint64; no other ring."""
    dtypes = {16: np.uint16, 32: np.uint32, 64: np.uint64}
    if ring_bits not in dtypes:
        raise ValueError(f"secagg: ring_bits must be 16, 32 or 64, got {ring_bits!r}")
    return dtypes[ring_bits]


def secagg_pair_key(own_s_sk: bytes, other_s_pk: str, context: str, a: str, b: str) -> bytes:
    """s_{a,b}: the 32-byte mask key of the pair {a, b}. X25519 is symmetric, so either end's
    private key with the other's public key gives the same key."""
    shared = X25519PrivateKey.from_private_bytes(own_s_sk).exchange(
        _sa_public(other_s_pk, "s_pk"))
    return _sa_hkdf(shared, "pair", context, *sorted((a, b)))


def secagg_pair_mask(own_s_sk: bytes, other_s_pk: str, context: str, adder: str, partner: str,
                     length: int, ring_bits: int) -> np.ndarray:
    """The pairwise mask ``adder`` adds for ``partner``: +PRG(s) if adder < partner, else -PRG(s),
    so the pair's two masks cancel in the sum."""
    stream = secagg_prg(secagg_pair_key(own_s_sk, other_s_pk, context, adder, partner),
                        length, ring_bits)
    return stream if adder < partner else np.zeros_like(stream) - stream


def _sa_check_capacity(value_range: float, scale: float, owners: int, ring_bits: int) -> bool:
    secagg_ring_dtype(ring_bits)
    if not (math.isfinite(value_range) and value_range > 0 and math.isfinite(scale)
            and scale > 0 and owners >= 1):
        raise ValueError(f"secagg: need value_range > 0, scale > 0 and owners >= 1, got "
                         f"{value_range!r}, {scale!r}, {owners!r}")
    return owners * math.ceil(value_range * scale) <= 2 ** (ring_bits - 1) - 1


def secagg_scale(value_range: float, owners: int, ring_bits: int) -> float:
    """The largest power of two ``scale`` >= 1 whose sum of ``owners`` quantized values in
    [-value_range, value_range] cannot wrap the signed ring. Each owner rounds by at most
    1/(2·scale), so the decoded sum is off by at most owners/(2·scale) per coordinate (with
    ring_bits 64, plus float64's relative 2^-53). ValueError if even scale 1 does not fit."""
    if not _sa_check_capacity(value_range, 1.0, owners, ring_bits):
        raise ValueError(f"secagg: {owners} values in [-{value_range}, {value_range}] overflow "
                         f"a {ring_bits}-bit ring even at scale 1: use a wider ring")
    k = 0
    while k < 1000 and _sa_check_capacity(value_range, 2.0 ** (k + 1), owners, ring_bits):
        k += 1
    return 2.0 ** k


def secagg_quantize(vector: np.ndarray, value_range: float, scale: float,
                    ring_bits: int) -> np.ndarray:
    """round(value·scale) (half to even) in Z_{2^ring_bits}, two's complement. Refuses, naming
    the first offender, a value that is not finite or outside [-value_range, value_range]."""
    if not _sa_check_capacity(value_range, scale, 1, ring_bits):
        raise ValueError(f"secagg: {value_range} at scale {scale} overflows a {ring_bits}-bit "
                         f"ring")
    values = np.asarray(vector, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"secagg: masks a 1-D vector, got shape {values.shape}")
    bad = ~np.isfinite(values) | (np.abs(values) > value_range)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"secagg: value {values[i]!r} at index {i} is outside the declared "
                         f"range [-{value_range}, {value_range}]; refusing, not clipping")
    q = np.rint(values * scale).astype(np.int64)
    return q.view(np.uint64).astype(secagg_ring_dtype(ring_bits))


def secagg_decode(ring_values: np.ndarray, scale: float) -> np.ndarray:
    """Two's complement ring words back to float64, divided by ``scale``."""
    signed = {np.uint16: np.int16, np.uint32: np.int32, np.uint64: np.int64}
    return ring_values.view(signed[ring_values.dtype.type]).astype(np.float64) / scale


def secagg_mask(master: bytes, context: str, me: str, roster_u2: dict[str, dict[str, str]],
                vector: np.ndarray, *, value_range: float, scale: float,
                ring_bits: int) -> np.ndarray:
    """MaskedInputCollection: y = q + PRG(b) + sum over v in U2, v != me of ±PRG(s_{me,v}).

    ``roster_u2``: the public keys of the owners whose ShareKeys arrived (U2, ``me``
    included); its size bounds the sum, which the ring must hold at this scale.
    """
    if len(_sa_check_roster(roster_u2, me)) < 2:
        raise ValueError("secagg: masking needs at least 2 owners in U2")
    if not _sa_check_capacity(value_range, scale, len(roster_u2), ring_bits):
        raise ValueError(f"secagg: {len(roster_u2)} values in [-{value_range}, {value_range}] "
                         f"at scale {scale} overflow a {ring_bits}-bit ring; see secagg_scale")
    y = secagg_quantize(vector, value_range, scale, ring_bits)
    y = y + secagg_prg(_sa_hkdf(master, "b", context), len(y), ring_bits)
    s_sk = _sa_private(master, "s_pk", context).private_bytes_raw()
    for v in sorted(roster_u2):
        if v != me:
            y = y + secagg_pair_mask(s_sk, roster_u2[v]["s_pk"], context, me, v, len(y),
                                     ring_bits)
    return y


def secagg_unmask_shares(master: bytes, context: str, me: str,
                         roster_u2: dict[str, dict[str, str]], ciphertexts: dict[str, str],
                         survivors: list[str], dropped: list[str], threshold: int) -> dict:
    """Unmasking: ``{"b": {v: [x, hex y]} for v in survivors, "s": {v: [x, hex y]} for v in
    dropped}``, from the shares each v in U2 encrypted for ``me`` (``ciphertexts[v]``).

    Never both shares of one owner: survivors (U3, ``me`` among them) and dropped must be
    disjoint and together exactly U2, with at least ``threshold`` survivors.
    """
    _sa_check_roster(roster_u2, me)
    alive, gone = set(survivors), set(dropped)
    if alive & gone or len(alive) != len(survivors) or len(gone) != len(dropped):
        raise ValueError(f"secagg: survivors and dropped must be distinct names, and no owner "
                         f"both (that would reveal both its secrets): {sorted(alive & gone)}")
    if me not in alive:
        raise ValueError(f"secagg: {me!r} must be among the survivors to answer")
    if alive | gone != set(roster_u2):
        raise ValueError(f"secagg: survivors and dropped must together be U2 "
                         f"{sorted(roster_u2)}, got {sorted(alive | gone)}")
    if len(alive) < threshold:
        raise ValueError(f"secagg: {len(alive)} survivors, fewer than the threshold "
                         f"{threshold}")
    out: dict = {"b": {}, "s": {}}
    for v in sorted(roster_u2):
        blob = ciphertexts.get(v)
        try:
            raw = bytes.fromhex(blob) if isinstance(blob, str) else b""
            aead, _, aad = _sa_share_cipher(master, context, roster_u2[v]["c_pk"], v, me)
            plain = json.loads(aead.decrypt(raw[:12], raw[12:], aad))
        except (ValueError, InvalidTag) as error:
            raise ValueError(f"secagg: the shares {v!r} sent {me!r} fail authentication "
                             f"(tampered, missing, or not from {v!r} to {me!r} in {context!r})"
                             ) from error
        if [plain.get(k) for k in ("context", "from", "to", "threshold")] != [
                context, v, me, threshold]:
            raise ValueError(f"secagg: the shares {v!r} sent {me!r} name another context, "
                             f"sender, recipient or threshold")
        kind = "b" if v in alive else "s"
        out[kind][v] = plain[kind]
    return out
