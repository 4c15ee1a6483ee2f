"""Closing PySyft 0.9.5's holes in every process that loads syft (owner and scientist alike).

0.9.5 is frozen: no upstream fix will come, so fedlearn patches syft at import
(:func:`harden`, called by :func:`fedlearn.backends.pysyft.loading.require_syft`).
The audit behind each patch is ``docs/security-audit.md``; the attacks they stop
are reproduced in ``tests/security/``.

1. **Deserialization.** syft decodes a message before it checks its signature.
   Its decoder for typing aliases (``_GenericAlias``, ``_UnionGenericAlias``)
   looked up *any* attribute of *any* loaded module named on the wire and called it
   with wire-chosen keyword arguments: remote code execution without an account,
   on the server (``POST /api/v2/api_call``) and on the data scientist's machine
   (a malicious Datasite's answers). It is replaced by one that accepts only
   ``typing.<Name>`` for the names in :data:`TYPING_ALLOWLIST`, and only
   subscripts them, never calls. Every other registered decoder was audited to
   resolve names only in syft's closed registry.
   **Decoding bombs**: syft's decoders that allocate what the sender *claims* (a
   zstd-compressed array of zeros, 2.6 KB for 64 MiB; a wire-chosen dtype such as
   ``S100000``; a parquet table's rows; a union of hundreds of aliases) are replaced by
   bounded ones: every message may decode to at most :data:`DECODE_FLOOR` bytes of
   arrays and tables, or :data:`DECODE_RATIO` times its own size when it is larger
   (:func:`bounded_rs_bytes2object` keeps that budget per message and thread).
2. **Services that sign caller-chosen bytes** (``network.ping`` signs whatever it is
   given with the server's key, which is the root admin's key: a guest could forge
   root calls) and the other peer-network services become admin-only.
3. **Guests** (no account) may call only what a login and reading dataset metadata
   and mocks need (:data:`GUEST_ALLOWED`); code submission, data, blobs and
   signatures need an account.
4. **Code from a server** never runs here: unknown type names are refused instead
   of making syft reload and ``exec`` policy code a server supplies
   (:mod:`.client_safety`).
5. **syft's environment switches** that weaken checks (``IGNORE_TLS_ERRORS``,
   ``ENABLE_SIGNUP``, a signing key or root password from the environment ...) have
   no effect (:mod:`.syft_environment`).
"""
from __future__ import annotations

import functools
import operator
import threading
import types
import typing

from fedlearn.errors import FedlearnError

TYPING_ALLOWLIST = frozenset({
    "List", "Dict", "Set", "FrozenSet", "Tuple", "Type", "Optional", "Union", "DefaultDict",
    "OrderedDict", "Deque", "Counter", "ChainMap", "Sequence", "MutableSequence", "Mapping",
    "MutableMapping", "Iterable", "Iterator", "Collection", "AbstractSet", "MutableSet"})
_ALIAS_KEYS = frozenset({"__origin__", "__args__", "_paramspec_tvars"})

