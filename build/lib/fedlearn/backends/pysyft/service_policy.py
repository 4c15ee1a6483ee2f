"""Who may call which PySyft service: an explicit allowlist per role, in front of syft 0.9.5.

PySyft 0.9.5 registers about 226 service endpoints; closing the dangerous ones one by
one did not converge (``action.execute`` reached numpy's file writers, ``network.ping``
signed anything with the root key). So a Datasite served by fedlearn answers only what
fedlearn's own flow calls, recorded from a real run:

- a **guest** (a key with no account) may read the public metadata and list datasets
  and their mocks (:data:`GUEST_ALLOWED`);
- a **data scientist** may in addition log in, submit a code request, read the status
  of their own requests, upload the arguments of a call, call the approved code and
  fetch its result (:data:`SCIENTIST_ALLOWED`); syft's own permission checks still
  decide *which* objects they reach (their own results, never the private assets);
- the **admin** (the owner) may call everything, except syft's own approval
  (``request.apply``): an approval goes through ``fedlearn.approve``, which reviews the
  whole request on the server first (:mod:`fedlearn.backends.pysyft.call_guard`);
- every other role (a data owner account, anything new) and every path not listed is
  refused, as are non-blocking calls (queued jobs) and calls addressed to another server
  from anyone but the admin.

The API a client fetches at login lists syft's services but not its library endpoints
(numpy and torch through ``action.execute``), which nobody's flow calls.

Non-admins' uploads are bounded too (:func:`upload_problem`). A refusal is returned as
a signed ``SyftError`` whose message starts with :data:`REFUSAL`, so clients see one
clear line and the server keeps serving. ``fedlearn datasite serve --print-policy``
prints these lists.
"""
from __future__ import annotations

REFUSAL = "refused by fedlearn's Datasite policy"
GUEST_ALLOWED = frozenset({
    "metadata.get_metadata",  # the server's name and version: what a login shows
    "dataset.get_all", "dataset.search",  # dataset names, descriptions, shapes
    "action.get_mock"})  # the mocks (fedlearn's are seeded noise)
SCIENTIST_ALLOWED = GUEST_ALLOWED | frozenset({
    "user.get_current_user",  # the client checks its own role (never train as admin)
    "code.request_code_execution",  # submit the training code as a request
    "request.get_all",  # the status of one's own requests (syft filters by owner)
    "action.set", "action.has_storage_permission",  # upload a call's arguments...
    "blob_storage.allocate", "blob_storage.write_to_disk",  # ...large ones as blobs
    "code.call",  # run the approved code (counted and verified by call_guard)
    "action.get", "blob_storage.read"})  # fetch one's own result
ALLOWED = {"GUEST": GUEST_ALLOWED, "DATA_SCIENTIST": SCIENTIST_ALLOWED}
ADMIN_REFUSED = {"request.apply": "approve with fedlearn datasite approve (fedlearn.approve), "
                                  "which checks the whole request first"}
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


def decide(path: str, role_name: str, *, allowed_by_syft: bool = True,
           blocking: bool = True) -> str | None:
    """The reason to refuse a call to ``path`` by a caller of this role, or None to allow it."""
    if role_name == "ADMIN":
        refused = ADMIN_REFUSED.get(path)
        return f"{REFUSAL}: {path}: {refused}" if refused else None
    if path == "metadata":  # answered before syft's role check: the public server info
        return None
    if not blocking:
        return f"{REFUSAL}: a {role_name.lower()} may not queue jobs (non-blocking {path})"
    allowed = ALLOWED.get(role_name)
    if allowed is None:
        return f"{REFUSAL}: {path}: a {role_name.lower()} account may not call anything here"
    if path not in allowed:
        who = "needs an account" if role_name == "GUEST" else "is not part of fedlearn's flow"
        return f"{REFUSAL}: {path} {who} (a {role_name.lower()} may call only: " \
               f"{', '.join(sorted(allowed))})"
    if not allowed_by_syft:
        return f"{REFUSAL}: a {role_name.lower()} may not call {path}"
    return None


