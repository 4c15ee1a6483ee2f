"""Run a round's clients on Ray actors; the same replies as running them sequentially.

:class:`RayExecutor` is a :class:`~fedlearn.execution.base.ClientExecutor`: the strategy
decides what each client is asked (weights, plan, seed), this decides where it runs. Each
round it puts the global weights in the object store once and hands the round's clients to
its actors as they become free, so a slow client does not hold up the others; a free actor
takes a client whose data it already holds where it can (:func:`.schedule.pick`), so each
client's shard tends to be fetched once per run and kept on one actor (within the actor's
cache bound, ``ray_actor_cache_mb``). With ``together`` each actor trains its share of the
round as one batched computation (for GPUs). Every update is checked in the driver exactly as
in-process (:func:`~fedlearn.execution.base.checked`).

The parts: :mod:`.pool` starts and replaces actors, :mod:`.schedule` (pure) says which client
goes where, :mod:`.faults` (pure) says what a fault means — an actor that dies mid-round is
replaced and its client run again, up to ``reruns`` times; a client past ``round_timeout``
has its actor killed and replaced; a client that runs out of memory fails alone (with
``together``, its batch) with the memory its actor had; with no live actor left and none
starting within ``start_timeout`` seconds the remaining clients fail at once; actors that keep
failing as they start (fedlearn missing on a node) refuse the run with their error.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence

import torch

from fedlearn.config import ConfigError, ExecutionConfig, RobustnessConfig, TrainPlan
from fedlearn.execution.base import ClientExecutor, WorkerReply, checked
from fedlearn.execution.ray.actor import ClientActor
from fedlearn.execution.ray.cache import shard_nbytes
from fedlearn.execution.ray.faults import Fault, cause_line, decide, first_line, stranded
from fedlearn.execution.ray.pool import ActorPool
from fedlearn.execution.ray.runtime import check_resources, connect
from fedlearn.execution.ray.schedule import Task, again, pick, tasks_for
from fedlearn.execution.ray.wire import ActorAnswer, ActorCall, to_wire, update_from_wire
from fedlearn.updates import state_nbytes
from fedlearn.workers.base import Worker
from fedlearn.workers.client_side import ClientSideWorker


class RayExecutor(ClientExecutor):
    """``RayExecutor(config.execution, workers, per_round=10)``; :meth:`close` when done.
    ``together``: each actor trains its share of a round's clients as one batched computation
    (as :class:`~fedlearn.execution.together.Together`)."""

    def __init__(self, execution: ExecutionConfig, workers: Sequence[Worker], *,
                 per_round: int, together: bool = False, device: str = "cpu",
                 reruns: int = 2, start_timeout: float = 60.0):
        import ray

        self._ray = ray
        self.together, self.device = together, device
        self.name = "ray, together" if together else "ray"
        self.reruns, self.start_timeout = reruns, start_timeout
        self.threads = max(1, int(execution.ray_client_cpus))
        self._events: dict = {}
        self.pool: ActorPool | None = None
        self.runtime = connect(execution)
        try:
            slots = check_resources(execution, self.runtime.nodes)
            if execution.ray_actors is not None and execution.ray_actors > slots:
                raise ConfigError("execution.ray_actors", f"{execution.ray_actors} actors of "
                                  f"{execution.ray_client_cpus:g} CPUs and "
                                  f"{execution.ray_client_gpus:g} GPUs each, but the Ray "
                                  f"cluster's nodes hold {slots}; ask for at most {slots}")
            self.actor_count = execution.ray_actors or min(slots, per_round)
            actor_class = ray.remote(ClientActor).options(
                num_cpus=execution.ray_client_cpus, num_gpus=execution.ray_client_gpus,
                max_restarts=0, scheduling_strategy="SPREAD")  # across the nodes, not packed
            self.pool = ActorPool(ray, actor_class, (self.threads, device),
                                  count=self.actor_count, start_timeout=start_timeout)
            self.cache_bytes = execution.ray_actor_cache_mb * 2 ** 20
            self._shards = {w.name: (self._put(w), shard_nbytes(w)) for w in workers}  # once
            self._workers = {w.name: w for w in workers}
            self.pool.top_up()
            self.pool.await_up()
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

    def actor_memory(self) -> list[dict]:
        """Each live actor's node, process, peak resident memory and cached shards (MB)."""
        assert self.pool is not None
        return self._ray.get([actor.memory.remote() for actor in self.pool.actors])

    def round_notes(self) -> dict:
        actors = len(self.pool.actors) if self.pool is not None else 0
        notes = {"actors": actors, "threads_per_client": self.threads, **self._events}
        self._events = {}
        return notes

    def _count(self, event: str, n: int = 1) -> None:
        self._events[event] = self._events.get(event, 0) + n

    def _fault(self, exc: BaseException) -> Fault | None:
        """What Ray's error says happened; None: not Ray's (it is raised)."""
        e = self._ray.exceptions
        if isinstance(exc, (e.OutOfMemoryError, e.RayActorError, e.WorkerCrashedError,
                            e.NodeDiedError, e.LocalRayletDiedError)):  # the actor is gone
            if isinstance(exc, e.OutOfMemoryError) or "memory monitor" in str(exc).lower():
                return Fault("out_of_memory", cause_line(exc))
            return Fault("actor_died", first_line(exc))
        if isinstance(exc, e.RayError):  # e.g. its shard cannot load on that node
            return Fault("error", f"{type(exc).__name__}: {first_line(exc)}")
        return None

    def fit(self, jobs: Sequence[tuple[Worker, int]], weights: Mapping[str, torch.Tensor],
            plan: TrainPlan, robust: RobustnessConfig, round_: int | None = None
            ) -> list[WorkerReply]:
        names = [worker.name for worker, _ in jobs]
        # a job's worker is one this executor was made with, or a client side wrapped around
        # one afterwards (the server's): the actor trains the inner worker, and the client's
        # side (clip, compress, mask) is then done here, as Together does after its batch
        trained: list = [self._workers.get(n) for n in names]
        if strangers := [n for (w, _), t, n in zip(jobs, trained, names)
                         if t is not w and not (isinstance(w, ClientSideWorker) and w.inner is t)]:
            raise ValueError(f"RayExecutor.fit: {strangers} are not the workers this executor "
                             "was made with (its actors train copies of those)")
        ray, pool = self._ray, self.pool
        assert pool is not None
        down = state_nbytes(weights)
        weights_ref = ray.put(to_wire(weights))  # once per round, for every client
        pool.top_up()
        queue: deque[Task] = deque(tasks_for(names, [s for _, s in jobs], len(pool.actors),
                                             self.together))
        replies: list[WorkerReply | None] = [None] * len(jobs)
        idle: list = list(pool.actors)
        running: dict = {}  # ref -> (task, actor, when it started)
        reruns: list[str] = []
        waiting_since = None

        def fail(task: Task, reason: str) -> None:
            for call in task:
                replies[call.job] = WorkerReply(None, down, failed=reason)

        def settle(task: Task, actor, fault: Fault) -> None:
            decision = decide(fault, task[0].attempt + 1, self.reruns)
            if decision.replace_actor:
                pool.replace(actor)
                self._count("actors_replaced")
            else:
                idle.append(actor)
            if decision.rerun:
                reruns.extend(call.client for call in task)
                queue.appendleft(again(task))
            else:
                fail(task, decision.reason or fault.detail)

        while queue or running:
            idle += pool.collect(timeout=0)
            while queue and idle:
                actor = idle.pop(0)
                held = pool.held(actor)
                i = pick(queue, [t[0].client for t in queue], held, pool.held_anywhere())
                task = queue[i]
                del queue[i]
                calls = [ActorCall(c.client, [self._shards[c.client][0]],
                                   self._shards[c.client][1], trained[c.job].state_dict(),
                                   c.seed) for c in task]
                pool.hold(actor, held | {c.client for c in task})
                ref = actor.fit.remote(calls, round_, weights_ref, plan, self.together,
                                       self.cache_bytes)
                running[ref] = (task, actor, time.monotonic())
            if not running:  # clients wait and no actor is alive: wait for one, boundedly
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since > self.start_timeout or not pool.starting:
                    for task in queue:
                        fail(task, stranded(pool.failures, bool(pool.starting),
                                            self.start_timeout))
                    queue.clear()
                    break
                idle += pool.collect(timeout=1.0)
                continue
            waiting_since = None
            timeout = 1.0 if pool.starting else None
            if robust.round_timeout is not None:
                first = min(t0 for _, _, t0 in running.values())
                left = max(0.0, first + robust.round_timeout - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            done, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
            for ref in done:
                task, actor, _ = running.pop(ref)
                try:
                    answer: ActorAnswer = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    fault = self._fault(exc)
                    if fault is None:
                        raise
                    settle(task, actor, fault)
                    continue
                if len(answer.replies) != len(task):
                    settle(task, actor, Fault("short_reply", f"{len(answer.replies)} of "
                                                             f"{len(task)} calls"))
                    continue
                idle.append(actor)
                pool.hold(actor, answer.held)  # the actor's own word, after its evictions
                self._count("shards_fetched", answer.fetched)
                self._count("trained_together", answer.trained_together)
                for call, reply in zip(task, answer.replies):
                    if reply.state is not None:  # e.g. a DP-SGD ledger: the driver's copy
                        trained[call.job].load_state_dict(reply.state)
                    replies[call.job] = self._reply(jobs[call.job][0], trained[call.job],
                                                    reply, weights, plan, robust, down)
            if robust.round_timeout is not None:
                now = time.monotonic()
                expired = [ref for ref, (_, _, t0) in running.items()
                           if now - t0 >= robust.round_timeout]
                # a reply that arrived meanwhile is taken next time round, not thrown away
                arrived, _ = ray.wait(expired, num_returns=len(expired), timeout=0) \
                    if expired else ([], [])
                for ref in expired:
                    if ref not in arrived:
                        task, actor, _ = running.pop(ref)
                        # a hung call cannot be stopped otherwise than with its actor
                        settle(task, actor, Fault("timeout", f"{robust.round_timeout:g} s"))
        if reruns:
            self._events["reruns"] = self._events.get("reruns", []) + reruns
        return [r if r is not None else WorkerReply(None, down, failed="no reply")
                for r in replies]  # every call ends with a reply above; typed as such

    def _reply(self, worker, trained, reply, weights, plan, robust, down) -> WorkerReply:
        if not reply.ok:
            return WorkerReply(None, down, failed=reply.payload)
        update = update_from_wire(reply.payload)
        if worker is not trained:  # its client side, here
            try:
                update = worker.upload(update)
            except Exception as exc:  # the client's failure, as in-process
                return WorkerReply(None, down, failed=f"{type(exc).__name__}: {exc}")
        return checked(worker, update, weights, plan, robust, down=down)

    def close(self) -> None:
        """Remove this run's actors; shut Ray down if this run started it."""
        if self.pool is not None:
            self.pool.close()
        if getattr(self, "runtime", None) is not None:
            self.runtime.shutdown()
