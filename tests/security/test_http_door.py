"""The HTTP door and the supervision of ``fedlearn datasite serve``, tried on a real served
Datasite on loopback: routes nobody needs, oversized bodies, closed registration and
password reset, an unsigned read of the admin API, a busy port, a dead server child, and
syft's banners. Every refusal is followed by a check that the Datasite still serves."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from target import (
    ADMIN,
    ADMIN_EMAIL,
    AS_ROOT,
    EMAIL,
    SCIENTIST,
    serve_env,
    start_server,
    workspace_of,
)

API = "/api/v2"
REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def still_serves(server) -> None:
    """Metadata answers and the data scientist logs in with fedlearn's own client."""
    from fedlearn.backends.pysyft.connection import login, role_of

    assert server.process.poll() is None, server.output
    assert requests.get(server.url + API + "/metadata", timeout=30).status_code == 200
    assert role_of(login(server.url, EMAIL, SCIENTIST)) == "DATA_SCIENTIST"


def server_child(server):
    """The uvicorn child of ``serve``: the process that listens on the Datasite's port."""
    import psutil

    for child in psutil.Process(server.process.pid).children():
        if any(c.laddr.port == server.port for c in child.net_connections("tcp")):
            return child
    raise AssertionError(f"no child of {server.process.pid} listens on {server.port}")


def raw_post(server, path: str, head: str, chunks, *, pause: float = 0.0) -> bytes:
    """POST by hand: ``head`` headers, then ``chunks``; stop sending once the server answers."""
    import select

    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        try:
            for chunk in chunks:
                if select.select([sock], [], [], pause)[0]:
                    break  # answered already: no need to send the rest
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return sock.recv(4096)


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/redoc"),
    ("GET", API + "/metadata_capnp"), ("GET", API + "/stream/x/aHR0cDovL3g=/"),
    ("PUT", API + "/stream/x/aHR0cDovL3g=/"), ("POST", API + "/reset_password"),
    ("GET", API + "/api_call"), ("OPTIONS", API + "/api_call"), ("POST", "/api/v1/login"),
])
def test_routes_fedlearn_does_not_use_are_a_bare_404(served, method, path):
    reply = requests.request(method, served.url + path, timeout=30)
    assert (reply.status_code, reply.content) == (404, b"")


def test_the_404s_left_the_datasite_serving(served):
    still_serves(served)


def test_an_oversized_api_call_is_refused_before_it_is_read_or_decoded(served):
    """The old attack: an unauthenticated POST to /api_call that the child decoded into
    gigabytes. Bodies past 64 MiB are now refused before syft sees a byte: announced
    (Content-Length) at once, chunked as soon as they pass the cap."""
    child = server_child(served)
    before = child.memory_info().rss
    answer = raw_post(served, API + "/api_call", f"Content-Length: {80 * MIB}\r\n", [b"\0" * 1024])
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert child.memory_info().rss - before < 16 * MIB  # refused on the header: nothing read
    chunk = b"%x\r\n%s\r\n" % (MIB, b"\x01" * MIB)
    answer = raw_post(served, API + "/api_call", "Transfer-Encoding: chunked\r\n",
                      [chunk] * 200, pause=0.01)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    # read up to the 64 MiB cap, then refused: the child holds at most about that, not the
    # 200 MiB sent at it (nor the gigabytes the old attack made it keep)
    assert child.memory_info().rss - before < 64 * MIB + 48 * MIB
    still_serves(served)


def test_forgot_password_and_self_registration_are_closed_by_default(served):
    import syft as sy
    from syft.service.user.user import UserCreate

    new_user = UserCreate(email="mallory@lab.example", name="Mallory", password="Mallory-pw-123",
                          password_verify="Mallory-pw-123")
    for path, body in [("/forgot_password", {"json": {"email": EMAIL}}),
                       ("/register", {"data": sy.serialize(new_user, to_bytes=True)})]:
        reply = requests.post(served.url + API + path, timeout=30, **body)
        assert (reply.status_code, reply.content) == (404, b""), path
    still_serves(served)


