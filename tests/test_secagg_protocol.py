"""SecAgg (Bonawitz et al., CCS 2017): the owners' stateless functions and the scientist's unmask.

Hand-computed checks of Shamir, the ChaCha20 PRG and the quantization first; then whole rounds
with 3 and 10 owners, drop-outs, refusals, what the scientist sees, and the shipped module's
self-containment.
"""
import ast
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fedlearn import portable, secagg_portable
from fedlearn.aggregation import fedavg
from fedlearn.aggregation.secagg_unmask import reconstruct_secret, unmask_sum
from fedlearn.secagg_portable import (
    secagg_decode,
    secagg_lagrange_zero,
    secagg_mask,
    secagg_pair_key,
    secagg_prg,
    secagg_prime,
    secagg_public_keys,
    secagg_quantize,
    secagg_scale,
    secagg_shamir_eval,
    secagg_share_keys,
    secagg_unmask_shares,
)

CTX = "run-7|3"


# --- hand-computed pieces ------------------------------------------------------------------

def test_shamir_on_a_tiny_known_polynomial():
    # f(x) = 7 + 3x + 2x^2: f(1..4) = 12, 21, 34, 51
    points = [(x, secagg_shamir_eval([7, 3, 2], x)) for x in (1, 2, 3, 4)]
    assert points == [(1, 12), (2, 21), (3, 34), (4, 51)]
    for three in itertools.combinations(points, 3):
        assert secagg_lagrange_zero(list(three)) == 7
    # two points fix a line, not the parabola: (1,12),(2,21) -> 3; (1,12),(3,34) -> 1; ...
    assert secagg_lagrange_zero(points[:2]) == 3 and secagg_lagrange_zero(points[::2]) == 1
    assert all(secagg_lagrange_zero(list(two)) != 7 for two in itertools.combinations(points, 2))
    # arithmetic is mod p = 2^521 - 1: f(x) = (p - 1) + x gives f(1) = 0, f(2) = 1
    p = secagg_prime()
    assert p == 2 ** 521 - 1 and secagg_shamir_eval([p - 1, 1], 1) == 0
    assert secagg_lagrange_zero([(1, 0), (2, 1)]) == p - 1
    with pytest.raises(ValueError, match="distinct"):
        secagg_lagrange_zero([(1, 5), (1, 5)])


