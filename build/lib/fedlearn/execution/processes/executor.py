"""A round's clients on this machine's cores: long-lived worker processes, one thread each.

At B = 10 a second torch thread in one process adds about half a core (small convolutions do
not split well); a second process adds nearly a whole one. So :class:`ProcessExecutor` keeps
one single-threaded process per physical core for the whole run (:mod:`.pool`) and hands each
a round's clients as it becomes free. The round's weights are written once into shared memory
(:mod:`.shared`) and read there by every process; a client's worker (its shard of the data,
wrapped in its client side) is sent to a process the first time that process trains it and
kept there, and a free process takes a client it already holds where it can
(:func:`fedlearn.execution.ray.schedule.pick`), so each shard tends to be sent once per run.
Every update comes back per client and is checked here exactly as in-process
(:func:`~fedlearn.execution.base.checked`): the replies are those
:class:`~fedlearn.execution.sequential.Sequential` gives run with one torch thread, bit for
bit, whatever the strategy does with them (a mean, a robust rule, a secure sum).

Faults follow the Ray executor's pure policy (:func:`fedlearn.execution.ray.faults.decide`):
a process that dies mid-round (killed, out of memory) is replaced and its client run again,
up to ``reruns`` times; a client past ``round_timeout`` has its process killed and replaced
and fails as a :class:`~fedlearn.execution.base.WorkerTimeout`; an error in a client's call
fails that client alone.
"""
from __future__ import annotations

import pickle
import time
from collections import deque
from multiprocessing.connection import wait

from fedlearn.config import ConfigError
from fedlearn.execution.base import ClientExecutor, WorkerReply, checked
from fedlearn.execution.processes.child import ChildAnswer, ChildCall, Round
from fedlearn.execution.processes.pool import ProcessPool, Slot
from fedlearn.execution.processes.shared import SharedWeights
from fedlearn.execution.ray.faults import Fault, decide
from fedlearn.execution.ray.schedule import Call, Task, again, pick, tasks_for
from fedlearn.execution.ray.wire import update_from_wire
from fedlearn.updates import state_nbytes

HOLDER = "its worker process"


