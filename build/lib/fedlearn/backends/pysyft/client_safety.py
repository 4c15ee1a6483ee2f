"""No code a server sends ever runs here: syft 0.9.5's paths from a reply to ``exec``, closed.

At login syft's client registers a *code reloader* (``CODE_RELOADER``). When anything
it decodes names a type it does not know, syft's decoder (``rs_proto2object``) calls
every reloader; the client's asks the server for the user's code objects and
``exec``s the policy source (``UserPolicy.parsed_code``) of each one the server calls
approved (``load_approved_policy_code`` -> ``execute_policy_code``). A malicious or
impersonated Datasite thus ran its own code inside the data scientist's
``fedlearn train`` (reproduced: ``tests/security/test_attack_malicious_datasite.py``).
The same source also runs client-side through ``UserCode.input_policy`` /
``output_policy``, ``UserCode.run`` and a custom API endpoint called locally.

:func:`install` (from :func:`~fedlearn.backends.pysyft.hardening.harden`, so in every
process that loads syft through ``require_syft``) closes them all:

1. a type name missing from syft's registry is :class:`UnknownTypeRefused`, raised
   before any reloader runs, on every side (a guest's request to a server included:
   it no longer makes the server reload every approved code either);
2. the reloaders and ``load_approved_policy_code`` load nothing;
3. custom policy code (``UserPolicy``) is never executed anywhere: fedlearn uses only
   syft's built-in ``MixedInputPolicy`` and ``OutputPolicyExecuteCount``, and review
   refuses any other policy;
4. ``UserCode.run`` and ``Endpoint.__call__`` / ``call_locally`` (code from a reply,
   run on this machine) refuse.

What a server runs for an approved request — the approved function itself
(``execute_byte_code``), under syft's built-in policies — is untouched, so an
in-process Datasite (the tutorial's ``launch_syft_workers``) is both a client and a
server in one process and still trains.
"""
from __future__ import annotations

from fedlearn.backends.pysyft.hardening import RefusedBySecurityPolicy


class UnknownTypeRefused(RefusedBySecurityPolicy):
    """A message named a type fedlearn's syft does not know; nothing was loaded for it."""


class ServerCodeRefused(RefusedBySecurityPolicy):
    """Something asked this process to run code that arrived in a message."""


def _refuse_unknown_types() -> None:
    from syft.serde import recursive
    from syft.types.syft_object_registry import SyftObjectRegistry

    original = getattr(recursive, "_fedlearn_original_proto2object", recursive.rs_proto2object)

    def rs_proto2object(proto):
        name, version = proto.canonicalName, getattr(proto, "version", -1)
        if not SyftObjectRegistry.has_serde_class(name, version):
            raise UnknownTypeRefused(
                f"refused to decode a message naming the type {str(name)[:80]!r} (version "
                f"{version}), which fedlearn does not know; it never loads code from the "
                "sender to decode one")
        return original(proto)

    recursive._fedlearn_original_proto2object = original
    recursive.rs_proto2object = rs_proto2object  # syft's decoders look it up at call time


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise ServerCodeRefused(f"refused to run {what}: fedlearn never executes code that "
                                "arrived in a message, except an approved request's function "
                                "on its Datasite")
    return refused


def _load_nothing(*args, **kwargs) -> None:
    """Stands in for syft's policy-code reloaders: nothing is loaded, nothing runs."""


def install() -> None:
    """Apply the patches above (idempotent: re-applying replaces them by the same)."""
    from syft.client.client import SyftClient
    from syft.service.api.api import Endpoint
    from syft.service.code import user_code, user_code_service
    from syft.service.code.user_code import UserCode
    from syft.service.policy import policy

    _refuse_unknown_types()
    SyftClient._reload_user_code = _load_nothing
    user_code.load_approved_policy_code = _load_nothing  # the client's reloader imports it
    user_code_service.load_approved_policy_code = _load_nothing  # the server's, by name
    policy.execute_policy_code = _refuse("custom policy code (a UserPolicy)")
    UserCode.run = property(lambda self: _refuse("a code object's source locally")())
    Endpoint.__call__ = _refuse("a custom API endpoint's code locally")
    Endpoint.call_locally = _refuse("a custom API endpoint's code locally")
