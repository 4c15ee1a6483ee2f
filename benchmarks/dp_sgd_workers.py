"""Sample-level DP at the workers: Bob and Alice each train with DP-SGD (Opacus).

Full MNIST, 30,000 images per owner, FedAvg with one local epoch per round. Each
owner keeps one Opacus RDP accountant for the whole run; the epsilon reported is
the largest of the owners' (each guards only its own data, so the run is
(max epsilon, delta)-DP for every individual). The noise multiplier is chosen by
Opacus so that the planned rounds spend at most ``--target-epsilon``. The model is
the tanh CNN of Papernot et al. 2021 (``dp_cnn``).

    python benchmarks/dp_sgd_workers.py --rounds 30 --batch-size 256 --lr 4.0 \\
        --json benchmarks/results/dp_sgd_workers.json
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from common import write_results

from fedlearn.config import DataConfig, DPSGDConfig, ExperimentConfig, FederationConfig, TrainPlan
from fedlearn.data import load_mnist
from fedlearn.data.partition import partition
from fedlearn.server.federation import FederatedServer
from fedlearn.workers.dp_sgd import DPSGDWorker


def noise_for(target_epsilon: float, delta: float, batch: int, size: int, rounds: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                      sample_rate=batch / size, epochs=rounds, accountant="rdp"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--target-epsilon", type=float, default=2.9)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=4.0)
    p.add_argument("--clip", type=float, default=0.1)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = load_mnist(DataConfig(train_size=args.train_size), seed=0)
    config = ExperimentConfig(plan=TrainPlan(epochs=1, batch_size=args.batch_size, lr=args.lr,
                                             momentum=0.0),
                              federation=FederationConfig(model="dp_cnn", rounds=args.rounds,
                                                          device="cpu"))
    parts = partition(data.train_y.numpy(), config.partition, config.seed)
    z = noise_for(args.target_epsilon, args.delta, args.batch_size, min(map(len, parts)),
                  args.rounds)
    dp = DPSGDConfig(noise_multiplier=z, max_grad_norm=args.clip, delta=args.delta)
    workers = [DPSGDWorker(name, data.train_x[torch.as_tensor(idx)],
                           data.train_y[torch.as_tensor(idx)], model="dp_cnn", dp=dp)
               for name, idx in zip(config.partition.workers, parts)]
    config = dataclasses.replace(config, dp_sgd=dp)
    server = FederatedServer(workers, config, data.test_x, data.test_y)
    t0, rows = time.perf_counter(), []
    for _ in range(args.rounds):
        record = server.step()
        eps = max(record["worker_epsilon"].values())
        rows.append({"round": record["round"], "test_accuracy": record["test_accuracy"],
                     "epsilon": eps, "seconds": record["seconds"]})
        print(f"round {record['round']:2d}: accuracy {record['test_accuracy']:.4f}, "
              f"epsilon {eps:.3f} (delta {args.delta:g}), {record['seconds']:.1f} s", flush=True)
    out = {"command": "python benchmarks/dp_sgd_workers.py " + " ".join(argv or []),
           "noise_multiplier": z, "clip": args.clip, "batch_size": args.batch_size,
           "lr": args.lr, "delta": args.delta, "rounds": rows,
           "final_accuracy": rows[-1]["test_accuracy"], "final_epsilon": rows[-1]["epsilon"],
           "wall_seconds": time.perf_counter() - t0}
    write_results(args.json, out)
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
