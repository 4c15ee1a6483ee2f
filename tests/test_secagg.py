import numpy as np

from fedlearn.updates.secagg import (
    MaskingClient,
    decode_fixed,
    encode_fixed,
    remove_revealed,
    sum_masked,
)


def test_masks_cancel_exactly_and_hide_each_update():
    clients = [MaskingClient(n) for n in ("alice", "bob", "carol")]
    keys = {c.name: c.public_key for c in clients}
    vectors = [np.array([0.5, -1.25, 3.0]), np.array([1.0, 2.0, -0.5]),
               np.array([-3.0, 0.125, 0.0])]
    masked = [c.mask(v, keys, round_=7) for c, v in zip(clients, vectors)]
    assert np.array_equal(sum_masked(masked), sum_masked([encode_fixed(v) for v in vectors]))
    assert np.allclose(decode_fixed(sum_masked(masked)), sum(vectors))
    for m, v in zip(masked, vectors):  # one masked update says nothing like its value
        assert not np.allclose(decode_fixed(m), v, atol=1e3)


def test_dropout_after_masking_is_recovered_from_the_survivors():
    clients = {n: MaskingClient(n) for n in ("a", "b", "c", "d")}
    keys = {n: c.public_key for n, c in clients.items()}
    vectors = {n: np.full(5, i + 1.0) for i, n in enumerate(clients)}
    masked = {n: clients[n].mask(vectors[n], keys, 1) for n in clients}
    survivors = ["a", "b", "d"]  # c masked its update but it never arrived
    total = sum_masked([masked[n] for n in survivors])
    garbage = decode_fixed(total)
    assert not np.allclose(garbage, 7.0)  # without recovery: a wrong sum, so never use it
    total = remove_revealed(total, [clients[s].reveal("c", keys["c"], 5, 1) for s in survivors])
    assert np.allclose(decode_fixed(total), 1.0 + 2.0 + 4.0)


def test_fixed_point_round_trip_precision():
    x = np.random.default_rng(0).normal(size=1000) * 100
    assert np.abs(decode_fixed(encode_fixed(x)) - x).max() <= 2.0 ** -25
