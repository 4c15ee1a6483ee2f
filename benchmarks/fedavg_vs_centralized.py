"""Bob + Alice FedAvg against centralized training, in one run on one machine.

Full MNIST. Federated: Bob and Alice hold an IID half each, FedAvg with one local
epoch per round. Centralized: the same model (same initial weights), optimizer
and batch size on all 60,000 images, one epoch per step. Rounds and epochs are
interleaved (round 1, epoch 1, round 2, epoch 2, ...) so that machine noise hits
both alike. Prints per-round/per-epoch training seconds, their ratio, the rounds
and seconds each needs to reach the target accuracy, and the peak memory.

    python benchmarks/fedavg_vs_centralized.py --rounds 8 \\
        --json benchmarks/results/fedavg_vs_centralized.json
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from common import write_results

from fedlearn.config import DataConfig, ExperimentConfig, FederationConfig, TrainPlan
from fedlearn.data import load_mnist
from fedlearn.models import build_model
from fedlearn.server.federation import FederatedServer
from fedlearn.training import evaluate, make_optimizer, train_epochs
from fedlearn.workers import make_virtual_workers


def first_reaching(records, target):
    for r in records:
        if r["test_accuracy"] >= target:
            return r
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    config = ExperimentConfig(
        data=DataConfig(data_dir=args.data_dir),
        plan=TrainPlan(epochs=1, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum),
        federation=FederationConfig(rounds=args.rounds, device="cpu"), seed=args.seed)
    data = load_mnist(config.data, seed=config.seed)
    workers, _ = make_virtual_workers(data.train_x, data.train_y, config)
    server = FederatedServer(workers, config, data.test_x, data.test_y)

    central = build_model(config.federation.model, seed=config.seed)
    optimizer = make_optimizer(central, config.plan)
    fed_rows, central_rows = [], []
    elapsed_fed = elapsed_central = 0.0
    for r in range(1, args.rounds + 1):
        record = server.step()
        elapsed_fed += record["train_seconds"]
        fed_rows.append({"round": r, "train_seconds": record["train_seconds"],
                         "test_accuracy": record["test_accuracy"], "elapsed": elapsed_fed})
        t0 = time.perf_counter()
        train_epochs(central, optimizer, data.train_x, data.train_y, config.plan,
                     seed=config.seed * 1000 + r)
        seconds = time.perf_counter() - t0
        elapsed_central += seconds
        acc = evaluate(central, data.test_x, data.test_y)["accuracy"]
        central_rows.append({"round": r, "train_seconds": seconds, "test_accuracy": acc,
                             "elapsed": elapsed_central})
        print(f"round/epoch {r}: federated {record['train_seconds']:.2f}s acc "
              f"{record['test_accuracy']:.4f} | centralized {seconds:.2f}s acc {acc:.4f} | "
              f"ratio {record['train_seconds'] / seconds:.3f}", flush=True)

    fed_mean = statistics.mean(r["train_seconds"] for r in fed_rows)
    central_mean = statistics.mean(r["train_seconds"] for r in central_rows)
    ratios = [f["train_seconds"] / c["train_seconds"] for f, c in zip(fed_rows, central_rows)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fed_hit, central_hit = (first_reaching(fed_rows, args.target),
                            first_reaching(central_rows, args.target))
    result = {
        "command": "python benchmarks/fedavg_vs_centralized.py " + " ".join(argv or []),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "config": config.to_dict(),
        "federated": fed_rows, "centralized": central_rows,
        "mean_seconds_per_round": fed_mean, "mean_seconds_per_epoch": central_mean,
        "ratio_of_means": fed_mean / central_mean, "median_ratio": statistics.median(ratios),
        "target": args.target,
        "federated_rounds_to_target": fed_hit and fed_hit["round"],
        "federated_seconds_to_target": fed_hit and fed_hit["elapsed"],
        "centralized_epochs_to_target": central_hit and central_hit["round"],
        "centralized_seconds_to_target": central_hit and central_hit["elapsed"],
        "final_federated_accuracy": fed_rows[-1]["test_accuracy"],
        "final_centralized_accuracy": central_rows[-1]["test_accuracy"],
        "peak_memory_mb": peak_mb,
    }
    print(f"\nseconds per round (federated)   {fed_mean:.2f}\n"
          f"seconds per epoch (centralized) {central_mean:.2f}\n"
          f"ratio of means {result['ratio_of_means']:.3f}, median per-pair ratio "
          f"{result['median_ratio']:.3f}\n"
          f"to {args.target:.1%}: federated {result['federated_rounds_to_target']} rounds / "
          f"{result['federated_seconds_to_target']} s; centralized "
          f"{result['centralized_epochs_to_target']} epochs / "
          f"{result['centralized_seconds_to_target']} s\n"
          f"final accuracy: federated {result['final_federated_accuracy']:.4f}, centralized "
          f"{result['final_centralized_accuracy']:.4f}\npeak memory {peak_mb:.0f} MB")
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