def _chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3, written out independently of ``cryptography``."""
    def rotl(v, n):
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    def quarter(s, a, b, c, d):
        for x, y, z, r in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
            s[x] = (s[x] + s[y]) & 0xFFFFFFFF
            s[z] = rotl(s[z] ^ s[x], r)

    def words(raw):
        return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]

    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *words(key), counter, *words(nonce)]
    s = list(state)
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                           (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            quarter(s, a, b, c, d)
    return b"".join(((x + y) & 0xFFFFFFFF).to_bytes(4, "little") for x, y in zip(s, state))


def test_prg_is_the_chacha20_keystream():
    # the reference block function against RFC 8439's test vector 2.3.2
    rfc = _chacha20_block(bytes(range(32)), 1, bytes.fromhex("000000090000004a00000000"))
    assert rfc[:16].hex() == "10f1e7e4d13b5915500fdd1fa32071c4"
    key = bytes(range(100, 132))
    stream = _chacha20_block(key, 0, bytes(12)) + _chacha20_block(key, 1, bytes(12))
    assert np.array_equal(secagg_prg(key, 32, 32), np.frombuffer(stream, "<u4"))
    assert np.array_equal(secagg_prg(key, 64, 16), np.frombuffer(stream, "<u2"))
    assert np.array_equal(secagg_prg(key, 16, 64), np.frombuffer(stream, "<u8"))
    assert secagg_prg(key, 5, 64).dtype == np.uint64
    with pytest.raises(ValueError, match="32 bytes"):
        secagg_prg(key[:4], 4, 32)


def test_quantization_by_hand():
    values = np.array([0.0, 0.3, -0.3, 1.125, -2.0, 0.125])
    # x4 = 0, 1.2, -1.2, 4.5, -8, 0.5 -> round half to even: 0, 1, -1, 4, -8, 0
    q16 = secagg_quantize(values, 2.0, 4.0, 16)
    assert q16.dtype == np.uint16 and q16.tolist() == [0, 1, 65535, 4, 65528, 0]
    assert secagg_quantize(values, 2.0, 4.0, 32).tolist() == [0, 1, 2**32 - 1, 4, 2**32 - 8, 0]
    assert secagg_quantize(values, 2.0, 4.0, 64).tolist() == [0, 1, 2**64 - 1, 4, 2**64 - 8, 0]
    assert secagg_decode(q16, 4.0).tolist() == [0.0, 0.25, -0.25, 1.0, -2.0, 0.0]


def test_scale_is_the_largest_power_of_two_the_ring_holds():
    assert secagg_scale(1.0, 3, 16) == 8192.0    # 3 * 8192 <= 32767 < 3 * 16384
    assert secagg_scale(127.0, 3, 16) == 64.0    # 3 * 127 * 64 = 24384 <= 32767
    assert secagg_scale(127.0, 3, 32) == 2.0 ** 22
    with pytest.raises(ValueError, match="even at scale 1"):
        secagg_scale(1000.0, 100, 16)            # 100 * 1000 > 32767
    with pytest.raises(ValueError, match="ring_bits"):
        secagg_scale(1.0, 3, 8)


# --- whole rounds ---------------------------------------------------------------------------

def _round(vectors, threshold, ring_bits, value_range, scale, *, before=(), after=(),
           responders=None):
    """One round; ``before``: advertised keys, then dropped (not in U2); ``after``: sent their
    shares, then dropped (no masked vector)."""
    masters = {name: os.urandom(32) for name in vectors}
    roster = {u: secagg_public_keys(masters[u], CTX) for u in vectors}
    u2 = [u for u in vectors if u not in before]
    sent = {u: secagg_share_keys(masters[u], CTX, u, roster, threshold) for u in u2}
    roster_u2 = {u: roster[u] for u in u2}
    u3 = [u for u in u2 if u not in after]
    masked = {u: secagg_mask(masters[u], CTX, u, roster_u2, vectors[u], value_range=value_range,
                             scale=scale, ring_bits=ring_bits) for u in u3}
    answers = {u: secagg_unmask_shares(masters[u], CTX, u, roster_u2,
                                       {v: sent[v][u] for v in u2}, u3, sorted(after), threshold)
               for u in (responders or u3)}
    total = unmask_sum(CTX, roster_u2, masked, answers, threshold, ring_bits, scale)
    return total, masked, answers


def _fedavg_vectors(names, length, seed):
    rng = np.random.default_rng(seed)
    deltas = {u: rng.uniform(-1, 1, length) for u in names}
    examples = {u: int(n) for u, n in zip(names, rng.integers(1, 3000, len(names)))}
    return deltas, examples, {u: np.append(examples[u] * deltas[u], examples[u]) for u in names}


@pytest.mark.parametrize("owners, ring_bits", [(3, 32), (3, 64), (10, 32), (10, 64)])
def test_unmasked_sum_is_example_weighted_fedavg(owners, ring_bits):
    names = [f"owner{i:02d}" for i in range(owners)]
    deltas, examples, vectors = _fedavg_vectors(names, 200, owners + ring_bits)
    scale = secagg_scale(3000.0, owners, ring_bits)
    total, _, _ = _round(vectors, owners // 2 + 1, ring_bits, 3000.0, scale)
    assert np.abs(total - sum(vectors.values())).max() <= owners / (2 * scale) + 1e-9
    assert total[-1] == sum(examples.values())       # whole example counts are exact
    plain = fedavg([{"w": torch.from_numpy(deltas[u])} for u in names],
                   [examples[u] for u in names])["w"].numpy()
    assert np.allclose(total[:-1] / total[-1], plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("owners", [3, 10])
def test_sixteen_bit_ring_sums_small_integers_exactly(owners):
    rng = np.random.default_rng(owners)
    vectors = {f"o{i}": rng.integers(-127, 128, 50).astype(float) for i in range(owners)}
    vectors["o0"][:2] = [-127, 127]
    total, masked, _ = _round(vectors, owners // 2 + 1, 16, 127.0, 1.0)
    assert masked["o0"].dtype == np.uint16
    assert np.array_equal(total, sum(vectors.values()))


def test_drop_outs_before_and_after_sharing_keys_are_recovered():
    names = [f"owner{i}" for i in range(10)]
    _, _, vectors = _fedavg_vectors(names, 64, 1)
    scale = secagg_scale(3000.0, 10, 32)
    # owner3 never shares keys (not in U2); owner7 shares keys, then its masked vector never
    # arrives: its pairwise masks are rebuilt from its s_sk shares; six of eight answer
    total, masked, answers = _round(vectors, 6, 32, 3000.0, scale, before=["owner3"],
                                    after=["owner7"], responders=names[:3] + names[4:7])
    expected = sum(vectors[u] for u in names if u not in ("owner3", "owner7"))
    assert sorted(masked) == sorted(set(names) - {"owner3", "owner7"})
    assert np.abs(total - expected).max() <= 10 / (2 * scale)
    assert all(set(a["s"]) == {"owner7"} and "owner7" not in a["b"] for a in answers.values())
    # any t of the answers' shares rebuild owner0's b, and t - 1 of them give another value
    shares = [a["b"]["owner0"] for a in answers.values()]
    rebuilt = {reconstruct_secret(pick, 6, "owner0") for pick in itertools.combinations(shares, 6)}
    assert len(rebuilt) == 1
    points = [(x, int(y, 16)) for x, y in shares[:5]]
    assert secagg_lagrange_zero(points).to_bytes(66, "big")[-32:] not in rebuilt
    with pytest.raises(ValueError, match="fewer than the threshold 6"):
        reconstruct_secret(shares[:5], 6, "owner0")


def test_the_scientist_never_sees_one_owners_update():
    names = ["alice", "bob", "carol"]
    vectors = {u: np.linspace(-1, 1, 1000) * (i + 1) / 3 for i, u in enumerate(names)}
    total, masked, _ = _round(vectors, 2, 32, 1.0, 2.0 ** 20)
    for u in names:
        q = secagg_quantize(vectors[u], 1.0, 2.0 ** 20, 32)
        assert np.count_nonzero(masked[u] == q) <= 2               # each chance is 2^-32
        assert np.count_nonzero(masked[u] == masked[names[0]]) <= 2 or u == names[0]
    # the masked vectors' plain sum keeps the self-masks: without the b shares it is noise
    assert np.count_nonzero(sum(masked.values()) == sum(
        secagg_quantize(vectors[u], 1.0, 2.0 ** 20, 32) for u in names)) <= 2
    assert np.abs(total - sum(vectors.values())).max() <= 3 / 2 ** 21


def test_every_function_is_deterministic_given_its_inputs():
    masters = {u: bytes([i]) * 32 for i, u in enumerate(["a", "b", "c"])}
    roster = {u: secagg_public_keys(m, CTX) for u, m in masters.items()}
    assert roster["a"] == secagg_public_keys(masters["a"], CTX)
    assert roster["a"] != secagg_public_keys(masters["a"], "run-7|4")
    first = secagg_share_keys(masters["a"], CTX, "a", roster, 2)
    assert first == secagg_share_keys(masters["a"], CTX, "a", roster, 2)
    assert first["b"] != secagg_share_keys(masters["a"], CTX, "a", roster, 3)["b"]
    v = np.linspace(-1, 1, 7)
    twice = [secagg_mask(masters["a"], CTX, "a", roster, v, value_range=1.0, scale=4.0,
                         ring_bits=32) for _ in range(2)]
    assert np.array_equal(*twice)


# --- refusals -------------------------------------------------------------------------------

@pytest.fixture
def three():
    masters = {u: os.urandom(32) for u in ["alice", "bob", "carol"]}
    roster = {u: secagg_public_keys(m, CTX) for u, m in masters.items()}
    sent = {u: secagg_share_keys(masters[u], CTX, u, roster, 2) for u in masters}
    return masters, roster, sent


@pytest.mark.parametrize("bad, shown", [(1.5, "1.5 at index 2"), (np.nan, "nan at index 2"),
                                        (-np.inf, "-inf at index 2")])
def test_a_value_out_of_range_is_refused_not_clipped(three, bad, shown):
    masters, roster, _ = three
    with pytest.raises(ValueError, match=rf"{shown} is outside the declared range \[-1.0, 1.0\]"):
        secagg_mask(masters["bob"], CTX, "bob", roster, np.array([0.0, 1.0, bad]),
                    value_range=1.0, scale=16.0, ring_bits=32)
    with pytest.raises(ValueError, match="overflow a 16-bit ring"):
        secagg_mask(masters["bob"], CTX, "bob", roster, np.zeros(3), value_range=1.0,
                    scale=2.0 ** 14, ring_bits=16)
    with pytest.raises(ValueError, match="value_range > 0"):   # NaN would disable the check
        secagg_quantize(np.zeros(3), float("nan"), 1.0, 32)
    with pytest.raises(ValueError, match="at least 2 owners in U2"):
        secagg_mask(masters["bob"], CTX, "bob", {"bob": roster["bob"]}, np.zeros(3),
                    value_range=1.0, scale=1.0, ring_bits=32)


@pytest.mark.parametrize("threshold", [0, 1, 4, 2.5, True])   # n = 3: only t = 2 or 3
def test_threshold_must_be_a_majority_and_at_most_n(three, threshold):
    masters, roster, _ = three
    with pytest.raises(ValueError, match="n/2 < t <= n = 3"):
        secagg_share_keys(masters["bob"], CTX, "bob", roster, threshold)


def test_malformed_rosters_are_refused(three):
    masters, roster, _ = three
    with pytest.raises(ValueError, match="at least 2 owners"):
        secagg_share_keys(masters["bob"], CTX, "bob", {"bob": roster["bob"]}, 1)
    with pytest.raises(ValueError, match="not in the roster"):
        secagg_share_keys(masters["bob"], CTX, "dave", roster, 2)
    broken = {**roster, "carol": {**roster["carol"], "c_pk": "ab" * 31}}
    with pytest.raises(ValueError, match="carol's c_pk must be 64 hex digits"):
        secagg_share_keys(masters["bob"], CTX, "bob", broken, 2)
    with pytest.raises(ValueError, match="32 bytes"):
        secagg_public_keys(b"short", CTX)


def test_an_owner_never_reveals_both_shares_of_a_peer(three):
    masters, roster, sent = three
    inbox = {v: sent[v]["alice"] for v in sent}

    def ask(survivors, dropped, t=2):
        return secagg_unmask_shares(masters["alice"], CTX, "alice", roster, inbox, survivors,
                                    dropped, t)

    with pytest.raises(ValueError, match=r"never both|no owner both.*'carol'"):
        ask(["alice", "bob", "carol"], ["carol"])
    with pytest.raises(ValueError, match="must be among the survivors"):
        ask(["bob", "carol"], ["alice"])
    with pytest.raises(ValueError, match="together be U2"):
        ask(["alice", "bob"], [])
    with pytest.raises(ValueError, match="fewer than the threshold 3"):
        ask(["alice", "bob"], ["carol"], 3)
    assert ask(["alice", "bob"], ["carol"]) == ask(["alice", "bob"], ["carol"])


def test_tampered_and_misdirected_ciphertexts_are_refused(three):
    masters, roster, sent = three
    inbox = {v: sent[v]["alice"] for v in sent}

    def ask(box):
        return secagg_unmask_shares(masters["alice"], CTX, "alice", roster, box,
                                    ["alice", "bob", "carol"], [], 2)

    blob = inbox["bob"]
    flipped = blob[:40] + ("0" if blob[40] != "0" else "1") + blob[41:]
    cases = {"tampered": {**inbox, "bob": flipped},
             "for carol": {**inbox, "bob": sent["bob"]["carol"]},
             "from carol, labelled bob": {**inbox, "bob": sent["carol"]["alice"]},
             "missing": {v: c for v, c in inbox.items() if v != "bob"},
             "not hex": {**inbox, "bob": "xyz"}}
    for case, box in cases.items():
        with pytest.raises(ValueError, match="'bob' sent 'alice' fail authentication"):
            ask(box)
    with pytest.raises(ValueError, match="fail authentication"):   # another round's context
        secagg_unmask_shares(masters["alice"], "run-7|4", "alice", roster, inbox,
                             ["alice", "bob", "carol"], [], 2)


def test_the_server_refuses_too_few_shares_and_mixed_answers(three):
    masters, roster, sent = three
    masked = {u: secagg_mask(masters[u], CTX, u, roster, np.zeros(4), value_range=1.0,
                             scale=4.0, ring_bits=32) for u in roster}

    def answer(u, alive, gone):
        return secagg_unmask_shares(masters[u], CTX, u, roster, {v: sent[v][u] for v in sent},
                                    alive, gone, 2)

    everyone = ["alice", "bob", "carol"]
    with pytest.raises(ValueError, match="fewer than the threshold 2"):
        unmask_sum(CTX, roster, masked, {"alice": answer("alice", everyone, [])}, 2, 32, 4.0)
    # carol's vector arrived, yet bob was told she dropped: her s_sk share must not be used
    mixed = {"alice": answer("alice", everyone, []),
             "bob": answer("bob", ["alice", "bob"], ["carol"])}
    with pytest.raises(ValueError, match="never both"):
        unmask_sum(CTX, roster, masked, mixed, 2, 32, 4.0)
    fine = {u: answer(u, everyone, []) for u in ["alice", "bob"]}
    with pytest.raises(ValueError, match="not a majority"):
        unmask_sum(CTX, roster, masked, fine, 1, 32, 4.0)
    with pytest.raises(ValueError, match="must be uint64 of one length"):
        unmask_sum(CTX, roster, masked, fine, 2, 64, 4.0)
    assert np.array_equal(unmask_sum(CTX, roster, masked, fine, 2, 32, 4.0), np.zeros(4))


# --- seeds and self-containment -------------------------------------------------------------

def test_mask_keys_are_256_bits_and_not_a_folded_small_seed():
    a, b = os.urandom(32), os.urandom(32)
    ka = secagg_public_keys(a, CTX)
    kb = secagg_public_keys(b, CTX)
    s_sk = secagg_portable._sa_private(a, "s_pk", CTX).private_bytes_raw()
    key = secagg_pair_key(s_sk, kb["s_pk"], CTX, "a", "b")
    s_sk_b = secagg_portable._sa_private(b, "s_pk", CTX).private_bytes_raw()
    assert key == secagg_pair_key(s_sk_b, ka["s_pk"], CTX, "b", "a") and len(key) * 8 == 256
    stream = secagg_prg(key, 2, 64)
    for byte in range(32):   # every bit of the key counts, not just 32 of them
        flipped = bytearray(key)
        flipped[byte] ^= 0x80
        assert not np.array_equal(secagg_prg(bytes(flipped), 2, 64), stream)
    words = [int.from_bytes(key[i:i + 4], order) for i in range(0, 32, 4)
             for order in ("little", "big")]
    folds = words + [int(np.bitwise_xor.reduce(np.frombuffer(key, "<u4")))]
    for seed in folds:
        assert not np.array_equal(np.random.PCG64(seed).random_raw(2), stream)
        assert not np.array_equal(np.random.MT19937(seed).random_raw(4).astype(np.uint32),
                                  secagg_prg(key, 4, 32))
        assert not torch.equal(torch.randint(0, 2**16, (4,), dtype=torch.int64,
                                             generator=torch.Generator().manual_seed(seed)),
                               torch.from_numpy(secagg_prg(key, 4, 16).astype(np.int64)))
    assert all(not np.array_equal(np.random.PCG64(seed).random_raw(2), stream)
               for seed in range(2 ** 16))


def test_the_shipped_module_is_self_contained():
    source = Path(secagg_portable.__file__).read_text()
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module != "__future__", ast.dump(node)
            imported.add(node.module.partition(".")[0])
    assert all(n in sys.stdlib_module_names or n in ("numpy", "cryptography") for n in imported)
    assert isinstance(tree.body[0], ast.Expr)   # the docstring, then imports and functions
    assert {type(node).__name__ for node in tree.body[1:]} <= {"Import", "ImportFrom",
                                                               "FunctionDef"}
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert all(n.startswith(("secagg_", "_sa_")) for n in names)
    assert not names & set(vars(portable))   # inlined beside fedlearn/portable.py
    namespace: dict = {}
    exec(compile(source, "secagg-copy", "exec"), namespace)   # as the Datasite runs it
    assert names <= set(namespace)
    master = bytes(range(32))
    assert namespace["secagg_public_keys"](master, CTX) == secagg_public_keys(master, CTX)
    # inlined into one function body, as a code request does: no module globals
    indented = "".join(f"    {line}\n" for line in source.splitlines())
    body = f"def request(master):\n{indented}    return secagg_public_keys(master, 'x')\n"
    scope: dict = {}
    exec(compile(body, "request", "exec"), scope)
    assert scope["request"](master) == secagg_public_keys(master, "x")
