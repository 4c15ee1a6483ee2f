"""What a request will really do, on which inputs, for whom — checked before approval.

PySyft 0.9.5 shows an owner a request's source, but approving a request *applies
every change it carries*: a request holding fedlearn's exact function plus one more
change gave the scientist read permission on the private asset, rewrote the approved
code's ``parsed_code``, linked the code to another function's status, or made the
scientist an admin. And what runs also depends on the request's *input policy*: a
request with fedlearn's exact source whose policy binds ``nonce`` to the private
images gets the images echoed back. So a review reads the whole request as the server
stored it:

- its changes: exactly one ``UserCodeStatusChange`` to APPROVED, linking the code to
  *that code's own* status object (:func:`change_problems`);
- the requester's account and role (looked up by their key, not the e-mail shown);
- the input policy: each input bound to an asset (which one) or user-owned (which
  type); the output policy and its limit;
- the SHA-256 of the source and whether it equals fedlearn's generated function for
  the run and the normalisation it declares (the normalisation is shown in words: it
  decides what the approved code does to the owner's data before training), and
  whether the code that will be executed is exactly syft's wrapping of that source.

:func:`review_request` works on plain views (:class:`SiteView`), so the same review
runs in the owner's client (``fedlearn datasite requests``) and on the server itself,
which refuses to approve while :attr:`RequestReview.problems` is not empty
(:mod:`fedlearn.backends.pysyft.call_guard`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fedlearn.backends.pysyft import owner_limits
from fedlearn.backends.pysyft.code_checks import input_problems, runs_what_it_shows
from fedlearn.backends.pysyft.training_code import (
    custom_model_in,
    normalisation_of,
    ready_made_in,
    run_of,
    self_contained_problem,
    source_digest,
)


@dataclass(frozen=True)
class SiteView:
    """What a review needs to know about the Datasite and the requester."""

    server_id: str
    assets: dict[str, str]  # action id -> asset name, for this Datasite's own dataset
    requester: str  # e-mail, "" for a key with no account
    role: str  # ADMIN, DATA_OWNER, DATA_SCIENTIST, GUEST or ""


@dataclass
class RequestReview:
    """One request as the owner should see it before deciding."""

    id: str
    status: str
    function: str
    requester: str
    role: str
    time: str
    inputs: dict[str, str]  # input name -> "asset images of dataset mnist" / "user-owned int"
    output_policy: str
    code: str
    sha256: str
    # the ready-made model whose generated function this is, "the data scientist's model
    # class X" for fedlearn's function around a class of theirs, or None
    matches: str | None
    run: str | None = None  # the fedlearn run the request is for
    max_calls: int | None = None  # what the scientist asked for (the output policy's limit)
    terms: str = ""  # the owner's limits and budget, or a plain warning that there is none
    # what the code does to the data first, in words ("x / 255, then minus mean ..."), or None
    normalisation: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def request_status(request) -> str:
    """"pending", "approved" or "rejected", from syft's enum."""
    return str(request.status).rpartition(".")[2].lower()


def change_problems(changes, code) -> list[str]:
    """Every way ``changes`` differ from one status change approving ``code`` itself."""
    from syft.service.code.user_code import UserCode, UserCodeStatus, UserCodeStatusCollection
    from syft.service.request.request import UserCodeStatusChange

    kinds = [type(change).__name__ for change in changes]
    if len(changes) != 1 or type(changes[0]) is not UserCodeStatusChange:
        return [f"the request carries the changes {kinds}; fedlearn approves exactly one "
                "UserCodeStatusChange (approving its own code) and nothing else"]
    change, problems = changes[0], []
    if change.value != UserCodeStatus.APPROVED:
        problems.append(f"the status change sets {change.value}, not APPROVED")
    if (change.linked_user_code.object_type is not UserCode
            or change.linked_user_code.object_uid != code.id):
        problems.append("the status change names other code than the code shown")
    if (change.linked_obj.object_type is not UserCodeStatusCollection
            or change.linked_obj.object_uid != code.status_link.object_uid):
        problems.append("the status change approves another code's status, not this code's")
    return problems


def _output_policy(code, problems: list[str]) -> tuple[str, int | None]:
    from syft.service.policy.policy import OutputPolicyExecuteCount

    kwargs = {k: v for k, v in (code.output_policy_init_kwargs or {}).items() if k != "id"}
    shown = f"{getattr(code.output_policy_type, '__name__', code.output_policy_type)}" \
            f"({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    limit = kwargs.get("limit")
    if code.output_policy_type is not OutputPolicyExecuteCount or type(limit) is not int \
            or limit < 1:
        problems.append(f"output policy is {shown}, expected OutputPolicyExecuteCount(limit=N)")
        limit = None
    return shown, limit


