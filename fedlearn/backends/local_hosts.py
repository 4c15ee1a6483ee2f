"""Rehearse a multi-machine deployment on one Linux machine.

Each data owner gets a host of their own: a network namespace with its own
address, joined to this machine by a veth pair (``ip netns``; needs root), so the
owner's server is reachable only over that link, as a separate machine would be.
Without root, every owner gets a port on loopback instead. The tests and the
network benchmark start real ``fedlearn datasite serve`` processes on these hosts.
"""
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LocalHost:
    """Where one owner's server runs: its address, and the command prefix that puts it there."""

    name: str
    address: str
    prefix: list[str] = field(default_factory=list)
    isolated: bool = False


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


@contextlib.contextmanager
def local_hosts(names, *, subnet: int = 231, isolate: bool | None = None):
    """Yield one :class:`LocalHost` per name; tear the namespaces down afterwards.

    ``isolate=None`` uses namespaces where they can be made (e.g. not in a container
    without CAP_SYS_ADMIN) and loopback otherwise; ``True`` insists on namespaces.
    """
    made: list = []
    hosts = [LocalHost(name, "127.0.0.1") for name in names]
    try:
        if isolate or (isolate is None and namespaces_available()):
            try:
                hosts = _make_namespaces(names, f"{os.getpid() % 10000}", subnet, made)
            except subprocess.CalledProcessError:
                _remove_namespaces(made)
                if isolate:
                    raise
        yield hosts
    finally:
        _remove_namespaces(made)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A ``fedlearn datasite serve`` process on a :class:`LocalHost`, with its output."""

    def __init__(self, host: LocalHost, port: int, args: list[str], env: dict):
        self.host, self.port, self.env = host, port, env
        scheme = "https" if "--tls-cert" in args else "http"
        self.url = f"{scheme}://{host.address}:{port}"
        cmd = host.prefix + [sys.executable, "-m", "fedlearn", "datasite", "serve",
                             "--name", host.name, "--host", host.address, "--port", str(port),
                             *args]
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.host.name} exited:\n{self.output}")
            if f"{self.host.name}: serving" in line:
                return
        raise TimeoutError(f"{self.host.name} not serving after {timeout} s:\n{self.output}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd or Ctrl-C would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
