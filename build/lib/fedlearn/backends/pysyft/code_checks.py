"""Checks on one stored piece of user code: its inputs, what it executes, its fingerprint.

Used at review (:mod:`.review`) and again by the server right before every call
(:mod:`.call_guard`): the :func:`fingerprint` taken when the owner approved must equal
the code's fingerprint when it runs, so nothing changed after review runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from fedlearn.backends.pysyft import secure_training_code as secure
from fedlearn.backends.pysyft import sparse_training_code as sparse
from fedlearn.backends.pysyft import training_code as plain
from fedlearn.backends.pysyft.training_code import DATASET


@dataclass(frozen=True)
class Shape:
    """The function name and inputs one of fedlearn's generated functions has."""

    function: str
    inputs: tuple[str, ...]
    asset_inputs: tuple[str, ...]
    user_inputs: dict


PLAIN = Shape(plain.FUNCTION_NAME, plain.INPUTS, plain.ASSET_INPUTS, plain.USER_INPUTS)
SECURE = Shape(secure.FUNCTION_NAME, secure.INPUTS, secure.ASSET_INPUTS, secure.USER_INPUTS)
SPARSE = Shape(sparse.FUNCTION_NAME, sparse.INPUTS, sparse.ASSET_INPUTS, sparse.USER_INPUTS)


def expected_shape(code) -> Shape:
    """The secure-aggregation or top-k function's shape for code of that name, else the plain
    one (the plain training and DP-SGD functions' sources take neither the secret nor the
    residual)."""
    return {secure.FUNCTION_NAME: SECURE, sparse.FUNCTION_NAME: SPARSE}.get(
        code.service_func_name, PLAIN)


def _name(obj) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _describe_rule(kw: str, rule, site, problems: list[str], shape: Shape) -> str:
    from syft.service.policy.policy import Matches, UserOwned

    if isinstance(rule, Matches):
        asset = site.assets.get(str(rule.val))
        shown = (f"asset {asset} of dataset {DATASET}" if asset else
                 f"object {rule.val} (not one of this Datasite's assets)")
        if kw not in shape.asset_inputs:
            problems.append(f"input {kw!r} is bound to {shown}; it must be "
                            f"user-owned ({shape.user_inputs.get(kw, object).__name__})")
        elif asset != kw:
            problems.append(f"input {kw!r} is bound to {shown}, not to asset {kw}")
        return shown
    if isinstance(rule, UserOwned):
        if kw in shape.asset_inputs:
            problems.append(f"input {kw!r} must be bound to asset {kw}, not user-owned")
        elif shape.user_inputs.get(kw) is not rule.type:
            expected = shape.user_inputs.get(kw)
            problems.append(f"input {kw!r} is user-owned {_name(rule.type)}, expected "
                            f"{_name(expected) if expected else 'no such input'}")
        return f"user-owned {_name(rule.type)}"
    problems.append(f"input {kw!r} has a {_name(rule)} rule; fedlearn expects "
                    "assets and user-owned values only")
    return f"{_name(rule)} rule"


def input_problems(code, site, problems: list[str]) -> dict[str, str]:
    """Describe the input policy, and note every deviation from fedlearn's own."""
    from syft.service.policy.policy import MixedInputPolicy

    shown: dict[str, str] = {}
    shape = expected_shape(code)
    if code.input_policy_type is not MixedInputPolicy:
        problems.append(f"input policy is {_name(code.input_policy_type)}, not MixedInputPolicy")
        return shown
    rules_by_server = code.input_policy_init_kwargs or {}
    if len(rules_by_server) != 1:
        problems.append(f"input policy names {len(rules_by_server)} Datasites, expected 1")
    for server, rules in rules_by_server.items():
        if str(getattr(server, "server_id", "")) != site.server_id:
            problems.append(f"input policy is for another Datasite ({server})")
        for kw, rule in rules.items():
            shown[kw] = _describe_rule(kw, rule, site, problems, shape)
    if set(shown) != set(shape.inputs):
        problems.append(f"inputs are {sorted(shown)}, expected {sorted(shape.inputs)}")
    return shown


def runs_what_it_shows(code, problems: list[str]) -> None:
    """The executed code must be syft's own wrapping of the shown source, nothing more."""
    from syft.service.code.user_code import parse_user_code

    shape = expected_shape(code)
    if code.service_func_name != shape.function:
        problems.append(f"function is {code.service_func_name!r}, expected {shape.function!r}")
    if list(code.input_kwargs) != list(shape.inputs):
        problems.append(f"function arguments are {list(code.input_kwargs)}, expected "
                        f"{list(shape.inputs)}")
    if code.uses_datasite or code.nested_codes:
        problems.append("the code launches other code on the Datasite")
    if code.worker_pool_name not in (None, "default-pool"):
        problems.append(f"the code asks for the worker pool {code.worker_pool_name!r}")
    try:
        expected = parse_user_code(raw_code=code.raw_code, func_name=code.unique_func_name,
                                   original_func_name=code.service_func_name,
                                   function_input_kwargs=code.input_kwargs)
    except Exception as exc:
        problems.append(f"the source does not parse as one function ({exc})")
        return
    if expected != code.parsed_code:
        problems.append("the code that would run differs from the source shown")


def _policy_rules(code) -> list:
    rules = []
    for server, by_kw in (code.input_policy_init_kwargs or {}).items():
        for kw, rule in sorted(by_kw.items()):
            target = getattr(rule, "val", None) or _name(getattr(rule, "type", None))
            rules.append([str(getattr(server, "server_id", server)), kw, _name(rule), str(target)])
    return rules


def fingerprint(code) -> str:
    """SHA-256 of everything about stored code that decides what runs, on what, for whom."""
    parts = {
        "raw_code": code.raw_code, "parsed_code": code.parsed_code,
        "service_func_name": code.service_func_name, "unique_func_name": code.unique_func_name,
        "input_kwargs": list(code.input_kwargs), "input_policy": _name(code.input_policy_type),
        "input_rules": _policy_rules(code), "output_policy": _name(code.output_policy_type),
        "output_kwargs": {k: str(v) for k, v in (code.output_policy_init_kwargs or {}).items()},
        "user": str(code.user_verify_key), "uses_datasite": bool(code.uses_datasite),
        "nested": sorted(map(str, code.nested_codes or {})),
        "worker_pool": str(code.worker_pool_name)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
