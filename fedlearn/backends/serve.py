"""A data owner's Datasite as a real network server: ``fedlearn datasite serve``.

The owner runs this on their own machine. It starts a PySyft 0.9.5 Datasite
(uvicorn, in a child process), uploads the owner's MNIST shard as a private
asset with a mock, optionally registers the data scientist's account, prints one
``serving ...`` line and then waits; Ctrl-C (or SIGTERM) stops the server and
deletes its database and blob files.

Credentials never come from the command line (where ``ps`` and shell history
would show them): the admin password is read from ``FEDLEARN_ADMIN_PASSWORD`` or
a file, and PySyft's well-known default ``changethis`` is refused. PySyft reads
its root password from the environment when it is first imported, so it is set
there before ``syft`` is imported; the server then proves that the default
password does not open it.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from fedlearn.config import ConfigError, DataConfig, PartitionConfig, _choice, _positive_int
from fedlearn.config import PARTITIONS

ADMIN_PASSWORD_ENV = "FEDLEARN_ADMIN_PASSWORD"
SCIENTIST_PASSWORD_ENV = "FEDLEARN_SCIENTIST_PASSWORD"
PYSYFT_DEFAULT_PASSWORD = "changethis"
MIN_PASSWORD_LENGTH = 10
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_password(argument: str, *, env: str, file: str | None = None) -> str:
    """A password from ``file`` (first line) or the environment variable ``env``; never a default."""
    if file is not None:
        try:
            lines = Path(file).expanduser().read_text().splitlines()
        except OSError as exc:
            raise ConfigError(argument, f"cannot read the password file {file} "
                              f"({exc.strerror or exc})") from exc
        text = lines[0].strip() if lines else ""
    else:
        text = os.environ.get(env, "")
    if not text:
        raise ConfigError(argument, f"no password given: set {env} or pass a file with "
                          f"--{argument.replace('_', '-')}-file FILE")
    if text == PYSYFT_DEFAULT_PASSWORD:
        raise ConfigError(argument, f"'{PYSYFT_DEFAULT_PASSWORD}' is PySyft's published default "
                          "password: anyone could log in as the owner; choose another")
    if len(text) < MIN_PASSWORD_LENGTH:
        raise ConfigError(argument, f"must be at least {MIN_PASSWORD_LENGTH} characters "
                          f"(got {len(text)})")
    return text


def parse_shard(text: str) -> tuple[int, int]:
    """``"0/2"`` -> (0, 2): this owner holds part 0 of the training set split in 2."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ConfigError("shard", f"must look like INDEX/COUNT, e.g. 0/2 (got {text!r})") from None
    if not 0 <= i < n:
        raise ConfigError("shard", f"INDEX must be in 0..COUNT-1 (got {text!r})")
    return i, n


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """What one data owner serves, and where."""

    name: str
    shard: tuple[int, int] = (0, 2)
    scheme: str = "iid"
    data: DataConfig = DataConfig()
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 8080
    admin_email: str = "info@openmined.org"
    scientist_email: str | None = None

    def __post_init__(self):
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("name", f"must be letters, digits, - or _ (got {self.name!r})")
        _choice(self.scheme, "partition", PARTITIONS)
        _positive_int(self.port, "port")
        if self.port > 65535:
            raise ConfigError("port", f"must be at most 65535 (got {self.port})")
        for argument, email in (("admin_email", self.admin_email),
                                ("scientist", self.scientist_email)):
            if email is not None and "@" not in email:
                raise ConfigError(argument, f"must be an e-mail address (got {email!r})")

    @property
    def public(self) -> bool:
        return self.host not in LOOPBACK

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_shard(config: ServeConfig):
    """This owner's images (N, 28, 28) uint8 and labels (N,): the same split as in-process runs."""
    from fedlearn.data import load_mnist, to_uint8
    from fedlearn.partition import partition

    index, count = config.shard
    data = load_mnist(config.data, seed=config.seed)
    names = tuple(f"owner{i}" for i in range(count))
    part = partition(data.train_y.numpy(), PartitionConfig(workers=names, scheme=config.scheme),
                     config.seed)[index]
    return to_uint8(data.train_x[part]).numpy(), data.train_y[part].numpy()


def _stop_on(signum, frame):
    raise KeyboardInterrupt


def serve(config: ServeConfig, *, admin_password: str, scientist_password: str | None = None,
          announce=print, stop: threading.Event | None = None) -> None:
    """Serve until Ctrl-C/SIGTERM (or ``stop`` is set); always shut down and clean up."""
    if "syft" in sys.modules:
        raise RuntimeError("syft was imported before the admin password was set; run "
                           "`fedlearn datasite serve` in a fresh process")
    images, labels = load_shard(config)
    os.environ["DEFAULT_ROOT_PASSWORD"] = admin_password  # read by syft at import, only then
    os.environ["DEFAULT_ROOT_EMAIL"] = config.admin_email
    from fedlearn.backends.pysyft import Datasite, require_syft

    require_syft()
    # gone again: syft's client warns "default password" when a login matches this variable
    del os.environ["DEFAULT_ROOT_PASSWORD"]

    if config.public:
        announce(f"WARNING: {config.name} serves on {config.host}, reachable from other machines. "
                 "PySyft speaks plain HTTP: put a TLS reverse proxy in front and firewall the "
                 "port to the data scientist's address (see README, 'Security').", file=sys.stderr)
    site = Datasite.serve(config.name, host=config.host, port=config.port, url=config.url,
                          admin_email=config.admin_email, admin_password=admin_password)
    previous = signal.signal(signal.SIGTERM, _stop_on) if \
        threading.current_thread() is threading.main_thread() else None
    try:
        site.upload_mnist(images, labels, seed=config.seed + config.shard[0])
        if config.scientist_email:
            site.register_scientist(config.scientist_email, scientist_password)
        announce(f"{config.name}: serving {len(labels)} private MNIST images at {config.url} "
                 f"(Ctrl-C to stop)", flush=True)
        stop = stop or threading.Event()
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        site.land()
        announce(f"{config.name}: stopped; its database and files are deleted", flush=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
