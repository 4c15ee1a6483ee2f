"""Attacks 4 and 5: another local user copied the database and blobs (0755/0644 under $TMPDIR/syft);
SIGHUP left them on disk; SIGKILL of ``serve`` orphaned a uvicorn child that kept serving."""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from target import start_server, workspace_of


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def test_no_other_user_can_read_the_datasites_files(served):
    workspace = workspace_of(served)
    paths = [workspace, *workspace.rglob("*")]
    assert any(p.name.endswith(".db") for p in paths)  # the database is in there
    loose = [f"{oct(p.stat().st_mode & 0o777)} {p}" for p in paths if p.stat().st_mode & 0o077]
    assert not loose, loose


def test_sighup_stops_cleanly_and_deletes_the_files(mnist_dir, tmp_path):
    server = start_server(mnist_dir, tmp_path / "hup")
    workspace = workspace_of(server)
    server.process.send_signal(signal.SIGHUP)  # the terminal or SSH session closed
    assert server.process.wait(60) == 0
    assert "bob: stopped; its database and files are deleted" in server.output
    assert not workspace.exists()
    assert wait_until(lambda: not listening(server.port))


def test_sigkill_takes_the_server_child_down_and_leftovers_are_reported(mnist_dir, tmp_path):
    root = tmp_path / "kill"
    server = start_server(mnist_dir, root)
    workspace = workspace_of(server)
    server.process.kill()
    server.process.wait()
    # the uvicorn child notices its parent is gone, stops serving and deletes the files
    assert wait_until(lambda: not listening(server.port)), "the orphaned child still serves"
    assert wait_until(lambda: not workspace.exists())
    # a directory a crashed run could not delete is reported when the owner starts again
    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed = root / f"fedlearn-datasite-bob-{dead.pid}-abcd1234"
    (crashed / "syft").mkdir(parents=True)
    again = start_server(mnist_dir, root)
    try:
        assert f"WARNING: {crashed} was left by a Datasite that did not stop cleanly" in \
            again.output
        assert crashed.exists()  # reported, not silently deleted: it is the owner's to check
    finally:
        assert again.stop() == 0
    assert not any(p.name.startswith("fedlearn-datasite-bob-") and p != crashed
                   for p in Path(root).iterdir())
