"""State that survives (#24): ``serve --state-dir DIR`` keeps the Datasite across ``kill -9``.

Against real ``fedlearn datasite serve`` processes on loopback: a request approved through the
owner's CLI and the calls made under it are still there after the server and its child are
killed with SIGKILL and served again from the same DIR; a tampered audit log is refused at
start; ``--reset`` starts empty; a second ``serve`` on a DIR in use is refused. The directory
checks themselves need no server.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from target import ADMIN, ADMIN_EMAIL, EMAIL, SCIENTIST, owner_cli, start_server

from fedlearn.backends.pysyft.state import FILE, DatasiteState, StateTampered
from fedlearn.backends.pysyft.state_dir import StateDirectory, StateDirError
from fedlearn.config import ConfigError


# -- the directory: no server needed ---------------------------------------------------------
def test_the_state_dir_is_made_private_and_refused_when_others_can_enter(tmp_path, monkeypatch):
    opened = StateDirectory(tmp_path / "new" / "state", name="bob")
    opened.close()
    assert (tmp_path / "new" / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "state" / "identity.json").stat().st_mode & 0o777 == 0o600

    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    wide.chmod(0o755)
    with pytest.raises(ConfigError, match="open to other users .*mode 755.*chmod 700"):
        StateDirectory(wide, name="bob")
    assert not any(wide.iterdir())  # refused before anything was written

    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)  # as if another user ran serve
    with pytest.raises(ConfigError, match=f"belongs to user id {real}, not to this user"):
        StateDirectory(mine, name="bob")


def test_a_second_opener_of_a_state_dir_in_use_is_refused(tmp_path):
    first = StateDirectory(tmp_path / "state", name="bob")
    try:
        with pytest.raises(StateDirError, match=f"another fedlearn datasite serve \\(pid "
                                                f"{os.getpid()}"):
            StateDirectory(tmp_path / "state", name="bob")
    finally:
        first.close()
    StateDirectory(tmp_path / "state", name="bob").close()  # free again once released


def test_another_shard_or_another_name_is_refused(tmp_path):
    images, labels = np.zeros((4, 28, 28), np.uint8), np.arange(4)
    state = StateDirectory(tmp_path / "state", name="bob")
    try:
        state.check_shard(images, labels)
        state.check_shard(images.copy(), labels.copy())  # the same shard again: fine
        images[0, 0, 0] = 1
        with pytest.raises(StateDirError, match="another shard .* or start afresh with --reset"):
            state.check_shard(images, labels)
    finally:
        state.close()
    with pytest.raises(StateDirError, match="keeps the Datasite 'bob': serve it with --name bob"):
        StateDirectory(tmp_path / "state", name="alice")


def _tamper(directory: Path, seq: int = 1) -> None:
    with sqlite3.connect(directory / FILE) as db:
        db.execute("UPDATE audit SET detail = ? WHERE seq = ?", ('{"request": "nothing"}', seq))


def test_an_edited_audit_entry_is_refused_at_open_and_reset_starts_a_new_log(tmp_path):
    directory = tmp_path / "state"
    StateDirectory(directory, name="bob").close()
    state = DatasiteState(directory)
    for i in range(3):
        state.log("request", request=f"r{i}")
    state.close()
    _tamper(directory, seq=2)
    with pytest.raises(StateTampered, match="altered at entry 2: start with --reset"):
        StateDirectory(directory, name="bob")
    said = []
    StateDirectory(directory, name="bob", reset=True,
                   announce=lambda line, **_: said.append(line)).close()
    assert "--reset: deleting everything kept in" in said[0]
    assert DatasiteState(directory).verify() == 0


def test_reset_needs_a_state_dir():
    env = {**os.environ, "FEDLEARN_ADMIN_PASSWORD": ADMIN}
    done = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "serve", "--name", "bob",
                           "--reset"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("fedlearn: error: argument --reset: needs --state-dir "
                                   "(without one every start is fresh)")


# -- real servers ----------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in map(int, children.read_text().split()):
            found += [child, *_descendants(child)]
    return found


def kill_9(server) -> None:
    """SIGKILL ``serve`` and its server child at once (no cleanup runs), and wait until the
    port is closed."""
    pids = [server.process.pid, *_descendants(server.process.pid)]
    assert len(pids) >= 2, "serve should have its server child"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    server.process.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError("the killed Datasite's port still answers")


def _scientist(server):
    from fedlearn.backends.pysyft.scientist import SyftWorker

    return SyftWorker.connect("bob", server.url, email=EMAIL, password=SCIENTIST)


def _dataset_names(server) -> list[str]:
    from fedlearn.backends.pysyft.connection import login

    admin = login(server.url, ADMIN_EMAIL, ADMIN)
    return [d.name for d in admin.api.services.dataset.get_all()]


def _request(server, request_id) -> dict:
    from fedlearn.backends.pysyft import Datasite

    owner = Datasite.connect(server.url, email=ADMIN_EMAIL, password=ADMIN)
    return {r["id"]: r for r in owner.requests(include_decided=True)}[request_id]


def _refused_start(mnist_dir, tmp, *args) -> str:
    """Start a serve that must refuse to start: its output (it exited 2)."""
    with pytest.raises(RuntimeError, match="exited") as refused:
        start_server(mnist_dir, tmp, *args)
    return str(refused.value)


@pytest.fixture(scope="module")
def killed_with_an_approval(mnist_dir, tmp_path_factory):
    """A Datasite served with ``--state-dir``: a request approved through the owner's CLI,
    call 1 of 3 made under it, then ``serve`` and its child killed with SIGKILL. The state
    directory it left is what both tests below start from (the second on a copy of it)."""
    from fedlearn.models import build_model

    tmp_path = tmp_path_factory.mktemp("kept")
    state = tmp_path / "state"
    server = start_server(mnist_dir, tmp_path, "--state-dir", str(state))
    try:
        worker = _scientist(server)
        request_id = worker.submit("tutorial_cnn", max_calls=3)
        approved = owner_cli(server, "approve", request_id)  # in this process: see run_cli
        weights = build_model("tutorial_cnn", seed=0).state_dict()
        first_call = worker.evaluate(weights) if approved.returncode == 0 else None
    finally:
        kill_9(server)
    identity = json.loads((state / "identity.json").read_text())
    return {"tmp": tmp_path, "state": state, "request": request_id, "approved": approved,
            "first call": first_call, "identity": identity, "weights": weights}


@pytest.mark.slow
def test_an_approval_and_its_calls_survive_kill_9_and_restart(mnist_dir,
                                                              killed_with_an_approval):
    kept = killed_with_an_approval
    tmp_path, state, request_id = kept["tmp"], kept["state"], kept["request"]
    approved, weights, identity = kept["approved"], kept["weights"], kept["identity"]
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert kept["first call"]["examples"] == 300  # call 1 of 3

    server = start_server(mnist_dir, tmp_path, "--state-dir", str(state))
    try:
        assert f"bob: reopening the Datasite kept in {state}" in server.output
        assert "ds@lab.example already has an account here" in server.output
        assert json.loads((state / "identity.json").read_text()) == identity
        assert _dataset_names(server) == ["mnist"]  # there once: not uploaded again

        shown = _request(server, request_id)
        assert shown["status"] == "approved"
        assert (shown["calls"], shown["approved_calls"]) == (1, 3)  # the call before kill -9
        worker = _scientist(server)  # the scientist's account still opens
        assert worker.submit("tutorial_cnn", max_calls=3) == request_id  # no new approval
        assert worker.approval() == ("approved", None)
        for _ in range(2):  # calls 2 and 3 of 3 ...
            assert worker.evaluate(weights)["examples"] == 300
        with pytest.raises(RuntimeError, match="approved 3 calls .* all have run"):
            worker.evaluate(weights)  # ... and the count went on from before the kill

        log = DatasiteState(state)
        try:
            assert log.verify() >= 4
            entries = log.entries()
        finally:
            log.close()
        assert any(e["event"] == "approve" and e["request"] == request_id for e in entries)
        assert [e["call"] for e in entries if e["event"] == "execute"] == [1, 2, 3]

        second = _refused_start(mnist_dir, tmp_path / "second", "--state-dir", str(state))
        assert f"another fedlearn datasite serve (pid {server.process.pid}" in second
        assert f"is using {state}" in second and "Traceback" not in second
        assert _dataset_names(server) == ["mnist"]  # the first still serves, untouched
    finally:
        assert server.stop() == 0
    assert f"bob: stopped; its state is kept in {state}" in server.output
    assert (state / FILE).exists()


@pytest.mark.slow
def test_a_tampered_audit_log_is_refused_at_start_and_reset_starts_empty(
        mnist_dir, tmp_path, killed_with_an_approval):
    # a copy of a kept Datasite with a request in it (made once for both tests: a serve
    # and a request of its own would only make another such directory)
    state, request_id = tmp_path / "state", killed_with_an_approval["request"]
    shutil.copytree(killed_with_an_approval["state"], state, symlinks=True)
    before = DatasiteState(state)
    entries = before.entries()
    before.close()
    assert any(e["event"] == "request" for e in entries)

    other = tmp_path / "other-password"
    other.write_text("not-the-owner-password\n")
    refused = _refused_start(mnist_dir, tmp_path, "--state-dir", str(state),
                             "--admin-password-file", str(other))
    error = [line for line in refused.splitlines() if line.startswith("fedlearn: error:")]
    assert len(error) == 1 and "Traceback" not in refused
    assert f"this admin password does not open the Datasite kept in {state}" in error[0]

    _tamper(state, seq=1)  # someone edits one row to hide what was asked

    refused = _refused_start(mnist_dir, tmp_path, "--state-dir", str(state))
    error = [line for line in refused.splitlines() if line.startswith("fedlearn: error:")]
    assert len(error) == 1 and "Traceback" not in refused
    assert f"the audit log in {state / FILE} was altered at entry 1" in error[0]
    assert "--reset" in error[0] and "keep a copy" in error[0]
    with sqlite3.connect(state / FILE) as db:  # the evidence is left as it was found
        assert db.execute("SELECT detail FROM audit WHERE seq = 1").fetchone() == \
            ('{"request": "nothing"}',)

    server = start_server(mnist_dir, tmp_path, "--state-dir", str(state), "--reset")
    try:
        assert f"bob: --reset: deleting everything kept in {state}" in server.output
        assert "reopening" not in server.output
        assert _dataset_names(server) == ["mnist"]
        from fedlearn.backends.pysyft import Datasite

        owner = Datasite.connect(server.url, email=ADMIN_EMAIL, password=ADMIN)
        assert owner.requests(include_decided=True) == []  # request_id is gone with the rest
        _scientist(server)  # registered afresh
        log = DatasiteState(state)
        try:
            log.verify()
            assert not any(e.get("request") == request_id for e in log.entries())
        finally:
            log.close()
    finally:
        assert server.stop() == 0