class ProcessExecutor(ClientExecutor):
    """``ProcessExecutor(processes=2)``; :meth:`close` when done (the server does, for the
    executor it made). ``chosen``: why ``auto`` chose it, for the round records."""

    name = "processes"

    def __init__(self, *, processes: int, reruns: int = 2, start_timeout: float = 120.0,
                 chosen: str | None = None):
        self.reruns, self.chosen = reruns, chosen
        self.pool = ProcessPool(processes, threads=1, start_timeout=start_timeout)
        self.shared = SharedWeights()
        self._events: dict = {}
        self._peak_mb: dict[int, float] = {}
        # each worker object gets its own key in the processes: a run that passes other
        # workers of the same names (another configuration) never trains a stale copy
        self._keys: dict[int, tuple[object, str]] = {}
        try:
            self.pool.await_ready()
        except BaseException:  # Ctrl-C while they start too: none is left behind
            self.close()
            raise

    def round_notes(self) -> dict:
        notes = {"processes": self.pool.count, "threads_per_client": 1, **self._events}
        if self._peak_mb:  # each process's peak resident memory so far: its shards, its model
            notes["process_peak_mb"] = sorted(round(mb) for mb in self._peak_mb.values())
        if self.chosen:
            notes["chosen"] = self.chosen
        self._events = {}
        return notes

    def _count(self, event: str, n: int = 1) -> None:
        self._events[event] = self._events.get(event, 0) + n

    def _key(self, worker) -> str:
        if id(worker) not in self._keys:  # the worker is kept too, so its id stays its own
            self._keys[id(worker)] = (worker, f"{worker.name}#{len(self._keys)}")
        return self._keys[id(worker)][1]

    def _call(self, slot: Slot, worker, call: Call) -> ChildCall:
        shard = None
        if call.client not in slot.held:  # first time there: its worker goes with the call
            try:
                shard = pickle.dumps(worker, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise ConfigError("execution.executor", f"worker {worker.name!r} "
                                  f"({type(worker).__name__}) cannot be sent to a worker "
                                  f"process: {type(exc).__name__}: {exc}; use "
                                  "--executor sequential") from None
            self._count("workers_sent")
        slot.held.add(call.client)
        return ChildCall(call.client, shard, worker.state_dict(), call.seed)

    def fit(self, jobs, weights, plan, robust, round_=None) -> list[WorkerReply]:
        pool, timeout = self.pool, robust.round_timeout
        down = state_nbytes(weights)
        block, layout = self.shared.write(weights)  # once per round, for every client
        keys = [self._key(w) for w, _ in jobs]
        queue: deque[Task] = deque(tasks_for(keys, [s for _, s in jobs], len(pool.slots),
                                             together=False))
        replies: list[WorkerReply | None] = [None] * len(jobs)
        running: dict[Slot, tuple[Task, float]] = {}
        reruns: list[str] = []
        start_failures = 0

        def fail(task: Task, reason: str) -> None:
            for call in task:
                replies[call.job] = WorkerReply(None, down, failed=reason)

        def settle(task: Task, slot: Slot, fault: Fault) -> None:
            decision = decide(fault, task[0].attempt + 1, self.reruns, HOLDER)
            if decision.replace_actor:
                pool.replace(slot)
                self._count("processes_replaced")
            if decision.rerun:
                reruns.extend(jobs[call.job][0].name for call in task)
                queue.appendleft(again(task))
            else:
                fail(task, decision.reason or fault.detail)

        def dispatch() -> None:
            """A queued client to each free process, one it holds where it can."""
            for slot in [s for s in pool.slots if s.ready and s not in running]:
                if not queue:
                    return
                i = pick(queue, [t[0].client for t in queue], slot.held, pool.held_anywhere())
                task = queue[i]
                del queue[i]
                calls = [self._call(slot, jobs[c.job][0], c) for c in task]
                slot.send(Round(calls, round_, plan, block, layout))
                running[slot] = (task, time.monotonic())

        while queue or running:
            dispatch()
            starting = [s for s in pool.slots if not s.ready]
            left = pool.start_timeout
            if timeout is not None and running:
                first = min(t0 for _, t0 in running.values())
                left = max(0.0, first + timeout - time.monotonic())
            found = wait([s.conn for s in [*running, *starting]], timeout=left)
            if not found and not running:  # nothing came up in time: the clients cannot run
                for task in queue:
                    fail(task, f"no worker process started within {pool.start_timeout:g} s")
                break
            for slot in starting:
                if slot.conn in found and not pool.ready(slot):
                    start_failures += 1
                    line = slot.exit_line()
                    pool.replace(slot)
                    if start_failures > pool.count and not running:
                        for task in queue:
                            fail(task, f"worker processes fail as they start: {line}")
                        queue.clear()
            answers = [(task, answer) for slot, (task, _) in list(running.items())
                       if slot.conn in found
                       and (answer := self._receive(slot, task, running, settle)) is not None]
            dispatch()  # the free processes work on while the updates are checked here
            for task, answer in answers:
                self._take(task, answer, jobs, replies, weights, plan, robust, down)
            if timeout is not None:
                now = time.monotonic()
                for slot, (task, t0) in list(running.items()):
                    if now - t0 >= timeout and not slot.conn.poll():
                        del running[slot]  # a hung call cannot be stopped but with its process
                        settle(task, slot, Fault("timeout", f"{timeout:g} s"))
        if reruns:
            self._events["reruns"] = self._events.get("reruns", []) + reruns
        return [r if r is not None else WorkerReply(None, down, failed="no reply")
                for r in replies]

    def _receive(self, slot, task, running, settle) -> ChildAnswer | None:
        """``slot``'s answer to ``task`` (the slot is free again), or None: it died under it."""
        del running[slot]
        try:
            answer: ChildAnswer = slot.receive()
        except (EOFError, OSError):  # it died under the task (killed, out of memory)
            settle(task, slot, Fault("actor_died", slot.exit_line()))
            return None
        if len(answer.replies) != len(task):  # never expected; a reply must not be lost
            settle(task, slot, Fault("short_reply", f"{len(answer.replies)} of {len(task)} "
                                                    "calls"))
            return None
        slot.held = set(answer.held)
        self._peak_mb[slot.pid or 0] = answer.peak_mb
        return answer

    def _take(self, task, answer, jobs, replies, weights, plan, robust, down) -> None:
        """Each client's reply, checked here as in-process; its state back to its worker."""
        for call, reply in zip(task, answer.replies):
            worker = jobs[call.job][0]
            if reply.state is not None:  # e.g. a DP-SGD ledger: the parent's copy counts
                worker.load_state_dict(reply.state)
            if not reply.ok:
                replies[call.job] = WorkerReply(None, down, failed=reply.payload)
                continue
            replies[call.job] = checked(worker, update_from_wire(reply.payload), weights, plan,
                                        robust, down=down)

    def close(self) -> None:
        """End every worker process and free the shared weights."""
        self.pool.close()
        self.shared.close()