def _source_matches(source: str, problems: list[str], function: str) -> str | None:
    from fedlearn.backends.pysyft import secure_training_code as secure
    from fedlearn.backends.pysyft.dp_training_code import dp_variant_in
    from fedlearn.backends.pysyft.sparse_training_code import FUNCTION_NAME as SPARSE
    from fedlearn.backends.pysyft.sparse_training_code import sparse_variant_in

    if function == secure.FUNCTION_NAME:  # the secure-aggregation function, or nothing
        found = secure.secure_variant_in(source)
        if found is None:
            problems.append("the source is not fedlearn's generated secure-aggregation "
                            "function")
            return None
        what = f"{found.model} with secure aggregation (the owner's key never leaves)"
        if found.ready_made:
            return what
        problems.append(self_contained_problem(found.model_source, found.model) or
                        f"the model class {found.model} is the data scientist's own: read it")
        return f"the data scientist's model class {what}"
    if function == SPARSE:  # the top-k function, or nothing
        topk = sparse_variant_in(source)
        if topk is None:
            problems.append("the source is not fedlearn's generated top-k function")
            return None
        what = (f"{topk.model} sending top-k ({topk.fraction:g} of each tensor; the residual "
                "stays on this Datasite)")
        if topk.ready_made:
            return what
        problems.append(self_contained_problem(topk.model_source, topk.model) or
                        f"the model class {topk.model} is the data scientist's own: read it")
        return f"the data scientist's model class {what}"
    matches = ready_made_in(source)
    if matches is not None:
        return matches
    dp = dp_variant_in(source)
    if dp is not None:
        what = (f"{dp.model} with DP-SGD (noise multiplier {dp.noise_multiplier:g}, clip "
                f"{dp.max_grad_norm:g})")
        if dp.ready_made:
            return what
        problems.append(self_contained_problem(dp.model_source, dp.model) or
                        f"the model class {dp.model} is the data scientist's own: read it")
        return f"the data scientist's model class {what}"
    custom = custom_model_in(source)
    if custom is None:
        problems.append("the source is not fedlearn's generated training function")
        return None
    name, model_source = custom  # fedlearn's function around the scientist's own model class
    problems.append(self_contained_problem(model_source, name) or
                    f"the model class {name} is the data scientist's own, not one of "
                    "fedlearn's: read it, and approve with --force if it only computes "
                    "the forward pass")
    return f"the data scientist's model class {name}"


def review_request(request, code, site: SiteView) -> RequestReview:
    """Check ``request`` (a syft Request) whose code is ``code`` (None if it has none)."""
    problems: list[str] = []
    if not site.requester:
        problems.append("the requester is not a registered account (a guest)")
    elif site.role != "DATA_SCIENTIST":
        problems.append(f"the requester {site.requester} is a {site.role}, not a data scientist")
    base: dict[str, Any] = dict(id=str(request.id), status=request_status(request),
                                requester=site.requester, role=site.role,
                                time=str(request.request_time))
    if code is None:
        kinds = [type(change).__name__ for change in request.changes]
        problems.append(f"the request carries no code (changes: {kinds}); fedlearn approves "
                        "only its training code: deny it")
        return RequestReview(**base, function="(no code)", inputs={}, output_policy="",
                             code="", sha256="", matches=None, problems=problems)
    problems += change_problems(request.changes, code)
    inputs = input_problems(code, site, problems)
    output_policy, limit = _output_policy(code, problems)
    matches = _source_matches(code.raw_code, problems, str(code.service_func_name))
    runs_what_it_shows(code, problems)
    normalisation = normalisation_of(code.raw_code)
    limits = owner_limits.current()  # on the server: the terms it was served with
    problems += owner_limits.review_problems(limits, code.raw_code)
    return RequestReview(**base, function=str(code.service_func_name), inputs=inputs,
                         output_policy=output_policy, code=code.raw_code,
                         sha256=source_digest(code.raw_code), matches=matches,
                         run=run_of(code.raw_code), max_calls=limit, problems=problems,
                         terms=owner_limits.terms(limits),
                         normalisation=normalisation.describe() if normalisation else None)
