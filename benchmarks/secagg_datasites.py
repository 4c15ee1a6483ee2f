"""Secure aggregation between Datasites: round time and the bytes that really crossed HTTP.

Owners (3 and 10), each a Datasite served over HTTP on loopback, holding a small shard of
uint8 digits; the data scientist trains McMahan et al.'s CNN (1.66 M parameters) one round at
a time, plaintext (the plain approved function) and secure (the secure-aggregation function:
keys, shares, the masked fit, unmasking — four calls per owner), interleaved, the median of
``--repeats`` rounds each. Bytes are counted at the scientist's HTTP client (every request and
response body, ``requests.Session.send``), beside fedlearn's own estimate of the upload (the
round record's ``bytes_up``). Goals (issue #26): a secure round at most 2x the plaintext
round's time and bytes (Bonawitz et al. 2017 report 1.73x expansion). Beside them: 8-bit
updates quantized in the plain approved code, and secure aggregation in a 16-bit ring; each
with the Datasites asked one after the other (``sequential``) and all at once
(``concurrent``, what ``auto`` picks for Datasites on other hosts).

    FEDLEARN_DATA=... python benchmarks/secagg_datasites.py --owners 3 10 \\
        --json benchmarks/results/secagg_datasites.json
"""
from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_name, write_results  # noqa: E402

from fedlearn.config import (  # noqa: E402
    CompressionConfig,
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    SecAggConfig,
    TrainPlan,
)
from fedlearn.data import MNIST_NORMALISATION, normalise  # noqa: E402


class WireCounter:
    """Bytes of every HTTP request and response body the scientist's process sends/receives."""

    def __init__(self):
        import requests

        self.sent = self.received = 0
        original = requests.Session.send
        counter = self

        def send(session, request, **kwargs):
            body = request.body or b""
            counter.sent += len(body if isinstance(body, bytes) else body.encode())
            response = original(session, request, **kwargs)
            counter.received += len(response.content or b"")
            return response

        requests.Session.send = send

    def take(self) -> tuple[int, int]:
        out = (self.sent, self.received)
        self.sent = self.received = 0
        return out


def owners_up(n: int, shard: int, model: str, max_calls: int, port):
    """n served Datasites, each with a plain and a secure request approved for one scientist."""
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.backends.pysyft.scientist import SyftWorker

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n * shard, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n * shard)
    parts = [np.arange(i * shard, (i + 1) * shard) for i in range(n)]
    names = [f"owner{i:02d}" for i in range(n)]
    scientist = ("scientist@fedlearn.example", secrets.token_urlsafe(18))
    sites, plain = launch_syft_workers(images, labels, parts, names, model=model,
                                       max_calls=max_calls, port=port, scientist=scientist)
    secure = []
    for site, name in zip(sites, names):
        worker = SyftWorker.connect(name, site.url or site.handle, email=scientist[0],
                                    password=scientist[1])
        site.approve(worker.submit(model, max_calls=max_calls, secure=True),
                     warn=lambda message: None)
        secure.append(worker)
    test = normalise(torch.as_tensor(images[:50]), MNIST_NORMALISATION), \
        torch.as_tensor(labels[:50])
    return sites, plain, secure, names, test


# what each kind of round adds to the plain configuration: 8-bit codes quantized in the
# plain approved code; secure aggregation at the default 32-bit ring, and at a 16-bit ring
# (half the wire; n*change and the count n must then lie in +-128, refused beyond, never clipped)
KINDS = {"plaintext": {}, "plaintext 8-bit": {"compression": CompressionConfig(
             method="quantize", bits=8)},
         "secure": {"secure_aggregation": True},
         "secure 16-bit ring": {"secure_aggregation": True,
                                "secagg": SecAggConfig(ring_bits=16, value_range=128.0)}}