def test_the_owner_still_registers_a_scientist_and_syfts_key_leaking_way_is_closed(served):
    from fedlearn.backends.pysyft import Datasite
    from fedlearn.backends.pysyft.connection import login, role_of

    owner = Datasite.connect(served.url, email=ADMIN_EMAIL, password=ADMIN)
    owner.register_scientist("trent@lab.example", "trent-password-1", name="Trent")
    assert role_of(login(served.url, "trent@lab.example", "trent-password-1")) == \
        "DATA_SCIENTIST"
    with pytest.raises(Exception, match="404"):  # sends the admin's private key in the body
        owner.client.register(name="Eve", email="eve@lab.example", password="eve-password-12",
                              password_verify="eve-password-12")
    still_serves(served)


def api_with(server, verify_key: str, header: str | None) -> int:
    from fedlearn.backends.pysyft.http_door import LOGIN_HEADER

    headers = {LOGIN_HEADER: header} if header is not None else {}
    return requests.get(server.url + API + "/api", headers=headers, timeout=60,
                        params={"verify_key": verify_key, "communication_protocol": 5}
                        ).status_code


def test_the_admin_api_is_not_read_with_the_public_root_key(served):
    """/metadata names the root verify key; asking for its API without the root's signature
    was the whole admin API (226 endpoints, every submitted code). Now: 401."""
    from fedlearn.backends.pysyft.connection import login
    from fedlearn.backends.pysyft.http_door import sign_login

    metadata = requests.get(served.url + API + "/metadata", timeout=30).json()
    root, server = metadata["verify_key"], metadata["id"]
    scientist = login(served.url, EMAIL, SCIENTIST).credentials
    mine = str(scientist.verify_key)
    assert api_with(served, root, None) == 401
    assert api_with(served, root, sign_login(scientist.signing_key, server, root)) == 401
    assert api_with(served, mine, sign_login(scientist.signing_key, server, mine,
                                             now=time.time() - 300)) == 401  # stale
    assert api_with(served, mine, sign_login(scientist.signing_key, "0" * 32, mine)) == 401
    assert api_with(served, mine, sign_login(scientist.signing_key, server, mine)) == 200
    still_serves(served)


def test_an_unsigned_or_badly_signed_call_is_a_refusal_not_a_server_error(served):
    """An unsigned SyftAPICall reaching the policy raised AttributeError (HTTP 500)."""
    from fedlearn.backends.pysyft.loading import require_syft
    from fedlearn.backends.pysyft.service_policy import REFUSAL

    sy = require_syft()
    from syft.client.api import SignedSyftAPICall, SyftAPICall
    from syft.types.uid import UID

    server_id = UID(requests.get(served.url + API + "/metadata", timeout=30).json()["id"])
    call = SyftAPICall(server_uid=server_id, path="dataset.get_all", args=[], kwargs={},
                       blocking=True)
    signed = call.sign(sy.SyftSigningKey.generate())
    forged = SignedSyftAPICall(credentials=sy.SyftSigningKey.generate().verify_key,
                               signature=signed.signature,
                               serialized_message=signed.serialized_message)
    for message, why in ((call, "not signed"), (forged, "signature is not valid")):
        reply = requests.post(served.url + API + "/api_call", timeout=30,
                              data=sy.serialize(message, to_bytes=True))
        assert reply.status_code == 200, (reply.status_code, reply.content[:300])
        answer = sy.deserialize(reply.content, from_bytes=True).message.data  # signed reply
        assert isinstance(answer, sy.SyftError) and answer.message.startswith(REFUSAL), answer
        assert why in answer.message
    still_serves(served)


def test_syfts_banners_stay_off_the_owners_terminal(served):
    for banner in ("development server", "intended only for local use", "CRITICAL",
                   "Hash of the signing key", "Starting bob server", "INFO:", "Uvicorn",
                   "Waiting for server", "SQLiteDBConfig", "Stopping bob"):
        assert banner not in served.output, served.output
    kept = (workspace_of(served) / "server.log").read_text()
    assert "Hash of the signing key" in kept  # written, but to the Datasite's private log


