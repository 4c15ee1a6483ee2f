"""How much a second torch thread adds to one client's local training: the floor of processes.

`benchmarks/processes.py` compares one process running a round's clients with torch's default
threads (sequential) against one single-threaded process per core. With n cores, a client that
takes T1 seconds on one thread and T1 / s on n threads (s: the speedup of n threads), and enough
clients to keep every process busy, sequential takes about k * T1 / s for k clients and the
processes about k * T1 / n, so

    processes / sequential >= s / n

whatever the executor does: it can only lose to that bound (start-up, shipping shards, a client
more on one process than on another). This script measures s for the settings of
`processes.py` on real MNIST — McMahan's CNN at B = 10 on 600 images (one McMahan client, E = 1)
and the tutorial CNN at B = 64 on 3,000 images (a tenth of Bob's epoch) — in fp32, one thread
against all of this machine's cores, interleaved with the order rotated, medians, and prints
the bound s / n beside the goals of issue #28 (0.8 for McMahan's setting, 0.75 for Bob + Alice).

    FEDLEARN_DATA=../shared/datasets/mnist python benchmarks/thread_scaling.py \
        --json benchmarks/results/thread_scaling.json          # alone, quiet
    python benchmarks/thread_scaling.py --quick                  # < 1 min
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from common import cpu_name, write_results

from fedlearn.config import DataConfig, TrainPlan
from fedlearn.data import load_mnist
from fedlearn.execution.processes import physical_cores
from fedlearn.models import build_model
from fedlearn.training import make_optimizer, train_epochs

SETTINGS = {  # name: (model, batch size, images, lr, goal of processes / sequential)
    "McMahan CNN, B = 10, 600 images": ("mcmahan_cnn", 10, 600, 0.1, 0.8),
    "tutorial CNN, B = 64, 3,000 images": ("tutorial_cnn", 64, 3000, 0.01, 0.75),
}


def seconds(model_name: str, batch: int, x, y, lr: float, threads: int) -> float:
    torch.set_num_threads(threads)
    model = build_model(model_name, seed=0)
    plan = TrainPlan(epochs=1, batch_size=batch, lr=lr)
    start = time.perf_counter()
    train_epochs(model, make_optimizer(model, plan), x, y, plan, seed=1)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5, help="timed runs of each thread count")
    p.add_argument("--quick", action="store_true", help="100 and 500 images, 2 runs")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    cores = physical_cores()
    data = load_mnist(DataConfig(data_dir=os.environ.get("FEDLEARN_DATA", "data"),
                                 train_size=3000, test_size=100), seed=0)
    reps = 2 if args.quick else args.reps
    results = {"cpu": cpu_name(), "cores": cores, "reps": reps, "settings": {}}
    for name, (model, batch, n, lr, goal) in SETTINGS.items():
        n = min(n, 100 if batch == 10 else 500) if args.quick else n
        x, y = data.train_x[:n], data.train_y[:n]
        counts = [1, cores]
        for threads in counts:  # warm-up, not counted
            seconds(model, batch, x, y, lr, threads)
        timed: dict[int, list[float]] = {t: [] for t in counts}
        for rep in range(reps):
            for threads in counts[rep % 2:] + counts[:rep % 2]:  # rotate the order
                timed[threads].append(seconds(model, batch, x, y, lr, threads))
        one, all_ = statistics.median(timed[1]), statistics.median(timed[cores])
        speedup = one / all_
        results["settings"][name] = {
            "seconds_1_thread": timed[1], f"seconds_{cores}_threads": timed[cores],
            "speedup": speedup, "floor_processes_over_sequential": speedup / cores,
            "goal": goal}
        print(f"{name}: 1 thread {one:.2f} s, {cores} threads {all_:.2f} s, speedup "
              f"{speedup:.2f}; processes / sequential >= {speedup / cores:.2f} (goal {goal})",
              flush=True)
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
