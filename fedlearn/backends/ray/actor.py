"""The Ray actor that trains clients: it keeps their data and trains on the fastest path.

An actor serves whichever client the executor hands it. The first time it serves a client it
fetches that client's worker (its shard of the data) from Ray's object store, put there once
per run, and keeps it: a client's data is loaded once per actor, never per round. The round's
global weights come as one object put once per round. The worker's own state (a DP-SGD
ledger, a fault wrapper's call count) travels with each call, so any actor may train any
client and a restarted actor loses nothing.
"""
from __future__ import annotations

import os
import resource
import socket

import torch

from fedlearn.backends.ray.wire import from_wire, update_to_wire
from fedlearn.training import native_bf16


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
    ``device`` (the run's: "cpu", or "cuda" where the actor has a GPU share)."""

    def __init__(self, threads: int, device: str = "cpu"):
        torch.set_num_threads(threads)
        self.threads, self.device = threads, torch.device(device)
        self.clients: dict = {}

    def ready(self) -> dict:
        return {"pid": os.getpid(), "node": socket.gethostname(), "threads": self.threads}

    def memory(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "peak_mb": _peak_mb()}

    def fit(self, calls: list, round_: int | None, weights, plan, together: bool = False
            ) -> tuple[list[tuple[str, object, dict | None]], int]:
        """Train each (name, [shard ref], state, seed) call: one after the other, or
        ``together`` as one batched computation (one failure then fails them all, as
        in-process). One ("ok", update, worker state) or ("failed", reason, worker state or
        None) per call, and how many were trained together; never raises for the clients' own
        failures, so they stay the clients' and the actor keeps serving. The state comes back
        on failure too: a call that failed still counted (a fault wrapper's calls, DP-SGD steps
        taken), as it does in-process."""
        if plan.precision == "bf16" and not native_bf16(self.device):
            reason = (f"node {socket.gethostname()} has no native bfloat16 (AVX512-BF16 or "
                      "AMX) for --precision bf16")
            return [("failed", reason, None) for _ in calls], 0
        if not together:
            return [self._fit_one(call, round_, weights, plan) for call in calls], 0
        from fedlearn.workers.inprocess import VirtualWorker

        workers = []
        try:
            workers = [self._worker(name, holder, state, round_)
                       for name, holder, state, _ in calls]
            updates = VirtualWorker.fit_together(workers, from_wire(weights), plan,
                                                 [seed for *_, seed in calls])
            return [("ok", update_to_wire(u), w.state_dict())
                    for w, u in zip(workers, updates)], len(calls)
        except Exception as exc:  # the batch failed: every client in it did
            reason = _reason(exc)
            return [("failed", reason, _state_after_failure(w))
                    for w in workers + [None] * (len(calls) - len(workers))], 0

    def _fit_one(self, call, round_, weights, plan) -> tuple[str, object, dict | None]:
        name, holder, state, seed = call
        worker = None
        try:
            worker = self._worker(name, holder, state, round_)
            update = worker.fit(from_wire(weights), plan, seed=seed)
            return "ok", update_to_wire(update), worker.state_dict()
        except Exception as exc:  # the client's failure, reported as checked_fit would
            return "failed", _reason(exc), _state_after_failure(worker)

    def _worker(self, name: str, holder: list, state: dict | None, round_: int | None):
        import ray

        worker = self.clients.get(name)
        if worker is None:  # once per actor, not per round
            worker = self.clients[name] = ray.get(holder[0])
        if state is not None:
            worker.load_state_dict(state)
        if round_ is not None:
            worker.set_round(round_)
        return worker


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
