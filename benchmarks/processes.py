"""Seconds per round: one process (sequential) vs one single-threaded worker process per core.

Three settings on real MNIST: McMahan et al. 2017's (100 IID clients of 600 images, C = 0.1,
E = 5, B = 10, lr 0.1, McMahan's CNN), the same at 1,000 clients of 60 images (100 a round),
and Bob + Alice (the tutorial: 2 clients of 30,000 images, E = 1, B = 64, the tutorial CNN).
Four variants of each: sequential and processes, fp32 and bf16 + channels-last (bf16 only on a
CPU with native bfloat16). Sequential runs with torch's default threads (as a user runs it);
processes with one thread each, one process per physical core (``--processes``).

Measured as ``../shared/notes/performance.md`` says: every variant keeps its own server (its
processes started once, as in a run) in this one process; one warm-up round each, not counted
(it also sends each process its first shards); then ``--reps`` rounds each, interleaved with the
order rotated, so machine noise hits every variant alike; medians with min and max, each as a
ratio to sequential fp32 of the same setting. Every variant trains the same clients each round
(same seed). The memory of each worker process (resident peak, and unique where psutil can
say) and the shards it holds are reported with the CPU and its cores.

    python benchmarks/processes.py --json benchmarks/results/processes.json    # alone, quiet
    python benchmarks/processes.py --quick                                     # < 2 min
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import cpu_name, write_results

from fedlearn.config import (
    DataConfig,
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    TrainPlan,
)
from fedlearn.data import load_mnist
from fedlearn.execution.processes import physical_cores
from fedlearn.server.federation import FederatedServer, initial_weights
from fedlearn.training import native_bf16
from fedlearn.workers import make_virtual_workers

# name -> (executor, precision, channels_last)
VARIANTS = {"sequential fp32": ("sequential", "fp32", False),
            "processes fp32": ("processes", "fp32", False),
            "sequential bf16 + channels-last": ("sequential", "bf16", True),
            "processes bf16 + channels-last": ("processes", "bf16", True)}
# the goals on a 2-core host, as ratios to sequential fp32 of the same setting
GOALS = {("mcmahan_100", "processes fp32"): 0.8, ("mcmahan_1000", "processes fp32"): 0.8,
         ("mcmahan_100", "processes bf16 + channels-last"): 0.6,
         ("mcmahan_1000", "processes bf16 + channels-last"): 0.6,
         ("bob_alice", "processes fp32"): 0.75}


def settings(quick: bool) -> dict:
    """name -> (clients, clients a round, model, epochs, batch size, lr)."""
    if quick:
        return {"mcmahan_100": (20, 2, "mcmahan_cnn", 1, 10, 0.1),
                "mcmahan_1000": (100, 4, "mcmahan_cnn", 1, 10, 0.1),
                "bob_alice": (2, 2, "tutorial_cnn", 1, 64, 0.01)}
    return {"mcmahan_100": (100, 10, "mcmahan_cnn", 5, 10, 0.1),
            "mcmahan_1000": (1000, 100, "mcmahan_cnn", 5, 10, 0.1),
            "bob_alice": (2, 2, "tutorial_cnn", 1, 64, 0.01)}


def config_for(setting: tuple, executor: str, precision: str, channels_last: bool,
               args) -> ExperimentConfig:
    clients, per_round, model, epochs, batch, lr = setting
    names = ("bob", "alice") if clients == 2 else tuple(f"client{i:04d}" for i in range(clients))
    return ExperimentConfig(
        partition=PartitionConfig(workers=names),
        plan=TrainPlan(epochs=epochs, batch_size=batch, lr=lr, momentum=0.0 if clients > 2
                       else 0.9, precision=precision, channels_last=channels_last),
        federation=FederationConfig(model=model, rounds=1000, device="cpu",
                                    fraction=per_round / clients),
        execution=ExecutionConfig(executor=executor, processes=args.processes
                                  if executor == "processes" else None), seed=args.seed)


def process_memory(server) -> list[dict]:
    """Each worker process's memory and how many clients' workers (shards) it holds."""
    executor = server.strategy.executor
    if executor.name != "processes":
        return []
    try:
        import psutil
    except ImportError:  # unique memory needs psutil; the peak comes with the round notes
        psutil = None
    rows = []
    for slot in executor.pool.slots:
        row = {"pid": slot.pid, "clients_held": len(slot.held)}
        if psutil is not None:
            info = psutil.Process(slot.pid).memory_full_info()
            row |= {"rss_mb": info.rss / 2 ** 20, "uss_mb": info.uss / 2 ** 20}
        rows.append(row)
    return rows


def time_setting(name: str, setting: tuple, data, args) -> dict:
    variants = {v: spec for v, spec in VARIANTS.items()
                if spec[1] == "fp32" or native_bf16(torch.device("cpu"))}
    base = config_for(setting, "sequential", "fp32", False, args)
    workers, _ = make_virtual_workers(data.train_x, data.train_y, base)
    start = initial_weights(base, torch.device("cpu"))
    servers = {}
    for v, spec in variants.items():  # each keeps its processes for the whole setting
        t0 = time.perf_counter()
        servers[v] = FederatedServer(workers, config_for(setting, *spec, args), data.test_x,
                                     data.test_y, weights=start)
        made = time.perf_counter() - t0
        warm = servers[v].step()  # warm-up, not counted
        print(f"{name} warm-up {v}: made in {made:.1f} s, round {warm.train_seconds:.2f} s",
              flush=True)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    notes: dict[str, dict] = {}
    names = list(variants)
    try:
        for rep in range(args.reps):
            for v in names[rep % len(names):] + names[:rep % len(names)]:  # rotated order
                record = servers[v].step()
                seconds[v].append(record.train_seconds)
                notes[v] = record.compute or {}
                print(f"{name} rep {rep + 1} {v}: {record.train_seconds:.2f} s", flush=True)
        memory = {v: process_memory(s) for v, s in servers.items()}
    finally:
        for server in servers.values():
            server.close()
    base_median = statistics.median(seconds["sequential fp32"])
    out = {}
    for v, s in seconds.items():
        ratio = statistics.median(s) / base_median
        goal = GOALS.get((name, v))
        out[v] = {"median_seconds": statistics.median(s), "min_seconds": min(s),
                  "max_seconds": max(s), "ratio_to_sequential_fp32": ratio,
                  "goal": goal, "meets_goal": None if goal is None else ratio <= goal,
                  "seconds": s, "compute": notes[v], "process_memory": memory[v]}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="*", default=["mcmahan_100", "mcmahan_1000",
                                                     "bob_alice"])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--processes", type=int, default=None)
    p.add_argument("--quick", action="store_true",
                   help="small: a fifth of MNIST, few clients, one epoch, one rep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 1
    data = load_mnist(DataConfig(train_size=6000 if args.quick else None,
                                 test_size=1000 if args.quick else None), seed=args.seed)
    table = settings(args.quick)
    t0 = time.perf_counter()
    out = {"command": "python benchmarks/processes.py " + " ".join(argv or sys.argv[1:]),
           "cpu": cpu_name(), "physical_cores": physical_cores(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "native_bf16": native_bf16(torch.device("cpu")),
           "quick": args.quick, "reps": args.reps,
           "settings": {name: time_setting(name, table[name], data, args)
                        for name in args.settings}}
    out["wall_seconds"] = time.perf_counter() - t0
    print(f"{out['cpu']}, {out['physical_cores']} physical cores")
    for name, rows in out["settings"].items():
        for v, row in rows.items():
            goal = "" if row["goal"] is None else \
                f"  goal <= {row['goal']} {'met' if row['meets_goal'] else 'NOT met'}"
            print(f"{name:13s} {v:32s} {row['median_seconds']:6.2f} s per round "
                  f"[{row['min_seconds']:.2f}-{row['max_seconds']:.2f}]  "
                  f"{row['ratio_to_sequential_fp32']:.2f}x sequential fp32{goal}")
    write_results(args.json, out)
    return out


if __name__ == "__main__":
    main()
