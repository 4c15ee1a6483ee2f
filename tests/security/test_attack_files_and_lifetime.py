"""Attacks 4 and 5: another local user copied the database and blobs (0755/0644 under $TMPDIR/syft);
SIGHUP left them on disk; SIGKILL of ``serve`` orphaned a uvicorn child that kept serving."""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from target import start_server, workspace_of


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_no_other_user_can_read_the_datasites_files(served):
    workspace = workspace_of(served)
    paths = [workspace, *workspace.rglob("*")]
    assert any(p.name.endswith(".db") for p in paths)  # the database is in there
    loose = [f"{oct(p.stat().st_mode & 0o777)} {p}" for p in paths if p.stat().st_mode & 0o077]
    assert not loose, loose


@pytest.fixture(scope="module")
def killed_then_served_again(mnist_dir, tmp_path_factory):
    """One serve killed with SIGKILL, what became of its child and files, and a second serve
    started in the same directory beside a crashed run's leftover; the second is then the
    one the SIGHUP test stops (one server start fewer than a serve of its own)."""
    root = tmp_path_factory.mktemp("kill")
    server = start_server(mnist_dir, root)
    workspace = workspace_of(server)
    server.process.kill()
    server.process.wait()
    # the uvicorn child notices its parent is gone, stops serving and deletes the files
    seen = {"port closed": wait_until(lambda: not listening(server.port)),
            "files deleted": wait_until(lambda: not workspace.exists())}
    # a directory a crashed run could not delete is reported when the owner starts again
    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed = root / f"fedlearn-datasite-bob-{dead.pid}-abcd1234"
    (crashed / "syft").mkdir(parents=True)
    again = start_server(mnist_dir, root)
    yield root, seen, crashed, again
    again.stop()


def test_sigkill_takes_the_server_child_down_and_leftovers_are_reported(
        killed_then_served_again):
    _, seen, crashed, again = killed_then_served_again
    assert seen["port closed"], "the orphaned child still serves"
    assert seen["files deleted"]
    assert f"WARNING: {crashed} was left by a Datasite that did not stop cleanly" in \
        again.output
    assert crashed.exists()  # reported, not silently deleted: it is the owner's to check


def test_sighup_stops_cleanly_and_deletes_the_files(killed_then_served_again):
    root, _, crashed, server = killed_then_served_again
    workspace, = (p for p in Path(root).glob("fedlearn-datasite-*") if p != crashed)
    server.process.send_signal(signal.SIGHUP)  # the terminal or SSH session closed
    assert server.process.wait(60) == 0
    assert "bob: stopped; its database and files are deleted" in server.output
    assert not workspace.exists()
    assert wait_until(lambda: not listening(server.port))
    # the crashed run's directory is still there, and nothing else is left
    assert crashed.exists()
    assert not any(p.name.startswith("fedlearn-datasite-bob-") and p != crashed
                   for p in Path(root).iterdir())
