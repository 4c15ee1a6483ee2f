"""How a round's selected clients run (:mod:`fedlearn.execution`).

The Ray fields are one group, every name prefixed ``ray_`` (flags ``--ray-...``), so a flag
says which executor it belongs to; they are refused unless the executor is ``ray``, as
``processes`` (``--processes N``) is unless the executor is ``processes``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from fedlearn.config.fields import ConfigError, Section, choice, number, option, positive_int

ExecutorName = Literal["auto", "sequential", "together", "processes", "ray", "concurrent"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)
ActorClients = Literal["auto", "sequential", "together"]
ACTOR_CLIENTS: tuple[str, ...] = get_args(ActorClients)
RENAMED = {"one_after_the_other": "sequential"}  # old choice -> its name now


@dataclass(frozen=True, kw_only=True)
class ExecutionConfig(Section):
    """Sequential, a round's in-process clients trained together (one batched computation),
    in local worker processes (:mod:`fedlearn.execution.processes`), or on a Ray cluster
    (:mod:`fedlearn.execution.ray`): ``auto`` picks what is fastest on the
    device in use. How clients run never changes the weights (same threads per client, same
    weights), so it is not part of a checkpoint's fingerprint."""

    SECTION = "execution"
    TITLE = "how the clients run"

    executor: ExecutorName = option("auto", choices=EXECUTORS,
                                    help="auto: concurrent for Datasites over HTTP; together "
                                         "on a GPU; on a CPU of several cores "
                                         "processes for rounds of several clients and runs "
                                         "big enough to pay for starting them, else "
                                         "sequential; sequential: one client after "
                                         "the other; together: one batched computation, needs "
                                         "plain in-process clients of one model; processes: "
                                         "long-lived local worker processes, one thread each "
                                         "(--processes); ray: "
                                         "long-lived Ray actors, on this machine or a cluster "
                                         "(--ray-address); concurrent: every Datasite of a "
                                         "round asked at once (over HTTP only)")
    # --- local worker processes only (executor='processes') ---
    processes: int | None = option(None, metavar="N",
                                   help="worker processes of one torch thread each (default: "
                                        "one per physical core, at most the clients of a "
                                        "round)")
    # --- Ray only (executor='ray') ---
    ray_address: str | None = option(None, metavar="ADDRESS",
                                     help="join this Ray cluster (host:port of its head, or "
                                          "'auto' on one of its nodes); default: $RAY_ADDRESS, "
                                          "else a local Ray runtime sized to this machine")
    ray_actors: int | None = option(None, metavar="N",
                                    help="Ray actors (default: as many as the cluster's "
                                         "resources hold, at most the clients of a round)")
    ray_client_cpus: float = option(1.0, metavar="N",
                                    help="CPUs a client trains with on Ray (as Flower's "
                                         "client_resources); its torch threads too")
    ray_client_gpus: float = option(0.0, metavar="N",
                                    help="GPUs a client trains with on Ray (a fraction shares "
                                         "one)")
    ray_actor_clients: ActorClients = option(
        "auto", choices=ACTOR_CLIENTS,
        help="how a Ray actor trains the clients it is handed: auto (together where the actors "
             "have GPUs and the clients can be; sequential on CPUs, where that measures "
             "faster), sequential, or together (as --executor together)")
    ray_actor_cache_mb: int = option(1024, metavar="MB",
                                     help="bound on the clients' data an actor keeps between "
                                          "rounds (least recently used evicted first; 0: keep "
                                          "none, fetch each time)")
    ray_object_store_mb: int | None = option(None, metavar="MB",
                                             help="object store of a local Ray runtime "
                                                  "(default: Ray's own)")

    def validate(self) -> None:
        for field in ("executor", "ray_actor_clients"):
            if (old := getattr(self, field)) in RENAMED:
                raise ConfigError(field, f"{old!r} is now called {RENAMED[old]!r}: use "
                                  f"{RENAMED[old]!r}")
        choice(self.executor, "executor", EXECUTORS)
        choice(self.ray_actor_clients, "ray_actor_clients", ACTOR_CLIENTS)
        number(self.ray_client_cpus, "ray_client_cpus", 0.01)
        number(self.ray_client_gpus, "ray_client_gpus", 0.0)
        if self.ray_actors is not None:
            positive_int(self.ray_actors, "ray_actors")
        if self.processes is not None:
            positive_int(self.processes, "processes")
            if self.executor != "processes":
                raise ConfigError("processes", f"is for executor 'processes' (the executor is "
                                  f"{self.executor!r}): add executor='processes' or leave it "
                                  "out")
        positive_int(self.ray_actor_cache_mb, "ray_actor_cache_mb", minimum=0)
        if self.ray_object_store_mb is not None:
            positive_int(self.ray_object_store_mb, "ray_object_store_mb", minimum=80)
        if self.ray_address is not None and (not isinstance(self.ray_address, str)
                                             or not self.ray_address.strip()):
            raise ConfigError("ray_address", f"must be host:port or 'auto' (got "
                              f"{self.ray_address!r})")
        if self.executor != "ray":
            for f in dataclasses.fields(self):
                if f.name.startswith("ray_") and getattr(self, f.name) != f.default:
                    raise ConfigError(f.name, f"is for executor 'ray' (the executor is "
                                      f"{self.executor!r}): add executor='ray' or leave it out")

