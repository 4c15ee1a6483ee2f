"""PySyft Datasite round time against in-process round time, in one run.

Full MNIST, Bob and Alice with an IID half each, FedAvg, one local epoch per
round, the same seed on both backends. Rounds are interleaved (in-process round
1, PySyft round 1, in-process round 2, ...) and the weights are compared after
every round: the two backends must stay identical.

    python benchmarks/pysyft_vs_inprocess.py --rounds 3 \\
        --json benchmarks/results/pysyft_vs_inprocess.json
    python benchmarks/pysyft_vs_inprocess.py --rounds 3 --port auto   # Datasites as HTTP servers
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

from common import interleave, write_results

from fedlearn.backends.pysyft import launch_syft_workers
from fedlearn.config import DataConfig, ExperimentConfig, FederationConfig
from fedlearn.data import load_mnist, to_uint8
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import make_virtual_workers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-size", type=int, default=None, help="default: all 60,000")
    p.add_argument("--port", default=None, help="'auto' runs each Datasite as an HTTP server")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    config = ExperimentConfig(data=DataConfig(train_size=args.train_size),
                              federation=FederationConfig(rounds=args.rounds, device="cpu"))
    data = load_mnist(config.data, seed=config.seed)
    virtual, parts = make_virtual_workers(data.train_x, data.train_y, config)
    t0 = time.perf_counter()
    sites, syft_workers = launch_syft_workers(
        to_uint8(data.train_x).numpy(), data.train_y.numpy(), parts, config.partition.workers,
        model=config.federation.model, max_calls=2 * args.rounds + 2, port=args.port)
    setup_seconds = time.perf_counter() - t0
    try:
        rows = interleave({"inprocess": FederatedServer(virtual, config, data.test_x, data.test_y),
                           "pysyft": FederatedServer(syft_workers, config, data.test_x,
                                                     data.test_y)}, args.rounds)
    finally:
        for site in sites:
            site.land()
    mean_in = statistics.mean(r["inprocess_seconds"] for r in rows)
    mean_sy = statistics.mean(r["pysyft_seconds"] for r in rows)
    result = {"command": "python benchmarks/pysyft_vs_inprocess.py " + " ".join(argv or []),
              "mode": "http" if args.port else "in-process Datasites", "rounds": rows,
              "setup_seconds": setup_seconds, "mean_inprocess_seconds": mean_in,
              "mean_pysyft_seconds": mean_sy, "ratio_of_means": mean_sy / mean_in,
              "final_accuracy": rows[-1]["pysyft_accuracy"],
              "max_abs_weight_diff": max(r["max_abs_weight_diff"] for r in rows),
              "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(f"\nsetup (launch, upload, register, request, approve) {setup_seconds:.1f}s\n"
          f"mean round: in-process {mean_in:.2f}s, PySyft {mean_sy:.2f}s, ratio "
          f"{result['ratio_of_means']:.3f}\nmax |weight diff| {result['max_abs_weight_diff']:.1e}"
          f", final accuracy {result['final_accuracy']:.4f}, peak memory of this process "
          f"{result['peak_memory_mb']:.0f} MB")
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
