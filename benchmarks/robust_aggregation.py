"""One hostile worker out of five: FedAvg against median, trimmed mean and Krum, on real MNIST.

Five workers hold IID parts of MNIST. Worker "e" either sends its update
sign-flipped and scaled (-4 x its honest update) or replaces it with Gaussian
noise (std 1 per coordinate) in every round. Every aggregation rule is run
honest and under each attack, with the same seed.

    python benchmarks/robust_aggregation.py --train-size 20000 --rounds 3 \\
        --json benchmarks/results/robust_aggregation.json
"""
from __future__ import annotations

import argparse

from common import write_results

from fedlearn.config import (
    DataConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    RobustnessConfig,
)
from fedlearn.data import load_mnist
from fedlearn.server.federation import run_federation
from fedlearn.workers import make_virtual_workers
from fedlearn.workers.faults import FaultInjectingWorker

ATTACKS = {"honest": None, "sign_flip": ("sign_flip", 4.0), "random": ("random", 1.0)}
RULES = ("mean", "median", "trimmed_mean", "krum")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    base = ExperimentConfig(data=DataConfig(train_size=args.train_size),
                            partition=PartitionConfig(workers=("a", "b", "c", "d", "e")),
                            federation=FederationConfig(rounds=args.rounds, device="cpu"))
    data = load_mnist(base.data, seed=base.seed)
    results = {}
    for attack, fault in ATTACKS.items():
        for rule in RULES:
            config = ExperimentConfig(data=base.data, partition=base.partition, plan=base.plan,
                                      federation=FederationConfig(rounds=args.rounds,
                                                                  device="cpu"),
                                      robustness=RobustnessConfig(aggregator=rule,
                                                                  trim_fraction=0.2))
            workers, _ = make_virtual_workers(data.train_x, data.train_y, config)
            if fault is not None:
                workers[-1] = FaultInjectingWorker(workers[-1], fault[0], scale=fault[1])
            history = run_federation(workers, config, data.test_x, data.test_y).history
            results[f"{attack}/{rule}"] = [h["test_accuracy"] for h in history]
            print(f"{attack:9s} {rule:12s} accuracy per round: "
                  + ", ".join(f"{a:.4f}" for a in results[f"{attack}/{rule}"]), flush=True)
    honest = results["honest/mean"][-1]
    print(f"\nfinal test accuracy after {args.rounds} rounds (honest FedAvg: {honest:.2%})")
    print(f"{'rule':14s}" + "".join(f"{a:>12s}" for a in ATTACKS))
    for rule in RULES:
        print(f"{rule:14s}" + "".join(f"{results[f'{a}/{rule}'][-1]:12.2%}" for a in ATTACKS))
    write_results(args.json, {
        "command": "python benchmarks/robust_aggregation.py " + " ".join(argv or []),
        "accuracy_per_round": results})
    return results


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
