"""What a code request will really run, on which inputs, for whom — checked before approval.

PySyft 0.9.5 shows an owner the request's source, but what runs also depends on
the request's *input policy*: which inputs are bound to which private assets. A
request with fedlearn's exact source whose policy binds ``nonce`` to the private
images gets the images echoed back once approved. So a review reads the whole
request, as the server stored it:

- the requester's account and role (looked up by their key, not the e-mail shown);
- the input policy: each input bound to an asset (which one) or user-owned (which
  type); the output policy and its limit;
- the SHA-256 of the source and whether it equals fedlearn's generated function
  (:func:`fedlearn.backends.pysyft.training_code.known_digests`), and whether the code
  that will be executed is exactly syft's wrapping of that source.

:attr:`RequestReview.problems` lists everything that fails those checks;
:meth:`fedlearn.backends.pysyft.owner.Datasite.approve` refuses while it is not empty.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fedlearn.backends.pysyft.training_code import (
    ASSET_INPUTS,
    DATASET,
    FUNCTION_NAME,
    INPUTS,
    USER_INPUTS,
    custom_model_in,
    known_digests,
    self_contained_problem,
    source_digest,
)


@dataclass
class RequestReview:
    """One code request as the owner should see it before deciding."""

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
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def request_status(request) -> str:
    """"pending", "approved" or "rejected", from syft's enum."""
    return str(request.status).rpartition(".")[2].lower()


def _name(obj) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _own_assets(admin) -> dict[str, str]:
    """Action id -> asset name, for this Datasite's own dataset."""
    try:
        assets = admin.datasets[DATASET].assets
    except Exception:  # no dataset uploaded yet
        return {}
    return {str(asset.action_id): asset.name for asset in assets}


def _requester(admin, request) -> tuple[str, str]:
    """(e-mail, role) of the account whose key signed the request; ("", "") for none."""
    try:
        user = admin.api.services.user.get_by_verify_key(request.requesting_user_verify_key)
    except Exception:
        return "", ""
    if user is None or not hasattr(user, "role"):
        return "", ""
    return str(user.email), str(user.role).rpartition(".")[2].upper()


def _inputs(code, admin, problems: list[str]) -> dict[str, str]:
    """Describe the input policy, and note every deviation from fedlearn's own."""
    from syft.service.policy.policy import Matches, MixedInputPolicy, UserOwned

    shown: dict[str, str] = {}
    if code.input_policy_type is not MixedInputPolicy:
        problems.append(f"input policy is {_name(code.input_policy_type)}, not MixedInputPolicy")
        return shown
    rules_by_server = code.input_policy_init_kwargs or {}
    if len(rules_by_server) != 1:
        problems.append(f"input policy names {len(rules_by_server)} Datasites, expected 1")
    own = _own_assets(admin)
    server_id = str(admin.id)
    for server, rules in rules_by_server.items():
        if str(getattr(server, "server_id", "")) != server_id:
            problems.append(f"input policy is for another Datasite ({server})")
        for kw, rule in rules.items():
            if isinstance(rule, Matches):
                asset = own.get(str(rule.val))
                shown[kw] = (f"asset {asset} of dataset {DATASET}" if asset else
                             f"object {rule.val} (not one of this Datasite's assets)")
                if kw not in ASSET_INPUTS:
                    problems.append(f"input {kw!r} is bound to {shown[kw]}; it must be "
                                    f"user-owned ({USER_INPUTS.get(kw, object).__name__})")
                elif asset != kw:
                    problems.append(f"input {kw!r} is bound to {shown[kw]}, not to asset {kw}")
            elif isinstance(rule, UserOwned):
                shown[kw] = f"user-owned {_name(rule.type)}"
                if kw in ASSET_INPUTS:
                    problems.append(f"input {kw!r} must be bound to asset {kw}, not user-owned")
                elif USER_INPUTS.get(kw) is not rule.type:
                    expected = USER_INPUTS.get(kw)
                    problems.append(f"input {kw!r} is user-owned {_name(rule.type)}, expected "
                                    f"{_name(expected) if expected else 'no such input'}")
            else:
                shown[kw] = f"{_name(rule)} rule"
                problems.append(f"input {kw!r} has a {_name(rule)} rule; fedlearn expects "
                                "assets and user-owned values only")
    if set(shown) != set(INPUTS):
        problems.append(f"inputs are {sorted(shown)}, expected {sorted(INPUTS)}")
    return shown


def _output_policy(code, problems: list[str]) -> str:
    from syft.service.policy.policy import OutputPolicyExecuteCount

    kwargs = {k: v for k, v in (code.output_policy_init_kwargs or {}).items() if k != "id"}
    shown = f"{_name(code.output_policy_type)}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    if code.output_policy_type is not OutputPolicyExecuteCount:
        problems.append(f"output policy is {shown}, expected OutputPolicyExecuteCount")
    return shown


def _runs_what_it_shows(code, problems: list[str]) -> None:
    """The executed code must be syft's own wrapping of the shown source, nothing more."""
    from syft.service.code.user_code import parse_user_code

    if code.service_func_name != FUNCTION_NAME:
        problems.append(f"function is {code.service_func_name!r}, expected {FUNCTION_NAME!r}")
    if list(code.input_kwargs) != list(INPUTS):
        problems.append(f"function arguments are {list(code.input_kwargs)}, expected "
                        f"{list(INPUTS)}")
    if code.uses_datasite or code.nested_codes:
        problems.append("the code launches other code on the Datasite")
    try:
        expected = parse_user_code(raw_code=code.raw_code, func_name=code.unique_func_name,
                                   original_func_name=code.service_func_name,
                                   function_input_kwargs=code.input_kwargs)
    except Exception as exc:
        problems.append(f"the source does not parse as one function ({exc})")
        return
    if expected != code.parsed_code:
        problems.append("the code that would run differs from the source shown")


def review_request(request, admin) -> RequestReview:
    """Read ``request`` (a syft Request) as the owner ``admin`` sees it, and check it."""
    code = request.code
    problems: list[str] = []
    email, role = _requester(admin, request)
    if not email:
        problems.append("the requester is not a registered account (a guest)")
    elif role != "DATA_SCIENTIST":
        problems.append(f"the requester {email} is a {role}, not a data scientist")
    inputs = _inputs(code, admin, problems)
    output_policy = _output_policy(code, problems)
    digest = source_digest(code.raw_code)
    matches = known_digests().get(digest)
    custom = custom_model_in(code.raw_code) if matches is None else None
    if custom is not None:  # fedlearn's function around the scientist's own model class
        name, model_source = custom
        matches = f"the data scientist's model class {name}"
        problems.append(self_contained_problem(model_source, name) or
                        f"the model class {name} is the data scientist's own, not one of "
                        "fedlearn's: read it, and approve with --force if it only computes "
                        "the forward pass")
    elif matches is None:
        problems.append("the source is not fedlearn's generated training function")
    _runs_what_it_shows(code, problems)
    return RequestReview(
        id=str(request.id), status=request_status(request),
        function=str(code.service_func_name), requester=email, role=role,
        time=str(request.request_time), inputs=inputs, output_policy=output_policy,
        code=code.raw_code, sha256=digest, matches=matches, problems=problems)