def one_round(workers, names, model: str, kind: str, executor: str, seed: int,
              wire: WireCounter, test):
    from fedlearn.server.federation import run_federation

    config = ExperimentConfig(plan=TrainPlan(batch_size=10), seed=seed,
                              partition=PartitionConfig(workers=tuple(names)),
                              federation=FederationConfig(model=model, rounds=1, device="cpu"),
                              execution=ExecutionConfig(executor=executor), **KINDS[kind])
    for worker in workers:  # the run asks a worker to quantize if its config says so
        worker.quantize_bits = None
    wire.take()
    start = time.perf_counter()
    history = run_federation(workers, config, *test).history
    seconds = time.perf_counter() - start
    sent, received = wire.take()
    assert history[0]["compute"]["clients"] == executor
    return {"seconds": seconds, "http_sent": sent, "http_received": received,
            "estimated_up": sum(history[0]["bytes_up"].values()),
            "secure_aggregation": history[0].get("secure_aggregation")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--owners", type=int, nargs="+", default=[3, 10])
    p.add_argument("--shard", type=int, default=100, help="images per owner")
    p.add_argument("--repeats", type=int, default=3, help="rounds of each kind (median)")
    p.add_argument("--model", default="mcmahan_cnn")
    p.add_argument("--in-process", action="store_true",
                   help="Datasites in this process, not over HTTP (no bytes counted)")
    p.add_argument("--executors", nargs="+", default=["sequential", "concurrent"],
                   help="how the Datasites are asked: one after the other, or all at once")
    p.add_argument("--quick", action="store_true", help="3 owners, mlp2nn, 1 repeat")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.owners, args.model, args.repeats, args.shard = [3], "mlp2nn", 1, 40
    if args.in_process:  # an in-process Datasite runs in this process: one after the other
        args.executors = ["sequential"]
    wire = WireCounter()
    out = {"command": "python benchmarks/secagg_datasites.py " + " ".join(argv or []),
           "cpu": f"{cpu_name()}, {os.cpu_count()} cores", "model": args.model,
           "shard": args.shard, "runs": {}}
    for n in args.owners:
        sites, plain, secure, names, test = owners_up(n, args.shard, args.model,
                                                max_calls=16 * args.repeats + 16,
                                                port=None if args.in_process else "auto")
        grid = [(kind, ex) for kind in KINDS for ex in args.executors]
        try:
            rows: dict[str, list] = {f"{kind}, {ex}": [] for kind, ex in grid}
            for kind, workers in (("plaintext", plain), ("secure", secure)):  # warm-up: a
                # first call fetches what the client caches (the API, the code's signature)
                one_round(workers, names, args.model, kind, args.executors[0], 0, wire, test)
            for r in range(args.repeats):  # interleaved: every cell of the grid each repeat
                for kind, ex in grid:
                    workers = secure if kind.startswith("secure") else plain
                    rows[f"{kind}, {ex}"].append(one_round(workers, names, args.model, kind,
                                                           ex, r + 1, wire, test))
        finally:
            for site in sites:
                site.land()
        summary: dict = {}
        for key, runs in rows.items():
            summary[key] = {k: statistics.median(run[k] for run in runs)
                            for k in ("seconds", "http_sent", "http_received", "estimated_up")}
            summary[key]["wire"] = summary[key]["http_sent"] + summary[key]["http_received"]
        for kind, ex in grid:  # ratios to plaintext asked the same way, in this one run
            row, base = summary[f"{kind}, {ex}"], summary[f"plaintext, {ex}"]
            row["time_ratio"] = row["seconds"] / base["seconds"]
            row["wire_ratio"] = row["wire"] / base["wire"] if base["wire"] else None
            if ex != args.executors[0]:  # and to the same kind asked the first way
                row["time_vs_" + args.executors[0]] = \
                    row["seconds"] / summary[f"{kind}, {args.executors[0]}"]["seconds"]
        best = f"secure, {args.executors[-1]}"
        summary["time_ratio"] = summary[best]["time_ratio"]
        summary["wire_ratio"] = summary[best]["wire_ratio"]
        summary["runs"] = rows
        out["runs"][str(n)] = summary
        for kind, ex in grid:
            row = summary[f"{kind}, {ex}"]
            versus = row.get("time_vs_" + args.executors[0])
            print(f"{n} owners, {kind:19s} {ex:10s}: round {row['seconds']:5.1f} s "
                  f"({row['time_ratio']:.2f}x plaintext"
                  + (f", {versus:.2f}x {args.executors[0]}" if versus else "")
                  + f"), HTTP {row['wire'] / 1e6:.2f} MB ({row['wire_ratio'] or 0:.2f}x), "
                  f"fedlearn's estimate of the upload {row['estimated_up'] / 1e6:.2f} MB",
                  flush=True)
    write_results(args.json, out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
