"""Decoding bombs (issue #24): syft 0.9.5 decodes an unauthenticated POST /api/v2/api_call
before any signature check, and some of its decoders allocate what the sender claims, not
what it sent: zstd-compressed arrays of zeros (2.6 KB on the wire for 64 MiB), a wire-chosen
dtype (``S100000``), string arrays whose offsets repeat the data, parquet tables, and
``UnionType``'s ``reduce(or_)`` over any objects (two numpy arrays broadcast to n x n).
Each bomb is built from syft's own wire format; the unpatched decoder is shown to amplify
at a small scale, fedlearn's to refuse at once, and real traffic to still round-trip."""
from __future__ import annotations

import time
import tracemalloc
import typing

import numpy as np
import pytest
import requests
from attacks import alias_blob
from test_http_door import API, MIB, raw_post, server_child, still_serves

from fedlearn.backends.pysyft.hardening import DECODE_FLOOR, RefusedBySecurityPolicy


@pytest.fixture(scope="module")
def sy():
    from fedlearn.backends.pysyft import require_syft

    return require_syft()


def nonrecursive(canonical_name: str, payload: bytes) -> bytes:
    """A syft message of a non-recursive type, carrying ``payload`` as its blob."""
    from syft.serde.recursive import recursive_scheme

    message = recursive_scheme.new_message()
    message.canonicalName, message.version = canonical_name, 1
    message.init("nonrecursiveBlob", 1)
    message.nonrecursiveBlob[0] = payload
    return message.to_bytes()


