"""One worker process: trains the clients it is handed, one after the other, on one thread.

Started with ``spawn`` (a fresh interpreter: no torch threads or locks inherited from a fork),
it sets its torch threads (one: a second thread in the same process adds about half a core
for B = 10 convolutions, a second process nearly a whole one), says it is ready, then serves
calls until told to stop or its parent goes away. A client's worker (its shard) arrives with
its first call here and is kept for the rest of the run; the worker's own state (a DP-SGD
ledger, a client side's residual and round key, a fault wrapper's call count) comes with every
call and goes back with the reply, so the parent's copy stays the one that counts and any
process can train any client. The client's side of the round (clip, compress, mask) runs here:
the worker handed over is the server's, wrapped in it. Messages are pickled bytes, tensors as
numpy arrays (:mod:`fedlearn.execution.ray.wire`).
"""
from __future__ import annotations

import ctypes
import os
import pickle
import resource
import signal
import threading
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from fedlearn.execution.processes.shared import AttachedWeights, Layout
from fedlearn.execution.ray.wire import update_to_wire


@dataclass(frozen=True)
class ChildCall:
    """One client's call: its name, its pickled worker (only where the process lacks it), the
    worker's state and the call's seed."""

    client: str
    shard: bytes | None
    state: dict | None
    seed: int


@dataclass(frozen=True)
class Round:
    """A task for a process: its calls, the round, the plan, where the weights lie."""

    calls: list[ChildCall]
    round_: int | None
    plan: Any
    block: str
    layout: Layout


@dataclass(frozen=True)
class ChildReply:
    ok: bool
    payload: Any  # update_to_wire(update), or the failure's reason
    state: dict | None


@dataclass(frozen=True)
class ChildAnswer:
    replies: list[ChildReply]
    held: tuple[str, ...]  # the clients whose workers it keeps
    peak_mb: float


def _die_with_parent() -> None:
    """Linux: the kernel kills this process if its parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe ends it at its next call
        pass


def serve(conn, threads: int) -> None:
    """The process's whole life: ready, then one :class:`Round` after another."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    torch.set_num_threads(threads)
    # tqdm would make a multiprocessing lock, registered with the parent's resource tracker,
    # which then warns of a leak each time a process is killed; a thread lock does here
    tqdm.set_lock(threading.RLock())
    workers: dict[str, Any] = {}
    weights = AttachedWeights()
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            task = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the parent went away
            return
        if task is None:
            return
        state = weights.get(task.block, task.layout)
        replies = [_fit(call, workers, state, task) for call in task.calls]
        conn.send_bytes(pickle.dumps(ChildAnswer(replies, tuple(workers), _peak_mb()),
                                     protocol=pickle.HIGHEST_PROTOCOL))


def _peak_mb() -> float:
    """This process's peak resident memory. Not ``ru_maxrss``: across fork and exec it keeps
    the parent's peak (Linux), so it would report the parent's memory, not this process's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit(call: ChildCall, workers: dict, weights, task: Round) -> ChildReply:
    worker = None
    try:
        if call.shard is not None:
            workers[call.client] = pickle.loads(call.shard)
        worker = workers[call.client]
        if call.state is not None:
            worker.load_state_dict(call.state)
        if task.round_ is not None:
            worker.set_round(task.round_)
        update = worker.fit(weights, task.plan, seed=call.seed)
        return ChildReply(True, update_to_wire(update), worker.state_dict())
    except Exception as exc:  # the client's failure, reported as checked_fit would
        return ChildReply(False, f"{type(exc).__name__}: {exc}", _state(worker))


def _state(worker) -> dict | None:
    try:
        return None if worker is None else worker.state_dict()
    except Exception:  # a worker that cannot say its state keeps the parent's
        return None
