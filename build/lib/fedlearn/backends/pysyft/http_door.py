"""Default deny at the HTTP door of a served Datasite: fedlearn's routes only, bounded bodies,
and a signed login for ``GET /api/v2/api``.

PySyft 0.9.5 serves a dozen HTTP routes (``make_routes`` in ``syft/server/routes.py``) and
decodes a request body before it checks any signature. Recording fedlearn's whole flow
(serve, upload, review, approve, train) against a served Datasite shows it uses five:
``GET /api/v2/metadata``, ``GET /api/v2/api``, ``POST /api/v2/login``,
``POST /api/v2/api_call`` and (self-registration only) ``POST /api/v2/register``.
:class:`HttpDoor` is a plain ASGI middleware around syft's app (installed in the server
child by :func:`fedlearn.backends.pysyft.server_process.install_child_hooks`) that:

- answers 404, with no body, to every other (method, path): ``/``, ``/docs``,
  ``/openapi.json``, ``/api/v2/stream/...``, ``/api/v2/metadata_capnp`` ...;
- keeps ``/register`` closed unless the owner serves with ``--allow-signup`` (and then
  accepts only a self-registration as a data scientist), and ``/forgot_password`` and
  ``/reset_password`` closed unless ``--allow-password-reset``; syft's environment
  (``ENABLE_SIGNUP``) cannot open them. The owner registers the scientist through the
  admin API (``user.create``), never through ``/register``, whose syft client sends the
  admin's private signing key in the body;
- reads a body from the stream with a cap before anything decodes it (:data:`ROUTES`):
  64 MiB for an API call (the largest legitimate ones are a model's weights, at most
  ~6.6 MB, and the owner's upload of its shard, 47 MB for all 60,000 images even if the
  compression syft applies gained nothing), a few KiB for the JSON and registration
  routes; a larger ``Content-Length`` is refused at once (413), and so is a chunked
  body as soon as it grows past the cap. At most :data:`MAX_BUFFERED` bytes of bodies
  are held at once (503 beyond);
- serves ``GET /api/v2/api`` (the API description for a verify key: for the root key
  it lists every endpoint and every submitted code) only to a client that proves it
  holds the key named in ``verify_key``: a signature over (server id, a timestamp
  within ±120 s, the verify key) in the :data:`LOGIN_HEADER` header, else 401.
  fedlearn's client adds it (:func:`sign_api_requests`); syft's own client cannot.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

API = "/api/v2"
KIB, MIB = 1024, 1024 * 1024
LOGIN_HEADER = "x-fedlearn-api-login"
LOGIN_WINDOW_S = 120  # clocks of owner and scientist may differ this much
MAX_BUFFERED = 256 * MIB  # all bodies held at once; 4 of the largest API calls

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    """One route the door serves: the largest body it reads, and the serve flag it needs."""

    max_body: int
    flag: str | None = None  # closed unless the owner served with this flag


ROUTES = {
    ("GET", f"{API}/metadata"): Route(0),  # public: name, id, version (syft's readiness probe)
    ("GET", f"{API}/api"): Route(0),  # needs a signed login, see check_login
    ("POST", f"{API}/login"): Route(4 * KIB),  # JSON e-mail and password
    ("POST", f"{API}/api_call"): Route(64 * MIB),  # signed call; checked by service_policy
    ("POST", f"{API}/register"): Route(8 * KIB, "allow_signup"),
    ("POST", f"{API}/forgot_password"): Route(4 * KIB, "allow_password_reset"),
    ("POST", f"{API}/reset_password"): Route(4 * KIB, "allow_password_reset"),
}


def served_routes(*flags: str) -> list[tuple[str, str]]:
    """The (method, path) pairs served when the owner turned on ``flags``."""
    return [key for key, route in ROUTES.items() if route.flag is None or route.flag in flags]


def login_message(server_id: str, timestamp: int, verify_key: str) -> bytes:
    """What a client signs to read its API: bound to one server, one key and a time."""
    return f"fedlearn GET {API}/api|{server_id}|{timestamp}|{verify_key}".encode()


def sign_login(signing_key, server_id: str, verify_key: str, now: float | None = None) -> str:
    """The :data:`LOGIN_HEADER` value: ``TIMESTAMP.SIGNATURE`` by a nacl ``SigningKey``."""
    timestamp = int(time.time() if now is None else now)
    signed = signing_key.sign(login_message(server_id, timestamp, verify_key))
    return f"{timestamp}.{signed.signature.hex()}"


def check_login(header: str | None, verify_key: str, server_id: str, now: float) -> bool:
    """Whether ``header`` is a fresh signature by ``verify_key`` for this server."""
    from nacl.signing import VerifyKey

    if not header or not verify_key:
        return False
    timestamp, _, signature = header.partition(".")
    try:
        if abs(int(timestamp) - now) > LOGIN_WINDOW_S:
            return False
        VerifyKey(bytes.fromhex(verify_key)).verify(
            login_message(server_id, int(timestamp), verify_key), bytes.fromhex(signature))
    except Exception:  # bad hex, wrong length, bad signature: all the same answer
        return False
    return True


class HttpDoor:
    """ASGI middleware: serve only :data:`ROUTES` (those opened by ``flags``), see module doc.

    ``check_body`` may refuse a route's body after it is read (a one-line reason, or
    None to pass it on): ``--allow-signup`` uses it to accept only self-registrations.
    """

    def __init__(self, app, *, server_id: str, flags: frozenset[str] = frozenset(),
                 check_body: Mapping[tuple[str, str], Callable[[bytes], str | None]] | None = None,
                 clock: Callable[[], float] = time.time, max_buffered: int = MAX_BUFFERED):
        self.app, self.server_id, self.clock = app, server_id, clock
        self.routes = {key: ROUTES[key] for key in served_routes(*flags)}
        self.check_body = check_body or {}
        self.max_buffered, self.buffered = max_buffered, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # syft's startup and shutdown
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # syft serves no websocket
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return None
        key = (scope["method"], scope["path"])
        route = self.routes.get(key)
        if route is None:
            return await answer(send, 404)
        if key == ("GET", f"{API}/api") and not self._signed(scope):
            return await answer(send, 401, "fedlearn: reading the API needs a signed login "
                                "(a fedlearn client, and clocks within 120 s)")
        body = await self._read(scope, receive, send, route.max_body)
        if body is None:  # refused (answered) or the client left
            return None
        try:
            check = self.check_body.get(key)
            refusal = check(body) if check is not None else None
            if refusal is not None:
                return await answer(send, 403, f"fedlearn: {refusal}")
            await self.app(scope, replay(body, receive), send)
        finally:
            self.buffered -= len(body)

    def _signed(self, scope: Scope) -> bool:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        keys = query.get("verify_key", [])
        header = dict(scope.get("headers", [])).get(LOGIN_HEADER.encode(), b"")
        return len(keys) == 1 and check_login(header.decode("latin-1"), keys[0],
                                              self.server_id, self.clock())

    async def _read(self, scope: Scope, receive: Receive, send: Send, cap: int) -> bytes | None:
        """The whole body, read with ``cap`` (and the shared budget) before anyone decodes it."""
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await answer(send, 413 if length.isdigit() else 400,
                         f"fedlearn: at most {cap} bytes here")
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                if size + len(chunk) > cap:
                    await answer(send, 413, f"fedlearn: at most {cap} bytes here")
                    break
                if self.buffered + len(chunk) > self.max_buffered:
                    await answer(send, 503, "fedlearn: busy, try again")
                    break
                self.buffered += len(chunk)  # one event loop: no lock needed
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    size = 0  # handed over: __call__ gives the budget back
                    return b"".join(chunks)
        finally:
            self.buffered -= size  # refused or abandoned: give the budget back now
        return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the real stream's end."""
    sent = False

    async def again() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: waits for the client to leave

    return again


