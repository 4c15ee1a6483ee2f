"""Rehearse a multi-machine deployment on one Linux machine.

Each data owner gets a host of their own: a network namespace with its own
address, joined to this machine by a veth pair (``ip netns``; needs root), so the
owner's server is reachable only over that link, as a separate machine would be.
Without root, every owner gets a port on loopback instead. The tests and the
network benchmark start real ``fedlearn datasite serve`` processes on these hosts
(:class:`fedlearn.backends.pysyft.process.ServerProcess`). A test tool, not part of
the library: ``sys.path`` must include this folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

from fedlearn.backends.pysyft.process import LocalHost


def namespaces_available() -> bool:
    """Root and a working ``ip netns``."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and \
        subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", netns, "ip"] if netns else ["ip"]) + list(args)
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _make_namespaces(names, tag: str, subnet: int, made: list) -> list[LocalHost]:
    hosts = []
    for i, name in enumerate(names):
        ns, outer, inner = f"fl{tag}-{i}", f"fl{tag}h{i}", f"fl{tag}n{i}"
        _ip("netns", "add", ns)
        made.append((ns, outer))
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("addr", "add", f"10.{subnet}.{i}.1/24", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("addr", "add", f"10.{subnet}.{i}.2/24", "dev", inner, netns=ns)
        _ip("link", "set", inner, "up", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        hosts.append(LocalHost(name, f"10.{subnet}.{i}.2", ["ip", "netns", "exec", ns], True))
    return hosts


def _remove_namespaces(made: list) -> None:
    for ns, outer in made:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
    made.clear()


def free_subnet() -> int:
    """A 10.N.0.0/16 that no interface of this machine uses, starting from one this process
    owns (two test processes making hosts at once must not give two hosts one address)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    start = 100 + os.getpid() % 150
    for n in range(150):
        subnet = 100 + (start - 100 + n) % 150
        if f" 10.{subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.N.0.0/16 subnet for test hosts")


@contextlib.contextmanager
def local_hosts(names, *, subnet: int | None = None, isolate: bool | None = None):
    """Yield one :class:`LocalHost` per name; tear the namespaces down afterwards.

    ``isolate=None`` uses namespaces where they can be made (e.g. not in a container
    without CAP_SYS_ADMIN) and loopback otherwise; ``True`` insists on namespaces.
    """
    made: list = []
    hosts = [LocalHost(name, "127.0.0.1") for name in names]
    try:
        if isolate or (isolate is None and namespaces_available()):
            try:
                hosts = _make_namespaces(names, f"{os.getpid() % 10000}",
                                         subnet if subnet is not None else free_subnet(), made)
            except subprocess.CalledProcessError:
                _remove_namespaces(made)
                if isolate:
                    raise
        yield hosts
    finally:
        _remove_namespaces(made)
