"""Attack 1: syft's typing-alias decoder called any function named on the wire, unauthenticated,
on the owner's server (POST /api/v2/api_call) and on the scientist's machine (a Datasite's
answer)."""
from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import typing

import pytest
import requests
from attacks import alias_blob, in_a_list


def gadgets(marker):
    command = f"touch {marker}"
    return {"_GenericAlias": alias_blob("os.system", command=command),
            "_UnionGenericAlias": alias_blob("os.system", "_UnionGenericAlias", command=command),
            "nested in a list": in_a_list(alias_blob("os.system", command=command)),
            "builtins.exec": alias_blob("builtins.exec", source=f"open({str(marker)!r}, 'w')")}


def test_the_server_refuses_every_alias_gadget_and_keeps_serving(served, tmp_path):
    marker = tmp_path / "ran"
    for what, blob in gadgets(marker).items():
        reply = requests.post(served.url + "/api/v2/api_call", data=blob, timeout=60)
        assert reply.status_code == 400, what
        assert "fedlearn refused this request" in reply.text, what
        assert not marker.exists(), f"{what}: the server ran the attacker's command"
    assert requests.get(served.url + "/api/v2/metadata", timeout=30).status_code == 200


class _HostileDatasite(http.server.BaseHTTPRequestHandler):
    """Looks like a Datasite until the login, whose answer is a code gadget."""

    metadata = b""
    gadget = b""

    def do_GET(self):  # noqa: N802
        self._answer(self.metadata, "application/json")

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(self.gadget, "application/octet-stream")

    def _answer(self, body, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_scientist_refuses_a_datasite_that_answers_with_a_gadget(served, tmp_path, mnist_dir):
    marker = tmp_path / "ran-on-the-scientist"
    _HostileDatasite.metadata = requests.get(served.url + "/api/v2/metadata", timeout=30).content
    _HostileDatasite.gadget = alias_blob("os.system", command=f"touch {marker}")
    hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileDatasite)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hostile.server_address[1]}"
        run = subprocess.run(
            [sys.executable, "-m", "fedlearn", "train", "--backend", "pysyft",
             f"--datasite=bob={url}", "--email", "ds@lab.example", "--rounds", "1",
             "--out", str(tmp_path / "out"), "--no-progress",
             "--approval-timeout", "5"],
            env={**served.env, "FEDLEARN_SCIENTIST_PASSWORD": "scientist-password-1",
                 "FEDLEARN_DATA": mnist_dir}, capture_output=True, text=True, timeout=300)
    finally:
        hostile.shutdown()
    assert not marker.exists(), "the Datasite's answer ran code on the scientist's machine"
    assert run.returncode == 1, run.stderr
    assert "refuses to decode" in run.stderr and "os.system" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("alias", [typing.List[int], typing.Dict[str, typing.Optional[int]],
                                   typing.Union[int, str], typing.Tuple[int, str],
                                   typing.Optional[typing.List[str]]])
def test_typing_aliases_still_round_trip(alias):
    from fedlearn.backends.pysyft import require_syft

    sy = require_syft()
    assert sy.deserialize(sy.serialize(alias, to_bytes=True), from_bytes=True) == alias


def test_no_registered_decoder_is_the_unpatched_one():
    """Every syft registration whose decoder was the name-resolving one now uses ours."""
    from fedlearn.backends.pysyft import require_syft
    from fedlearn.backends.pysyft.hardening import safe_deserialize_generic_alias

    require_syft()
    from syft.serde import recursive_primitives
    from syft.types.syft_object_registry import SyftObjectRegistry

    original = recursive_primitives._fedlearn_original_generic_alias
    entries = [entry for versions in
               SyftObjectRegistry.__object_serialization_registry__.values()
               for entry in versions.values()]
    assert not [e for e in entries if e[2] is original]
    assert sum(e[2] is safe_deserialize_generic_alias for e in entries) == 2
    for what, blob in gadgets("/nonexistent/never").items():
        with pytest.raises(Exception, match="refused to decode"):
            __import__("syft").deserialize(blob, from_bytes=True)
