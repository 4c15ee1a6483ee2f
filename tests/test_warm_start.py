"""Warm start on a proxy set the server holds, disjoint from every client's data."""
import pytest
import torch

from fedlearn.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    FederationConfig,
    TrainPlan,
    WarmStartConfig,
)
from fedlearn.experiment import run_experiment
from fedlearn.server.warm_start import split_proxy, warm_start_weights


def test_proxy_split_is_disjoint_complete_and_seeded():
    proxy, rest = split_proxy(100, 10, seed=4)
    assert len(proxy) == 10 and len(rest) == 90
    assert sorted(torch.cat([proxy, rest]).tolist()) == list(range(100))
    assert torch.equal(split_proxy(100, 10, seed=4)[0], proxy)
    for bad in (0, 100):
        with pytest.raises(ConfigError, match="warm_start.size"):
            split_proxy(100, bad, seed=0)


def test_warm_start_trains_the_initial_model(synthetic):
    x, y = synthetic
    weights, metrics = warm_start_weights("mlp2nn", x, y, TrainPlan(batch_size=20, lr=0.1),
                                          epochs=3, seed=0)
    assert metrics["proxy_accuracy"] > 0.5 and set(weights) >= {"fc1.weight", "fc3.bias"}


def test_a_warm_started_run_begins_ahead(mnist_dir, tmp_path):
    base = dict(data=DataConfig(data_dir=mnist_dir, train_size=3000, test_size=500),
                plan=TrainPlan(batch_size=32))
    cold = run_experiment(ExperimentConfig(federation=FederationConfig(
        model="mlp2nn", rounds=1, device="cpu"), **base), tmp_path / "cold")
    warm = run_experiment(ExperimentConfig(federation=FederationConfig(
        model="mlp2nn", rounds=1, device="cpu"), warm_start=WarmStartConfig(size=500, epochs=2),
        **base), tmp_path / "warm")
    assert sum(warm.history[0]["examples"].values()) == 2500  # the proxy left the clients
    assert warm.history[0]["test_accuracy"] > cold.history[0]["test_accuracy"]