def arrow_header(array: np.ndarray, dtype: str | None = None) -> tuple:
    """What syft's ``arrow_serialize`` puts on the wire: (zstd bytes, size, dtype name)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    pa.ipc.write_tensor(pa.Tensor.from_numpy(array), sink)
    buffer = sink.getvalue()
    return (pa.compress(buffer, asbytes=True, codec="zstd"), buffer.size,
            dtype or array.dtype.name)


def zeros_bomb(sy, count: int, mib: int) -> bytes:
    """A list of ``count`` zstd arrays of zeros, ``mib`` MiB each once decoded."""
    return sy.serialize([np.zeros(mib * MIB, np.uint8)] * count, to_bytes=True)


def union_bomb(sy, n: int) -> bytes:
    """``UnionType`` whose members are arrays (n, 1) and (1, n): ``a | b`` is n x n."""
    members = (np.zeros((n, 1), np.uint8), np.zeros((1, n), np.uint8))
    return nonrecursive("UnionType", sy.serialize(members, to_bytes=True))


def string_bomb(sy, n: int) -> bytes:
    """syft's string-array encoding with offsets n, 0, n, 0 ...: n/2 copies of the data."""
    data = np.full(n, ord("x"), np.uint64)
    offsets = np.array([n, 0] * (n // 2), np.uint64)
    index = np.concatenate([data, offsets, [len(offsets)], [len(offsets)], [1]]).astype(np.uint64)
    # a numpy_ndarray whose payload is an array (not arrow's tuple) is a string array
    return nonrecursive("numpy_ndarray", sy.serialize(index, to_bytes=True))


def peak_of(decode) -> tuple[object, int]:
    """The result of ``decode()`` (or its exception) and the peak Python/numpy heap it took."""
    tracemalloc.start()
    try:
        try:
            result = decode()
        except Exception as exc:  # noqa: BLE001
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- (i) syft's own decoders amplify ---------------------------------------------------------

def test_syfts_array_decoder_allocates_what_the_sender_claims(sy):
    from syft.serde import arrow
    from syft.serde.deserialize import _deserialize

    blob = sy.serialize(np.zeros(64 * MIB, np.uint8), to_bytes=True)
    assert len(blob) < 4096  # 64 MiB of zeros travel in under 4 KB
    header = _deserialize(nonrecursive_payload(blob), from_bytes=True)
    decoded = arrow._fedlearn_original_arrow_deserialize(*header)
    assert decoded.nbytes == 64 * MIB  # more than 16,000 times what was sent
    del decoded
    wider = arrow_header(np.zeros(200, np.uint8), dtype="S100000")  # the dtype is the sender's
    decoded = arrow._fedlearn_original_arrow_deserialize(*wider)
    assert decoded.nbytes == 20_000_000 and len(wider[0]) < 200


def nonrecursive_payload(blob: bytes) -> bytes:
    from syft.serde.recursive import combine_bytes, recursive_scheme

    with recursive_scheme.from_bytes(blob) as message:
        return combine_bytes(message.nonrecursiveBlob)


def test_syfts_union_and_string_decoders_amplify(sy):
    from syft.serde import arrow, recursive_primitives
    from syft.serde.deserialize import _deserialize

    bomb = union_bomb(sy, 2000)
    decoded = recursive_primitives._fedlearn_original_deserialize_union_type(
        nonrecursive_payload(bomb))
    assert decoded.nbytes == 4_000_000 and len(bomb) < 2048  # 2,000 x 2,000 from 1.5 KB
    with pytest.raises(RefusedBySecurityPolicy):
        sy.deserialize(bomb, from_bytes=True)
    strings = string_bomb(sy, 2000)
    index = _deserialize(nonrecursive_payload(strings), from_bytes=True)  # 4,000 integers
    decoded, peak = peak_of(lambda: arrow._fedlearn_original_numpyutf8toarray(index))
    assert decoded.nbytes == 2000 * 2000 * 4  # 16 MB of U2000 from 4,000 integers
    assert peak > 16_000_000 and len(strings) < 4096


# --- (ii) fedlearn's decoders refuse at once ----------------------------------------------

def test_the_66kb_bomb_is_refused_within_the_message_budget(sy):
    bomb = zeros_bomb(sy, 60, 16)  # 960 MiB claimed in 66 KB
    assert len(bomb) < 80 * 1024
    started = time.monotonic()
    refused, peak = peak_of(lambda: sy.deserialize(bomb, from_bytes=True))
    assert isinstance(refused, RefusedBySecurityPolicy), refused
    assert "refused to decode an array" in str(refused) and "\n" not in str(refused)
    assert peak < DECODE_FLOOR + 16 * MIB  # at most the budget, not the 1.9 GiB claimed
    assert time.monotonic() - started < 5
    one_big = zeros_bomb(sy, 1, 65)
    with pytest.raises(RefusedBySecurityPolicy, match="more than the"):
        sy.deserialize(one_big, from_bytes=True)


@pytest.mark.parametrize("dtype", ["S100000", "U1000", "(100,100)f8", "object", "V8"])
def test_a_wire_chosen_dtype_is_refused(sy, dtype):
    payload = sy.serialize(arrow_header(np.zeros(200, np.uint8), dtype=dtype), to_bytes=True)
    with pytest.raises(RefusedBySecurityPolicy, match="only numeric dtypes"):
        sy.deserialize(nonrecursive("numpy_ndarray", payload), from_bytes=True)


def test_a_claimed_size_beyond_the_budget_is_refused_before_allocating(sy):
    compressed, _, dtype = arrow_header(np.zeros(10, np.float32))
    payload = sy.serialize((compressed, 1 << 31, dtype), to_bytes=True)
    refused, peak = peak_of(lambda: sy.deserialize(nonrecursive("numpy_ndarray", payload),
                                                    from_bytes=True))
    assert isinstance(refused, RefusedBySecurityPolicy) and "2147483648 bytes" in str(refused)
    assert peak < 4 * MIB


def test_the_string_and_union_bombs_and_an_empty_optional_are_refused(sy):
    for bomb, why in ((string_bomb(sy, 2000), "offsets out of order"),
                      (union_bomb(sy, 2000), "member of type ndarray"),
                      (nonrecursive("UnionType", sy.serialize(tuple([int] * 17), to_bytes=True)),
                       "union of 17 members"),
                      (alias_blob("typing.Optional", __args__=()), "0 type arguments"),
                      (alias_blob("typing.List", __args__=(int, str)), "refused to decode")):
        with pytest.raises(RefusedBySecurityPolicy, match=why) as refused:
            sy.deserialize(bomb, from_bytes=True)
        assert "\n" not in str(refused.value)


def test_a_pandas_table_is_refused(sy):
    import pandas as pd

    from fedlearn.backends.pysyft.hardening import safe_deserialize_dataframe

    blob = sy.serialize(pd.DataFrame({"a": np.zeros(1000)}), to_bytes=True)
    with pytest.raises(RefusedBySecurityPolicy, match="pandas table"):
        sy.deserialize(blob, from_bytes=True)
    assert safe_deserialize_dataframe is not None


# --- (iii) real traffic still decodes ---------------------------------------------------------

def test_real_arrays_tensors_and_unions_round_trip(sy):
    import torch

    from fedlearn.models import build_model

    weights = {k: v.clone() for k, v in build_model("tutorial_cnn").state_dict().items()}
    weights["zeros"] = torch.zeros(1_700_000)  # 6.8 MB of zeros: 25,000x compressible
    back = sy.deserialize(sy.serialize(weights, to_bytes=True), from_bytes=True)
    assert back.keys() == weights.keys() and all(torch.equal(back[k], weights[k])
                                                 for k in weights)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60_000, 28, 28), dtype=np.uint8)  # the owner's upload
    labels = rng.integers(0, 10, 60_000).astype(np.int64)
    upload = sy.deserialize(sy.serialize({"images": images, "labels": labels}, to_bytes=True),
                            from_bytes=True)
    assert np.array_equal(upload["images"], images) and np.array_equal(upload["labels"], labels)
    for obj in (np.array(["a", "héllo", ""]), np.array([], np.int64), np.array(5.0),
                np.zeros((3, 0), np.float16), np.arange(6, dtype=np.uint16).reshape(2, 3)):
        back = sy.deserialize(sy.serialize(obj, to_bytes=True), from_bytes=True)
        assert back.dtype == obj.dtype and back.shape == obj.shape and np.array_equal(back, obj)
    for alias in (int | None, str | int | None, typing.Optional[int], typing.Union[int, str],
                  typing.Optional[typing.List[str]], typing.Dict[str, typing.Optional[int]]):
        back = sy.deserialize(sy.serialize(alias, to_bytes=True), from_bytes=True)
        assert back == alias and type(back) is type(alias)


