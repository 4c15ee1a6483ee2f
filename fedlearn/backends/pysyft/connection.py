"""Reaching a Datasite by URL: log in, check the account's role, and speak TLS when asked.

``http://HOST:PORT`` is plain HTTP (loopback, or inside an SSH tunnel/WireGuard);
``https://HOST:PORT`` is verified against a CA file and can present a client
certificate, for Datasites served with ``fedlearn datasite serve --tls-cert``.
PySyft 0.9.5's client sends every request through ``requests`` inside
``syft.client.client``; :func:`use_tls` gives that module a ``requests`` whose
sessions carry the CA file and the client certificate, so every call — login,
API calls, results — is checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedlearn.backends.pysyft.console import quiet_syft
from fedlearn.backends.pysyft.loading import require_syft
from fedlearn.config import ConfigError
from fedlearn.errors import FedlearnError


class LoginError(FedlearnError, PermissionError):
    """A login failed, or the account is not allowed to do what was asked."""


class DatasiteUnreachable(FedlearnError, ConnectionError):
    """Nothing answers as a Datasite at a URL: no server there, a wrong host or port, or a
    failed TLS check."""


class DatasiteRefused(FedlearnError, ConnectionError):
    """The server at a Datasite's URL answered with something fedlearn refuses (e.g. a code
    gadget, or no terms): not a fedlearn Datasite to trust."""

    exit_code = 1  # the other side stopped the run, not the command


def unreachable(url: str, exc: BaseException, *, name: str | None = None) -> DatasiteUnreachable:
    """The one error for a Datasite that cannot be reached, naming the URL and what to check."""
    kind = ("TLS check failed" if "SSL" in type(exc).__name__ or "SSL" in str(exc)
            else type(exc).__name__)
    return DatasiteUnreachable(
        f"{name + ': ' if name else ''}cannot reach a Datasite at {url} ({kind}); is "
        "`fedlearn datasite serve` running there, and are the host, the port and (for "
        "https://) --ca-file and the certificates right?")


@dataclass(frozen=True)
class TLSClientConfig:
    """The CA that signed the Datasites' certificates, and this client's own certificate."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self):
        for argument, path in (("ca_file", self.ca_file), ("client_cert", self.cert_file),
                               ("client_key", self.key_file)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(argument, f"no such file: {path}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("client_cert", "give both --client-cert and --client-key, or "
                              "neither")


def _tls_session(requests_module, tls: TLSClientConfig):
    """A ``requests`` session that checks servers against ``tls.ca_file`` and presents the
    client certificate. ``verify`` is set on every request, whatever the caller passed:
    requests would otherwise let ``REQUESTS_CA_BUNDLE`` replace the session's CA, and
    syft passes ``verify=False`` when ``IGNORE_TLS_ERRORS`` is set."""

    class TLSSession(requests_module.Session):
        def request(self, method, url, **kwargs):
            kwargs["verify"] = tls.ca_file
            if kwargs.get("cert") is None and tls.cert_file:
                kwargs["cert"] = (tls.cert_file, tls.key_file)
            return super().request(method, url, **kwargs)

    return TLSSession()


class _RequestsWithTLS:
    """Stands in for ``requests`` inside ``syft.client.client``: sessions with our TLS settings."""

    def __init__(self, requests_module, tls: TLSClientConfig):
        self._requests, self._tls = requests_module, tls

    def __getattr__(self, name):
        return getattr(self._requests, name)

    def Session(self):  # noqa: N802 (the name syft calls)
        return _tls_session(self._requests, self._tls)

    def post(self, url, **kwargs):
        with self.Session() as session:
            return session.post(url, **kwargs)


def _keep_https_ports() -> None:
    """syft 0.9.5 rewrites every https:// URL to port 443, whatever port it names: keep it."""
    from syft.types.server_url import ServerURL

    original = ServerURL.from_url.__func__
    if getattr(original, "_fedlearn_keeps_port", False):
        return

    def from_url(cls, url):
        parsed = original(cls, url)
        if isinstance(url, str) and url.startswith("https://"):
            netloc = url[len("https://"):].split("/", 1)[0]
            if ":" in netloc and netloc.rpartition(":")[2].isdigit():
                parsed.port = int(netloc.rpartition(":")[2])
        return parsed

    setattr(from_url, "_fedlearn_keeps_port", True)
    ServerURL.from_url = classmethod(from_url)


def use_tls(tls: TLSClientConfig | None) -> None:
    """From now on, every https:// Datasite this process talks to is checked with ``tls``."""
    require_syft()
    import syft.client.client as client

    _keep_https_ports()

    original = getattr(client, "_fedlearn_requests", None) or client.requests
    client._fedlearn_requests = original
    client.requests = original if tls is None else _RequestsWithTLS(original, tls)


def split_url(url: str) -> tuple[str, str, int]:
    """``https://10.0.0.2:8443`` -> ("https", "10.0.0.2", 8443), or a clear error."""
    scheme, sep, rest = url.rstrip("/").partition("://")
    host, _, port = rest.rpartition(":")
    if (not sep or scheme not in ("http", "https") or not host or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise ConfigError("datasite", f"a Datasite URL looks like http(s)://HOST:PORT "
                          f"(got {url!r})")
    return scheme, host, int(port)


def login(url: str, email: str, password: str):
    """Log in to a Datasite at ``http(s)://host:port``; PySyft wants host and port apart.

    Never through syft's client session cache (``cache=False``, here and in
    :func:`login_to_handle`): that cache keeps every logged-in client, signing key included,
    in a class attribute for the life of the process, and keys it by an argon2 hash of the
    password (about 0.2 s of CPU per login) that syft 0.9.5 never looks up again.
    """
    from fedlearn.backends.pysyft.hardening import RefusedBySecurityPolicy

    sy = require_syft()
    scheme, host, port = split_url(url)
    try:
        with quiet_syft():
            return sy.login(url=f"{scheme}://{host}", port=port, email=email, password=password,
                            cache=False)
    except (RefusedBySecurityPolicy, sy.SyftException) as exc:
        refused = _refusal_in(exc)
        if refused is not None:  # a hostile or impersonated server
            raise DatasiteRefused(f"{url} sent something fedlearn refuses to decode "
                                  f"({refused}); is it really a Datasite?") from exc
        raise LoginError(f"login to {url} as {email} failed: {exc.public_message}") from exc
    except OSError as exc:  # requests' ConnectionError, SSLError and timeouts are OSErrors
        raise unreachable(url, exc) from exc


def login_to_handle(handle, email: str, password: str):
    """Log in to a Datasite this process launched (syft's ``ServerHandle``), uncached.

    ``handle.login`` drops ``cache`` for a served handle, so that case logs in by URL.
    """
    if handle.port:
        sy = require_syft()
        with quiet_syft():
            return sy.login(url=handle.url, port=handle.port, email=email, password=password,
                            cache=False)
    with quiet_syft():
        return handle.login(email=email, password=password, cache=False)


def _refusal_in(exc: BaseException | None) -> str | None:
    """The hardening's refusal behind ``exc`` (syft re-wraps errors it catches), or None."""
    from fedlearn.backends.pysyft.hardening import RefusedBySecurityPolicy

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RefusedBySecurityPolicy):
            return str(exc)
        message = str(getattr(exc, "public_message", ""))
        if "refused to decode" in message:
            return message
        exc = exc.__cause__ or exc.__context__
    return None


def role_of(client) -> str:
    """The account's role as the server reports it: ADMIN, DATA_OWNER, DATA_SCIENTIST, GUEST."""
    user = client.api.services.user.get_current_user()
    return str(getattr(user, "role", "")).rpartition(".")[2].upper()


def is_this_machine(host: str) -> bool:
    """True if ``host`` (a name or an address) is this machine: a loopback address, or the
    address this machine's own name resolves to. A name that does not resolve is not."""
    import ipaddress
    import socket

    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    if ipaddress.ip_address(address).is_loopback:
        return True
    try:
        return address == socket.gethostbyname(socket.gethostname())
    except OSError:
        return False
