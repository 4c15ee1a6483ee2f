"""Many clients in one process: memory follows the clients sampled, not the total."""
import json
import subprocess
import sys

import pytest

# thousands of clients and memory probes in subprocesses: the slow tier
pytestmark = pytest.mark.slow

SCRIPT = """
import json, resource, sys, torch
from fedlearn.config import (ExecutionConfig, ExperimentConfig, FederationConfig,
                             PartitionConfig, TrainPlan)
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import make_virtual_workers
clients, fraction, executor = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
g = torch.Generator().manual_seed(0)
x, y = torch.randn(20_000, 1, 28, 28, generator=g), torch.randint(0, 10, (20_000,), generator=g)
cfg = ExperimentConfig(partition=PartitionConfig(workers=tuple(f"c{i}" for i in range(clients))),
                       plan=TrainPlan(batch_size=10),
                       federation=FederationConfig(model="mlp2nn", rounds=2, fraction=fraction,
                                                   device="cpu"),
                       execution=ExecutionConfig(executor=executor))
workers, _ = make_virtual_workers(x, y, cfg)
server = FederatedServer(workers, cfg, x[:500], y[:500])


def peak_kb():
    # VmHWM: this process's own peak. ru_maxrss would also count the parent's memory at the
    # fork (Linux keeps it across exec), i.e. the test runner's
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


base = peak_kb()
server.step(); server.step()
print(json.dumps({"peak_mb": peak_kb() / 1024, "round_growth_mb": (peak_kb() - base) / 1024,
                  "selected": len(server.history[-1]["selected"]),
                  "clients": server.history[-1]["compute"]["clients"]}))
"""


def peak(clients: int, fraction: float | None = None, executor="sequential") -> dict:
    fraction = 10 / clients if fraction is None else fraction
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(clients), str(fraction), executor],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_memory_does_not_grow_with_total_clients():
    small, large = peak(100), peak(1000)
    assert small["selected"] == large["selected"] == 10  # the same 10 clients' work per round
    # same data split 10x finer. A model copy per client would add 900 x 0.8 MB = 720 MB;
    # what is per client here is a few tensor headers and a Python object
    assert large["peak_mb"] - small["peak_mb"] < 100, (small, large)
    assert large["peak_mb"] < 2048


def test_a_thousand_clients_trained_together_stay_within_2_gb():
    """C = 0.1 of 1,000: the round's 100 clients stacked (their weights, gradients and
    momentum), and only theirs: still under 2 GB."""
    together = peak(1000, fraction=0.1, executor="together")
    assert together["selected"] == 100 and together["clients"] == "together"
    assert together["peak_mb"] < 2048, together
