"""The owner's state directory (``serve --state-dir DIR``): a Datasite that survives restarts.

Without it, ``serve`` runs in a fresh temporary workspace deleted at the end
(:class:`.server_process.PrivateWorkspace`): every restart forgets the users, the
dataset, the requests and the approvals. With it, DIR keeps

- ``syft/<server id>/``: syft's own SQLite store and blobs (users, the dataset, code
  requests, approvals, results);
- ``fedlearn-state.sqlite``: fedlearn's record (:class:`.state.DatasiteState`):
  approvals, call counts, privacy ledgers and the hash-chained audit log;
- ``identity.json`` (0600): the Datasite's name, server id and signing key. syft
  makes the root admin's key the server's key and finds its store by the server id,
  so a new id or key would start an empty Datasite or add a second admin;
- ``shard.json`` (0600): the digest of the uploaded images and labels, so that a
  restart never serves another shard under requests reviewed against this one;
- ``serve.lock``: held with ``flock`` by ``serve`` and its forked server child
  while either runs, so two servers never share one store.

Opening DIR creates it 0700, or refuses it if it is not a directory of this user
closed to everyone else; takes the lock; with ``reset`` deletes what it keeps (after
saying so); and walks the audit log's hash chain, refusing to start on a broken one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

import numpy as np

from fedlearn.backends.pysyft.server_process import (
    private_process_defaults,
    restore_process_defaults,
)
from fedlearn.backends.pysyft.state import DatasiteState
from fedlearn.config import ConfigError
from fedlearn.errors import FedlearnError

LOCK, IDENTITY, SHARD = "serve.lock", "identity.json", "shard.json"


class StateDirError(FedlearnError):
    """The state directory cannot be used for this start (busy, another Datasite or shard)."""


def _write_private(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``path`` (0600) atomically and durably."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(payload, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _make_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError("state_dir", f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise ConfigError("state_dir", f"{path} belongs to user id {info.st_uid}, not to "
                          "this user: a Datasite's state must be its owner's alone")
    if info.st_mode & 0o077:
        raise ConfigError("state_dir", f"{path} is open to other users (mode "
                          f"{stat.S_IMODE(info.st_mode):o}); it will hold private data: "
                          f"chmod 700 {path}")


def _take_lock(path: Path) -> int:
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateDirError(f"another fedlearn datasite serve (pid {holder}, or its server "
                            f"still stopping) is using {path}; stop it first, or give this "
                            "one another --state-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd  # inherited by the forked server child: the lock lasts while either lives


def shard_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the shard exactly as uploaded (dtype, shape and bytes of both arrays)."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(images),  # uint8 pixels or float32 features, as given
                  np.ascontiguousarray(labels, np.int64)):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class StateDirectory:
    """DIR opened for one ``serve`` (see module doc); :meth:`close` keeps everything."""

    def __init__(self, path: str | Path, *, name: str, reset: bool = False, announce=print):
        self.path = Path(path).expanduser().absolute()
        self.leftovers: list[Path] = []  # the interface of PrivateWorkspace
        _make_private(self.path)
        self._lock = _take_lock(self.path)
        try:
            if reset:
                announce(f"{name}: --reset: deleting everything kept in {self.path} (users, "
                         "dataset, requests, approvals, call counts, privacy ledgers, audit "
                         "log)", flush=True)
                self._empty()
            self.identity = self._identity(name)
            state = DatasiteState(self.path)
            try:
                self.audit_entries = state.verify()  # StateTampered: refuse to start
            finally:
                state.close()
        except BaseException:
            os.close(self._lock)
            raise
        self.kept = (self.path / "syft" / self.identity["server_id"]).is_dir()
        self._defaults: dict | None = None
        self._previous = private_process_defaults()
        tempfile.tempdir = str(self.path)  # syft puts its store under tempfile.gettempdir()
        os.environ["TMPDIR"] = str(self.path)

    def _empty(self) -> None:
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _identity(self, name: str) -> dict:
        file = self.path / IDENTITY
        if not file.exists():
            _write_private(file, {"name": name, "server_id": uuid.uuid4().hex,
                                  "signing_key": secrets.token_bytes(32).hex()})
        identity = json.loads(file.read_text())
        if identity["name"] != name:
            raise StateDirError(f"{self.path} keeps the Datasite {identity['name']!r}: serve "
                                f"it with --name {identity['name']}, or give {name!r} "
                                "another --state-dir")
        return identity

    def use_identity(self) -> None:
        """Make the next Server built in this process (or its fork) take the kept id and key."""
        from fedlearn.backends.pysyft.loading import require_syft

        require_syft()
        from syft.server.credentials import SyftSigningKey
        from syft.server.server import Server
        from syft.types.uid import UID

        defaults = self._defaults = Server.__init__.__kwdefaults__
        defaults["id"] = UID.from_string(self.identity["server_id"])
        defaults["signing_key"] = SyftSigningKey.from_string(self.identity["signing_key"])

    def check_shard(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Remember this shard's digest, or refuse a shard other than the one kept here."""
        file = self.path / SHARD
        digest = shard_digest(images, labels)
        if not file.exists():
            _write_private(file, {"sha256": digest, "images": len(labels)})
            return
        kept = json.loads(file.read_text())
        if kept["sha256"] != digest:
            raise StateDirError(
                f"{self.path} keeps a Datasite serving another shard ({kept['images']} images, "
                f"SHA-256 {kept['sha256'][:12]}; now {len(labels)} images, {digest[:12]}): "
                "serve the same --shard, --partition, --seed, --train-size and data as before, "
                "or start afresh with --reset")

    def close(self) -> None:
        """Restore the process's umask and temporary directory, release the lock; keep DIR."""
        if self._defaults is not None:
            self._defaults["id"] = self._defaults["signing_key"] = None
        restore_process_defaults(self._previous)
        os.close(self._lock)


