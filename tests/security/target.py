"""Bob's Datasite as the attack tests find it: served for real on loopback, and its credentials."""
from __future__ import annotations

import os
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
