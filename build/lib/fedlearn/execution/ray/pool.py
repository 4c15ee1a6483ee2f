"""The Ray actors of a run: starting them, replacing the dead, and what each one holds.

An actor that dies while starting (its node went away) is started again, a bounded number of
times in a row (:func:`~fedlearn.execution.ray.faults.restart_after_start_failure`); when none
comes up at all the run is refused with their error
(:func:`~fedlearn.execution.ray.faults.start_refusal`). Which actor trains which client is the
scheduler's choice (:mod:`.schedule`); the pool only remembers which clients' shards each
actor keeps, as the actors last said.
"""
from __future__ import annotations

import time

from fedlearn.config import ConfigError
from fedlearn.execution.ray.faults import (
    cause_line,
    restart_after_start_failure,
    start_refusal,
)


class ActorPool:
    """``count`` actors of ``actor_class`` (a Ray remote class), made with ``args``."""

    def __init__(self, ray, actor_class, args: tuple, *, count: int, start_timeout: float):
        self._ray, self.actor_class, self.args = ray, actor_class, args
        self.count, self.start_timeout = count, start_timeout
        self.actors: list = []  # up and serving
        self.starting: dict = {}  # ready() ref -> actor not yet known to be up
        self.failures: list[str] = []  # why actors died starting, in a row
        self._held: dict[int, set[str]] = {}  # id(actor) -> the clients whose shards it keeps

    def start(self) -> None:
        actor = self.actor_class.remote(*self.args)
        self.starting[actor.ready.remote()] = actor

    def top_up(self) -> None:
        """Start as many actors as are missing; a new round tries again to bring them back."""
        self.failures = []
        for _ in range(self.count - len(self.actors) - len(self.starting)):
            self.start()

    def await_up(self) -> None:
        """Wait (at most ``start_timeout``) for the actors; refuse the run if none came up."""
        deadline = time.monotonic() + self.start_timeout
        while len(self.actors) < self.count and self.starting:
            self.collect(timeout=max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                break
        if not self.actors:
            raise ConfigError("execution.executor", start_refusal(self.failures,
                                                                  self.start_timeout))

    def collect(self, timeout: float) -> list:
        """The actors that came up within ``timeout`` seconds (at most one wait)."""
        if not self.starting:
            return []
        done, _ = self._ray.wait(list(self.starting), num_returns=1, timeout=timeout)
        up = []
        for ref in done:
            actor = self.starting.pop(ref)
            try:
                self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:  # died while starting
                self.failures.append(cause_line(exc))
                if restart_after_start_failure(len(self.failures), self.count):
                    self.start()
                continue
            self.failures = []  # counted while they fail in a row
            self.actors.append(actor)
            up.append(actor)
        return up

    def replace(self, actor) -> None:
        """Kill ``actor`` (dead, hung or unreachable: never left running); start another."""
        if actor in self.actors:
            self.actors.remove(actor)
        self._held.pop(id(actor), None)
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # it died on its own meanwhile
            pass
        self.start()

    def held(self, actor) -> set[str]:
        return self._held.setdefault(id(actor), set())

    def held_anywhere(self) -> set[str]:
        return set().union(*self._held.values())

    def hold(self, actor, clients) -> None:
        """What ``actor`` keeps now: as it said (``clients``), or about to (added on dispatch)."""
        self._held[id(actor)] = set(clients)

    def close(self) -> None:
        if self._ray.is_initialized():
            for actor in self.actors + list(self.starting.values()):
                try:
                    self._ray.kill(actor, no_restart=True)
                except Exception:  # already gone
                    pass
        self.actors, self.starting, self._held = [], {}, {}
