"""Federations at scale on full MNIST: overhead, memory, warm start, devices that come and go.

1. overhead: 100 clients, C = 0.1, B = 10, E = 1: server time per round beyond the
   clients' own local training (selection, weight copies, aggregation), as a share
   of that training time. Target <= 5%.
2. memory: peak RSS, and RSS after 2 rounds, of a process with 100 clients (C = 0.1)
   and 1,000 clients (C = 0.1, and C = 0.01: the same 10 per round); same data.
   Target at 1,000 clients, C = 0.1: peak <= 2 GB.
3. warm start: rounds to --warm-target with and without pre-training on 1,000
   proxy images the server holds (non-IID shards, 100 clients).
4. availability: 100 devices, 50% eligible on average, 130% over-selection, 5%
   declines and drop-outs, a 4 s deadline, uploads 5x slower than downloads: how many report,
   with float32 and with 8-bit uploads.

    python benchmarks/scale.py --json benchmarks/results/scale.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import write_results

from fedlearn.config import (
    AvailabilityConfig,
    CompressionConfig,
    DataConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    RobustnessConfig,
    TrainPlan,
)
from fedlearn.data import load_mnist
from fedlearn.server.federation import FederatedServer
from fedlearn.server.warm_start import split_proxy, warm_start_weights
from fedlearn.workers import make_virtual_workers
from fedlearn.workers.base import DelegatingWorker


class Timed(DelegatingWorker):
    """Wraps a worker and adds up the seconds spent inside its fit()."""

    def __init__(self, worker, clock):
        super().__init__(worker)
        self._clock = clock

    def fit(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return super().fit(*args, **kwargs)
        finally:
            self._clock.append(time.perf_counter() - t0)


def config(clients, *, rounds, scheme="iid", fraction=0.1, **extra):
    return ExperimentConfig(
        partition=PartitionConfig(workers=tuple(f"c{i:04d}" for i in range(clients)),
                                  scheme=scheme),
        plan=TrainPlan(batch_size=10, lr=0.05, momentum=0.0),
        federation=FederationConfig(rounds=rounds, fraction=fraction, device="cpu",
                                    **extra.pop("federation", {})), **extra)


def overhead(data, rounds):
    cfg = config(100, rounds=rounds)
    workers, _ = make_virtual_workers(data.train_x, data.train_y, cfg)
    fits: list[float] = []
    server = FederatedServer([Timed(w, fits) for w in workers], cfg, data.test_x, data.test_y)
    rows = []
    for _ in range(rounds):
        fits.clear()
        record = server.step()
        rows.append({"round_seconds": record["train_seconds"], "local_training": sum(fits)})
    share = statistics.mean(r["round_seconds"] / r["local_training"] - 1 for r in rows)
    return {"rounds": rows, "overhead_share": share}


MEMORY = """
import json, resource, sys
sys.path.insert(0, {bench!r})
from scale import config
from fedlearn.data import load_mnist
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import make_virtual_workers
data = load_mnist()
cfg = config(int(sys.argv[1]), rounds=2, fraction=float(sys.argv[2]))
workers, _ = make_virtual_workers(data.train_x, data.train_y, cfg)
server = FederatedServer(workers, cfg, data.test_x, data.test_y)
server.step(); server.step()
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_after_rounds_mb": rss}}))
"""


def memory():
    import os
    code = MEMORY.format(bench=os.path.dirname(os.path.abspath(__file__)))
    peaks = {}
    for clients, fraction in ((100, 0.1), (1000, 0.1), (1000, 0.01)):
        out = subprocess.run([sys.executable, "-c", code, str(clients), str(fraction)],
                             capture_output=True, text=True, check=True)
        peaks[f"{clients} clients, C={fraction} ({round(clients * fraction)} per round)"] = \
            json.loads(out.stdout.strip().splitlines()[-1])
    return peaks


def rounds_to(data, cfg, target, weights=None, max_rounds=40):
    workers, _ = make_virtual_workers(data.train_x, data.train_y, cfg)
    server = FederatedServer(workers, cfg, data.test_x, data.test_y, weights=weights)
    accuracy = []
    while server.round < max_rounds:
        accuracy.append(server.step()["test_accuracy"])
        if accuracy[-1] >= target:
            break
    return {"rounds_to_target": server.round if accuracy[-1] >= target else None,
            "accuracy": accuracy}


def warm_start(data, target, max_rounds):
    proxy, rest = split_proxy(len(data.train_y), 1000, seed=0)
    clients = type(data)(data.train_x[rest], data.train_y[rest], data.test_x, data.test_y)
    cfg = config(100, rounds=max_rounds, scheme="shards")
    cold = rounds_to(clients, cfg, target, max_rounds=max_rounds)
    weights, metrics = warm_start_weights(cfg.federation.model, data.train_x[proxy],
                                          data.train_y[proxy], cfg.plan, epochs=2, seed=0)
    warm = rounds_to(clients, cfg, target, weights=weights, max_rounds=max_rounds)
    return {"target": target, "cold": cold, "warm": warm,
            "proxy_images": 1000, "proxy_accuracy": metrics["proxy_accuracy"]}


def availability(data, rounds):
    devices = AvailabilityConfig(deadline=4.0, download_mbps=20.0, upload_ratio=0.2)
    out = {}
    for label, compression in (("float32", CompressionConfig()),
                               ("8-bit", CompressionConfig(method="quantize", bits=8))):
        cfg = config(100, rounds=rounds, availability=devices, compression=compression,
                     robustness=RobustnessConfig(on_too_few="skip"))
        workers, _ = make_virtual_workers(data.train_x, data.train_y, cfg)
        server = FederatedServer(workers, cfg, data.test_x, data.test_y)
        history = [server.step() for _ in range(rounds)]
        out[label] = {"per_round": [h["availability"] for h in history],
                      "accuracy": [h["test_accuracy"] for h in history]}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=["overhead", "memory", "warm", "availability"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warm-target", type=float, default=0.95)
    p.add_argument("--warm-max-rounds", type=int, default=40)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = load_mnist(DataConfig(), seed=0)
    out = {"command": "python benchmarks/scale.py " + " ".join(argv or [])}
    if "overhead" in args.parts:
        out["overhead"] = overhead(data, args.rounds)
        print(f"overhead per round over local training: {out['overhead']['overhead_share']:.2%}",
              flush=True)
    if "memory" in args.parts:
        out["memory"] = memory()
        print(f"peak memory: {out['memory']}", flush=True)
    if "warm" in args.parts:
        out["warm_start"] = warm_start(data, args.warm_target, args.warm_max_rounds)
        w = out["warm_start"]
        print(f"rounds to {args.warm_target:.0%}: cold {w['cold']['rounds_to_target']}, warm "
              f"{w['warm']['rounds_to_target']} (proxy accuracy {w['proxy_accuracy']:.3f})",
              flush=True)
    if "availability" in args.parts:
        out["availability"] = availability(data, args.rounds)
        for label, row in out["availability"].items():
            done = [r["completed"] for r in row["per_round"]]
            late = [r["stragglers"] for r in row["per_round"]]
            print(f"{label}: completed per round {done}, stragglers {late}", flush=True)
    write_results(args.json, out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