async def answer(send: Send, status: int, text: str = "") -> None:
    """A refusal: status, one plain line (none for 404), and the connection closed."""
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def guard(app, server_id: str, *, flags: frozenset[str] = frozenset()) -> HttpDoor:
    """syft's app behind the door, on the server with id ``server_id`` (in the server child)."""
    checks = {("POST", f"{API}/register"): self_registration_only}
    return HttpDoor(app, server_id=server_id, flags=flags, check_body=checks)


def self_registration_only(body: bytes) -> str | None:
    """With ``--allow-signup``: a new account registers itself, as a data scientist only.

    syft honours the ``role`` a registration names (ADMIN included) and lets any holder
    of an owner's signing key register accounts by sending that private key as
    ``created_by``; neither is self-registration.
    """
    from fedlearn.backends.pysyft.loading import require_syft

    sy = require_syft()
    from syft.service.user.user import UserCreate
    from syft.service.user.user_roles import ServiceRole

    try:
        new_user = sy.deserialize(body, from_bytes=True)
    except Exception:
        return "not a registration"
    if not isinstance(new_user, UserCreate):
        return "not a registration"
    if new_user.created_by is not None:
        return "a registration may not carry another account's key; the owner creates " \
               "accounts with the admin API"
    if new_user.role not in (None, ServiceRole.DATA_SCIENTIST):
        return "self-registration creates data-scientist accounts only"
    return None


def sign_api_requests() -> None:
    """Make syft's HTTP client sign every ``GET /api/v2/api`` it sends (idempotent).

    Called by :func:`fedlearn.backends.pysyft.loading.require_syft` in every process that
    loads syft. The one place syft's client reads an API is ``HTTPConnection.get_api``;
    the signature goes in :data:`LOGIN_HEADER`, by the key whose API is asked for.
    """
    from syft.client.client import HTTPConnection

    original = HTTPConnection.get_api
    if getattr(original, "_fedlearn_signs", False):
        return

    def get_api(self, credentials, communication_protocol, metadata=None):
        if self.proxy_target_uid is not None or credentials is None:  # not over our door
            return original(self, credentials, communication_protocol, metadata)
        server_id = str((metadata or self.get_server_metadata(credentials)).id)
        header = sign_login(credentials.signing_key, server_id, str(credentials.verify_key))
        previous = self.headers
        self.headers = {**(previous or {}), LOGIN_HEADER: header}
        try:
            return original(self, credentials, communication_protocol, metadata)
        finally:
            self.headers = previous

    setattr(get_api, "_fedlearn_signs", True)
    HTTPConnection.get_api = get_api