MIB = 1024 * 1024
# Array, string-array and table bytes one message may decode to: the HTTP door's body cap
# for /api_call (http_door.ROUTES). fedlearn's largest legitimate array is the owner's upload
# of 60,000 MNIST images (45 MiB); weights are a few MiB.
DECODE_FLOOR = 64 * MIB
DECODE_RATIO = 4  # a message larger than the floor may decode to 4x its own size
_TYPING_ALIAS = type(typing.List[int])  # typing._GenericAlias; Union[...] subclasses it
UNION_MAX_ARGS = 16  # syft's own unions have 2 or 3 members
# what syft's arrow encoder writes (``ndarray.dtype.name`` of a numeric array)
ARRAY_DTYPES = frozenset({
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128"})


class RefusedBySecurityPolicy(FedlearnError, PermissionError):
    """fedlearn refused something PySyft 0.9.5 would have allowed (see docs/security-audit.md)."""

    @property
    def public_message(self) -> str:  # syft's error handlers read this off any exception
        return str(self)


def safe_deserialize_generic_alias(type_blob: bytes):
    """Decode a typing alias such as ``List[int]`` without calling anything named on the wire."""
    from syft.serde.deserialize import _deserialize

    fields = _deserialize(type_blob, from_bytes=True)
    if not isinstance(fields, dict) or not isinstance(fields.get("path"), str):
        raise RefusedBySecurityPolicy("a typing alias must be a dict with a 'path' string")
    path = fields.pop("path")
    module, _, name = path.rpartition(".")
    if module != "typing" or name not in TYPING_ALLOWLIST:
        raise RefusedBySecurityPolicy(f"refused to decode the type {path!r}: only typing's "
                                      "generic aliases are accepted")
    if not set(fields) <= _ALIAS_KEYS or not isinstance(fields.get("__args__"), tuple):
        raise RefusedBySecurityPolicy(f"refused to decode {path!r}: unexpected fields "
                                      f"{sorted(set(fields) - _ALIAS_KEYS)}")
    args = fields["__args__"]
    alias = getattr(typing, name)
    if not args or len(args) > UNION_MAX_ARGS:
        raise RefusedBySecurityPolicy(f"refused to decode {path!r}: {len(args)} type "
                                      f"arguments (1 to {UNION_MAX_ARGS} accepted)")
    if alias is typing.Optional:
        if len(args) != 1:  # typing.Optional[X] is Union[X, None]: it always has 2 args
            return typing.Union[args]
        return alias[args[0]]
    try:
        return alias[args]
    except TypeError as exc:
        raise RefusedBySecurityPolicy(f"refused to decode {path!r}: {exc}") from None


# --- decoding bombs: a budget per message --------------------------------------------------

_state = threading.local()


def _budget_left() -> int:
    return _state.left if getattr(_state, "depth", 0) else DECODE_FLOOR


def _charge(nbytes: int, what: str) -> None:
    """Count ``nbytes`` that a decoder is about to allocate against the message's budget."""
    left = _budget_left()
    if nbytes < 0 or nbytes > left:
        raise RefusedBySecurityPolicy(
            f"refused to decode {what}: {nbytes} bytes claimed, more than the {left} left "
            f"to this message (at most {DECODE_FLOOR // MIB} MiB or {DECODE_RATIO}x its size)")
    if getattr(_state, "depth", 0):
        _state.left = left - nbytes


def bounded_rs_bytes2object(blob: bytes):
    """syft's ``rs_bytes2object`` that opens a decode budget for each outermost message."""
    from syft.serde import recursive

    depth = getattr(_state, "depth", 0)
    if depth == 0:
        _state.left = max(DECODE_FLOOR, DECODE_RATIO * len(blob))
    _state.depth = depth + 1
    try:
        return recursive._fedlearn_original_rs_bytes2object(blob)
    finally:
        _state.depth = depth


def combine_bytes(capnp_list) -> bytes:
    """syft's ``combine_bytes`` without its quadratic ``bytes +=`` (CPU, many tiny chunks)."""
    buffer = bytearray()
    for value in capnp_list:
        buffer += value
    return bytes(buffer)


def safe_arrow_deserialize(numpy_bytes: bytes, decompressed_size: int, dtype: str):
    """syft's ``arrow_deserialize`` bounded by the message's budget.

    syft decompressed to the size the sender claims (zstd turns 2.6 KB into 64 MiB of
    zeros), read the tensor the buffer describes and cast it to a wire-chosen dtype
    (``S100000``: 100 KB per element). The decompressed size is charged before anything is
    allocated; the cast only where it widens."""
    import numpy as np
    import pyarrow as pa
    from syft.util.experimental_flags import ApacheArrowCompression, flags

    if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
        raise RefusedBySecurityPolicy(f"refused to decode an array of dtype {dtype!r}: only "
                                      "numeric dtypes are accepted")
    if not isinstance(numpy_bytes, bytes) or type(decompressed_size) is not int:
        raise RefusedBySecurityPolicy("refused to decode an array: malformed header")
    if flags.APACHE_ARROW_COMPRESSION is ApacheArrowCompression.NONE:
        buffer = pa.py_buffer(numpy_bytes)
    else:
        _charge(decompressed_size, "an array")
        buffer = pa.decompress(numpy_bytes, decompressed_size=decompressed_size,
                               codec=flags.APACHE_ARROW_COMPRESSION.value)
    tensor = pa.ipc.read_tensor(buffer)
    size = 1
    for extent in tensor.shape:
        size *= extent
    width = tensor.type.bit_width // 8
    if size * width > buffer.size:  # arrow would read past the buffer
        raise RefusedBySecurityPolicy("refused to decode an array: its shape claims more "
                                      "than its data")
    target = np.dtype(dtype)
    if target.itemsize > width:  # the cast below allocates a wider copy than was charged
        _charge(size * (target.itemsize - width), "an array")
    array = tensor.to_numpy()
    array.setflags(write=True)
    return array.astype(target)


def safe_numpyutf8toarray(input_index):
    """syft's string-array decoder, bounded: offsets only move forward inside the data, and
    the numpy array it builds (width of the longest string x count) fits the budget."""
    import numpy as np

    def refuse(why: str):
        return RefusedBySecurityPolicy(f"refused to decode a string array: {why}")

    if not isinstance(input_index, np.ndarray) or input_index.ndim != 1 or \
            input_index.dtype.kind not in "iu" or len(input_index) < 2:
        raise refuse("malformed index")
    values = input_index.astype(np.int64, copy=False)
    shape_length = int(values[-1])
    if not 0 <= shape_length <= 32 or shape_length + 2 > len(values):
        raise refuse("malformed shape")
    shape = tuple(int(v) for v in values[-(shape_length + 1):-1])
    string_index = values[:-(shape_length + 1)]
    index_length = int(string_index[-1])
    if not 0 <= index_length < len(string_index):
        raise refuse("malformed index")
    offsets = string_index[-(index_length + 1):-1] if index_length else string_index[:0]
    data = string_index[:-(index_length + 1)]
    if np.any(np.diff(offsets) < 0) or (len(offsets) and
                                          not 0 <= offsets[0] <= offsets[-1] <= len(data)):
        raise refuse("offsets out of order or out of range")
    count = 1
    for extent in shape:
        count *= max(extent, 0)
    if count != len(offsets):
        raise refuse("shape does not match the number of strings")
    longest = int(np.max(np.diff(offsets, prepend=0))) if len(offsets) else 0
    _charge(4 * max(longest, 1) * count + len(data), "a string array")
    raw = data.astype(np.uint8).tobytes()
    strings, last = [], 0
    for offset in offsets.tolist():
        strings.append(raw[last:offset].decode("utf-8"))
        last = offset
    return np.array(strings).reshape(shape)


def safe_deserialize_dataframe(buf: bytes):
    """syft's pandas decoder reads a wire-chosen parquet file: zstd pages and run-length
    encoding turn 4.6 KB into an 80 MB frame, and page sizes come from the sender. fedlearn
    never exchanges pandas tables, so none is decoded."""
    raise RefusedBySecurityPolicy(f"refused to decode a pandas table ({len(buf)} bytes of "
                                  "parquet): fedlearn exchanges none")


def safe_deserialize_union_type(type_blob: bytes):
    """``int | None`` without syft's ``reduce(or_)`` over any number of wire-chosen objects
    (hundreds of aliases: a quadratic heap of cached intermediate unions)."""
    from syft.serde.deserialize import _deserialize

    args = _deserialize(type_blob, from_bytes=True)
    if not isinstance(args, tuple | list) or not 1 <= len(args) <= UNION_MAX_ARGS:
        count = len(args) if isinstance(args, tuple | list) else type(args).__name__
        raise RefusedBySecurityPolicy(f"refused to decode a union of {count} members: 1 to "
                                      f"{UNION_MAX_ARGS} classes, None or typing aliases")
    plain = True
    for arg in args:
        if arg is None or isinstance(arg, type):
            continue
        if not isinstance(arg, _TYPING_ALIAS | types.GenericAlias | types.UnionType):
            raise RefusedBySecurityPolicy(f"refused to decode a union with a member of type "
                                          f"{type(arg).__name__}: only classes, None or typing "
                                          "aliases")
        plain = False
    if plain:  # classes and None: types.UnionType, as syft built it
        return functools.reduce(operator.or_, args)
    return typing.Union[tuple(args)]


def _patch_deserializers() -> int:
    """Swap the alias decoder in syft's serde registry; return how many entries changed."""
    from syft.serde import recursive_primitives
    from syft.types.syft_object_registry import SyftObjectRegistry

    original = getattr(recursive_primitives, "_fedlearn_original_generic_alias",
                       recursive_primitives.deserialize_generic_alias)
    registry = SyftObjectRegistry.__object_serialization_registry__
    patched = 0
    for versions in registry.values():
        for version, entry in list(versions.items()):
            # entry: (nonrecursive, serialize, deserialize, attributes, ...): index 2 decodes
            if entry[2] is original:
                versions[version] = entry[:2] + (safe_deserialize_generic_alias,) + entry[3:]
                patched += 1
    recursive_primitives._fedlearn_original_generic_alias = original
    recursive_primitives.deserialize_generic_alias = safe_deserialize_generic_alias
    return patched + _patch_decoding_bombs()


def _patch_decoding_bombs() -> int:
    """Bound the decoders that allocate what the sender claims; return the entries changed."""
    from syft.serde import arrow, recursive, recursive_primitives, third_party
    from syft.types.syft_object_registry import SyftObjectRegistry

    for module, name in ((recursive, "rs_bytes2object"), (recursive, "combine_bytes"),
                         (arrow, "arrow_deserialize"), (arrow, "numpyutf8toarray"),
                         (third_party, "deserialize_dataframe"),
                         (recursive_primitives, "deserialize_union_type")):
        if not hasattr(module, f"_fedlearn_original_{name}"):  # kept for the tests
            setattr(module, f"_fedlearn_original_{name}", getattr(module, name))
    # looked up at call time: syft's _deserialize imports rs_bytes2object on each call,
    # numpy_deserialize (arrays and torch tensors) calls these two by their module names
    recursive.rs_bytes2object = bounded_rs_bytes2object
    recursive.combine_bytes = recursive_primitives.combine_bytes = combine_bytes
    arrow.arrow_deserialize = safe_arrow_deserialize
    arrow.numpyutf8toarray = safe_numpyutf8toarray
    third_party.deserialize_dataframe = safe_deserialize_dataframe
    recursive_primitives.deserialize_union_type = safe_deserialize_union_type
    replacements = {"pandas_dataframe": safe_deserialize_dataframe,
                    "UnionType": safe_deserialize_union_type}
    registry = SyftObjectRegistry.__object_serialization_registry__
    patched = 0
    for name, decoder in replacements.items():
        for version, entry in list(registry.get(name, {}).items()):
            if entry[2] is not decoder:
                registry[name][version] = entry[:2] + (decoder,) + entry[3:]
                patched += 1
    return patched


def harden(sy) -> None:
    """Apply every patch once per process (idempotent)."""
    if getattr(sy, "_fedlearn_hardened", False):
        return
    _patch_deserializers()
    from fedlearn.backends.pysyft import (
        client_safety,
        residual_keeper,
        service_policy,
        syft_environment,
    )

    service_policy.install()
    residual_keeper.install()
    client_safety.install()
    syft_environment.neutralize()
    sy._fedlearn_hardened = True
