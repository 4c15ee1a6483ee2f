"""fedlearn's Datasite policy and process safety, as small pure pieces (no server needed)."""
import os
import subprocess
import tempfile
from types import SimpleNamespace

import pytest

from fedlearn.backends.pysyft.server_process import PrivateWorkspace, leftover_workspaces
from fedlearn.backends.pysyft.service_policy import (
    MAX_TEXT_BYTES,
    MAX_UPLOAD_BYTES,
    REFUSAL,
    decide,
    refusal,
)
from fedlearn.config import ConfigError


@pytest.mark.parametrize("path,role,refused", [
    ("network.ping", "GUEST", True), ("network.ping", "DATA_SCIENTIST", True),
    ("network.ping", "DATA_OWNER", True), ("network.ping", "ADMIN", False),
    ("project.add_event", "DATA_SCIENTIST", True), ("api.call", "DATA_SCIENTIST", True),
    ("code.request_code_execution", "GUEST", True),
    ("code.request_code_execution", "DATA_SCIENTIST", False),
    ("action.get", "GUEST", True), ("action.get_mock", "GUEST", False),
    ("dataset.get_all", "GUEST", False), ("metadata", "GUEST", False),
    ("queue", "GUEST", True), ("queue", "DATA_SCIENTIST", True),
    ("dataset.get_all", "DATA_OWNER", True), ("code.call", "DATA_SCIENTIST", False),
])
def test_who_may_call_what(path, role, refused):
    reason = decide(path, role)
    assert (reason is not None) == refused
    if refused:
        assert reason.startswith(REFUSAL) and path in reason


def test_syfts_own_role_check_applies_to_every_call():
    assert decide("user.get_all", "DATA_SCIENTIST", allowed_by_syft=False).startswith(REFUSAL)
    assert decide("user.get_all", "ADMIN", allowed_by_syft=False) is None


def message(path, *args, **kwargs):
    return SimpleNamespace(path=path, args=list(args), kwargs=kwargs)


def test_uploads_are_bounded_for_everyone_but_the_admin():
    big = SimpleNamespace(file_size=MAX_UPLOAD_BYTES + 1, type_=dict)
    text = SimpleNamespace(file_size=MAX_TEXT_BYTES + 1, type_=str)
    weights = SimpleNamespace(file_size=7_000_000, type_=dict)
    assert "an upload of" in refusal(message("blob_storage.allocate", big), "DATA_SCIENTIST")
    assert "a text of" in refusal(message("blob_storage.allocate", text), "DATA_SCIENTIST")
    assert refusal(message("blob_storage.allocate", weights), "DATA_SCIENTIST") is None
    assert refusal(message("blob_storage.allocate", big), "ADMIN") is None
    nonce = SimpleNamespace(syft_action_data_cache="a" * (MAX_TEXT_BYTES + 1))
    assert "a text of" in refusal(message("action.set", action_object=nonce), "DATA_SCIENTIST")
    short = SimpleNamespace(syft_action_data_cache="0" * 32)
    assert refusal(message("action.set", short), "DATA_SCIENTIST") is None
    data = b"x" * (MAX_UPLOAD_BYTES + 1)
    assert "an upload of" in refusal(message("blob_storage.write_to_disk", "uid", data),
                                     "DATA_SCIENTIST")


def test_a_private_workspace_is_0700_with_umask_077_and_goes_away(tmp_path):
    before = tempfile.gettempdir()
    workspace = PrivateWorkspace("bob", base=str(tmp_path))
    try:
        assert oct(workspace.path.stat().st_mode & 0o777) == "0o700"
        assert tempfile.gettempdir() == str(workspace.path) == os.environ["TMPDIR"]
        (workspace.path / "db").write_text("private")
        assert (workspace.path / "db").stat().st_mode & 0o077 == 0
    finally:
        workspace.remove()
    assert not workspace.path.exists() and tempfile.gettempdir() == before


def test_leftovers_are_those_whose_process_is_gone(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    crashed = tmp_path / f"fedlearn-datasite-bob-{gone.pid}-x1"
    running = tmp_path / f"fedlearn-datasite-alice-{os.getpid()}-x2"
    for path in (crashed, running, tmp_path / "unrelated-123-x"):
        path.mkdir()
    assert leftover_workspaces(tmp_path) == [crashed]


def test_tls_settings_are_checked_early(tmp_path):
    from fedlearn.backends.pysyft.connection import TLSClientConfig
    from fedlearn.backends.pysyft.serve import ServeConfig

    pem = tmp_path / "x.pem"
    pem.write_text("-")
    with pytest.raises(ConfigError, match="no such file") as err:
        TLSClientConfig(str(tmp_path / "missing.pem"))
    assert err.value.path == "ca_file"
    with pytest.raises(ConfigError, match="both --client-cert and --client-key"):
        TLSClientConfig(str(pem), cert_file=str(pem))
    with pytest.raises(ConfigError, match="both --tls-cert and --tls-key"):
        ServeConfig(name="bob", tls_cert=str(pem))
    with pytest.raises(ConfigError, match="needs --tls-cert") as err:
        ServeConfig(name="bob", client_ca=str(pem))
    assert err.value.path == "client_ca"
    with pytest.raises(ConfigError, match="client certificate too"):
        ServeConfig(name="bob", tls_cert=str(pem), tls_key=str(pem), client_ca=str(pem))
    assert ServeConfig(name="bob", tls_cert=str(pem), tls_key=str(pem)).url.startswith("https://")
