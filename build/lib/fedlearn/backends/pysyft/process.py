"""A data owner's served Datasite in a child process: start it, wait until it serves, stop it.

Runs ``fedlearn datasite serve`` exactly as an owner would type it, optionally
behind a command prefix (e.g. ``ip netns exec NS``, which ``tools/local_hosts.py``
uses to give each owner a host of its own). The notebook and the tests use it to
rehearse Bob and Alice on separate machines.
"""
from __future__ import annotations

import queue
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
        assert self.process.stdout is not None  # Popen(stdout=PIPE)
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
