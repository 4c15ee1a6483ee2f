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

import typing

TYPING_ALLOWLIST = frozenset({
    "List", "Dict", "Set", "FrozenSet", "Tuple", "Type", "Optional", "Union", "DefaultDict",
    "OrderedDict", "Deque", "Counter", "ChainMap", "Sequence", "MutableSequence", "Mapping",
    "MutableMapping", "Iterable", "Iterator", "Collection", "AbstractSet", "MutableSet"})
_ALIAS_KEYS = frozenset({"__origin__", "__args__", "_paramspec_tvars"})


class RefusedBySecurityPolicy(PermissionError):
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
    if alias is typing.Optional:
        return alias[args[0]]
    return alias[args]


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
    return patched


def harden(sy) -> None:
    """Apply every patch once per process (idempotent)."""
    if getattr(sy, "_fedlearn_hardened", False):
        return
    _patch_deserializers()
    from fedlearn.backends.pysyft import client_safety, service_policy, syft_environment

    service_policy.install()
    client_safety.install()
    syft_environment.neutralize()
    sy._fedlearn_hardened = True
