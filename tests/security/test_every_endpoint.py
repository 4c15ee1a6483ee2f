"""Default deny at the API (#24): every service path the server registers, called as a guest and
as the data scientist, is refused unless it is on fedlearn's allowlist for that role; the admin's
own approval path goes through fedlearn. The server keeps serving afterwards."""
from __future__ import annotations

import subprocess
import sys

import pytest
from attacks import new_key, payload, post_api_call, server_uid
from target import EMAIL, SCIENTIST

pytestmark = pytest.mark.slow
REFUSAL = "refused by fedlearn's Datasite policy"


def every_path() -> list[str]:
    from syft.service.service import ServiceConfigRegistry

    from fedlearn.backends.pysyft import require_syft

    require_syft()
    return sorted(ServiceConfigRegistry.get_registered_configs()) + [
        "fedlearn.approve", "fedlearn.requests"]


def call(key, url, uid, path, *, blocking=True):
    import syft as sy
    from syft.client.api import SyftAPICall

    message = SyftAPICall(server_uid=uid, path=path, args=[], kwargs={}, blocking=blocking)
    return post_api_call(url, sy.serialize(message.sign(key), to_bytes=True))


def test_every_endpoint_is_refused_unless_allowlisted(served):
    from fedlearn.backends.pysyft.connection import login
    from fedlearn.backends.pysyft.service_policy import GUEST_ALLOWED, SCIENTIST_ALLOWED

    paths = every_path()
    assert len(paths) > 200  # syft 0.9.5 registers about 226
    uid = server_uid(served.url)
    scientist = login(served.url, EMAIL, SCIENTIST)
    wrongly = []
    for who, key, allowed in (("guest", new_key(), GUEST_ALLOWED),
                              ("scientist", scientist.credentials, SCIENTIST_ALLOWED)):
        for path in paths:
            answer = str(payload(call(key, served.url, uid, path)))
            if path == "code.call" and path in allowed:  # allowed, then checked by call_guard
                if "arguments fedlearn cannot check" not in answer:
                    wrongly.append(f"{who} {path} without approved code: {answer[:120]}")
            elif (REFUSAL in answer) == (path in allowed):
                wrongly.append(f"{who} {path}: {answer[:120]}")
    assert not wrongly, "\n".join(wrongly)
    # non-blocking (queued) calls are refused even for allowlisted paths
    queued = str(payload(call(scientist.credentials, served.url, uid, "dataset.get_all",
                              blocking=False)))
    assert REFUSAL in queued and "queue" in queued
    # and the server still serves the scientist
    assert [d.name for d in login(served.url, EMAIL, SCIENTIST).datasets] == ["mnist"]


def test_the_policy_is_printed_for_the_owner():
    run = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "serve", "--print-policy"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "data scientist:\n  action.get\n" in run.stdout
    assert "code.call" in run.stdout and "request.apply: approve with fedlearn" in run.stdout
    assert "action.execute" not in run.stdout


def test_the_api_a_login_fetches_lists_no_library_endpoints(served):
    """syft's API listed 554 numpy and torch functions (run through ``action.execute``, which
    no flow calls): three quarters of what every login made the server encode and the client
    decode. A served Datasite lists its services only, to the scientist and to a guest."""
    import syft as sy

    from fedlearn.backends.pysyft import quiet_syft
    from fedlearn.backends.pysyft.connection import login

    scientist = login(served.url, EMAIL, SCIENTIST)
    with quiet_syft():
        guest = sy.login_as_guest(url=served.url)
    for client in (scientist, guest):
        assert client.api.lib_endpoints == {}
        assert "dataset.get_all" in client.api.endpoints  # the services are still there


def test_fedlearn_logs_in_without_syfts_session_cache(served):
    """syft's session cache kept every logged-in client, signing key included, in a class
    attribute for the life of the process (keyed by an argon2 hash it never looked up)."""
    from syft.client.client import SyftClientSessionCache

    from fedlearn.backends.pysyft.connection import login

    before = dict(SyftClientSessionCache.__credentials_store__)
    kept = dict(SyftClientSessionCache.__client_cache__)
    client = login(served.url, EMAIL, SCIENTIST)
    assert SyftClientSessionCache.__credentials_store__ == before
    assert SyftClientSessionCache.__client_cache__ == kept
    assert client.credentials is not None  # logged in all the same
