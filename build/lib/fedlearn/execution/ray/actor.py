"""The Ray actor that trains clients: it keeps their data and trains on the fastest path.

An actor serves whichever client the executor hands it. The first time it serves a client it
fetches that client's worker (its shard of the data) from Ray's object store, put there once
per run, and keeps it in a cache bounded by bytes (``ray_actor_cache_mb``, least recently used
evicted first: :mod:`.cache`): a client's data is loaded once per actor, not per round, while
the actor's share of the clients fits the bound. The round's global weights come as one object
put once per round. The worker's own state (a DP-SGD ledger, a fault wrapper's call count)
travels with each call, so any actor may train any client, and neither a restarted actor nor
an evicted shard loses anything.
"""
from __future__ import annotations

import os
import resource
import socket

import torch

from fedlearn.execution.ray.cache import ShardCache
from fedlearn.execution.ray.wire import (
    ActorAnswer,
    ActorCall,
    CallReply,
    from_wire,
    update_to_wire,
)
from fedlearn.training import native_bf16

DEFAULT_CACHE_BYTES = 1024 * 2 ** 20  # until a call says the run's bound (ray_actor_cache_mb)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def _memory_line() -> str:
    peak_mb = _peak_mb()
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
        return f"its Ray actor had used {peak_mb:.0f} MB at peak, of {total_mb:.0f} MB on node " \
               f"{socket.gethostname()}"
    except (ValueError, OSError):
        return f"its Ray actor had used {peak_mb:.0f} MB at peak"


class ClientActor:
    """Trains clients with ``threads`` torch threads (its CPUs: same threads, same weights) on
    ``device`` (the run's: "cpu", or "cuda" where the actor has a GPU share), keeping the
    shards it was handed in a :class:`ShardCache` (bound: each call's ``cache_bytes``)."""

    def __init__(self, threads: int, device: str = "cpu"):
        torch.set_num_threads(threads)
        self.threads, self.device = threads, torch.device(device)
        self.cache = ShardCache(DEFAULT_CACHE_BYTES)

    def ready(self) -> dict:
        return {"pid": os.getpid(), "node": socket.gethostname(), "threads": self.threads}

    def memory(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "peak_mb": _peak_mb(), "cached_mb": self.cache.nbytes / 2 ** 20}

    def fit(self, calls: list[ActorCall], round_: int | None, weights, plan,
            together: bool = False, cache_bytes: int | None = None) -> ActorAnswer:
        """Train each call: one after the other, or ``together`` as one batched computation
        (one failure then fails them all, as in-process). One :class:`CallReply` per call;
        never raises for the clients' own failures, so they stay the clients' and the actor
        keeps serving. ``cache_bytes``: the run's bound on the shards kept (it comes with the
        calls, so the actor is made with its threads and device alone)."""
        if cache_bytes is not None and cache_bytes != self.cache.max_bytes:
            self.cache.resize(cache_bytes)
        fetched = 0

        def worker(call: ActorCall):
            nonlocal fetched
            found = self.cache.get(call.client)
            if found is None:  # first time here, or evicted since: from the object store
                found = self._fetch(call.shard)
                fetched += 1
                self.cache.put(call.client, found, call.shard_bytes)
            if call.state is not None:
                found.load_state_dict(call.state)
            if round_ is not None:
                found.set_round(round_)
            return found

        replies, batched = self._fit(calls, worker, weights, plan, together)
        return ActorAnswer(replies, batched, fetched, tuple(self.cache.keys()))

    def _fit(self, calls, worker, weights, plan, together) -> tuple[list[CallReply], int]:
        if plan.precision == "bf16" and not native_bf16(self.device):
            reason = (f"node {socket.gethostname()} has no native bfloat16 (AVX512-BF16 or "
                      "AMX) for --precision bf16")
            return [CallReply(False, reason, None) for _ in calls], 0
        if not together:
            return [self._fit_one(call, worker, weights, plan) for call in calls], 0
        from fedlearn.workers.inprocess import VirtualWorker

        workers: list = []
        try:
            workers = [worker(call) for call in calls]
            updates = VirtualWorker.fit_together(workers, from_wire(weights), plan,
                                                 [call.seed for call in calls])
            return [CallReply(True, update_to_wire(u), w.state_dict())
                    for w, u in zip(workers, updates)], len(calls)
        except Exception as exc:  # the batch failed: every client in it did
            reason = _reason(exc)
            return [CallReply(False, reason, _state_after_failure(w))
                    for w in workers + [None] * (len(calls) - len(workers))], 0

    def _fit_one(self, call: ActorCall, worker, weights, plan) -> CallReply:
        found = None
        try:
            found = worker(call)
            update = found.fit(from_wire(weights), plan, seed=call.seed)
            return CallReply(True, update_to_wire(update), found.state_dict())
        except Exception as exc:  # the client's failure, reported as checked_fit would
            return CallReply(False, _reason(exc), _state_after_failure(found))

    def _fetch(self, shard: list):
        import ray

        return ray.get(shard[0])


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(
            sign in text for sign in ("not enough memory", "can't allocate", "out of memory",
                                      "Cannot allocate memory"))):
        return f"out of memory ({text or type(exc).__name__}); {_memory_line()}"
    return f"{type(exc).__name__}: {text}"


def _state_after_failure(worker) -> dict | None:
    try:
        return None if worker is None else worker.state_dict()
    except Exception:  # a worker that cannot say its state keeps the driver's
        return None
