"""How a round's selected clients are run: the seam between a strategy's maths and the hardware.

A strategy decides *what* each selected client is asked — the global weights, the plan, and a
seed derived from (seed, round, client) — and an executor decides *how* those calls run. Every
call goes through :func:`checked_fit`: a client that raises, hangs past ``round_timeout`` or
sends a malformed or hostile update gives a :class:`~fedlearn.server.record.WorkerReply` with the
reason, never an exception that ends the run. :class:`OneAfterTheOther` runs the calls in this
process in the order selected; other executors (a round's clients trained together, or on a
cluster) plug in here and must give the same replies for the same calls, so a strategy's result
never depends on how its clients ran.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import torch

from fedlearn.aggregation.robust import validate_upload
from fedlearn.config import ConfigError, ExperimentConfig, RobustnessConfig, TrainPlan
from fedlearn.server.record import WorkerReply
from fedlearn.updates import state_nbytes
from fedlearn.updates.client_side import wire_nbytes
from fedlearn.workers.base import Worker
from fedlearn.workers.client_side import ClientSideWorker


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


class OneAfterTheOther(ClientExecutor):
    """Each selected client in turn, in this process: the reference every executor must match."""

    name = "one after the other"

    def fit(self, jobs, weights, plan, robust, round_=None):
        return [checked_fit(worker, weights, plan, robust, seed=seed) for worker, seed in jobs]


class Together(ClientExecutor):
    """A round's in-process clients as one batched computation
    (:meth:`fedlearn.workers.VirtualWorker.fit_together`); every update is still checked."""

    name = "together"

    def fit(self, jobs, weights, plan, robust, round_=None):
        from fedlearn.workers.inprocess import VirtualWorker

        down = state_nbytes(weights)
        try:
            updates = VirtualWorker.fit_together([trainer(w) for w, _ in jobs], weights, plan,
                                                 [seed for _, seed in jobs])
            # each client's own side (clip, compress, mask) after the batched training
            updates = [w.upload(u) if isinstance(w, ClientSideWorker) else u
                       for (w, _), u in zip(jobs, updates)]
        except Exception as exc:  # the batch failed: every client in it did
            return [WorkerReply(None, down, failed=f"{type(exc).__name__}: {exc}")
                    for _ in jobs]
        return [checked(worker, update, weights, plan, robust, down=down)
                for (worker, _), update in zip(jobs, updates)]


def together_refusals(config: ExperimentConfig, workers: Sequence[Worker],
                      model: torch.nn.Module) -> list[str]:
    """Why this run's clients cannot be trained together (none: they can)."""
    from fedlearn.workers.inprocess import VirtualWorker
    from fedlearn.workers.together import can_train_together

    reasons = [why for why, broken in (
        ("model hopping visits one batch at a time", config.federation.algorithm != "fedavg"),
        ("a round timeout needs each client's own call", config.robustness.round_timeout
         is not None),
        ("channels-last is for one client at a time", config.plan.channels_last),
        ("every client must be a plain in-process VirtualWorker",
         any(type(trainer(w)) is not VirtualWorker for w in workers))) if broken]
    return reasons + ([why] if (why := can_train_together(model)) else [])


def choose_executor(config: ExperimentConfig, workers: Sequence[Worker], model: torch.nn.Module,
                    device: torch.device) -> ClientExecutor:
    """``config.execution.executor``; ``auto`` trains clients together on a GPU when they can
    be (on a CPU one after the other measures faster: benchmarks/hardware_speed.py). ``ray``
    starts or joins a Ray runtime (:mod:`fedlearn.backends.ray`), whose actors choose the same
    way (``config.execution.actor_path``)."""
    execution = config.execution
    wanted = execution.executor
    if wanted == "one_after_the_other":
        return OneAfterTheOther()
    if wanted == "ray":
        from fedlearn.backends.ray import RayExecutor

        if device.type == "cuda" and execution.client_gpus == 0:
            raise ConfigError("execution.client_gpus", "the run trains on cuda but a Ray "
                              "client gets no GPU: give --client-gpus (a fraction shares one)")
        together = _together(execution.actor_path, "execution.actor_path",
                             together_refusals(config, workers, model), device)
        return RayExecutor(execution, workers, together=together, device=device.type,
                           per_round=config.workers_per_round(len(workers)))
    if _together(wanted, "execution.executor", together_refusals(config, workers, model),
                 device):
        return Together()
    return OneAfterTheOther()


def _together(wanted: str, field: str, reasons: list[str], device: torch.device) -> bool:
    """``together`` where asked (refused with the reasons if it cannot be), or ``auto`` on a GPU."""
    if wanted == "together" and reasons:
        raise ConfigError(field, f"clients cannot be trained together here: "
                          f"{'; '.join(reasons)}; use one_after_the_other or auto")
    return wanted == "together" or (wanted == "auto" and device.type == "cuda" and not reasons)