def test_every_bounded_decoder_is_installed(sy):
    from syft.serde import arrow, recursive, recursive_primitives
    from syft.types.syft_object_registry import SyftObjectRegistry

    from fedlearn.backends.pysyft import hardening

    registry = SyftObjectRegistry.__object_serialization_registry__
    assert recursive.rs_bytes2object is hardening.bounded_rs_bytes2object
    assert arrow.arrow_deserialize is hardening.safe_arrow_deserialize
    assert arrow.numpyutf8toarray is hardening.safe_numpyutf8toarray
    assert recursive_primitives.combine_bytes is hardening.combine_bytes
    assert all(e[2] is hardening.safe_deserialize_union_type
               for e in registry["UnionType"].values())
    assert all(e[2] is hardening.safe_deserialize_dataframe
               for e in registry["pandas_dataframe"].values())


# --- served: the bombs, unauthenticated, at a real Datasite -----------------------------------

def test_the_served_datasite_refuses_decoding_bombs_and_keeps_its_memory(served, sy):
    child = server_child(served)
    before = child.memory_info().rss
    bombs = {"arrays of zeros (1.6 GiB claimed)": zeros_bomb(sy, 25, 64),
             "arrays of zeros within the budget": zeros_bomb(sy, 60, 16),
             "union of broadcast arrays": union_bomb(sy, 30_000),
             "string array": string_bomb(sy, 4000)}
    for what, bomb in bombs.items():
        assert len(bomb) < 80 * 1024, what
        for _ in range(3):  # three at once got the child OOM-killed
            answer = raw_post(served, API + "/api_call",
                              f"Content-Length: {len(bomb)}\r\n", [bomb])
            assert not answer.startswith(b"HTTP/1.1 200"), (what, answer[:300])
        assert child.memory_info().rss - before < 64 * MIB, what
    reply = requests.post(served.url + API + "/api_call", data=bombs["string array"], timeout=60)
    assert "refused" in reply.text, reply.text[:300]
    still_serves(served)