def open_workspace(name: str, state_dir: str | None, *, reset: bool, images: np.ndarray,
                   labels: np.ndarray, announce=print):
    """Where this ``serve`` keeps its files: DIR (checked, locked, verified) or a fresh temp dir."""
    from fedlearn.backends.pysyft.server_process import PrivateWorkspace

    if state_dir is None:
        return PrivateWorkspace(name)
    directory = StateDirectory(state_dir, name=name, reset=reset, announce=announce)
    try:
        directory.check_shard(images, labels)
    except BaseException:
        directory.close()
        raise
    if directory.kept:
        announce(f"{name}: reopening the Datasite kept in {directory.path} (its audit log: "
                 f"{directory.audit_entries} entries, hash chain intact)", flush=True)
    return directory


def launch_site(config, admin_password: str, workspace):
    """``Datasite.serve`` for ``config`` (a ServeConfig): afresh, or reopening what DIR keeps."""
    from fedlearn.backends.pysyft.connection import LoginError
    from fedlearn.backends.pysyft.owner import Datasite

    kept = isinstance(workspace, StateDirectory)
    if kept:
        workspace.use_identity()
    try:
        return Datasite.serve(config.name, host=config.host, port=config.port, url=config.url,
                              admin_email=config.admin_email, admin_password=admin_password,
                              reset=not kept)
    except LoginError:
        if not (kept and workspace.kept):
            raise
        raise StateDirError(f"{config.admin_email} with this admin password does not open the "
                            f"Datasite kept in {workspace.path}: it keeps the password it was "
                            "first served with, or the one its owner set since; give that "
                            "one, or start afresh with --reset") from None


def populate(site, workspace, images: np.ndarray, labels: np.ndarray, *, seed: int,
             scientist_email: str | None, scientist_password: str | None,
             announce=print) -> None:
    """Upload the shard and register the scientist, unless DIR's Datasite already has them."""
    from fedlearn.backends.pysyft.training_code import DATASET

    admin = site.client.api.services
    kept = isinstance(workspace, StateDirectory) and workspace.kept
    if not (kept and any(d.name == DATASET for d in admin.dataset.get_all())):
        site.upload_mnist(images, labels, seed=seed)  # check_shard vouched it is the same
    if scientist_email and scientist_password:
        if kept and any(u.email == scientist_email for u in admin.user.get_all()):
            announce(f"{site.name}: {scientist_email} already has an account here; its "
                     "password is the one it has (not changed)", flush=True)
        else:
            site.register_scientist(scientist_email, scientist_password)
