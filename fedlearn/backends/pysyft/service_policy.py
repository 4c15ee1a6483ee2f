"""Who may call which PySyft service: fedlearn's policy in front of syft 0.9.5's own checks.

Every API call a Datasite serves passes through one method,
``Server.handle_api_call_with_unsigned_result``. fedlearn wraps it: after syft has
checked the signature, the caller's role is looked up (from the server's user
table, never from anything the caller claims) and the call is refused when

- the signed message is not an API call at all (a signed *answer* replayed), or
- the caller is a **guest** (no account) and the path is not in
  :data:`GUEST_ALLOWED` (what a client needs to connect and browse dataset
  metadata and mocks: no data, no signatures, no code submission), or
- the caller's role may not call the path at all by syft's own service roles
  (syft checks them for blocking calls only: a non-blocking call was queued as a
  job whatever the caller's role), or
- the caller is not an admin and the path starts with one of
  :data:`ADMIN_ONLY_PREFIXES`: the peer-network services (``network.ping`` signs
  any bytes it is given with the server's key — the root admin's key — which let a
  guest forge root calls), projects (events signed and broadcast between
  servers), attestation and custom API endpoints; fedlearn uses none of them.

Non-admins' uploads are bounded too (:func:`upload_problem`): at most
:data:`MAX_UPLOAD_BYTES` per object, and text (``str``/``bytes``) at most
:data:`MAX_TEXT_BYTES` — fedlearn sends weights as tensors and only a 32-character
nonce as text, so a 20 MB "nonce" is refused before it is stored.

A refusal is returned as a signed ``SyftError`` whose message starts with
:data:`REFUSAL`, so clients see one clear line and the server keeps serving.
The wrapper lives in the class, so the forked uvicorn child of an HTTP Datasite
inherits it.
"""
from __future__ import annotations

REFUSAL = "refused by fedlearn's Datasite policy"
GUEST_ALLOWED = frozenset({
    "metadata.get_metadata", "settings.welcome_show",
    "dataset.get_all", "dataset.search", "action.get_mock"})
ADMIN_ONLY_PREFIXES = ("network.", "project.", "attestation.", "api.", "sync.")
MAX_UPLOAD_BYTES = 64 * 2**20  # the ready-made models' weights are 0.8-6.6 MB
MAX_TEXT_BYTES = 4096


def _argument(message, index: int, name: str):
    if len(message.args) > index:
        return message.args[index]
    return message.kwargs.get(name)


def upload_problem(message) -> str | None:
    """Why a non-admin's upload in this API call is too big, or None."""
    path = message.path
    if path == "blob_storage.allocate":
        entry = _argument(message, 0, "obj")
        size, kind = getattr(entry, "file_size", 0) or 0, getattr(entry, "type_", None)
        if size > MAX_UPLOAD_BYTES:
            return f"an upload of {size} bytes (at most {MAX_UPLOAD_BYTES})"
        if kind in (str, bytes) and size > MAX_TEXT_BYTES:
            return f"a text of {size} bytes (at most {MAX_TEXT_BYTES})"
    elif path == "blob_storage.write_to_disk":
        data = _argument(message, 1, "data")
        if isinstance(data, (bytes, bytearray)) and len(data) > MAX_UPLOAD_BYTES:
            return f"an upload of {len(data)} bytes (at most {MAX_UPLOAD_BYTES})"
    elif path == "action.set":
        obj = _argument(message, 0, "action_object")
        data = getattr(obj, "syft_action_data_cache", None)
        if isinstance(data, (str, bytes)) and len(data) > MAX_TEXT_BYTES:
            return f"a text of {len(data)} characters (at most {MAX_TEXT_BYTES})"
    return None


def decide(path: str, role_name: str, *, allowed_by_syft: bool = True) -> str | None:
    """The reason to refuse a call to ``path`` by a caller of this role, or None to allow it."""
    if role_name == "ADMIN":
        return None
    if path == "metadata":  # answered before syft's role check: the public server info
        return None
    if path == "queue":  # a caller's own job result; the job already passed this policy
        return f"{REFUSAL}: {path} needs an account" if role_name == "GUEST" else None
    if not allowed_by_syft:
        return f"{REFUSAL}: a {role_name.lower()} may not call {path}"
    if role_name == "GUEST" and path not in GUEST_ALLOWED:
        return (f"{REFUSAL}: {path} needs an account (guests may only read metadata and "
                "mocks)")
    if path.startswith(ADMIN_ONLY_PREFIXES):
        return f"{REFUSAL}: {path} is for the Datasite's admin only"
    return None


def refusal(message, role_name: str, *, allowed_by_syft: bool = True) -> str | None:
    """:func:`decide`, then the upload bounds for everyone but the admin."""
    reason = decide(message.path, role_name, allowed_by_syft=allowed_by_syft)
    if reason is None and role_name != "ADMIN":
        too_big = upload_problem(message)
        if too_big is not None:
            reason = f"{REFUSAL}: {too_big}"
    return reason


def install() -> None:
    """Wrap the server's single API-call entry point (idempotent)."""
    from syft.client.api import SyftAPICall
    from syft.server.server import Server
    from syft.service.response import SyftError
    from syft.service.service import UserServiceConfigRegistry

    original = Server.handle_api_call_with_unsigned_result
    if getattr(original, "_fedlearn_policy", False):
        return

    def handle_api_call_with_unsigned_result(self, api_call, *args, **kwargs):
        # unsigned calls and bad signatures: syft's own checks refuse them first
        if getattr(api_call, "is_valid", False) is not True and not isinstance(
                api_call, SyftAPICall):
            return original(self, api_call, *args, **kwargs)
        message = api_call if isinstance(api_call, SyftAPICall) else api_call.message
        if not isinstance(message, SyftAPICall) or not isinstance(message.path, str):
            return SyftError(message=f"{REFUSAL}: the signed message is not an API call")
        role = self.get_role_for_credentials(credentials=api_call.credentials)
        allowed = message.path in UserServiceConfigRegistry.from_role(role)
        reason = refusal(message, role.name, allowed_by_syft=allowed)
        if reason is not None:
            return SyftError(message=reason)
        return original(self, api_call, *args, **kwargs)

    setattr(handle_api_call_with_unsigned_result, "_fedlearn_policy", True)
    Server.handle_api_call_with_unsigned_result = handle_api_call_with_unsigned_result
