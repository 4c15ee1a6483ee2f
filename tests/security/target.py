"""Bob's Datasite as the attack tests find it: served for real on loopback, and its credentials."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ADMIN, SCIENTIST, EMAIL = "owner-password-1", "scientist-password-1", "ds@lab.example"
ADMIN_EMAIL = "info@openmined.org"
SIZE = ["--train-size", "600"]
# serve refuses root without --allow-root; CI runs the tests as root
AS_ROOT = ["--allow-root"] if os.geteuid() == 0 else []


def serve_env(mnist_dir: str, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "FEDLEARN_DATA": mnist_dir, "FEDLEARN_ADMIN_PASSWORD": ADMIN,
            "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST, "TMPDIR": str(tmp),
            "PYTHONWARNINGS": "ignore", "NO_PROXY": "*"}


def start_server(mnist_dir: str, tmp: Path, *extra: str, name: str = "bob"):
    from fedlearn.backends.pysyft.process import LocalHost, ServerProcess, free_port

    server = ServerProcess(LocalHost(name, "127.0.0.1"), free_port(),
                           ["--shard", "0/2", *SIZE, "--scientist", EMAIL, *AS_ROOT, *extra],
                           serve_env(mnist_dir, tmp))
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def workspace_of(server) -> Path:
    """The served Datasite's private directory (its database and blobs)."""
    found = list(Path(server.env["TMPDIR"]).glob("fedlearn-datasite-*"))
    assert len(found) == 1, found
    return found[0]


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_cli(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """``fedlearn ARGV`` through :func:`fedlearn.cli.main` in this process, with the passwords
    ``env`` holds in the environment (``main`` reads and removes them) and its output captured.

    The same command, checks and exit code as ``python -m fedlearn ARGV`` (``main`` is what
    ``__main__`` runs), without another Python importing torch and syft for one command
    (about 10 s each); test_attack_approval.py and test_multihost.py keep running the
    owner's commands as separate processes. What is written to file descriptors 1 and 2
    (e.g. by a logger holding the real stderr) is captured too, as a subprocess's would be.
    """
    from fedlearn.cli import main

    names = ("FEDLEARN_ADMIN_PASSWORD", "FEDLEARN_SCIENTIST_PASSWORD")
    saved = {name: os.environ.get(name) for name in names}
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        kept = os.dup(1), os.dup(2)
        try:
            for name in names:
                if name in env:
                    os.environ[name] = env[name]
            os.dup2(fd_out.fileno(), 1)
            os.dup2(fd_err.fileno(), 2)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(argv))
        finally:
            for stream in (sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            os.dup2(kept[0], 1)
            os.dup2(kept[1], 2)
            os.close(kept[0])
            os.close(kept[1])
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        fd_out.seek(0)
        fd_err.seek(0)
        stdout = out.getvalue() + fd_out.read().decode(errors="replace")
        stderr = err.getvalue() + fd_err.read().decode(errors="replace")
    return subprocess.CompletedProcess(["fedlearn", *argv], code, stdout, stderr)


def owner_cli(server, *args: str) -> subprocess.CompletedProcess:
    """The owner's ``fedlearn datasite ARGS --url URL`` against ``server`` (:func:`run_cli`)."""
    return run_cli(["datasite", *args, "--url", server.url], server.env)
