"""Attack: a malicious Datasite runs its code on the data scientist's machine.

A hostile front (:mod:`hostile_front`) passes everything through to a real served
Datasite but answers one call after the login with a type name the client does not
know. syft 0.9.5's client then "reloads user code": it asks the server for the user's
code and ``exec``s the policy source of every code object the server calls approved.
The control test shows the gadget writing its marker through syft alone (plus the signed
``GET /api`` the Datasite's door requires); fedlearn's client must refuse with one clear
line and run nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from attacks import server_uid
from hostile_front import HostileFront, code_loading_answers, unknown_type_blob
from target import EMAIL, SCIENTIST


@pytest.fixture
def front(served, tmp_path):
    marker = tmp_path / "the-server-s-code-ran-here"
    hostile = HostileFront(served.url, code_loading_answers(server_uid(served.url), marker))
    yield hostile, marker
    hostile.close()
    assert requests.get(served.url + "/api/v2/metadata", timeout=30).status_code == 200


BARE_SYFT = """
import sys
import syft as sy
from fedlearn.backends.pysyft.http_door import sign_api_requests
sign_api_requests()  # only what the Datasite's door needs to serve its API; no hardening
client = sy.login(url="http://127.0.0.1", port=int(sys.argv[1]), email=sys.argv[2],
                  password=sys.argv[3])
try:
    client.api.services.user.get_current_user()
except Exception as exc:
    print(type(exc).__name__)
"""


def test_control_the_front_runs_its_code_through_unpatched_syft(front):
    hostile, marker = front
    port = hostile.url.rpartition(":")[2]
    run = subprocess.run([sys.executable, "-c", BARE_SYFT, port, EMAIL, SCIENTIST],
                         env={**os.environ, "NO_PROXY": "*"}, capture_output=True, text=True,
                         timeout=300)
    assert marker.exists(), run.stdout + run.stderr  # syft 0.9.5 exec'd the server's code
    assert hostile.seen == ["user.get_current_user", "code.get_all_for_user",
                            "notifications.resolve_object"]


def test_fedlearn_train_refuses_the_datasite_in_one_line_and_runs_nothing(front, served,
                                                                          tmp_path):
    hostile, marker = front
    run = subprocess.run(
        [sys.executable, "-m", "fedlearn", "train", "--backend", "pysyft",
         f"--datasite=bob={hostile.url}", "--email", EMAIL, "--rounds", "1",
         "--test-size", "500", "--out", str(tmp_path / "out"), "--no-progress",
         "--approval-timeout", "5"],
        env={**served.env, "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST}, capture_output=True,
        text=True, timeout=300)
    assert not marker.exists(), "the Datasite's answer ran code on the scientist's machine"
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "refuses to decode" in lines[0] and "fedlearn does not know" in lines[0]
    assert hostile.seen == ["user.get_current_user"]  # no code was even asked for


def test_syft_worker_connect_refuses_and_loads_nothing(front):
    from fedlearn.backends.pysyft import SyftWorker
    from fedlearn.backends.pysyft.client_safety import UnknownTypeRefused

    hostile, marker = front
    with pytest.raises(UnknownTypeRefused, match="fedlearn does not know"):
        SyftWorker.connect("bob", hostile.url, email=EMAIL, password=SCIENTIST)
    assert not marker.exists()
    assert hostile.seen == ["user.get_current_user"]


def test_the_server_refuses_an_unknown_type_too_and_keeps_serving(served):
    """The same patch on the owner's side: an unknown type from anyone is refused at
    once, instead of making the server reload every approved code object."""
    reply = requests.post(served.url + "/api/v2/api_call", data=unknown_type_blob(), timeout=60)
    assert reply.status_code == 400 and "fedlearn does not know" in reply.text
    assert len(reply.text.splitlines()) == 1
    assert requests.get(served.url + "/api/v2/metadata", timeout=30).status_code == 200


def test_every_path_from_a_reply_to_exec_is_closed(tmp_path):
    """The same gadget's pieces, decoded here, reach no ``exec`` (no server needed)."""
    from fedlearn.backends.pysyft import require_syft
    from fedlearn.backends.pysyft.client_safety import ServerCodeRefused, UnknownTypeRefused

    sy = require_syft()
    from hostile_front import _code_with_policy_source
    from syft.server.server import CODE_RELOADER
    from syft.service.api.api import Endpoint
    from syft.service.code.user_code import load_approved_policy_code
    from syft.service.policy.policy import init_policy, load_policy_code

    marker = tmp_path / "ran"
    code = _code_with_policy_source(sy.UID(), None, f"open({str(marker)!r}, 'w')\n")
    reloads = []
    CODE_RELOADER[-1] = lambda: reloads.append(1)
    try:
        with pytest.raises(UnknownTypeRefused, match="fedlearn does not know"):
            sy.deserialize(unknown_type_blob(), from_bytes=True)
    finally:
        del CODE_RELOADER[-1]
    assert reloads == []  # refused before any reloader ran
    code = sy.deserialize(sy.serialize(code, to_bytes=True), from_bytes=True)  # as received
    assert load_approved_policy_code([code], None) is None
    for run in (lambda: load_policy_code(code.input_policy_type),
                lambda: init_policy(code.input_policy_type, {}), lambda: code.run,
                lambda: Endpoint.__call__(None), lambda: Endpoint.call_locally(None, None)):
        with pytest.raises(ServerCodeRefused, match="never executes code that arrived"):
            run()
    assert not marker.exists()
