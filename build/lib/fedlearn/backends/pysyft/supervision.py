"""Supervising a served Datasite's server child: its port, its memory, its output, its death.

``fedlearn datasite serve`` runs syft's uvicorn server in a forked child. Left alone,
syft 0.9.5 lets a second ``serve`` on a busy port log in to *the other* Datasite (its
readiness probe finds whatever answers there), lets one request grow the child until the
kernel kills it while ``serve`` goes on printing "serving", and prints development-server
banners and a CRITICAL signing-key line on the owner's terminal. Here:

- :func:`reserve_port` binds the port in ``serve`` itself, before anything else happens
  (a busy port is a one-line :class:`~fedlearn.config.ConfigError`); the child serves
  on that very socket, so nothing can take the port in between;
- :func:`limit_memory` caps the child's writable memory (``RLIMIT_DATA``: what malloc,
  numpy and torch allocate; not the ~1.8 GB of mapped libraries that ``RLIMIT_AS``
  would also count), so a request that asks for too much fails alone with a
  ``MemoryError`` instead of taking the machine or the child down;
- :func:`send_output_to` puts the child's output in a private log file unless
  ``--verbose``; :class:`ServerDied` says how the child ended (:func:`how_it_ended`).
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import socket
import sys
from pathlib import Path

from fedlearn.config import ConfigError
from fedlearn.errors import FedlearnError

MIB = 1024 * 1024
DEFAULT_MAX_MEMORY_MB = 8192
MIN_MAX_MEMORY_MB = 1024  # the child holds ~1 GB of writable memory before any request
LOG_NAME = "server.log"


class ServerDied(FedlearnError, RuntimeError):
    """The served Datasite's server process ended while ``serve`` was serving: the message
    says how (a signal, an exit code, a probable out-of-memory kill) and where the log is."""

    exit_code = 1  # serving started and was stopped


def reserve_port(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a :class:`ConfigError` if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError("port", f"{port} is already in use on {host} (another Datasite "
                              "or program listens there): choose another --port, or stop "
                              "that one") from None
        raise ConfigError("host", f"cannot listen on {host}:{port} "
                          f"({exc.strerror or exc})") from None
    return sock


def check_max_memory(megabytes: int) -> None:
    if not isinstance(megabytes, int) or megabytes < MIN_MAX_MEMORY_MB:
        raise ConfigError("max_memory_mb", f"must be at least {MIN_MAX_MEMORY_MB} (MB; the "
                          f"server needs about 1 GB before any request), got {megabytes}")


def limit_memory(megabytes: int) -> None:
    """In the child: allocations past ``megabytes`` of writable memory fail (MemoryError)."""
    limit = megabytes * MIB
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def send_output_to(path: Path) -> None:
    """In the child: its stdout, stderr and log records go to ``path`` (0600), not the terminal.

    The parent forks inside :func:`~fedlearn.backends.pysyft.console.quiet_syft`; the
    child undoes that block's redirections so that its own output reaches the file.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    logging.disable(logging.NOTSET)


def last_line(path: Path | None) -> str | None:
    """The last non-empty line the child wrote to its log (e.g. a traceback's error)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines() if path else []
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1][:300] if lines else None


def how_it_ended(exitcode: int | None) -> str:
    """A process's end in words: ``exited with code 1``, ``was killed by SIGKILL ...``."""
    if exitcode is None:
        return "is still running"
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return (f"was killed by {name}, probably out of memory (the kernel's OOM killer; "
                "see dmesg), or by kill -9")
    return f"was killed by {name}"


def check_alive(process, name: str, log: Path | None = None) -> None:
    """Raise :class:`ServerDied` (saying how and why) if the server child has ended."""
    if process is None or process.is_alive():
        return
    process.join(1)
    said = last_line(log) if process.exitcode is None or process.exitcode >= 0 else None
    raise ServerDied(f"{name}: the Datasite's server process {how_it_ended(process.exitcode)}; "
                     "it no longer serves" + (f" (its last words: {said})" if said else ""))
