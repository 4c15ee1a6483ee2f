"""syft's environment switches that weaken its checks, and serving as root.

``serve`` refuses both in one line; every other fedlearn process ignores the switches
with a one-line warning. With ``IGNORE_TLS_ERRORS=1`` in the data scientist's
environment, syft 0.9.5 sent ``/metadata`` and the login (with the password) to any
server, whatever certificate it showed; the scientist's ``--ca-file`` must still decide.
"""
from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys
import threading

import pytest
import requests
from certificates import CertificateAuthority
from target import ADMIN, EMAIL, SCIENTIST

from fedlearn.backends.pysyft.process import free_port


def run_fedlearn(*args, env: dict, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", "fedlearn", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def serve_env(**switches) -> dict:
    return {**os.environ, "FEDLEARN_ADMIN_PASSWORD": ADMIN,
            "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST, **switches}


def test_serve_refuses_syfts_switches_in_one_line_before_anything_starts():
    port = free_port()
    run = run_fedlearn("datasite", "serve", "--name", "bob", "--port", str(port),
                       "--scientist", EMAIL, "--allow-root",
                       env=serve_env(ENABLE_SIGNUP="True", IGNORE_TLS_ERRORS="1",
                                     SERVER_PRIVATE_KEY="0" * 64, SYFT_DB_URL="sqlite://"))
    assert run.returncode == 2, run.stdout + run.stderr
    line = run.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert line.startswith("fedlearn: error: refusing to serve with syft's environment")
    for name in ("ENABLE_SIGNUP", "IGNORE_TLS_ERRORS", "SERVER_PRIVATE_KEY", "SYFT_DB_URL"):
        assert name in line
    with pytest.raises(requests.ConnectionError):  # nothing was started
        requests.get(f"http://127.0.0.1:{port}/api/v2/metadata", timeout=5)


def test_off_switches_are_not_switches():
    from fedlearn.backends.pysyft.syft_environment import found

    assert found({"DEV_MODE": "False", "ENABLE_SIGNUP": "0", "IGNORE_TLS_ERRORS": ""}) == {}
    assert set(found({"DEV_MODE": "True", "SYFT_DEV_MODE": "false", "PATH": "/bin"})) == \
        {"DEV_MODE", "SYFT_DEV_MODE"}  # syft's child settings count whatever their value


def test_serve_refuses_root_unless_allowed(monkeypatch, served):
    from fedlearn.backends.pysyft.serve import ServeConfig, serve
    from fedlearn.backends.pysyft.syft_environment import UnsafeEnvironment

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(UnsafeEnvironment, match="refusing to serve as root.*--allow-root"):
        serve(ServeConfig(name="bob"), admin_password=ADMIN)
    monkeypatch.undo()
    if os.geteuid() == 0:  # as CI runs: the real command line, then the flag
        run = run_fedlearn("datasite", "serve", "--name", "bob", "--port", str(free_port()),
                           env=serve_env(), timeout=120)
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stderr.strip().splitlines() == [
            "fedlearn: error: refusing to serve as root: code the owner approves runs in the "
            "server with its rights, so one bad approval would own this machine; serve as an "
            "ordinary user, or pass --allow-root"]
        assert "--allow-root" in served.process.args  # ...and with it, bob serves
    assert requests.get(served.url + "/api/v2/metadata", timeout=30).status_code == 200


class _Recorder(http.server.BaseHTTPRequestHandler):
    paths: list = []

    def do_GET(self):  # noqa: N802
        self.paths.append(self.path)
        self.send_error(404)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def _https_recorder(cert: str, key: str):
    """An HTTPS server on loopback that records the path of every request it is sent."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *args: None  # failed handshakes are expected
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("signed_by", ["another CA", "the scientist's CA"])
def test_ignore_tls_errors_does_not_stop_the_scientists_certificate_check(tmp_path, signed_by):
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = CertificateAuthority(tmp_path / "ours")
    theirs = CertificateAuthority(tmp_path / "theirs", name="an impostor's CA")
    issuer = theirs if signed_by == "another CA" else ours
    server = _https_recorder(*issuer.issue("datasite", server=True))
    _Recorder.paths = []
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        run = run_fedlearn("train", "--backend", "pysyft", f"--datasite=bob={url}",
                           "--ca-file", ours.ca_file, "--email", EMAIL, "--rounds", "1",
                           "--test-size", "500", "--out", str(tmp_path / "out"),
                           "--no-progress",
                           env={**os.environ, "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST,
                                "IGNORE_TLS_ERRORS": "1", "NO_PROXY": "*"})
    finally:
        server.shutdown()
    assert run.returncode == 2, run.stderr  # the certificates to fix: a user error
    lines = run.stderr.strip().splitlines()
    assert lines[0].startswith("fedlearn: ignoring IGNORE_TLS_ERRORS from the environment")
    assert "Traceback" not in run.stderr and len(lines) == 2, run.stderr
    if signed_by == "another CA":  # no request, let alone the password, reached the impostor
        assert _Recorder.paths == [] and "TLS check failed" in lines[1], run.stderr
    else:  # the right certificate is accepted: the check itself still works
        assert _Recorder.paths == ["/api/v2/metadata"], _Recorder.paths


def test_syfts_own_copies_of_the_checks_stay_pinned(monkeypatch):
    from fedlearn.backends.pysyft import require_syft

    require_syft()
    import syft.client.client as client
    import syft.server.server as server
    from syft.util.experimental_flags import flags

    monkeypatch.setenv("IGNORE_TLS_ERRORS", "1")  # set after import: still no effect
    assert client.verify_tls() is True
    assert server.signing_key_env is None and server.server_uid_env is None
    assert flags.CAN_REGISTER is False