def test_a_port_in_use_is_refused_in_one_line_before_data_or_syft_load(served, tmp_path):
    env = {**serve_env(str(tmp_path / "no-such-mnist"), tmp_path), "PYTHONPATH": str(REPO)}
    code = ("import sys; from fedlearn.cli import main; "
            f"rc = main(['datasite', 'serve', '--name', 'carol', '--port', '{served.port}', "
            f"*{AS_ROOT!r}]); "
            "print('syft loaded' if 'syft' in sys.modules else 'syft not loaded'); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run
    assert run.stderr.strip().count("\n") == 0, run.stderr  # one line
    assert f"--port: {served.port} is already in use" in run.stderr, run.stderr
    assert run.stdout.strip() == "syft not loaded"  # nor the data: its directory is missing
    still_serves(served)


@pytest.fixture(scope="module")
def opened(mnist_dir, tmp_path_factory):
    """Carol's Datasite, served with signup and password reset on, under a 3 GB limit."""
    server = start_server(mnist_dir, tmp_path_factory.mktemp("carol"), "--allow-signup",
                          "--allow-password-reset", "--max-memory-mb", "3072", name="carol")
    yield server
    server.stop()


@pytest.mark.slow
def test_signup_when_opened_makes_data_scientists_only(opened):
    import syft as sy
    from syft.server.credentials import SyftSigningKey
    from syft.service.user.user import UserCreate
    from syft.service.user.user_roles import ServiceRole

    from fedlearn.backends.pysyft.connection import login, role_of

    def register(email: str, **extra):
        user = UserCreate(email=email, name="New", password="new-password-1",
                          password_verify="new-password-1", **extra)
        return requests.post(opened.url + API + "/register", timeout=60,
                             data=sy.serialize(user, to_bytes=True))

    assert register("dave@lab.example").status_code == 200
    assert role_of(login(opened.url, "dave@lab.example", "new-password-1")) == "DATA_SCIENTIST"
    as_admin = register("oscar@lab.example", role=ServiceRole.ADMIN)
    assert as_admin.status_code == 403 and b"data-scientist accounts only" in as_admin.content
    with_key = register("walter@lab.example", created_by=SyftSigningKey.generate())
    assert with_key.status_code == 403
    forgot = requests.post(opened.url + API + "/forgot_password", json={"email": EMAIL},
                           timeout=60)
    assert forgot.status_code == 200  # opened by --allow-password-reset
    still_serves(opened)


@pytest.mark.slow
def test_the_server_child_runs_under_the_memory_limit_and_still_trains(opened):
    from fedlearn.backends.pysyft import Datasite, SyftWorker
    from fedlearn.config import TrainPlan
    from fedlearn.models import build_model

    limits = server_child(opened).rlimit(__import__("psutil").RLIMIT_DATA)
    assert limits == (3072 * MIB, 3072 * MIB)
    worker = SyftWorker.connect("carol", opened.url, email=EMAIL, password=SCIENTIST)
    request_id = worker.submit("tutorial_cnn", max_calls=2)
    Datasite.connect(opened.url, email=ADMIN_EMAIL, password=ADMIN).approve(request_id)
    update = worker.fit(build_model("tutorial_cnn").state_dict(), TrainPlan(batch_size=64),
                        seed=1)
    assert update.num_examples == 300  # torch trains under the limit
    still_serves(opened)


@pytest.mark.slow
def test_a_killed_server_child_ends_serve_with_the_reason(opened):
    child = server_child(opened)
    os.kill(child.pid, signal.SIGKILL)
    try:
        code = opened.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve kept running with a dead server child:\n{opened.output}")
    assert code != 0
    time.sleep(0.5)  # the reader thread takes the last lines
    assert "was killed by SIGKILL, probably out of memory" in opened.output, opened.output
    tail = opened.output.split("killed by SIGKILL")[1]
    assert "serving" not in tail
