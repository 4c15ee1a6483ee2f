"""The server's own word on approvals and calls: reviewed, recorded, counted, verified.

Runs inside the Datasite's server process, behind :mod:`.service_policy`:

- **Approval** is fedlearn's, on the server: the owner's client calls
  ``fedlearn.approve`` (syft's own ``request.apply`` is refused), and the server
  reviews the request as *it* stored it (:func:`fedlearn.backends.pysyft.review.
  review_request`: the whole change list, inputs, source, executed code), refuses
  while there is a problem unless the owner forces it, applies the one status change,
  and records the code's :func:`~.code_checks.fingerprint` and the number of calls
  the owner allowed (by default what the scientist asked for) in
  :class:`~.state.DatasiteState`.
- **Every call** of approved code (``code.call``) is checked first: the approval is on
  record, the stored code's fingerprint is still the one approved (so nothing changed
  after review runs), the call is counted durably before it runs and refused past the
  approved number (syft 0.9.5 does not enforce it, PySyft issue #9391), and the
  owner's limits and privacy budget are applied (:mod:`.owner_limits`).
- **Secure aggregation**: a call of the approved secure-aggregation function that masks an
  input or reveals shares is checked against, and recorded in, the scientist's
  :class:`~fedlearn.updates.secagg.SecAggLedger` in the state, durably, before it runs: one
  masked input per round id, one kind of share per peer and round, the same weights never
  masked with another set of owners (:mod:`.secure_training_code`).
- Requests, approvals, refusals, executions and result fetches go to the state's
  hash-chained audit log.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from fedlearn.backends.pysyft import owner_limits
from fedlearn.backends.pysyft.code_checks import fingerprint
from fedlearn.backends.pysyft.review import SiteView, change_problems, review_request
from fedlearn.backends.pysyft.secure_training_code import FUNCTION_NAME as SECURE_FUNCTION
from fedlearn.backends.pysyft.state import CallsExhausted, DatasiteState
from fedlearn.backends.pysyft.training_code import DATASET, run_of
from fedlearn.updates.secagg import SecAggRefused

REFUSAL = "refused by fedlearn's Datasite policy"
_state_dir: Path | None = None
_states: dict[str, DatasiteState] = {}


def use_state_dir(path: str | Path | None) -> None:
    """Keep fedlearn's state of the Datasite launched next in ``path`` (None: its temp dir)."""
    global _state_dir
    _state_dir = Path(path) if path is not None else None


def state_for(server) -> DatasiteState:
    """The :class:`DatasiteState` of a running syft Server (opened in the serving process)."""
    key = str(server.id)
    if key not in _states:
        directory = _state_dir or Path(server.get_temp_dir("fedlearn"))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _states[key] = DatasiteState(directory)
    return _states[key]


def _stored(server, stash, uid):
    return stash.get_by_uid(server.verify_key, uid).unwrap()


def code_of(server, request):
    """The code a request's first code-status change names, or None."""
    from syft.service.request.request import UserCodeStatusChange

    for change in request.changes:
        if isinstance(change, UserCodeStatusChange):
            return _stored(server, server.services.user_code.stash,
                           change.linked_user_code.object_uid)
    return None


def site_view(server, verify_key) -> SiteView:
    assets = {}
    for dataset in server.services.dataset.stash.get_all(server.verify_key).unwrap():
        if dataset.name == DATASET and not getattr(dataset, "to_be_deleted", False):
            assets.update({str(a.action_id): a.name for a in dataset.asset_list})
    try:
        user = server.services.user.stash.get_by_verify_key(server.verify_key,
                                                            verify_key).unwrap()
        email, role = str(user.email), user.role.name
    except Exception:  # a key with no account
        email, role = "", ""
    return SiteView(str(server.id), assets, email, role)


def review(server, request) -> dict:
    """The server's review of one request, with the calls counted so far if approved."""
    code = code_of(server, request)
    shown = review_request(request, code, site_view(server, request.requesting_user_verify_key))
    row = shown.as_dict()
    approval = state_for(server).approval_for_code(str(code.id)) if code is not None else None
    row["approved_calls"] = approval.max_calls if approval else None
    row["calls"] = approval.calls if approval else 0
    return row


