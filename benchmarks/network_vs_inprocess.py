"""Round time over the network against in-process round time, in one run.

Bob and Alice each run ``fedlearn datasite serve`` as a separate process on a
host of their own (a network namespace with its own address when run as root,
else a loopback port) with an IID half of full MNIST. This script is the data
scientist: it logs in over HTTP, submits the code, approves it as each owner
would, and runs FedAvg rounds interleaved with the same rounds on in-process
workers (same seed). Weights are compared after every round.

    sudo -E python benchmarks/network_vs_inprocess.py --rounds 3 \\
        --json benchmarks/results/network_vs_inprocess.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import interleave, write_results

from fedlearn.backends.pysyft.process import ServerProcess, free_port
from fedlearn.config import DataConfig, ExperimentConfig, FederationConfig
from fedlearn.data import load_mnist
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import make_virtual_workers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from local_hosts import local_hosts  # noqa: E402 (a test tool, not the library)

ADMIN, SCIENTIST, EMAIL = "benchmark-owner-pw", "benchmark-scientist-pw", "ds@bench.example"


def scientist_workers(servers, model: str, max_calls: int):
    from fedlearn.backends.pysyft import Datasite, SyftWorker
    from fedlearn.backends.pysyft.remote import wait_for_approval

    workers = [SyftWorker.connect(s.host.name, s.url, email=EMAIL, password=SCIENTIST)
               for s in servers]
    for worker, server in zip(workers, servers):
        request_id = worker.submit(model, max_calls=max_calls)
        owner = Datasite.connect(server.url, email="info@openmined.org", password=ADMIN)
        owner.approve(request_id)  # as the owner, after reading owner.review(request_id)
    wait_for_approval(workers, timeout=60)
    return workers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-size", type=int, default=None, help="default: all 60,000")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    config = ExperimentConfig(data=DataConfig(train_size=args.train_size),
                              federation=FederationConfig(rounds=args.rounds, device="cpu"))
    data = load_mnist(config.data, seed=config.seed)
    virtual, _ = make_virtual_workers(data.train_x, data.train_y, config)
    size = [] if args.train_size is None else ["--train-size", str(args.train_size)]
    as_root = ["--allow-root"] if os.geteuid() == 0 else []  # namespaced hosts run as root
    env = {**os.environ, "FEDLEARN_ADMIN_PASSWORD": ADMIN, "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST,
           "TMPDIR": tempfile.mkdtemp(prefix="fedlearn-bench-"), "PYTHONWARNINGS": "ignore"}
    with local_hosts(config.partition.workers) as hosts:
        t0 = time.perf_counter()
        servers = [ServerProcess(h, 8080 if h.isolated else free_port(),
                                 ["--shard", f"{i}/{len(hosts)}", "--seed", str(config.seed),
                                  *size, "--scientist", EMAIL, *as_root], env)
                   for i, h in enumerate(hosts)]
        try:
            for s in servers:
                s.wait_ready(timeout=600)
            remote = scientist_workers(servers, config.federation.model, 2 * args.rounds + 5)
            setup_seconds = time.perf_counter() - t0
            rows = interleave({"inprocess": FederatedServer(virtual, config, data.test_x,
                                                            data.test_y),
                               "network": FederatedServer(remote, config, data.test_x,
                                                          data.test_y)}, args.rounds)
        finally:
            for s in servers:
                s.stop()
    mean_in = statistics.mean(r["inprocess_seconds"] for r in rows)
    mean_net = statistics.mean(r["network_seconds"] for r in rows)
    result = {"command": "python benchmarks/network_vs_inprocess.py " + " ".join(argv or []),
              "hosts": "network namespaces" if hosts[0].isolated else "loopback",
              "rounds": rows, "setup_seconds": setup_seconds,
              "mean_inprocess_seconds": mean_in, "mean_network_seconds": mean_net,
              "ratio_of_means": mean_net / mean_in,
              "final_accuracy": {"network": rows[-1]["network_accuracy"],
                                 "in-process": rows[-1]["inprocess_accuracy"]},
              "max_abs_weight_diff": max(r["max_abs_weight_diff"] for r in rows)}
    print(f"\nhosts: {result['hosts']}; setup (start servers, upload, log in, approve) "
          f"{setup_seconds:.1f}s\nmean round: in-process {mean_in:.2f}s, network {mean_net:.2f}s,"
          f" ratio {result['ratio_of_means']:.3f}; max |weight diff| "
          f"{result['max_abs_weight_diff']:.1e}")
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
