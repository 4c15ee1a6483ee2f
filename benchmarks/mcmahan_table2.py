"""Reproduce McMahan et al. 2017, Table 2 (CNN on MNIST): rounds to reach 99% test accuracy.

Their setting: the "CNN" (two 5x5 conv layers of 32 and 64 channels, fc 512), 100
clients with 600 images each, C = 0.1 (10 clients per round), plain SGD. FedAvg:
E = 5 local epochs, B = 10. FedSGD: E = 1, B = infinity (one full-batch gradient
per client per round: FedAvg with one local step). IID: a random split;
non-IID: sort by label, 200 shards of 300, 2 shards per client. Paper, rounds to
99%: FedAvg IID 20, non-IID 229 (B=10, E=5 row of Table 2); FedSGD IID 626,
non-IID 483. Learning rates: the paper tuned them on a grid; ours are arguments.

Each setting runs until the target or ``--max-rounds``; the wall time is
recorded. With ``--checkpoint-dir`` a long setting survives being stopped: run
the same command again and it continues from its last round. ``--quick`` is a
CI-sized check: 6,000 images (60 per client), 3 rounds, 1,000 test images;
FedAvg must beat FedSGD after the same rounds.

    python benchmarks/mcmahan_table2.py --settings fedavg-iid \\
        --json benchmarks/results/mcmahan_table2.json
    python benchmarks/mcmahan_table2.py --quick --json benchmarks/results/mcmahan_table2_quick.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import write_results

from fedlearn.config import (
    DataConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    TrainPlan,
)
from fedlearn.data import load_mnist
from fedlearn.plots import rounds_to_target_figure, save_figure
from fedlearn.server.checkpoint import load_checkpoint, save_checkpoint
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import make_virtual_workers

PAPER_ROUNDS = {"fedavg-iid": 20, "fedavg-noniid": 229, "fedsgd-iid": 626, "fedsgd-noniid": 483}


def setting(name: str, args, clients: int, local_size: int) -> ExperimentConfig:
    algorithm, split = name.split("-")
    fedavg = algorithm == "fedavg"
    plan = TrainPlan(epochs=5 if fedavg else 1, batch_size=10 if fedavg else local_size,
                     lr=args.fedavg_lr if fedavg else args.fedsgd_lr, momentum=0.0)
    return ExperimentConfig(
        data=DataConfig(train_size=args.train_size, test_size=args.test_size),
        partition=PartitionConfig(workers=tuple(f"client{i:03d}" for i in range(clients)),
                                  scheme="iid" if split == "iid" else "shards",
                                  shards_per_worker=2),
        plan=plan,
        federation=FederationConfig(model="mcmahan_cnn", rounds=args.max_rounds, fraction=0.1,
                                    target_accuracy=args.target, device=args.device),
        seed=args.seed)


def run_setting(name, config, data, progress=False, checkpoint_dir=None) -> dict:
    """Run one setting; with ``checkpoint_dir`` every round is checkpointed and a
    stopped run continues from its last round (the wall time adds up across runs)."""
    workers, _ = make_virtual_workers(data.train_x, data.train_y, config)
    server = FederatedServer(workers, config, data.test_x, data.test_y)
    checkpoint = Path(checkpoint_dir) / f"{name}.pt" if checkpoint_dir else None
    earlier_seconds = 0.0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        server.load_state_dict(state, source=f"checkpoint {checkpoint}")
        earlier_seconds = float(state["benchmark_seconds"])
        if progress:
            print(f"{name}: resumed after round {server.round} ({earlier_seconds:.0f} s)",
                  flush=True)
    t0 = time.perf_counter() - earlier_seconds
    while server.round < config.federation.rounds and not server.reached_target:
        record = server.step()
        if checkpoint is not None:
            save_checkpoint(checkpoint, {**server.state_dict(),
                                         "benchmark_seconds": time.perf_counter() - t0})
        if progress:
            print(f"{name} round {record['round']}: {record['test_accuracy']:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    accuracy = [h["test_accuracy"] for h in server.history]
    return {"rounds_to_target": server.round if server.reached_target else None,
            "rounds_run": server.round, "accuracy": accuracy,
            "wall_seconds": time.perf_counter() - t0, "paper_rounds": PAPER_ROUNDS[name],
            "lr": config.plan.lr, "epochs": config.plan.epochs,
            "batch_size": config.plan.batch_size}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=list(PAPER_ROUNDS), choices=list(PAPER_ROUNDS))
    p.add_argument("--quick", action="store_true", help="CI-sized: 6,000 images, 3 rounds")
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--max-rounds", type=int, default=1000)
    p.add_argument("--fedavg-lr", type=float, default=0.1)
    p.add_argument("--fedsgd-lr", type=float, default=0.2)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None,
                   help="save the accuracy curves of every setting in the JSON to this PNG")
    p.add_argument("--checkpoint-dir", default=None,
                   help="checkpoint every round here; a rerun continues a stopped setting")
    args = p.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size, args.max_rounds = 6000, 1000, 3
        args.settings = ["fedavg-iid", "fedsgd-iid"]
    clients = 100
    data = load_mnist(DataConfig(train_size=args.train_size, test_size=args.test_size),
                      seed=args.seed)
    local_size = len(data.train_y) // clients
    out = {"command": "python benchmarks/mcmahan_table2.py " + " ".join(argv or []),
           "quick": args.quick, "clients": clients, "images_per_client": local_size,
           "target": args.target, "settings": {}}
    if args.json and Path(args.json).exists():  # settings run separately accumulate in one file
        earlier = json.loads(Path(args.json).read_text())
        if earlier.get("quick") == args.quick:
            out["settings"] = earlier["settings"]
            out["command"] = "; ".join(dict.fromkeys([earlier["command"], out["command"]]))
    for name in args.settings:
        config = setting(name, args, clients, local_size)
        row = run_setting(name, config, data, progress=not args.quick,
                          checkpoint_dir=args.checkpoint_dir)
        out["settings"][name] = row
        print(f"{name:14s} rounds to {args.target:.0%}: {row['rounds_to_target']} "
              f"(paper {row['paper_rounds']}), final accuracy {row['accuracy'][-1]:.4f}, "
              f"{row['wall_seconds']:.0f} s", flush=True)
        write_results(args.json, out)  # partial results survive a stopped run
    if args.figure:
        save_figure(rounds_to_target_figure(out["settings"], target=args.target), args.figure)
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
