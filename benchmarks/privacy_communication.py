"""Upload bytes vs accuracy (compression), secure-aggregation overhead, and accuracy vs epsilon.

Part 1, Bob and Alice on full MNIST, FedAvg with one local epoch per round, the
same seed for every variant: float32 updates, stochastic 8-bit quantization,
top-k 1% with error feedback, and secure aggregation. Part 2, DP-FedAvg with 100
clients (600 images each, C = 0.1, clip 1.0): final accuracy and epsilon at
delta = 1e-5 for several noise multipliers.

    python benchmarks/privacy_communication.py --rounds 3 --dp-rounds 20 \\
        --json benchmarks/results/privacy_communication.json
"""
from __future__ import annotations

import argparse
import statistics

from common import write_results

from fedlearn.config import (
    CompressionConfig,
    DataConfig,
    DPConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
)
from fedlearn.data import load_mnist
from fedlearn.server.federation import run_federation
from fedlearn.workers import make_virtual_workers

VARIANTS = {
    "float32": {},
    "8-bit quantization": {"compression": CompressionConfig(method="quantize", bits=8)},
    "top-k 1% + error feedback": {"compression": CompressionConfig(method="topk",
                                                                   topk_fraction=0.01)},
    "secure aggregation": {"secure_aggregation": True},
}


def run(data, config):
    workers, _ = make_virtual_workers(data.train_x, data.train_y, config)
    return run_federation(workers, config, data.test_x, data.test_y).history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dp-rounds", type=int, default=20)
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   metavar="ENCODING", help=f"the encodings to run (float32 always): "
                   f"{', '.join(VARIANTS)}")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = load_mnist(DataConfig(), seed=0)
    out = {"command": "python benchmarks/privacy_communication.py " + " ".join(argv or []),
           "compression": {}, "dp": {}}
    for label, extra in VARIANTS.items():
        if label != "float32" and label not in args.only:
            continue
        config = ExperimentConfig(federation=FederationConfig(rounds=args.rounds, device="cpu"),
                                  **extra)
        history = run(data, config)
        row = {"accuracy": [h["test_accuracy"] for h in history],
               "upload_bytes_per_round": statistics.mean(sum(h["bytes_up"].values())
                                                         for h in history),
               "download_bytes_per_round": statistics.mean(sum(h["bytes_down"].values())
                                                           for h in history),
               "train_seconds_per_round": statistics.mean(h["train_seconds"] for h in history)}
        out["compression"][label] = row
        print(f"{label:28s} final accuracy {row['accuracy'][-1]:.4f}  upload/round "
              f"{row['upload_bytes_per_round'] / 1e6:8.3f} MB  "
              f"{row['train_seconds_per_round']:.2f} s/round",
              flush=True)
    base = out["compression"]["float32"]
    for label, row in out["compression"].items():
        row["upload_reduction"] = base["upload_bytes_per_round"] / row["upload_bytes_per_round"]
        row["accuracy_change_points"] = 100 * (row["accuracy"][-1] - base["accuracy"][-1])
        row["time_ratio"] = row["train_seconds_per_round"] / base["train_seconds_per_round"]

    clients = tuple(f"client{i:03d}" for i in range(100))
    for z in args.noise if args.dp_rounds > 0 else []:
        config = ExperimentConfig(partition=PartitionConfig(workers=clients),
                                  federation=FederationConfig(rounds=args.dp_rounds, fraction=0.1,
                                                              device="cpu"),
                                  dp=DPConfig(clip_norm=1.0, noise_multiplier=z, delta=1e-5))
        history = run(data, config)
        out["dp"][str(z)] = {"accuracy": [h["test_accuracy"] for h in history],
                             "epsilon": [h["epsilon"] for h in history]}
        print(f"DP-FedAvg z={z:<4} after {args.dp_rounds} rounds: accuracy "
              f"{history[-1]['test_accuracy']:.4f}, epsilon {history[-1]['epsilon']:.2f} "
              f"(delta 1e-5)", flush=True)
    write_results(args.json, out)
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
