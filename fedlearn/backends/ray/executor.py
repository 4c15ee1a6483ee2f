"""Run a round's clients on Ray actors; the same replies as running them one after the other.

:class:`RayExecutor` is a :class:`~fedlearn.server.executors.ClientExecutor`: the strategy
decides what each client is asked (weights, plan, seed), this decides where it runs. Each
round it puts the global weights in the object store once and hands the round's clients to
its actors as they become free, so a slow client does not hold up the others; a free actor
takes a client whose data it already holds where it can (:func:`pick`), so each client's
shard tends to be fetched once per run and kept on one actor. With ``together`` each actor
trains its share of the round as one batched computation (for GPUs). Every update is checked
in the driver exactly as in-process (:func:`~fedlearn.server.executors.checked`).

Faults: an actor that dies mid-round (its process killed, its node removed) is replaced and
its client is run again on a live actor, up to ``reruns`` times, then counted as failed under
the round's failure policy; a client past ``round_timeout`` has its actor killed and replaced;
a client that runs out of memory fails alone (with ``together``, its batch) with the memory its
actor had. With no live actor left and none starting within ``start_timeout`` seconds the
remaining clients fail at once instead of waiting. Actors that keep failing as they start
(fedlearn missing on a node) are not restarted without end: the run is refused with their
error.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from fedlearn.backends.ray.actor import ClientActor
from fedlearn.backends.ray.dispatch import (
    actor_gone_errors,
    cause_line,
    chunks,
    first_line,
    pick,
)
from fedlearn.backends.ray.runtime import check_resources, connect
from fedlearn.backends.ray.wire import to_wire, update_from_wire
from fedlearn.config import ConfigError, ExecutionConfig
from fedlearn.server.executors import ClientExecutor, checked
from fedlearn.server.record import WorkerReply
from fedlearn.updates import state_nbytes
from fedlearn.workers.base import Worker


class RayExecutor(ClientExecutor):
    """``RayExecutor(config.execution, workers, per_round=10)``; :meth:`close` when done.
    ``together``: each actor trains its share of a round's clients as one batched computation
    (as :class:`~fedlearn.server.executors.Together`)."""

    def __init__(self, execution: ExecutionConfig, workers: Sequence[Worker], *,
                 per_round: int, together: bool = False, device: str = "cpu",
                 reruns: int = 2, start_timeout: float = 60.0):
        import ray

        self._ray = ray
        self.together, self.device = together, device
        self.name = "ray, together" if together else "ray"
        self._held: dict[int, set] = {}  # id(actor) -> the clients whose data it holds
        self.reruns, self.start_timeout = reruns, start_timeout
        self.threads = max(1, int(execution.client_cpus))
        self._actors: list = []
        self._starting: dict = {}  # ready() ref -> actor not yet known to be up
        self._events: dict = {}
        self.runtime = connect(execution)
        try:
            slots = check_resources(execution, self.runtime.nodes)
            if execution.ray_actors is not None and execution.ray_actors > slots:
                raise ConfigError("execution.ray_actors", f"{execution.ray_actors} actors of "
                                  f"{execution.client_cpus:g} CPUs and "
                                  f"{execution.client_gpus:g} GPUs each, but the Ray "
                                  f"cluster's nodes hold {slots}; ask for at most {slots}")
            self.actor_count = execution.ray_actors or min(slots, per_round)
            self._start_failures: list[str] = []  # why actors died starting, in a row
            self._actor_class = ray.remote(ClientActor).options(
                num_cpus=execution.client_cpus, num_gpus=execution.client_gpus, max_restarts=0,
                scheduling_strategy="SPREAD")  # clients across the nodes, not packed on one
            self._shards = {w.name: self._put(w) for w in workers}  # once per run
            self._workers = {w.name: w for w in workers}
            for _ in range(self.actor_count):
                self._start_actor()
            self._await_actors(self.actor_count)
        except BaseException:
            self.close()
            raise

    def _put(self, worker: Worker):
        try:
            return self._ray.put(worker)
        except Exception as exc:
            raise ConfigError("execution.executor", f"worker {worker.name!r} "
                              f"({type(worker).__name__}) cannot be sent to a Ray actor: "
                              f"{type(exc).__name__}: {exc}") from None

    def _start_actor(self) -> None:
        actor = self._actor_class.remote(self.threads, self.device)
        self._starting[actor.ready.remote()] = actor

    def _await_actors(self, count: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while len(self._actors) < count and self._starting:
            self._collect_started(timeout=max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                break
        if not self._actors and self._start_failures:
            last = self._start_failures[-1]
            hint = ("Ray's memory monitor killed them: the nodes' memory is above its "
                    "threshold (RAY_memory_usage_threshold)" if "OOM kill reason" in last
                    else "e.g. fedlearn or its requirements missing on a node (every node "
                         "needs them)")
            raise ConfigError("execution.executor", f"Ray actors failed to start "
                              f"({len(self._start_failures)} times): {hint}; Ray said: "
                              f"{last}")
        if not self._actors:
            raise ConfigError("execution.executor", f"no Ray actor started within "
                              f"{self.start_timeout:g} s (each needs the resources of one "
                              "client: --client-cpus / --client-gpus)")

    def _collect_started(self, timeout: float) -> list:
        done, _ = self._ray.wait(list(self._starting), num_returns=1, timeout=timeout)
        up = []
        for ref in done:
            actor = self._starting.pop(ref)
            try:
                self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:  # died while starting
                self._start_failures.append(cause_line(exc))
                if len(self._start_failures) <= self.actor_count:  # e.g. its node went
                    # away; not without end: one that cannot import fedlearn never starts
                    self._start_actor()
                continue
            self._start_failures = []  # counted while they fail in a row
            self._actors.append(actor)
            up.append(actor)
        return up

    def _replace(self, actor, *, kill: bool = False) -> None:
        if actor in self._actors:
            self._actors.remove(actor)
        self._held.pop(id(actor), None)
        if kill:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # it died on its own meanwhile
                pass
        self._events["actors_replaced"] = self._events.get("actors_replaced", 0) + 1
        self._start_actor()

    def actor_memory(self) -> list[dict]:
        """Each live actor's node, process and peak resident memory (MB)."""
        return self._ray.get([actor.memory.remote() for actor in self._actors])

    def round_notes(self) -> dict:
        notes = {"actors": len(self._actors), "threads_per_client": self.threads, **self._events}
        self._events = {}
        return notes

    def fit(self, jobs, weights, plan, robust, round_=None):
        names = [worker.name for worker, _ in jobs]
        if strangers := [n for (w, _), n in zip(jobs, names) if self._workers.get(n) is not w]:
            raise ValueError(f"RayExecutor.fit: {strangers} are not the workers this executor "
                             "was made with (its actors train copies of those)")
        ray = self._ray
        down = state_nbytes(weights)
        weights_ref = ray.put(to_wire(weights))  # once per round, for every client
        actor_gone = actor_gone_errors()
        self._start_failures = []  # a new round tries again to bring the actors back
        for _ in range(self.actor_count - len(self._actors) - len(self._starting)):
            self._start_actor()
        # a task is what one actor call trains: one client, or a chunk of them together
        tasks = chunks(len(jobs), len(self._actors)) if self.together else \
            [[j] for j in range(len(jobs))]
        queue, replies = deque(range(len(tasks))), [None] * len(jobs)
        runs = [0] * len(tasks)
        idle, running = list(self._actors), {}
        reruns: list[str] = []
        waiting_since = None

        def fail(t: int, reason: str) -> None:
            for j in tasks[t]:
                replies[j] = WorkerReply(None, down, failed=reason)

        while queue or running:
            if self._starting:
                idle += self._collect_started(timeout=0)
            while queue and idle:
                actor = idle.pop(0)
                held = self._held.setdefault(id(actor), set())
                t = queue[pick(queue, [names[tasks[t][0]] for t in queue], held,
                               set().union(*self._held.values()))]
                queue.remove(t)
                calls = [(names[j], [self._shards[names[j]]], jobs[j][0].state_dict(),
                          jobs[j][1]) for j in tasks[t]]
                new = {names[j] for j in tasks[t]} - held
                self._events["shards_fetched"] = self._events.get("shards_fetched", 0) + len(new)
                held |= new
                ref = actor.fit.remote(calls, round_, weights_ref, plan, self.together)
                running[ref] = (t, actor, time.monotonic())
            if not running:  # clients wait and no actor is alive: wait for one, boundedly
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since > self.start_timeout or not self._starting:
                    why = (f"actors failed to start: {self._start_failures[-1]}"
                           if not self._starting and self._start_failures else
                           f"none started within {self.start_timeout:g} s")
                    for t in queue:
                        fail(t, f"no Ray actor alive to run it ({why})")
                    queue.clear()
                    break
                idle += self._collect_started(timeout=1.0)
                continue
            waiting_since = None
            timeout = 1.0 if self._starting else None
            if robust.round_timeout is not None:
                first = min(t0 for _, _, t0 in running.values())
                left = max(0.0, first + robust.round_timeout - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            done, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
            for ref in done:
                t, actor, _ = running.pop(ref)
                try:
                    results = ray.get(ref)
                except actor_gone as exc:
                    self._replace(actor, kill=True)  # dead, or unreachable: never left running
                    if isinstance(exc, ray.exceptions.OutOfMemoryError) or \
                            "memory monitor" in str(exc).lower():  # rerunning would OOM again
                        fail(t, f"out of memory: Ray killed its actor ({cause_line(exc)})")
                        continue
                    runs[t] += 1
                    if runs[t] <= self.reruns:
                        reruns += [names[j] for j in tasks[t]]
                        queue.appendleft(t)
                    else:
                        fail(t, f"its Ray actor died {runs[t]} times: {first_line(exc)}")
                    continue
                except ray.exceptions.RayError as exc:  # e.g. its shard cannot load on that node
                    idle.append(actor)
                    fail(t, f"{type(exc).__name__}: {first_line(exc)}")
                    continue
                idle.append(actor)
                results, batched = results
                if len(results) != len(tasks[t]):  # never expected; a reply must not be lost
                    fail(t, f"its Ray actor answered {len(results)} of {len(tasks[t])} calls")
                    continue
                self._events["trained_together"] = \
                    self._events.get("trained_together", 0) + batched
                for j, (status, payload, state) in zip(tasks[t], results):
                    worker = jobs[j][0]
                    if state is not None:  # e.g. a DP-SGD ledger: the driver's copy keeps it
                        worker.load_state_dict(state)
                    replies[j] = WorkerReply(None, down, failed=payload) if status != "ok" \
                        else checked(worker, update_from_wire(payload), weights, plan, robust,
                                     down=down)
            if robust.round_timeout is not None:
                now = time.monotonic()
                expired = [ref for ref, (_, _, t0) in running.items()
                           if now - t0 >= robust.round_timeout]
                # a reply that arrived meanwhile is taken next time round, not thrown away
                arrived, _ = ray.wait(expired, num_returns=len(expired), timeout=0) \
                    if expired else ([], [])
                for ref in expired:
                    if ref in arrived:
                        continue
                    t, actor, _ = running.pop(ref)
                    self._replace(actor, kill=True)  # a hung call cannot be stopped otherwise
                    fail(t, f"WorkerTimeout: no reply within {robust.round_timeout:g} s")
        if reruns:
            self._events["reruns"] = self._events.get("reruns", []) + reruns
        return replies

    def close(self) -> None:
        """Remove this run's actors; shut Ray down if this run started it."""
        ray = self._ray
        if ray.is_initialized():
            for actor in self._actors + list(self._starting.values()):
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # already gone
                    pass
        self._actors, self._starting = [], {}
        if getattr(self, "runtime", None) is not None:
            self.runtime.shutdown()
