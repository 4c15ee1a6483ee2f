"""The HTTP door as a plain ASGI app, driven by hand: which routes pass, body caps, the signed
login, the shared body budget. No server, no PySyft (nacl only, for the signatures)."""
from __future__ import annotations

import asyncio

import pytest

from fedlearn.backends.pysyft.http_door import (
    API,
    LOGIN_HEADER,
    ROUTES,
    HttpDoor,
    served_routes,
    sign_login,
)

nacl_signing = pytest.importorskip("nacl.signing")
SERVER = "6a841e410458488180936152131a2826"
NOW = 1_700_000_000.0


class Syft:
    """Stands in for syft's app: records what reached it and answers 200."""

    def __init__(self):
        self.seen: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.seen.append((scope["method"], scope["path"], message.get("body", b"")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"syft"})


def call(door, method, path, *, chunks=(b"",), headers=(), query=b""):
    """Send one request through ``door``; the status and body it answered."""
    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(k.encode(), v.encode()) for k, v in headers]}
    incoming = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    out: list[dict] = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        out.append(message)

    asyncio.run(door(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
    return out[0]["status"], body


def door(**kwargs):
    app = Syft()
    return HttpDoor(app, server_id=SERVER, clock=lambda: NOW, **kwargs), app


def test_only_fedlearns_routes_pass_everything_else_is_a_bare_404():
    gate, app = door()
    for method, path in [("GET", "/"), ("GET", "/docs"), ("GET", "/openapi.json"),
                         ("GET", "/redoc"), ("GET", f"{API}/metadata_capnp"),
                         ("GET", f"{API}/stream/abc/def/"), ("PUT", f"{API}/stream/abc/def/"),
                         ("POST", f"{API}/reset_password"), ("POST", f"{API}/forgot_password"),
                         ("POST", f"{API}/register"), ("POST", f"{API}/metadata"),
                         ("GET", f"{API}/metadata/"), ("OPTIONS", f"{API}/api_call"),
                         ("GET", f"{API}/api_call"), ("HEAD", f"{API}/metadata")]:
        assert call(gate, method, path) == (404, b""), (method, path)
    assert app.seen == []
    for method, path in [("GET", f"{API}/metadata"), ("POST", f"{API}/login"),
                         ("POST", f"{API}/api_call")]:
        assert call(gate, method, path)[0] == 200
    assert [s[:2] for s in app.seen] == [("GET", f"{API}/metadata"), ("POST", f"{API}/login"),
                                         ("POST", f"{API}/api_call")]


def test_signup_and_password_reset_open_only_with_their_flags():
    assert set(served_routes()) == {("GET", f"{API}/metadata"), ("GET", f"{API}/api"),
                                    ("POST", f"{API}/login"), ("POST", f"{API}/api_call")}
    gate, _ = door(flags=frozenset({"allow_signup"}))
    assert call(gate, "POST", f"{API}/register")[0] == 200
    assert call(gate, "POST", f"{API}/forgot_password")[0] == 404
    gate, _ = door(flags=frozenset({"allow_password_reset"}))
    assert call(gate, "POST", f"{API}/forgot_password")[0] == 200
    assert call(gate, "POST", f"{API}/reset_password")[0] == 200
    assert call(gate, "POST", f"{API}/register")[0] == 404


def test_a_body_check_can_refuse_what_it_reads():
    gate, app = door(flags=frozenset({"allow_signup"}),
                     check_body={("POST", f"{API}/register"): lambda body: "no" if body else None})
    assert call(gate, "POST", f"{API}/register", chunks=(b"x",)) == (403, b"fedlearn: no")
    assert app.seen == []


def test_bodies_are_capped_before_the_app_sees_a_byte():
    gate, app = door()
    cap = ROUTES[("POST", f"{API}/login")].max_body
    status, _ = call(gate, "POST", f"{API}/login", headers=[("content-length", str(cap + 1))])
    assert status == 413  # refused on the header alone
    chunks = (b"a" * 1000,) * (cap // 1000 + 2)  # chunked: no length announced
    assert call(gate, "POST", f"{API}/login", chunks=chunks)[0] == 413
    assert call(gate, "POST", f"{API}/login", headers=[("content-length", "12x")])[0] == 400
    assert call(gate, "GET", f"{API}/metadata", chunks=(b"x",))[0] == 413
    assert app.seen == [] and gate.buffered == 0
    assert call(gate, "POST", f"{API}/login", chunks=(b"a" * 10, b"b" * 10))[0] == 200
    assert app.seen[-1][2] == b"a" * 10 + b"b" * 10  # reassembled, in order
    assert ROUTES[("POST", f"{API}/api_call")].max_body == 64 * 1024 * 1024
    assert gate.buffered == 0


def test_bodies_held_at_once_share_one_budget():
    gate, app = door(max_buffered=100)
    assert call(gate, "POST", f"{API}/api_call", chunks=(b"a" * 60,))[0] == 200
    gate.buffered = 50  # as if another request held 50 bytes now
    assert call(gate, "POST", f"{API}/api_call", chunks=(b"a" * 60,))[0] == 503
    assert gate.buffered == 50  # what the refused one took is given back


def api(gate, verify_key: str, header: str | None):
    headers = [(LOGIN_HEADER, header)] if header is not None else []
    return call(gate, "GET", f"{API}/api", headers=headers,
                query=f"verify_key={verify_key}&communication_protocol=5".encode())[0]


def test_reading_the_api_needs_a_fresh_signature_by_the_key_it_names():
    gate, app = door()
    key = nacl_signing.SigningKey.generate()
    mine = key.verify_key.encode().hex()
    assert api(gate, mine, sign_login(key, SERVER, mine, now=NOW)) == 200
    assert api(gate, mine, None) == 401  # unsigned: e.g. the root key read off /metadata
    assert api(gate, mine, sign_login(key, SERVER, mine, now=NOW - 121)) == 401  # stale
    assert api(gate, mine, sign_login(key, SERVER, mine, now=NOW + 121)) == 401  # future
    assert api(gate, mine, sign_login(key, "another-server", mine, now=NOW)) == 401
    other = nacl_signing.SigningKey.generate()
    assert api(gate, mine, sign_login(other, SERVER, mine, now=NOW)) == 401  # wrong key
    theirs = other.verify_key.encode().hex()
    assert api(gate, mine, sign_login(key, SERVER, theirs, now=NOW)) == 401  # another key's
    assert api(gate, mine, "garbage") == 401 and api(gate, "zz", "1.zz") == 401
    assert len(app.seen) == 1
