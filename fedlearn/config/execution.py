"""How a round's selected clients run (:mod:`fedlearn.server.executors`)."""
from __future__ import annotations

from dataclasses import dataclass

from fedlearn.config.fields import ConfigError, Section, choice, number, option, positive_int

EXECUTORS = ("auto", "one_after_the_other", "together", "ray")
ACTOR_PATHS = ("auto", "one_after_the_other", "together")


@dataclass(frozen=True, kw_only=True)
class ExecutionConfig(Section):
    """One after the other, a round's in-process clients trained together (one batched
    computation), or on a Ray cluster (:mod:`fedlearn.backends.ray`): ``auto`` picks what is
    fastest on the device in use. How clients run never changes the weights (same threads
    per client, same weights), so it is not part of a checkpoint's fingerprint."""

    SECTION = "execution"
    TITLE = "how the clients run"

    executor: str = option("auto", choices=EXECUTORS,
                           help="auto: together on a GPU, one after the other on a CPU (where "
                                "it measures faster); together needs plain in-process clients "
                                "of one model; ray: long-lived Ray actors, on this machine or "
                                "a cluster (--ray-address)")
    ray_address: str | None = option(None, metavar="ADDRESS",
                                     help="join this Ray cluster (host:port of its head, or "
                                          "'auto' on one of its nodes); default: $RAY_ADDRESS, "
                                          "else a local Ray runtime sized to this machine")
    client_cpus: float = option(1.0, metavar="N",
                                help="CPUs a client trains with on Ray (as Flower's "
                                     "client_resources); its torch threads too")
    client_gpus: float = option(0.0, metavar="N",
                                help="GPUs a client trains with on Ray (a fraction shares one)")
    actor_path: str = option("auto", choices=ACTOR_PATHS,
                             help="how a Ray actor trains the clients it is handed: auto "
                                  "(together where the actors have GPUs and the clients can be; "
                                  "one after the other on CPUs, where that measures faster), "
                                  "one_after_the_other, or together (as --executor together)")
    ray_actors: int | None = option(None, metavar="N",
                                    help="Ray actors (default: as many as the cluster's "
                                         "resources hold, at most the clients of a round)")
    object_store_mb: int | None = option(None, metavar="MB",
                                         help="object store of a local Ray runtime "
                                              "(default: Ray's own)")

    def validate(self) -> None:
        choice(self.executor, "executor", EXECUTORS)
        choice(self.actor_path, "actor_path", ACTOR_PATHS)
        number(self.client_cpus, "client_cpus", 0.01)
        number(self.client_gpus, "client_gpus", 0.0)
        if self.ray_actors is not None:
            positive_int(self.ray_actors, "ray_actors")
        if self.object_store_mb is not None:
            positive_int(self.object_store_mb, "object_store_mb", minimum=80)
        if self.ray_address is not None and (not isinstance(self.ray_address, str)
                                             or not self.ray_address.strip()):
            raise ConfigError("ray_address", f"must be host:port or 'auto' (got "
                              f"{self.ray_address!r})")
        if self.executor != "ray":
            for name, default in (("ray_address", None), ("client_cpus", 1.0),
                                  ("client_gpus", 0.0), ("actor_path", "auto"),
                                  ("ray_actors", None),
                                  ("object_store_mb", None)):
                if getattr(self, name) != default:
                    raise ConfigError(name, f"is for executor 'ray' (the executor is "
                                      f"{self.executor!r}): add executor='ray' or leave it out")
