"""Personalization after training: per-client before/after, global model untouched."""
import pytest
import torch

from fedlearn.config import ExperimentConfig, FederationConfig, PartitionConfig, TrainPlan
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import make_virtual_workers
from fedlearn.workers.personalization import personalize_clients, summarize


def test_personalized_clients_report_and_leave_the_pool(synthetic):
    x, y = synthetic
    cfg = ExperimentConfig(partition=PartitionConfig(workers=("a", "b", "c", "d"), holdout=0.2),
                           plan=TrainPlan(batch_size=10, lr=0.1),
                           federation=FederationConfig(model="mlp2nn", rounds=2, device="cpu"))
    workers, _ = make_virtual_workers(x, y, cfg)
    server = FederatedServer(workers, cfg, x, y)
    server.step()
    before = {k: v.clone() for k, v in server.weights.items()}
    rows = personalize_clients(server, ["a", "b"], cfg.plan, steps=5)
    assert all(torch.equal(server.weights[k], before[k]) for k in before)
    assert [r["worker"] for r in rows] == ["a", "b"] and all(r["held_out"] == 10 for r in rows)
    assert summarize(rows)["clients"] == 2
    assert server.retired == ["a", "b"]
    assert set(server.step().selected) == {"c", "d"}
    with pytest.raises(ValueError, match="unknown workers"):
        personalize_clients(server, ["zed"], cfg.plan)
