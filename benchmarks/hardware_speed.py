"""Seconds per round at the speed of this machine's hardware: fp32, bf16 autocast, channels-last.

McMahan et al. 2017's setting: 100 clients of 600 MNIST images (IID), C = 0.1 (10 clients a
round), E = 5, B = 10, lr 0.1; for McMahan's CNN and the tutorial CNN. Each variant is a
``TrainPlan`` (``precision``, ``channels_last``) and a way to run the round's clients (one after
the other, or together: ``torch.func``); every round starts from the same initial weights, so
every variant trains the same 10 clients on the same batches.

Measured as ``../shared/notes/performance.md`` says: all variants in this one process, one
warm-up round each (not counted), then interleaved repetitions with the order rotated, so machine
noise and first-run effects hit every variant alike; medians with min and max, and each median
as a ratio to the fp32 median of the same model. ``--accuracy-rounds N`` also trains fp32 and
bf16 + channels-last for N rounds each (IID and label-shard non-IID) and reports both curves.

    python benchmarks/hardware_speed.py --json results/hardware_speed.json
    python benchmarks/hardware_speed.py --models --accuracy-rounds 20 \\
        --json results/hardware_speed_accuracy.json                     # 20 rounds, bf16 vs fp32
    python benchmarks/hardware_speed.py --models mcmahan_cnn --reps 1 --clients-per-round 2 \\
        --epochs 1 --train-size 6000                                     # a quick look
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import write_results

from fedlearn.config import (
    DataConfig,
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    TrainPlan,
)
from fedlearn.data import load_mnist
from fedlearn.server.federation import FederatedServer, initial_weights
from fedlearn.training import native_bf16
from fedlearn.workers import make_virtual_workers

# name -> (precision, channels_last, how the round's clients run)
VARIANTS = {"fp32": ("fp32", False, "sequential"),
            "bf16": ("bf16", False, "sequential"),
            "channels-last": ("fp32", True, "sequential"),
            "bf16 + channels-last": ("bf16", True, "sequential"),
            "together, fp32": ("fp32", False, "together"),
            "together, bf16": ("bf16", False, "together")}


def config_for(model: str, precision: str, channels_last: bool, executor: str, args,
               scheme="iid", rounds=1) -> ExperimentConfig:
    clients = tuple(f"client{i:03d}" for i in range(args.clients))
    return ExperimentConfig(
        partition=PartitionConfig(workers=clients, scheme=scheme),
        plan=TrainPlan(epochs=args.epochs, batch_size=10, lr=0.1, momentum=0.0,
                       precision=precision, channels_last=channels_last),
        federation=FederationConfig(model=model, rounds=rounds, device="cpu",
                                    fraction=args.clients_per_round / args.clients),
        execution=ExecutionConfig(executor=executor), seed=args.seed)


def time_variants(model: str, data, args) -> dict:
    base = config_for(model, *VARIANTS["fp32"], args)
    workers, _ = make_virtual_workers(data.train_x, data.train_y, base)
    start = initial_weights(base, torch.device("cpu"))
    variants = {name: config_for(model, *spec, args) for name, spec in VARIANTS.items()
                if spec[0] == "fp32" or native_bf16(torch.device("cpu"))}

    def one_round(config):
        server = FederatedServer(workers, config, data.test_x, data.test_y, weights=start)
        record = server.step()
        return record.train_seconds, record.test_accuracy

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    accuracy = {}
    for name, config in variants.items():  # warm-up: first-run effects, not counted
        accuracy[name] = one_round(config)[1]
        print(f"{model} warm-up {name}: accuracy after one round {accuracy[name]:.4f}",
              flush=True)
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotated order
            t, _ = one_round(variants[name])
            seconds[name].append(t)
            print(f"{model} rep {rep + 1} {name}: {t:.2f} s", flush=True)
    base_median = statistics.median(seconds["fp32"])
    return {name: {"median_seconds": statistics.median(s), "min_seconds": min(s),
                   "max_seconds": max(s), "ratio_to_fp32": statistics.median(s) / base_median,
                   "accuracy_after_one_round": accuracy[name], "seconds": s}
            for name, s in seconds.items()}


def accuracy_curves(data, args) -> dict:
    """fp32 and bf16 + channels-last, ``--accuracy-rounds`` rounds each, IID and non-IID."""
    out = {}
    for scheme in ("iid", "shards"):
        runs = {}
        for name in ("fp32", "bf16 + channels-last"):
            spec = VARIANTS[name]
            config = config_for("mcmahan_cnn", *spec, args, scheme=scheme,
                                rounds=args.accuracy_rounds)
            workers, _ = make_virtual_workers(data.train_x, data.train_y, config)
            server = FederatedServer(workers, config, data.test_x, data.test_y)
            runs[name] = [server.step().test_accuracy for _ in range(args.accuracy_rounds)]
            print(f"{scheme} {name}: accuracy after {args.accuracy_rounds} rounds "
                  f"{runs[name][-1]:.4f}", flush=True)
        runs["gap_points"] = 100 * abs(runs["fp32"][-1] - runs["bf16 + channels-last"][-1])
        out[scheme] = runs
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["mcmahan_cnn", "tutorial_cnn"],
                   help="models to time (none: only the --accuracy-rounds comparison)")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--clients-per-round", type=int, default=10)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--accuracy-rounds", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = load_mnist(DataConfig(train_size=args.train_size, test_size=args.test_size),
                      seed=args.seed)
    t0 = time.perf_counter()
    out = {"command": "python benchmarks/hardware_speed.py " + " ".join(argv or sys.argv[1:]),
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "native_bf16": native_bf16(torch.device("cpu")),
           "setting": {"clients": args.clients, "clients_per_round": args.clients_per_round,
                       "epochs": args.epochs, "batch_size": 10, "reps": args.reps},
           "models": {model: time_variants(model, data, args) for model in args.models}}
    if args.accuracy_rounds:
        out["accuracy"] = accuracy_curves(data, args)
    out["wall_seconds"] = time.perf_counter() - t0
    for scheme, runs in out.get("accuracy", {}).items():
        print(f"{scheme}: fp32 {runs['fp32'][-1]:.4f}, bf16 + channels-last "
              f"{runs['bf16 + channels-last'][-1]:.4f}, gap {runs['gap_points']:.2f} points")
    for model, rows in out["models"].items():
        for name, row in rows.items():
            print(f"{model:13s} {name:21s} {row['median_seconds']:6.2f} s per round "
                  f"[{row['min_seconds']:.2f}-{row['max_seconds']:.2f}]  "
                  f"{row['ratio_to_fp32']:.2f}x fp32")
    write_results(args.json, out)
    return out


if __name__ == "__main__":
    main()
