"""The seam between a strategy's maths and the hardware: what an executor is and how every
client call is checked.

A strategy decides *what* each selected client is asked — the global weights, the plan, and a
seed derived from (seed, round, client) — and an executor decides *how* those calls run
(:mod:`.sequential`, :mod:`.together`, :mod:`.ray`). Every call goes through
:func:`checked_fit` (or :func:`checked`, for an update that arrived another way): a client that
raises, hangs past ``round_timeout`` or sends a malformed or hostile update gives a
:class:`WorkerReply` with the reason, never an exception that ends the run. Every executor must
give the replies :class:`~fedlearn.execution.sequential.Sequential` gives for the same calls,
so a strategy's result never depends on how its clients ran (the split follows Flower's
``ClientApp``/``ServerApp``: the loop only asks, a backend runs).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedlearn.aggregation.robust import validate_upload
from fedlearn.config import RobustnessConfig, TrainPlan
from fedlearn.updates import state_nbytes
from fedlearn.updates.client_side import wire_nbytes
from fedlearn.workers.base import Worker
from fedlearn.workers.client_side import ClientSideWorker


@dataclass
class WorkerReply:
    """What asking one worker gave: a valid update, or the reason there is none."""

    update: Any  # a fedlearn.updates.Update, or None
    bytes_down: int
    bytes_up: int = 0
    failed: str | None = None  # it raised, timed out or vanished
    rejected: str | None = None  # its update was malformed or hostile


class WorkerTimeout(TimeoutError):
    pass


def call_with_timeout(fn, timeout: float | None, *args, **kwargs):
    """``fn(*args, **kwargs)``, or WorkerTimeout after ``timeout`` seconds.

    A hung call cannot be killed from Python; it is left running in a daemon
    thread and its result, should it ever come, is dropped.
    """
    if timeout is None:
        return fn(*args, **kwargs)
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise WorkerTimeout(f"no reply within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def checked_fit(worker, weights, plan: TrainPlan, robust: RobustnessConfig, *, seed: int,
                batches=None) -> WorkerReply:
    """Ask ``worker`` for an update; it comes back only if it arrived in time and is valid."""
    down = state_nbytes(weights)
    try:
        update = call_with_timeout(worker.fit, robust.round_timeout, weights, plan, seed=seed,
                                   batches=batches)
    except Exception as exc:  # a worker's failure must not end the run
        return WorkerReply(None, down, failed=f"{type(exc).__name__}: {exc}")
    return checked(worker, update, weights, plan, robust, down=down, batches=batches)


def checked(worker, update, weights, plan: TrainPlan, robust: RobustnessConfig, *, down: int,
            batches=None) -> WorkerReply:
    """The reply for an update that arrived: refused with the reason unless it is valid."""
    try:  # a full pass sees at most epochs x its data; one hop at most one batch
        bound = plan.epochs * worker.num_examples if batches is None else plan.batch_size
    except Exception:  # a worker that cannot say its size gets no bound
        bound = None
    reason = validate_upload(update, weights, max_examples=bound,
                             max_norm=robust.max_update_norm)
    if reason is not None:
        return WorkerReply(None, down, rejected=reason)
    return WorkerReply(update, down, bytes_up=wire_nbytes(update))


def trainer(worker: Worker) -> Worker:
    """The worker that trains: inside a client side, the worker it wraps."""
    return worker.inner if isinstance(worker, ClientSideWorker) else worker


class ClientExecutor:
    """Runs one round's client calls; returns one reply per call, in the calls' order."""

    name = "?"  # as recorded in each round's ``compute``

    def fit(self, jobs: Sequence[tuple[Worker, int]], weights: Mapping[str, torch.Tensor],
            plan: TrainPlan, robust: RobustnessConfig, round_: int | None = None
            ) -> list[WorkerReply]:
        """``jobs``: (worker, seed) pairs; each worker trains from ``weights`` with ``plan``.
        ``round_``: the round they belong to (an executor that keeps copies of the workers
        elsewhere tells them, as the server told the originals with ``set_round``)."""
        raise NotImplementedError

    def round_notes(self) -> dict:
        """What the last round's record should say of how its clients ran, beyond the name."""
        return {}

    def close(self) -> None:
        """Release what the executor holds (processes, a cluster connection); default none."""