def _approve(server, credentials, uid, force: bool, max_calls: int | None) -> dict:
    from syft.service.context import AuthedServiceContext
    from syft.service.user.user_roles import ServiceRole

    request = _stored(server, server.services.request.stash, uid)
    row = review(server, request)
    state = state_for(server)
    code = code_of(server, request)
    hard = change_problems(request.changes, code) if code is not None else row["problems"]
    if hard:  # never forced: approving would apply every change the request carries
        state.log("refuse", request=str(uid), why="approve: " + "; ".join(hard))
        raise PermissionError(f"not approving {uid}: {'; '.join(hard)}. Deny it")
    if row["problems"] and not force:
        state.log("refuse", request=str(uid), why="approve: " + "; ".join(row["problems"]))
        raise PermissionError(f"not approving {uid}: {'; '.join(row['problems'])}. Deny it, or "
                              "approve with --force if you have read the code and trust it")
    asked = row["max_calls"]
    allowed = max_calls if max_calls is not None else asked
    if type(allowed) is not int or allowed < 1 or (asked is not None and allowed > asked):
        raise PermissionError(f"--max-calls must be 1..{asked or 'N'} (the scientist asked for "
                              f"{asked}); got {allowed!r}")
    context = AuthedServiceContext(server=server, credentials=credentials, role=ServiceRole.ADMIN)
    server.services.request.apply(context=context, uid=uid)
    state.approve(request_id=str(uid), code_id=str(code.id), digest=fingerprint(code),
                  scientist=str(request.requesting_user_verify_key), max_calls=allowed)
    if row["problems"]:
        state.log("forced", request=str(uid), problems=row["problems"])
    return {**row, "approved_calls": allowed, "status": "approved"}


def fedlearn_call(server, role: str, credentials, message):
    """Answer fedlearn's own paths: ``fedlearn.requests`` and ``fedlearn.approve`` for the
    owner, ``fedlearn.terms`` (the owner's limits and budget) for a data scientist too."""
    from syft.service.response import SyftError, SyftSuccess

    if message.path == "fedlearn.terms" and role in ("ADMIN", "DATA_SCIENTIST"):
        return SyftSuccess(message="terms", value=asdict(owner_limits.current()))
    if role != "ADMIN":
        return SyftError(message=f"{REFUSAL}: {message.path} is for the Datasite's owner")
    kwargs = message.kwargs
    try:
        if message.path == "fedlearn.requests":
            rows = [review(server, r) for r in
                    server.services.request.stash.get_all(server.verify_key).unwrap()]
            return SyftSuccess(message="requests", value=rows)
        if message.path == "fedlearn.approve":
            row = _approve(server, credentials, kwargs.get("uid"), bool(kwargs.get("force")),
                           kwargs.get("max_calls"))
            return SyftSuccess(message="approved", value=row)
    except PermissionError as exc:
        return SyftError(message=str(exc))
    return SyftError(message=f"{REFUSAL}: no such path {message.path}")


def _value(server, obj):
    """The value behind an argument of a call (an ActionObject the scientist uploaded)."""
    uid = getattr(obj, "id", None)
    if uid is None:
        return obj
    stored = server.services.action.stash.get(uid=uid, credentials=server.verify_key).unwrap()
    return stored.syft_action_data