def refusal(message, role_name: str, *, allowed_by_syft: bool = True) -> str | None:
    """:func:`decide`, then the upload bounds for everyone but the admin."""
    reason = decide(message.path, role_name, allowed_by_syft=allowed_by_syft,
                    blocking=getattr(message, "blocking", True))
    if reason is None and role_name != "ADMIN":
        too_big = upload_problem(message)
        if too_big is not None:
            reason = f"{REFUSAL}: {too_big}"
    return reason


def policy_text() -> str:
    """The allowlists as the owner reads them (``serve --print-policy``)."""
    lines = ["fedlearn's Datasite policy: every service path not listed is refused."]
    for role, paths in (("guest (no account)", GUEST_ALLOWED),
                        ("data scientist", SCIENTIST_ALLOWED)):
        lines.append(f"{role}:")
        lines += [f"  {path}" for path in sorted(paths)]
    lines.append("admin (the owner): every path, except")
    lines += [f"  {path}: {why}" for path, why in ADMIN_REFUSED.items()]
    lines.append("fedlearn's own paths: fedlearn.requests and fedlearn.approve (admin only); "
                 "fedlearn.terms (admin and data scientist)")
    lines.append("any other role: nothing. Non-blocking (queued) calls: admin only.")
    return "\n".join(lines)


def install() -> None:
    """Wrap the server's single API-call entry point (idempotent)."""
    from syft.client.api import SyftAPICall
    from syft.server.server import Server
    from syft.service.response import SyftError
    from syft.service.service import UserServiceConfigRegistry

    from fedlearn.backends.pysyft import call_guard

    original = Server.handle_api_call_with_unsigned_result
    if getattr(original, "_fedlearn_policy", False):
        return

    def handle_api_call_with_unsigned_result(self, api_call, *args, **kwargs):
        if isinstance(api_call, SyftAPICall):  # unsigned: only in-process servers take it
            if self.required_signed_calls:
                return SyftError(message=f"{REFUSAL}: the API call is not signed")
            return original(self, api_call, *args, **kwargs)
        if getattr(api_call, "is_valid", False) is not True:
            return SyftError(message=f"{REFUSAL}: the API call's signature is not valid")
        message = api_call.message
        if not isinstance(message, SyftAPICall) or not isinstance(message.path, str):
            return SyftError(message=f"{REFUSAL}: the signed message is not an API call")
        role = self.get_role_for_credentials(credentials=api_call.credentials)
        if message.server_uid != self.id and role.name != "ADMIN":
            return SyftError(message=f"{REFUSAL}: this call is addressed to another server")
        if message.path.startswith("fedlearn."):  # fedlearn's own, answered here
            return call_guard.fedlearn_call(self, role.name, api_call.credentials, message)
        allowed = message.path in UserServiceConfigRegistry.from_role(role)
        reason = refusal(message, role.name, allowed_by_syft=allowed)
        if reason is None:
            reason = call_guard.before_call(self, role.name, api_call.credentials, message)
        if reason is not None:
            call_guard.log_refusal(self, role.name, message.path, reason)
            return SyftError(message=reason)
        result = original(self, api_call, *args, **kwargs)
        call_guard.after_call(self, role.name, api_call.credentials, message, result)
        return result

    setattr(handle_api_call_with_unsigned_result, "_fedlearn_policy", True)
    Server.handle_api_call_with_unsigned_result = handle_api_call_with_unsigned_result
    original_get_api = Server.get_api

    def get_api(self, *args, **kwargs):
        # The API a login fetches lists syft's 554 library endpoints (numpy and torch
        # functions run through action.execute, refused to everyone but the admin, whose
        # flow never calls them): three quarters of its 3.6 MB, which the server encodes
        # and the client decodes at every login. It lists the services only.
        api = original_get_api(self, *args, **kwargs)
        api.lib_endpoints = {}
        return api

    Server.get_api = get_api
