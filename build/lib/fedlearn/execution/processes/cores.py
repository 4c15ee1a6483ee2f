"""How many worker processes, what cannot run in one, and when ``auto`` chooses them.

One process per physical core (a hyper-thread shares its core's arithmetic units, so a second
process on it adds little), never more than the cores this process may run on nor than the
clients of a round. ``auto`` chooses processes on a CPU with more than one core, for rounds of
more than one client whose workers can run in a process, and for runs with enough work to pay
for starting them (each imports torch: a second or two, more on a busy machine); otherwise
sequential, the reference. In bf16, small clients stay sequential too. benchmarks/processes.py
times both; AUTO_MIN_EXAMPLES and AUTO_MIN_BF16_CLIENT_EXAMPLES are the numbers to move if a
quiet machine's figures say otherwise.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Sequence

import torch

from fedlearn.config import ExperimentConfig
from fedlearn.execution.base import trainer
from fedlearn.workers.base import Worker

# a run trains fewer example passes than this (rounds x clients a round x their examples x
# epochs): starting the processes would cost more than they save, so auto stays sequential
# (McMahan's setting, 2 rounds of 10 clients x 600 images x 5 epochs, is 60,000)
AUTO_MIN_EXAMPLES = 50_000
# in bf16 a client's training is short, so each client's fixed cost in a process (its call,
# its update's way back) weighs more: measured on 2 cores, 1,000 clients of 60 images took
# 13.1 s a round in processes vs 12.0 s sequentially, 100 clients of 600 images 9.3 s vs 11.9 s
# (benchmarks/results/processes.json); between the two, auto stays sequential below this
AUTO_MIN_BF16_CLIENT_EXAMPLES = 300


def physical_cores() -> int:
    """The physical cores this process may run on (logical ones where that is unknown)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:  # psutil is optional: count logical cores
        physical = usable
    return max(1, min(usable, physical))


def process_count(config: ExperimentConfig, num_workers: int) -> int:
    """``--processes``, else one per physical core, at most the clients of a round."""
    asked = config.execution.processes
    return asked if asked is not None else max(
        1, min(physical_cores(), config.workers_per_round(num_workers)))


def process_refusals(config: ExperimentConfig, workers: Sequence[Worker],
                     device: torch.device) -> list[str]:
    """Why this run's clients cannot be trained in worker processes (none: they can)."""
    reasons = [why for why, broken in (
        ("model hopping passes one model from client to client, batch by batch",
         config.federation.algorithm != "fedavg"),
        (f"the run trains on {device.type}; worker processes train on this machine's CPU "
         "cores (use --executor together or ray for GPUs)", device.type != "cpu"),
        ("workers that train inside their owners' Datasites run there, not in a process "
         f"here ({', '.join(w.name for w in workers if w.remote)})",
         any(w.remote for w in workers))) if broken]
    if not reasons:
        reasons += _unpicklable(workers)
    return reasons


def _unpicklable(workers: Sequence[Worker]) -> list[str]:
    """One worker of each kind is pickled, as it will be to go to a process."""
    seen: set = set()
    for worker in workers:
        kind = (type(worker), type(trainer(worker)))
        if kind in seen:
            continue
        seen.add(kind)
        try:
            pickled = pickle.dumps(worker, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            return [f"worker {worker.name!r} ({type(worker).__name__}) cannot be sent to a "
                    f"process: {type(exc).__name__}: {exc}"]
        if b"__main__" in pickled:  # the processes never import the script being run
            return [f"worker {worker.name!r} ({type(worker).__name__}) uses something defined "
                    "in the script being run (__main__), which worker processes do not import "
                    "(they would run the script again): move it into a module"]
    return []


def auto_reasons(config: ExperimentConfig, workers: Sequence[Worker],
                 device: torch.device) -> list[str]:
    """Why ``auto`` keeps this run sequential (none: it chooses processes)."""
    per_round = config.workers_per_round(len(workers))
    try:
        examples = sum(w.num_examples for w in workers) / max(1, len(workers))
    except Exception:  # a worker that cannot say its size: no estimate, no processes
        examples = 0
    work = config.federation.rounds * per_round * examples * config.plan.epochs
    cheap = [why for why, broken in (
        ("this CPU has one core", physical_cores() < 2),
        ("a round has one client", per_round < 2),
        (f"the run is too small to pay for starting processes ({work:,.0f} example passes, "
         f"under {AUTO_MIN_EXAMPLES:,})", work < AUTO_MIN_EXAMPLES),
        ("on a GPU auto trains in this process", device.type != "cpu"),
        (f"in bf16, clients of {examples:,.0f} examples on average (under "
         f"{AUTO_MIN_BF16_CLIENT_EXAMPLES}) train faster in this process than in processes",
         config.plan.precision == "bf16" and examples < AUTO_MIN_BF16_CLIENT_EXAMPLES)) if broken]
    return cheap or process_refusals(config, workers, device)


def chosen_line(config: ExperimentConfig, workers: Sequence[Worker]) -> str:
    """What a round record says of auto's choice."""
    return (f"auto: {physical_cores()} cores, {config.workers_per_round(len(workers))} clients "
            "a round")
