"""Bob and Alice on real MNIST: a subset, two rounds, accuracy far above chance."""
from fedlearn.config import ExperimentConfig, FederationConfig
from fedlearn.data.partition import label_histograms
from fedlearn.server.federation import run_federation
from fedlearn.workers import make_virtual_workers


def test_bob_and_alice_learn_mnist(mnist_small):
    d = mnist_small
    cfg = ExperimentConfig(federation=FederationConfig(rounds=2, device="cpu"))
    workers, parts = make_virtual_workers(d.train_x, d.train_y, cfg)
    assert [w.name for w in workers] == ["bob", "alice"]
    assert label_histograms(d.train_y.numpy(), parts).sum(axis=1).tolist() == [2000, 2000]
    result = run_federation(workers, cfg, d.test_x, d.test_y)
    accs = [h["test_accuracy"] for h in result.history]
    assert accs[-1] > 0.85, accs  # chance is 0.10
    assert result.history[-1]["test_loss"] < result.history[0]["test_loss"]
