"""Joining a Ray cluster or starting a local one, and leaving no Ray process behind.

Without an address (``--ray-address`` or ``$RAY_ADDRESS``) a local Ray runtime is started,
sized to this machine, and shut down when the run ends, fails or is interrupted; an existing
cluster is joined and left running (only this run's actors are removed). A driver that is
already connected (``ray.init`` called by the user, or a test cluster) is used as it is.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from fedlearn.config import ConfigError, ExecutionConfig


@dataclass
class RayRuntime:
    started: bool  # this run started it, so this run shuts it down
    nodes: list[dict]  # the alive nodes' resources, as Ray reports them

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized() and self.started:
            ray.shutdown()


def _reachable(address: str) -> None:
    """A host:port that nothing answers on fails here in seconds, not in Ray's minute."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or address.startswith("ray://") or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError("execution.ray_address", f"cannot reach a Ray cluster at "
                          f"{address!r} ({exc}); start its head with `ray start --head`, or "
                          "leave --ray-address out to run a local Ray runtime") from None


def connect(execution: ExecutionConfig) -> RayRuntime:
    """Connect this process to Ray as ``execution`` says; return what it joined."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    address = execution.ray_address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and execution.ray_object_store_mb is not None:
        raise ConfigError("execution.ray_object_store_mb", "sizes a local Ray runtime; a cluster "
                          f"({address}) has its own object store (set it at `ray start`)")
    if address is not None:
        _reachable(address)
    if ray.is_initialized():
        return RayRuntime(False, _alive_nodes())
    if address is not None:
        _token_auth_as_for_auto(ray.__version__)
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error"}
    try:
        if address is None:
            store = execution.ray_object_store_mb
            # "local": a new runtime even where `ray start` left a cluster on this machine
            ray.init(address="local", num_cpus=os.cpu_count(), **quiet,
                     object_store_memory=store * 2 ** 20 if store else None)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        raise ConfigError("execution.ray_address", f"cannot join a Ray cluster at {address!r}: "
                          f"{exc}; if the cluster uses Ray's token authentication, give this "
                          "machine its token (`ray get-auth-token` on the head, into "
                          "~/.ray/auth_token here or $RAY_AUTH_TOKEN)") from None
    return RayRuntime(True, _alive_nodes())


# Ray versions whose private token-auth call below was read and tested (requirements.txt pins
# ray==2.60.0); on any other the call is not made blind
TOKEN_AUTH_RAY_VERSIONS = ("2.60.0",)
TOKEN_AUTH_DOCS = "https://docs.ray.io/en/latest/ray-security/token-auth.html"


def _token_at_hand() -> bool:
    """A Ray token as Ray finds one: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or (
        Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file())


def _token_auth_as_for_auto(version: str) -> None:
    """Join with Ray's token authentication where a token is at hand and ``$RAY_AUTH_MODE`` is
    unset: Ray (2.60) does so for address ``auto`` only, yet a head started where a token exists
    (any local ``ray.init`` writes one) refuses a driver without it, after half a minute of
    retries. A cluster without authentication ignores the token.

    Ray offers no public call for this, only the documented ``RAY_AUTH_MODE`` variable
    (TOKEN_AUTH_DOCS), so the private one Ray itself uses is called on the Ray versions it was
    written for (TOKEN_AUTH_RAY_VERSIONS). On another, with a token at hand and the mode unset,
    the run is refused saying how to choose (a private API may have changed meaning); with
    ``$RAY_AUTH_MODE`` set or no token, it joins as Ray would."""
    if version not in TOKEN_AUTH_RAY_VERSIONS:
        if os.environ.get("RAY_AUTH_MODE") is None and _token_at_hand():
            raise ConfigError("execution.ray_address", f"a Ray token is at hand but this is "
                              f"Ray {version}, and fedlearn enables token authentication for "
                              f"a cluster address only on Ray "
                              f"{', '.join(TOKEN_AUTH_RAY_VERSIONS)} (requirements.txt): set "
                              "RAY_AUTH_MODE=token if the cluster uses token authentication, "
                              f"RAY_AUTH_MODE=disabled if not (see {TOKEN_AUTH_DOCS}), or "
                              "install the pinned Ray")
        return  # the user chose, or there is nothing to choose: join as Ray would
    from ray._private.authentication import authentication_token_setup as auth

    log = logging.getLogger(auth.__name__)
    level = log.level
    log.setLevel(logging.ERROR)  # not Ray's notice that the run uses a token
    try:
        auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        log.setLevel(level)


def _alive_nodes() -> list[dict]:
    import ray

    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def check_resources(execution: ExecutionConfig, nodes: list[dict]) -> int:
    """Refuse a client no node can hold; return how many clients the cluster runs at once."""
    cpus, gpus = execution.ray_client_cpus, execution.ray_client_gpus
    for key, field, wanted in (("CPU", "ray_client_cpus", cpus), ("GPU", "ray_client_gpus", gpus)):
        largest = max((node.get(key, 0.0) for node in nodes), default=0.0)
        if wanted > largest:
            raise ConfigError(f"execution.{field}", f"a client needs {wanted:g} {key}s but the "
                              f"largest node of the Ray cluster has {largest:g} "
                              f"({len(nodes)} node(s)); ask for at most {largest:g}")
    slots = 0
    for node in nodes:
        fits = int(node.get("CPU", 0.0) // cpus)
        if gpus > 0:
            fits = min(fits, int(node.get("GPU", 0.0) // gpus))
        slots += fits
    if slots == 0:
        raise ConfigError("execution.ray_client_cpus", f"no node of the Ray cluster has both "
                          f"{cpus:g} CPUs and {gpus:g} GPUs "
                          f"for one client ({len(nodes)} node(s)); ask for less")
    return slots
