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
  password once its server exists, and speaks TLS when asked.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
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
        self._previous = (os.umask(0o077), tempfile.tempdir, os.environ.get("TMPDIR"))
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-{os.getpid()}-",
                                          dir=self.base))
        os.chmod(self.path, 0o700)
        tempfile.tempdir = str(self.path)  # syft asks tempfile.gettempdir() at launch
        os.environ["TMPDIR"] = str(self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        umask, tempdir, env = self._previous
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


class _UvicornWithTLS:
    """Stands in for ``uvicorn`` inside ``syft.server.uvicorn`` (in the child only)."""

    def __init__(self, uvicorn_module, tls: dict):
        self._uvicorn, self._tls = uvicorn_module, tls

    def __getattr__(self, name):
        return getattr(self._uvicorn, name)

    def run(self, *args, **kwargs):
        return self._uvicorn.run(*args, **kwargs, **self._tls)


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


def install_child_hooks(*, workspace: Path | None, tls: dict | None = None) -> None:
    """Make the next uvicorn Datasite launched from this process safe (see module doc)."""
    import syft.server.uvicorn as syft_uvicorn
    from syft.server.server import Server

    original_run = getattr(syft_uvicorn, "_fedlearn_run_uvicorn", syft_uvicorn.run_uvicorn)
    original_factory = getattr(syft_uvicorn, "_fedlearn_app_factory", syft_uvicorn.app_factory)
    syft_uvicorn._fedlearn_run_uvicorn = original_run
    syft_uvicorn._fedlearn_app_factory = original_factory
    parent = os.getpid()

    def app_factory():
        from fastapi.responses import PlainTextResponse

        from fedlearn.backends.pysyft.hardening import RefusedBySecurityPolicy

        app = original_factory()
        # the server exists: approved code running in this process cannot read it any more
        Server.__init__.__kwdefaults__["root_password"] = None

        async def refused(request, exc):  # one clear line instead of a 500 and a traceback
            return PlainTextResponse(f"fedlearn refused this request: {exc}", status_code=400)

        app.add_exception_handler(RefusedBySecurityPolicy, refused)
        return app

    def run_uvicorn(*args, **kwargs):  # runs in the forked child
        threading.Thread(target=_watch_parent, args=(parent, workspace), daemon=True).start()
        syft_uvicorn.app_factory = app_factory
        if tls:
            syft_uvicorn.uvicorn = _UvicornWithTLS(syft_uvicorn.uvicorn, tls)
        try:
            return original_run(*args, **kwargs)
        finally:
            if os.getppid() != parent and workspace is not None:  # orphaned: nobody else will
                shutil.rmtree(workspace, ignore_errors=True)

    syft_uvicorn.run_uvicorn = run_uvicorn
    plain = getattr(syft_uvicorn.requests, "_requests", syft_uvicorn.requests)
    syft_uvicorn.requests = _TCPReadiness(plain) if tls else plain


def uvicorn_tls(cert_file: str, key_file: str, client_ca: str | None) -> dict:
    """uvicorn's TLS settings: a server certificate, and optionally required client ones."""
    import ssl

    tls: dict[str, Any] = {"ssl_certfile": cert_file, "ssl_keyfile": key_file}
    if client_ca:
        tls.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return tls
