"""The served Datasite's process: private files, a clean end, a child that dies with it, TLS.

PySyft 0.9.5 writes a Datasite's SQLite database and blobs under
``$TMPDIR/syft/<uid>/`` with the process umask (0755/0644 by default: readable by
every local user), and serves HTTP from a forked uvicorn child that outlives a
SIGKILLed parent. Here:

- :class:`PrivateWorkspace`: umask 077 and a fresh 0700 directory per served
  Datasite, which becomes this process's temporary directory (inherited by the
  child); removed at the end. Directories left by a crashed run are reported.
- :func:`install_child_hooks`: the uvicorn child watches its parent and shuts down
  (and removes the workspace) as soon as the parent is gone, forgets the admin
  password once its server exists, and speaks TLS when asked; it serves only behind
  the HTTP door (:mod:`.http_door`) and, for ``serve``, on the socket ``serve`` bound,
  under a memory limit, with its output in a log file (:mod:`.supervision`).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PREFIX = "fedlearn-datasite-"
_NAME = re.compile(rf"^{PREFIX}(?P<name>[A-Za-z0-9_-]+?)-(?P<pid>\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_workspaces(base: Path) -> list[Path]:
    """Workspaces under ``base`` whose serving process no longer exists (a crashed run)."""
    found = []
    for path in sorted(base.glob(f"{PREFIX}*")):
        match = _NAME.match(path.name)
        if match and path.is_dir() and not _alive(int(match["pid"])):
            found.append(path)
    return found


class PrivateWorkspace:
    """umask 077 and a private temporary directory for one served Datasite."""

    def __init__(self, name: str, base: str | None = None):
        self.base = Path(base or tempfile.gettempdir())
        self.leftovers = leftover_workspaces(self.base)
        self._previous = private_process_defaults()
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-{os.getpid()}-",
                                          dir=self.base))
        os.chmod(self.path, 0o700)
        tempfile.tempdir = str(self.path)  # syft asks tempfile.gettempdir() at launch
        os.environ["TMPDIR"] = str(self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        restore_process_defaults(self._previous)


def private_process_defaults() -> tuple:
    """umask 077 from now on; what to give :func:`restore_process_defaults` afterwards."""
    return os.umask(0o077), tempfile.tempdir, os.environ.get("TMPDIR")


def restore_process_defaults(previous: tuple) -> None:
    """Give back the umask and temporary directory that :func:`private_process_defaults` saw."""
    umask, tempdir, env = previous
    os.umask(umask)
    tempfile.tempdir = tempdir
    if env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = env


def _watch_parent(parent: int, workspace: Path | None, poll: float = 0.5,
                  grace: float = 10.0) -> None:
    """In the child: once the parent is gone, shut uvicorn down, remove the files, exit."""
    while os.getppid() == parent:
        time.sleep(poll)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
    time.sleep(grace)
    if workspace is not None:
        shutil.rmtree(workspace, ignore_errors=True)
    os._exit(0)


class _Uvicorn:
    """Stands in for ``uvicorn`` inside ``syft.server.uvicorn`` (in the child only): TLS, and
    serving on the socket ``serve`` bound (:func:`~.supervision.reserve_port`)."""

    def __init__(self, uvicorn_module, tls: dict | None, listen: socket.socket | None):
        self._uvicorn, self._tls, self._listen = uvicorn_module, tls or {}, listen

    def __getattr__(self, name):
        return getattr(self._uvicorn, name)

    def run(self, app, **kwargs):
        if self._listen is None:
            return self._uvicorn.run(app, **kwargs, **self._tls)
        server = self._uvicorn.Server(self._uvicorn.Config(app, **kwargs, **self._tls))
        server.run(sockets=[self._listen])
        if not server.started:  # as uvicorn.run ends a server that could not start
            sys.exit(3)
        return None


class _RecordChild:
    """Stands in for ``multiprocessing`` inside ``syft.server.uvicorn``: keeps the server
    process it starts, for ``serve`` to watch (:func:`~.supervision.check_alive`)."""

    def __init__(self, multiprocessing_module):
        self._multiprocessing, self.process = multiprocessing_module, None

    def __getattr__(self, name):
        return getattr(self._multiprocessing, name)

    def Process(self, *args, **kwargs):  # noqa: N802 (the name syft calls)
        self.process = self._multiprocessing.Process(*args, **kwargs)
        return self.process


class _TCPReadiness:
    """Stands in for ``requests`` in syft's readiness loop: TLS (maybe with client
    certificates) would fail its plain-HTTP probe, so an open port counts as ready."""

    def __init__(self, requests_module):
        self._requests = requests_module

    def __getattr__(self, name):
        return getattr(self._requests, name)

    def get(self, url: str, timeout=None, **kwargs):
        import socket
        from types import SimpleNamespace

        host_port = url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=timeout or 2):
            return SimpleNamespace(status_code=200)


def install_child_hooks(*, workspace: Path | None, tls: dict | None = None,
                        listen: socket.socket | None = None, max_memory_mb: int | None = None,
                        log: Path | None = None, door_flags: frozenset[str] = frozenset()
                        ) -> _RecordChild:
    """Make the next uvicorn Datasite launched from this process safe (see module doc).

    In the child: serve on ``listen`` if given, allocate at most ``max_memory_mb``, write
    the output to ``log`` (None: the terminal), and answer only behind the HTTP door
    (:mod:`.http_door`, with the routes ``door_flags`` open). Returns what records the
    child process, once launched.
    """
    import syft.server.uvicorn as syft_uvicorn
    from syft.server.server import Server

    from fedlearn.backends.pysyft import supervision
    from fedlearn.backends.pysyft.http_door import guard

    original_run = getattr(syft_uvicorn, "_fedlearn_run_uvicorn", syft_uvicorn.run_uvicorn)
    original_factory = getattr(syft_uvicorn, "_fedlearn_app_factory", syft_uvicorn.app_factory)
    original_routes = getattr(syft_uvicorn, "_fedlearn_make_routes", syft_uvicorn.make_routes)
    syft_uvicorn._fedlearn_run_uvicorn = original_run
    syft_uvicorn._fedlearn_app_factory = original_factory
    syft_uvicorn._fedlearn_make_routes = original_routes
    parent = os.getpid()
    workers = []

    def make_routes(worker):  # the door checks logins against this server's id
        workers.append(worker)
        return original_routes(worker)

    def app_factory():
        from fastapi.responses import PlainTextResponse

        from fedlearn.backends.pysyft.hardening import RefusedBySecurityPolicy

        syft_uvicorn.make_routes = make_routes
        app = original_factory()
        # the server exists: approved code running in this process cannot read it any more
        Server.__init__.__kwdefaults__["root_password"] = None

        async def refused(request, exc):  # one clear line instead of a 500 and a traceback
            return PlainTextResponse(f"fedlearn refused this request: {exc}", status_code=400)

        app.add_exception_handler(RefusedBySecurityPolicy, refused)
        return guard(app, str(workers[-1].id), flags=door_flags)

    def run_uvicorn(*args, **kwargs):  # runs in the forked child
        if log is not None:
            supervision.send_output_to(log)
        if max_memory_mb is not None:
            supervision.limit_memory(max_memory_mb)
        threading.Thread(target=_watch_parent, args=(parent, workspace), daemon=True).start()
        syft_uvicorn.app_factory = app_factory
        if tls or listen is not None:
            syft_uvicorn.uvicorn = _Uvicorn(syft_uvicorn.uvicorn, tls, listen)
        try:
            return original_run(*args, **kwargs)
        finally:
            if os.getppid() != parent and workspace is not None:  # orphaned: nobody else will
                shutil.rmtree(workspace, ignore_errors=True)

    syft_uvicorn.run_uvicorn = run_uvicorn
    plain = getattr(syft_uvicorn.requests, "_requests", syft_uvicorn.requests)
    syft_uvicorn.requests = _TCPReadiness(plain) if tls else plain
    recorder = _RecordChild(getattr(syft_uvicorn.multiprocessing, "_multiprocessing",
                                    syft_uvicorn.multiprocessing))
    syft_uvicorn.multiprocessing = recorder
    return recorder


def uvicorn_tls(cert_file: str, key_file: str, client_ca: str | None) -> dict:
    """uvicorn's TLS settings: a server certificate, and optionally required client ones."""
    import ssl

    tls: dict[str, Any] = {"ssl_certfile": cert_file, "ssl_keyfile": key_file}
    if client_ca:
        tls.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return tls
