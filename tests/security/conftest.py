"""A real ``fedlearn datasite serve`` on loopback for the attack tests, and its credentials."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # attacks.py
sys.path.insert(0, str(Path(__file__).parents[1] / "backends"))

from test_pysyft import HAVE_SYFT  # noqa: E402 (tests/backends is on sys.path)

ADMIN, SCIENTIST, EMAIL = "owner-password-1", "scientist-password-1", "ds@lab.example"
ADMIN_EMAIL = "info@openmined.org"
SIZE = ["--train-size", "600"]


def serve_env(mnist_dir: str, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "FEDLEARN_DATA": mnist_dir, "FEDLEARN_ADMIN_PASSWORD": ADMIN,
            "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST, "TMPDIR": str(tmp),
            "PYTHONWARNINGS": "ignore", "NO_PROXY": "*"}


def start_server(mnist_dir: str, tmp: Path, *extra: str, name: str = "bob"):
    from fedlearn.backends.local_hosts import LocalHost, ServerProcess, free_port

    server = ServerProcess(LocalHost(name, "127.0.0.1"), free_port(),
                           ["--shard", "0/2", *SIZE, "--scientist", EMAIL, *extra],
                           serve_env(mnist_dir, tmp))
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="package")
def served(mnist_dir, tmp_path_factory):
    """Bob's Datasite, served as an owner would, shared by the attacks that leave it intact."""
    if not HAVE_SYFT:
        pytest.skip("syft 0.9.5 not installed (Python >= 3.13?)")
    server = start_server(mnist_dir, tmp_path_factory.mktemp("bob"))
    yield server
    server.stop()


def workspace_of(server) -> Path:
    """The served Datasite's private directory (its database and blobs)."""
    found = list(Path(server.env["TMPDIR"]).glob("fedlearn-datasite-*"))
    assert len(found) == 1, found
    return found[0]


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
