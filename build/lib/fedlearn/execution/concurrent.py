"""The round's calls to workers on other machines, all at once: the server only waits.

A Datasite trains on its owner's server; the scientist's process sends the weights and waits
for the change. Asked one after the other, a round of Datasites takes the sum of their
times; asked at once, the longest of them — what Flower's server does with its clients'
gRPC calls. Threads suffice, since the waiting is on the network, not on this process's CPU.
Each reply is checked as everywhere (:func:`~fedlearn.execution.base.checked_fit`) and the
replies come in the calls' order, so the weights are those of :class:`.Sequential`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fedlearn.execution.base import ClientExecutor, checked_fit
from fedlearn.workers.base import Worker

T = TypeVar("T")
R = TypeVar("R")


def all_at_once(items: Sequence[T], call: Callable[[T], R]) -> list[R]:
    """``[call(item) for item in items]``, each call in its own thread, results in order."""
    if len(items) < 2:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="fedlearn-call") as pool:
        return list(pool.map(call, items))


def network_refusals(workers: Sequence[Worker]) -> list[str]:
    """Why the clients cannot be asked all at once: only workers whose calls wait on another
    machine can (in-process clients share this process's cores: use processes or ray)."""
    local = [w.name for w in workers if not w.waits_on_network()]
    if not local:
        return []
    shown = ", ".join(local[:5]) + (f" and {len(local) - 5} more" if len(local) > 5 else "")
    return [f"{shown} train in this process, not on another machine (the concurrent "
            "executor only waits on Datasites over HTTP; use processes or ray)"]


class Concurrent(ClientExecutor):
    """``executor='concurrent'`` (and ``auto`` for Datasites over HTTP): every call at once."""

    name = "concurrent"

    def fit(self, jobs, weights, plan, robust, round_=None):
        return all_at_once(list(jobs), lambda job: checked_fit(job[0], weights, plan, robust,
                                                               seed=job[1]))
