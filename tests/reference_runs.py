"""Fourteen small runs whose final weights must not change when code moves but the maths does
not. ``python tests/reference_runs.py`` prints each run's fingerprint (the sum, the L2 norm and
the sum of squares-weighted positions of every weight), as stored in
``tests/test_reference_weights.py``; the values there were computed before the #25 redesign
(commit 72bcbd1) and compared with a relative tolerance, since CPUs differ in the last bits."""
from __future__ import annotations

import torch

from fedlearn.config import (
    AvailabilityConfig,
    CompressionConfig,
    DPConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    RobustnessConfig,
    ServerOptimizerConfig,
    TrainPlan,
)
from fedlearn.server import run_federation
from fedlearn.workers import VirtualWorker

NAMES = ("w0", "w1", "w2", "w3", "w4")

RUNS: dict[str, dict] = {
    "fedavg": {},
    "model_hopping": {"federation": {"algorithm": "model_hopping"}},
    "server_momentum": {"server": ServerOptimizerConfig(optimizer="momentum")},
    "server_adam": {"server": ServerOptimizerConfig(optimizer="adam")},
    "fedprox": {"plan": {"prox_mu": 0.1}},
    "two_epochs_no_momentum": {"plan": {"epochs": 2, "momentum": 0.0}},
    "fraction": {"federation": {"fraction": 0.6}},
    "quantize": {"compression": CompressionConfig(method="quantize", bits=4)},
    "topk": {"compression": CompressionConfig(method="topk", topk_fraction=0.05)},
    "dp_fedavg": {"dp": DPConfig(noise_multiplier=0.3, clip_norm=0.5)},
    "secure_aggregation": {"secure_aggregation": True},
    "median": {"robustness": RobustnessConfig(aggregator="median")},
    "krum": {"robustness": RobustnessConfig(aggregator="krum", krum_byzantine=1)},
    "availability": {"availability": AvailabilityConfig(mean_availability=0.8),
                     "federation": {"fraction": 0.6}},
}


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 10
    x = torch.randn(300, 1, 28, 28, generator=g) * 0.3
    x[torch.arange(300), 0, y, y] += 3.0
    return x, y


def config(name: str) -> ExperimentConfig:
    over = dict(RUNS[name])
    plan = TrainPlan(batch_size=20, lr=0.05, **over.pop("plan", {}))
    federation = FederationConfig(model="mlp2nn", rounds=3, device="cpu",
                                  **over.pop("federation", {}))
    return ExperimentConfig(plan=plan, federation=federation,
                            partition=PartitionConfig(workers=NAMES), seed=7, **over)


def run(name: str) -> dict[str, torch.Tensor]:
    x, y = data()
    workers = [VirtualWorker(n, x[i * 60:(i + 1) * 60], y[i * 60:(i + 1) * 60], model="mlp2nn")
               for i, n in enumerate(NAMES)]
    return run_federation(workers, config(name), x[:50], y[:50]).weights


def fingerprint(weights: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    flat = torch.cat([v.double().flatten() for v in weights.values()])
    position = torch.linspace(0, 1, len(flat), dtype=torch.float64)
    return (float(flat.sum()), float(flat.norm()), float((flat * position).sum()))


if __name__ == "__main__":
    for name in RUNS:
        print(f"    {name!r}: {fingerprint(run(name))!r},")
