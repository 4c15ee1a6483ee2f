"""A data owner's Datasite as a real network server: ``fedlearn datasite serve``.

The owner runs this on their own machine. It starts a PySyft 0.9.5 Datasite
(uvicorn, in a child process; optionally TLS, optionally requiring client
certificates), uploads the owner's MNIST shard as a private asset with a mock,
optionally registers the data scientist's account, prints one ``serving ...``
line and then waits. Ctrl-C, SIGTERM or SIGHUP (the terminal or SSH session
closed) stop the server and delete its files; if this process is killed outright,
the child notices and stops too (:mod:`.server_process`). With ``--state-dir DIR``
the Datasite lives in DIR instead and a restart reopens it, users, dataset,
requests, approvals, call counts and audit log included (:mod:`.state_dir`).

Credentials never come from the command line (where ``ps`` and shell history
would show them): passwords are read from ``FEDLEARN_ADMIN_PASSWORD`` /
``FEDLEARN_SCIENTIST_PASSWORD`` or files, and the variables are removed from the
environment at once; the server child, a fork that runs approved code, overwrites
every copy of both passwords it inherited once its root account exists
(:mod:`.child_secrets`). PySyft's published default ``changethis``, short or blank
passwords, and an admin password equal to the scientist's are refused; the server
then proves that the default password does not open it. ``serve`` refuses to run
as root without ``--allow-root``, and with syft's environment switches that weaken
its checks set (:mod:`.syft_environment`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from fedlearn.backends.pysyft.child_secrets import forget_in_server_child
from fedlearn.backends.pysyft.connection import TLSClientConfig, use_tls
from fedlearn.backends.pysyft.console import quiet_syft, set_verbose
from fedlearn.backends.pysyft.loading import PYSYFT_DEFAULT_EMAIL, PYSYFT_DEFAULT_PASSWORD
from fedlearn.backends.pysyft.owner_limits import OwnerLimits
from fedlearn.backends.pysyft.owner_limits import install as install_limits
from fedlearn.backends.pysyft.server_process import install_child_hooks, uvicorn_tls
from fedlearn.backends.pysyft.state_dir import (
    StateDirectory,
    StateDirError,
    launch_site,
    open_workspace,
    populate,
)
from fedlearn.backends.pysyft.supervision import (
    DEFAULT_MAX_MEMORY_MB,
    LOG_NAME,
    check_alive,
    check_max_memory,
    reserve_port,
)
from fedlearn.backends.pysyft.syft_environment import refuse_for_serve
from fedlearn.config import (
    PARTITIONS,
    ConfigError,
    DataConfig,
    PartitionConfig,
    Scheme,
    choice,
    positive_int,
)

ADMIN_PASSWORD_ENV = "FEDLEARN_ADMIN_PASSWORD"
SCIENTIST_PASSWORD_ENV = "FEDLEARN_SCIENTIST_PASSWORD"
MIN_PASSWORD_LENGTH = 10
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_password(argument: str, *, env: str, file: str | None = None) -> str:
    """A password from ``file`` (first line) or the environment variable ``env``; never a default.

    The variable is removed from the environment once read (whichever source is
    used), so nothing started later in this process — approved code included —
    finds it there.
    """
    from_env = os.environ.pop(env, "")
    if file is not None:
        try:
            lines = Path(file).expanduser().read_text().splitlines()
        except OSError as exc:
            raise ConfigError(argument, f"cannot read the password file {file} "
                              f"({exc.strerror or exc})") from exc
        text = lines[0].rstrip("\r\n") if lines else ""
    else:
        text = from_env
    if text and not text.strip():
        raise ConfigError(argument, "is only blank space; choose a real password")
    text = text.strip()
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


def check_distinct(admin_password: str, scientist_password: str | None) -> None:
    """The data scientist must not hold the owner's password (they could approve themselves)."""
    if scientist_password is not None and scientist_password == admin_password:
        raise ConfigError("scientist_password", "must differ from the admin password: the "
                          "data scientist could log in as the owner and approve their own code")


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
    scheme: Scheme = "iid"
    data: DataConfig = DataConfig()
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 8080
    admin_email: str = PYSYFT_DEFAULT_EMAIL
    scientist_email: str | None = None
    tls_cert: str | None = None  # serve HTTPS with this certificate (PEM) ...
    tls_key: str | None = None  # ... and its private key
    client_ca: str | None = None  # require client certificates signed by this CA
    # the owner's own client certificate for its admin login, needed with client_ca
    tls_client: TLSClientConfig | None = None
    state_dir: str | None = None  # keep the Datasite here across restarts (None: temporary)
    reset: bool = False  # empty state_dir first: start afresh on purpose
    allow_signup: bool = False  # open /register: anyone may make a data-scientist account
    allow_password_reset: bool = False  # open /forgot_password and /reset_password
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB  # the server child's writable memory
    verbose: bool = False  # show PySyft's and uvicorn's own output
    allow_root: bool = False  # serve as root anyway: approved code then runs as root
    limits: OwnerLimits = OwnerLimits()  # lr and batch bounds, a privacy budget (owner_limits)

    def __post_init__(self):
        check_max_memory(self.max_memory_mb)
        if self.reset and self.state_dir is None:
            raise ConfigError("reset", "needs --state-dir (without one every start is fresh)")
        if self.limits.budget and self.state_dir is None:
            raise ConfigError("dp_epsilon", "needs --state-dir: the privacy spent must survive "
                              "a restart, or each restart would give every scientist a new "
                              "budget on the same images")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert", "give both --tls-cert and --tls-key, or neither")
        for argument, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key),
                               ("client_ca", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(argument, f"no such file: {path}")
        if self.client_ca and not self.tls_cert:
            raise ConfigError("client_ca", "needs --tls-cert and --tls-key")
        if self.client_ca and (self.tls_client is None or self.tls_client.cert_file is None):
            raise ConfigError("client_ca", "the owner's own login then needs a client "
                              "certificate too: pass --client-cert and --client-key")
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("name", f"must be letters, digits, - or _ (got {self.name!r})")
        choice(self.scheme, "partition", PARTITIONS)
        positive_int(self.port, "port")
        if self.port > 65535:
            raise ConfigError("port", f"must be at most 65535 (got {self.port})")
        for argument, email in (("admin_email", self.admin_email),
                                ("scientist", self.scientist_email)):
            if email is not None and "@" not in email:
                raise ConfigError(argument, f"must be an e-mail address (got {email!r})")

    @property
    def door_flags(self) -> frozenset[str]:
        """The routes the owner opened at the HTTP door (:mod:`.http_door`)."""
        return frozenset(flag for flag in ("allow_signup", "allow_password_reset")
                         if getattr(self, flag))

    @property
    def public(self) -> bool:
        return self.host not in LOOPBACK

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


def load_shard(config: ServeConfig):
    """This owner's images (N, 28, 28) uint8 and labels (N,): the same split as in-process runs."""
    from fedlearn.data import load_mnist, to_uint8
    from fedlearn.data.partition import partition

    index, count = config.shard
    data = load_mnist(config.data, seed=config.seed)
    names = tuple(f"owner{i}" for i in range(count))
    part = partition(data.train_y.numpy(), PartitionConfig(workers=names, scheme=config.scheme),
                     config.seed)[index]
    return to_uint8(data.train_x[part]).numpy(), data.train_y[part].numpy()


def _stop_on(signum, frame):
    raise KeyboardInterrupt


STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # SIGINT raises KeyboardInterrupt already


def serve(config: ServeConfig, *, admin_password: str, scientist_password: str | None = None,
          announce=print, stop: threading.Event | None = None) -> None:
    """Serve until Ctrl-C, SIGTERM or SIGHUP (or ``stop`` is set); always clean up."""
    if config.scientist_email and not scientist_password:
        raise ConfigError("scientist_password", f"registering {config.scientist_email} needs "
                          "a password for the account")
    check_distinct(admin_password, scientist_password)
    refuse_for_serve(allow_root=config.allow_root)  # root, or syft's weakening switches
    forget_in_server_child(admin_password, scientist_password)  # the child runs approved code
    set_verbose(config.verbose)
    listener = reserve_port(config.host, config.port)  # a busy port: refused before all else
    try:
        images, labels = load_shard(config)
        install_limits(config.limits.for_shard(len(labels)))  # the server child inherits them
        workspace = open_workspace(config.name, config.state_dir, reset=config.reset,
                                   images=images, labels=labels, announce=announce)
    except BaseException:
        listener.close()
        raise
    kept = isinstance(workspace, StateDirectory)
    from fedlearn.backends.pysyft.call_guard import use_state_dir

    use_state_dir(workspace.path)  # where the server child keeps fedlearn's own record
    for path in workspace.leftovers:
        announce(f"WARNING: {path} was left by a Datasite that did not stop cleanly (its "
                 "process is gone); it may hold private data: delete it with rm -r",
                 file=sys.stderr)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), _stop_on)
    site = None
    try:
        tls = (uvicorn_tls(config.tls_cert, config.tls_key, config.client_ca)
               if config.tls_cert and config.tls_key else None)
        log = None if config.verbose else workspace.path / LOG_NAME
        child = install_child_hooks(workspace=None if kept else workspace.path, tls=tls,
                                    listen=listener, max_memory_mb=config.max_memory_mb,
                                    log=log, door_flags=config.door_flags)
        if tls:  # the owner's own admin login goes over the same TLS
            use_tls(config.tls_client)
        if config.public:
            how = ("TLS" if tls else "plain HTTP: use --tls-cert/--tls-key, or an SSH tunnel "
                   "or WireGuard,")
            announce(f"WARNING: {config.name} serves on {config.host}, reachable from other "
                     f"machines, over {how} and firewall the port to the data scientist's "
                     "address (see README, 'Security').", file=sys.stderr)
        try:
            with quiet_syft():  # syft's banners; the child writes to its log instead
                site = launch_site(config, admin_password, workspace)
        except StateDirError:
            raise  # a clear reason already (launch_site stopped the child itself)
        except Exception:
            check_alive(child.process, config.name, log)  # the real reason, if it died
            raise
        listener.close()  # the child serves on its own copy
        if config.allow_signup:
            with quiet_syft():
                site.client.api.services.settings.allow_guest_signup(enable=True)
        populate(site, workspace, images, labels, seed=config.seed + config.shard[0],
                 scientist_email=config.scientist_email, scientist_password=scientist_password,
                 announce=announce)
        check_alive(child.process, config.name, log)
        announce(f"{config.name}: serving {len(labels)} private MNIST images at {config.url} "
                 f"(Ctrl-C to stop)", flush=True)
        stop = stop or threading.Event()
        while not stop.wait(1.0):
            check_alive(child.process, config.name, log)  # never "serving" with a dead port
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        if site is not None:
            with quiet_syft():
                site.land(keep_files=kept)
        if isinstance(workspace, StateDirectory):
            workspace.close()
            announce(f"{config.name}: stopped; its state is kept in {workspace.path}", flush=True)
        else:
            workspace.remove()
            announce(f"{config.name}: stopped; its database and files are deleted", flush=True)
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
