"""syft 0.9.5's environment switches that weaken its checks: ignored here, refused by
``serve`` — which also refuses to run as root.

syft reads these variables (most when it is imported); each one turns off a check
fedlearn relies on, or moves a Datasite somewhere else. A stray ``export`` must not
change what a Datasite or a client does, so:

- every process that loads syft through ``require_syft`` removes them from its
  environment *before* importing syft, printing one line per variable
  (:func:`scrub`), and :func:`neutralize` then pins syft's copies of the checks
  (TLS always verified, sign-up off, no signing key or server id from the
  environment) in case syft was imported first;
- ``fedlearn datasite serve`` refuses to start while any is set
  (:func:`refuse_for_serve`): the owner meant something by it, and fedlearn's own
  flags are where such choices are made. It also refuses to run as root unless
  told ``--allow-root``: code the owner approves runs in the server with the server's
  rights, so one bad approval as root owns the machine.

Left alone, because they weaken nothing: ``ENABLE_WARNINGS``,
``MIN_SIZE_BLOB_STORAGE_MB``, ``FORCE_CONCURRENCY_COUNT``, the worker-pool, Kubernetes and
registry variables of deployments fedlearn does not use. ``REQUESTS_CA_BUNDLE`` is
``requests``' own; fedlearn's TLS sessions pass the Datasites' CA on every request,
which ``requests`` prefers to it (:mod:`.connection`).
"""
from __future__ import annotations

import os
import sys

from fedlearn.errors import FedlearnError

SWITCHES = {
    "IGNORE_TLS_ERRORS": "turns off certificate checks on every request syft makes, the "
                         "login carrying the password included",
    "ENABLE_SIGNUP": "lets anyone create an account through /register, an ADMIN one included",
    "DEV_MODE": "sends tracebacks to every caller and lets a Datasite's key follow its name",
    "SERVER_PRIVATE_KEY": "sets the Datasite's signing key, which is its root admin's: "
                          "whoever reads it is root",
    "SERVER_UID": "fixes the Datasite's id, and with it the store it opens",
    "DEFAULT_ROOT_EMAIL": "names the root account (fedlearn sets it from --admin-email)",
    "DEFAULT_ROOT_USERNAME": "names the root account",
    "DEFAULT_ROOT_PASSWORD": "holds the root password where code the server runs can read "
                             "it (fedlearn reads FEDLEARN_ADMIN_PASSWORD and removes it)",
    "ORCHESTRA_DEPLOYMENT_TYPE": "'remote' makes launching a Datasite log in to SERVER_URL "
                                 "instead: the owner's data would be uploaded there",
    "ORCHESTRA_SERVER_TYPE": "launches a gateway or an enclave (anyone may register on an "
                             "enclave) instead of a Datasite",
    "SERVER_URL": "where a 'remote' launch logs in",
    "SERVER_PORT": "where a 'remote' launch logs in",
    "CONTAINER_HOST": "rewrites localhost addresses to a container host's name: the "
                      "password would go to another machine",
    "TRACING": "sends a trace of every call to an OpenTelemetry collector",
    "REVERSE_TUNNEL_ENABLED": "opens reverse tunnels to peers",
    "SYFT_TEMP_ROOT": "moves the Datasite's database and blobs out of its private 0700 "
                      "workspace",
}
# syft's settings for the server child (``SYFT_DB_CONFIG``, ``SYFT_DEV_MODE`` ...): the
# child's own launch sets those it needs; any other would reach its database or mode
PREFIX, PREFIX_WHY = "SYFT_", "sets the server child's settings (its database, dev mode ...)"
# on/off switches are off when unset or false (syft's own launch writes DEV_MODE=False)
BOOLEAN = frozenset({"IGNORE_TLS_ERRORS", "ENABLE_SIGNUP", "DEV_MODE", "TRACING",
                     "REVERSE_TUNNEL_ENABLED"})
OFF = frozenset({"", "0", "false", "f", "no", "n", "off"})


class UnsafeEnvironment(FedlearnError):
    """``serve`` found syft's switches that weaken a Datasite's checks, or runs as root."""


def found(environ=None) -> dict[str, str]:
    """The switches set in ``environ`` (default: this process's), each with why it matters."""
    environ = os.environ if environ is None else environ
    return {name: SWITCHES.get(name, PREFIX_WHY) for name, value in sorted(environ.items())
            if (name in SWITCHES or name.startswith(PREFIX))
            and not (name in BOOLEAN and value.strip().lower() in OFF)}


def scrub(warn=None) -> list[str]:
    """Before syft is first imported here: remove the switches, one warning line each."""
    if "syft" in sys.modules:  # too late (and in the server child, SYFT_* are its own)
        return []
    names = found()
    for name, why in names.items():
        del os.environ[name]
        (warn or _warn)(f"fedlearn: ignoring {name} from the environment: it {why}")
    return list(names)


def refuse_for_serve(*, allow_root: bool, environ=None) -> None:
    """``serve``: refuse to start as root (unless ``allow_root``) or while a switch is set,
    naming each and saying why."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not allow_root:
        raise UnsafeEnvironment("refusing to serve as root: code the owner approves runs in "
                                "the server with its rights, so one bad approval would own "
                                "this machine; serve as an ordinary user, or pass --allow-root")
    names = found(environ)
    if names:
        listed = "; ".join(f"{name} {why}" for name, why in names.items())
        raise UnsafeEnvironment(f"refusing to serve with syft's environment switches set: "
                                f"{listed}. Unset them (fedlearn's own serve flags make these "
                                "choices)")


def neutralize() -> None:
    """Pin syft's copies of these checks, whatever its environment held at import."""
    import syft.client.client as client
    import syft.server.server as server
    import syft.types.server_url as server_url
    import syft.util.util as util
    from syft.util.experimental_flags import flags

    def verify_tls() -> bool:
        return True

    for module in (util, client, server_url):
        module.verify_tls = verify_tls
    server.signing_key_env = server.server_uid_env = None
    flags.CAN_REGISTER = False


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