def _check_call(server, credentials, message) -> str | None:
    code = _stored(server, server.services.user_code.stash, message.kwargs.get("uid"))
    state = state_for(server)
    approval = state.approval_for_code(str(code.id))
    if approval is None:
        return f"{REFUSAL}: code {code.id} was not approved through fedlearn on this Datasite"
    if approval.scientist != str(credentials):
        return f"{REFUSAL}: the approval of code {code.id} is another scientist's"
    if fingerprint(code) != approval.digest:
        state.log("refuse", code=str(code.id), why="code changed since approval")
        return f"{REFUSAL}: code {code.id} changed after the owner approved it"
    if approval.calls >= approval.max_calls:  # before the budget: a refused call costs no ε
        state.log("refuse", code=str(code.id), why="calls used up")
        return f"{REFUSAL}: {CallsExhausted.text(approval)}"
    plan = _value(server, message.kwargs.get("plan"))
    mode = _value(server, message.kwargs.get("mode"))
    reason = owner_limits.call_refusal(owner_limits.current(), state, scientist=str(credentials),
                                       plan=plan, mode=mode, source=code.raw_code)
    if reason is not None:
        state.log("refuse", code=str(code.id), why=reason)
        return f"{REFUSAL}: {reason}"
    try:
        state.take_call(str(code.id), mode=str(mode))
    except CallsExhausted as exc:
        return f"{REFUSAL}: {exc}"
    if code.service_func_name == SECURE_FUNCTION and mode in ("fit", "unmask"):
        reason = _secagg_refusal(server, state, str(credentials), code, message, str(mode))
        if reason is not None:
            state.log("refuse", code=str(code.id), why=reason)
            return f"{REFUSAL}: {reason}"
    return None


def _digest(weights) -> str:
    """SHA-256 of the global weights a scientist sends (names, shapes, dtypes, values)."""
    h = hashlib.sha256()
    for key in sorted(weights):
        tensor = weights[key].detach().cpu().contiguous()
        h.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def _secagg_refusal(server, state, scientist: str, code, message, mode: str) -> str | None:
    """Check and record, before it runs, a secure-aggregation call that masks or reveals."""
    msg = _value(server, message.kwargs.get("message"))
    try:
        context = f"{run_of(code.raw_code)}|{msg['round']}"
        roster, me = sorted(msg["roster"]), msg["me"]
        if not all(isinstance(n, str) for n in roster) or not isinstance(me, str):
            raise TypeError("names must be strings")
        if mode == "fit":
            digest = _digest(_value(server, message.kwargs.get("weights")))
            detail = {"round": context, "mask": roster}
            state.record_secagg(scientist, lambda ledger: ledger.record_mask(
                context, roster, digest), **detail)
        else:
            survivors, dropped = list(msg["survivors"]), list(msg["dropped"])
            if not all(isinstance(n, str) for n in survivors + dropped):
                raise TypeError("names must be strings")
            detail = {"round": context, "survivors": survivors, "dropped": dropped}
            state.record_secagg(scientist, lambda ledger: ledger.record_reveal(
                context, me, survivors, dropped), **detail)
    except SecAggRefused as exc:
        return f"secure aggregation: {exc}"
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return f"secure aggregation: a message fedlearn cannot check ({type(exc).__name__})"
    return None


def before_call(server, role: str, credentials, message) -> str | None:
    """fedlearn's checks that need the server's own objects: a refusal, or None."""
    if role == "ADMIN":
        return None
    if message.path == "code.call":
        try:
            return _check_call(server, credentials, message)
        except Exception as exc:  # no such code, arguments that are not uploaded objects, ...
            return f"{REFUSAL}: code.call with arguments fedlearn cannot check ({exc})"
    if message.path == "action.set":
        obj = message.args[0] if message.args else message.kwargs.get("action_object")
        uid = getattr(obj, "id", None)
        if uid is not None and server.services.action.stash.exists(
                credentials=server.verify_key, uid=uid.id):
            return f"{REFUSAL}: action.set may only create new objects, not replace {uid}"
    return None


def after_call(server, role: str, credentials, message, result) -> None:
    """Log what the audit trail keeps: requests submitted, results fetched, denials."""
    events = {"code.request_code_execution": "request", "action.get": "fetch",
              "blob_storage.read": "fetch", "request.deny": "deny", "request.undo": "deny"}
    event = events.get(message.path)
    if event is not None:
        target = message.args[0] if message.args else message.kwargs.get("uid", "")
        state_for(server).log(event, by=str(credentials), role=role, path=message.path,
                              target=str(getattr(target, "id", target))[:64],
                              ok=type(result).__name__ != "SyftError")


def log_refusal(server, role: str, path: str, reason: str) -> None:
    """Log an account's refusal; a guest's is not logged (anyone could fill the disk)."""
    if role != "GUEST":
        state_for(server).log("refuse", role=role, path=path, why=reason[:300])
