"""Each selected client in turn, in this process: the reference every executor must match.

On a CPU this is also what measures fastest for small models (benchmarks/hardware_speed.py),
so ``executor='auto'`` picks it there.
"""
from __future__ import annotations

from fedlearn.execution.base import ClientExecutor, checked_fit


class Sequential(ClientExecutor):
    """``executor='sequential'``: one client after the other, each call checked."""

    name = "sequential"

    def fit(self, jobs, weights, plan, robust, round_=None):
        return [checked_fit(worker, weights, plan, robust, seed=seed) for worker, seed in jobs]
