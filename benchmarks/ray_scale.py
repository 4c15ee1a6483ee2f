"""Seconds per round and peak memory: clients in-process, or on Ray actors on one or two nodes.

McMahan et al. 2017's setting: McMahan's CNN, MNIST split IID between ``--clients`` clients
(100 of 600 images, or 1,000 of 60), C = 0.1, E = 5, B = 10, lr 0.1. Variants, all in this one
process on the same data from the same initial weights:

- ``in-process``: one client after the other with this machine's threads (the baseline);
- ``ray, 1 node`` / ``ray, 2 nodes``: a Ray cluster on this machine (``ray.cluster_utils``:
  a head without CPUs and two worker nodes); one actor (one node's worth) or two, one per
  node, each asking for one CPU and training with one thread.

Each on every path of the hardware-speed issue this CPU has: fp32, fp32 + channels-last, and
bf16 autocast + channels-last where the CPU computes bf16 natively. Which is fastest depends on
the CPU and on the threads (measured here, not assumed): the goals compare Ray at fp32 with
in-process fp32, and Ray's fastest path with in-process's fastest path. As
``../shared/notes/performance.md`` says: each variant runs its rounds interleaved with the
others' (round r of every variant, then round r + 1, the order rotated), the first round of
each is its warm-up (Ray workers import torch; not counted), medians with min and max of the
rest. Every variant trains the same clients from the same
weights, so their accuracy curves are comparable (bit-identical where threads agree). Peak
memory: the driver's, and each actor's, resident set.

    python benchmarks/ray_scale.py --clients 100 --rounds 3 --json results/ray_scale.json
    python benchmarks/ray_scale.py --clients 1000 --rounds 3 --json results/ray_scale.json
    python benchmarks/ray_scale.py --clients 20 --rounds 2 --train-size 2400   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from pathlib import Path

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


def config_for(args, precision: str, channels_last: bool, executor: str) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(train_size=args.train_size),
        partition=PartitionConfig(workers=tuple(f"client{i:04d}" for i in range(args.clients))),
        plan=TrainPlan(epochs=5, batch_size=10, lr=0.1, momentum=0.0, precision=precision,
                       channels_last=channels_last),
        federation=FederationConfig(model="mcmahan_cnn", rounds=args.rounds, fraction=0.1,
                                    device="cpu"),
        execution=ExecutionConfig(executor=executor), seed=args.seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="per variant; the first is warm-up")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="results are added under the client count")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    from fedlearn.execution.ray import RayExecutor

    data = load_mnist(DataConfig(train_size=args.train_size), seed=args.seed)
    paths = {"fp32": ("fp32", False), "fp32+channels_last": ("fp32", True)}
    if native_bf16(__import__("torch").device("cpu")):
        paths["bf16+channels_last"] = ("bf16", True)
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    # two logical CPUs a node, so the one-actor and two-actor executors are alive together and
    # their rounds can interleave; an actor asks for one CPU and trains with one thread, and the
    # two-actor executor puts one on each node (SPREAD; checked below)
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    servers, executors = {}, {}
    try:
        first = config_for(args, "fp32", False, "sequential")
        workers, _ = make_virtual_workers(data.train_x, data.train_y, first)
        weights = initial_weights(first, __import__("torch").device("cpu"))
        for actors in (1, 2):
            executors[actors] = RayExecutor(ExecutionConfig(executor="ray", ray_actors=actors),
                                            workers, per_round=first.workers_per_round(
                                                args.clients))
        for path, (precision, channels_last) in paths.items():
            for label, executor in (("in-process", None), ("ray, 1 node", executors[1]),
                                    ("ray, 2 nodes", executors[2])):
                kind = "sequential" if executor is None else "ray"
                cfg = config_for(args, precision, channels_last, kind)
                servers[f"{label}, {path}"] = FederatedServer(
                    workers, cfg, data.test_x, data.test_y, weights=weights, executor=executor)
        names = list(servers)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                record = servers[name].step()
                print(f"round {r + 1} {name:28s} {record.train_seconds:7.2f} s  accuracy "
                      f"{record.test_accuracy:.4f}", flush=True)
        rows = {}
        for name, server in servers.items():
            seconds = [h["train_seconds"] for h in server.history[1:]]
            rows[name] = {"median_seconds": statistics.median(seconds), "min_seconds":
                          min(seconds), "max_seconds": max(seconds),
                          "accuracy": [h["test_accuracy"] for h in server.history],
                          "warmup_seconds": server.history[0]["train_seconds"]}
            if name.startswith("ray"):  # with the warm-up round
                rows[name]["shards_fetched"] = [h["compute"].get("shards_fetched", 0)
                                                for h in server.history]
        memory = {f"ray, {n} node{'s' if n > 1 else ''}": executors[n].actor_memory()
                  for n in executors}
        assert len({a["node"] for a in memory["ray, 2 nodes"]}) == 2, memory  # one per node
    finally:
        for executor in executors.values():
            executor.close()
        ray.shutdown()
        cluster.shutdown()
    for path in paths:
        base = rows[f"in-process, {path}"]["median_seconds"]
        for label in ("ray, 1 node", "ray, 2 nodes"):
            rows[f"{label}, {path}"]["ratio_to_in_process"] = \
                rows[f"{label}, {path}"]["median_seconds"] / base

    def fastest(label: str) -> str:
        return min(paths, key=lambda p: rows[f"{label}, {p}"]["median_seconds"])

    best = {label: fastest(label) for label in ("in-process", "ray, 1 node", "ray, 2 nodes")}
    best_in_process = rows[f"in-process, {best['in-process']}"]["median_seconds"]
    result = {
        "clients": args.clients, "images_per_client": len(data.train_y) // args.clients,
        "rounds_per_variant": args.rounds, "warmup_rounds": 1, "fastest_path": best,
        "torch_threads_in_process": __import__("torch").get_num_threads(),
        "variants": rows,
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "actor_peak_mb": memory,
        "goals": {
            "ray_2_nodes_fp32_over_in_process_fp32":
                rows["ray, 2 nodes, fp32"]["ratio_to_in_process"],
            "ray_2_nodes_fastest_over_in_process_fastest":
                rows[f"ray, 2 nodes, {best['ray, 2 nodes']}"]["median_seconds"]
                / best_in_process,
            "max_accuracy_gap_fp32": max(
                abs(a - b) for n in ("ray, 1 node, fp32", "ray, 2 nodes, fp32")
                for a, b in zip(rows[n]["accuracy"], rows["in-process, fp32"]["accuracy"]))}}
    print(json.dumps(result["goals"], indent=1))
    if args.json:
        path = Path(args.json)
        everything = json.loads(path.read_text()) if path.exists() else {}
        everything["command"] = "python benchmarks/ray_scale.py --clients N --rounds R --json F"
        everything[str(args.clients)] = result
        write_results(args.json, everything)
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
