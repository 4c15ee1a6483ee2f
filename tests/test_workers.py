import pytest
import torch

from fedlearn.config import ExperimentConfig, FederationConfig, PartitionConfig, TrainPlan
from fedlearn.errors import FedlearnError
from fedlearn.models import build_model
from fedlearn.workers import VirtualWorker, Worker, make_virtual_workers


def test_worker_offers_updates_not_samples(synthetic):
    x, y = synthetic
    bob = VirtualWorker("bob", x, y, model="mlp2nn")
    assert isinstance(bob, Worker)
    public = {k: getattr(bob, k) for k in dir(bob) if not k.startswith("_")}
    assert set(public) == {"name", "remote", "dp_sgd", "model", "num_examples", "fit",
                           "clip_where_trained", "compresses_where_trained", "masks_where_trained",
                           "waits_on_network", "shares_this_machine",
                           "fit_together",
                           "evaluate", "set_round", "state_dict", "load_state_dict",
                           "personalize",
                           "personal_weights"}  # weights the device keeps, never samples
    assert bob.personal_weights is None
    assert not any(isinstance(v, torch.Tensor) for v in public.values())
    weights = build_model("mlp2nn", seed=0).state_dict()
    update = bob.fit(weights, TrainPlan(batch_size=50), seed=0)
    assert update.worker == "bob" and update.num_examples == 200
    assert set(update.delta) == set(weights)
    assert all(update.delta[k].shape == weights[k].shape for k in weights)
    metrics = bob.evaluate(weights)
    assert set(metrics) == {"loss", "accuracy", "examples"}


def test_fit_does_not_touch_the_global_weights(synthetic):
    x, y = synthetic
    weights = build_model("mlp2nn", seed=0).state_dict()
    copy = {k: v.clone() for k, v in weights.items()}
    VirtualWorker("bob", x, y, model="mlp2nn").fit(weights, TrainPlan(), seed=0)
    assert all(torch.equal(weights[k], copy[k]) for k in weights)


def test_delta_equals_plain_local_training(synthetic):
    from fedlearn.training import make_optimizer, train_epochs

    x, y = synthetic
    plan = TrainPlan(epochs=2, batch_size=16, lr=0.05)
    start = build_model("mlp2nn", seed=1)
    weights = {k: v.clone() for k, v in start.state_dict().items()}
    update = VirtualWorker("bob", x, y, model="mlp2nn").fit(weights, plan, seed=9)
    train_epochs(start, make_optimizer(start, plan), x, y, plan, seed=9)
    for k, v in start.state_dict().items():
        assert torch.allclose(weights[k] + update.delta[k], v, atol=1e-6)


def test_make_virtual_workers_partitions(synthetic):
    x, y = synthetic
    cfg = ExperimentConfig(partition=PartitionConfig(workers=("bob", "alice", "carol")),
                           federation=FederationConfig(model="mlp2nn"))
    workers, parts = make_virtual_workers(x, y, cfg)
    assert [w.name for w in workers] == ["bob", "alice", "carol"]
    assert sum(w.num_examples for w in workers) == 200 == sum(len(p) for p in parts)


def test_local_data_grows_between_rounds(synthetic):
    x, y = synthetic
    bob = VirtualWorker("bob", x, y, model="mlp2nn", growth=(0.25, 0.25), seed=1)
    sizes = []
    for r in (1, 2, 3, 4, 5):
        bob.set_round(r)
        sizes.append(bob.num_examples)
    assert sizes == [50, 100, 150, 200, 200]
    weights = build_model("mlp2nn", seed=0).state_dict()
    bob.set_round(1)
    assert bob.fit(weights, TrainPlan(batch_size=10), seed=0).num_examples == 50


def test_personalization_never_touches_the_global_model(synthetic):
    x, y = synthetic
    bob = VirtualWorker("bob", x, y, model="mlp2nn", holdout=0.25, seed=0)
    assert bob.num_examples == 150  # 50 held out for measuring personalization
    weights = build_model("mlp2nn", seed=0).state_dict()
    before = {k: v.clone() for k, v in weights.items()}
    row = bob.personalize(weights, TrainPlan(batch_size=10, lr=0.1), steps=15, seed=0)
    assert all(torch.equal(weights[k], before[k]) for k in weights)
    assert row["held_out"] == 50 and row["steps"] == 15 and row["after"] > row["before"]
    assert not all(torch.equal(bob.personal_weights[k], weights[k]) for k in weights)
    no_holdout = VirtualWorker("alice", x, y, model="mlp2nn")
    import pytest
    with pytest.raises(FedlearnError, match="held-out share"):
        no_holdout.personalize(weights, TrainPlan(), steps=1, seed=0)


def test_the_contract_is_declared_once_with_defaults(synthetic):
    """A worker that only trains and evaluates gets the defaults; a wrapper forwards all."""
    import pytest

    from fedlearn.config import ConfigError, ExperimentConfig, FederationConfig
    from fedlearn.errors import FedlearnError
    from fedlearn.server import FederatedServer
    from fedlearn.workers.base import DelegatingWorker

    x, y = synthetic
    bob = VirtualWorker("bob", x[:100], y[:100], model="mlp2nn", holdout=0.2,
                        growth=(0.5, 0.5))
    minimal = Worker()
    minimal.name = "minimal"
    assert minimal.remote is False and minimal.state_dict() is None
    minimal.set_round(3)  # no new data: nothing happens
    with pytest.raises(FedlearnError, match="cannot personalize"):
        minimal.personalize({}, None, steps=1, seed=0)

    wrapped = DelegatingWorker(bob)
    assert (wrapped.name, wrapped.remote, wrapped.num_examples) == ("bob", False, 40)
    wrapped.set_round(2)  # forwarded: bob's local data grows
    assert bob.num_examples == wrapped.num_examples == 80

    class Duck:  # quacks like a worker, but does not declare the contract
        name, num_examples = "duck", 10

    with pytest.raises(ConfigError, match="Duck is not a fedlearn.workers.Worker") as err:
        FederatedServer([bob, Duck()], ExperimentConfig(federation=FederationConfig(
            model="mlp2nn", device="cpu")), x, y)
    assert err.value.path == "workers"


def test_a_pickled_worker_carries_its_own_shard_and_state_only():
    """Sent to a Ray actor, a worker made by make_virtual_workers (a view into one shared
    tensor) must carry its shard, not the whole dataset; a DP-SGD worker its data and ledger."""
    import pickle

    from fedlearn.config import DPSGDConfig
    from fedlearn.workers.dp_sgd import DPSGDWorker
    from fedlearn.workers.faults import FaultInjectingWorker

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 1, 28, 28, generator=g), torch.randint(0, 10, (1000,), generator=g)
    workers, _ = make_virtual_workers(
        x, y, ExperimentConfig(partition=PartitionConfig(workers=tuple("abcdefghij"))))
    shard = 100 * 28 * 28 * 4
    assert shard < len(pickle.dumps(workers[0])) < 1.2 * shard
    copy = pickle.loads(pickle.dumps(workers[0]))
    plan = TrainPlan(epochs=1, batch_size=20, lr=0.05)
    weights = {k: v.detach().clone() for k, v in build_model("tutorial_cnn").state_dict().items()}
    first, again = workers[0].fit(weights, plan, seed=1), copy.fit(weights, plan, seed=1)
    assert all(torch.equal(first.delta[k], again.delta[k]) for k in first.delta)

    dp = DPSGDWorker("d", x[:50], y[:50], model="tutorial_cnn", dp=DPSGDConfig())
    dp.fit(weights, TrainPlan(epochs=1, batch_size=10, lr=0.05, momentum=0.0), seed=1)
    moved = pickle.loads(pickle.dumps(dp))
    assert moved.state_dict() == dp.state_dict() and moved.epsilon() == dp.epsilon() > 0

    faulty = FaultInjectingWorker(workers[1], "raise", calls={2})
    faulty.fit(weights, plan, seed=1)
    restored = FaultInjectingWorker(workers[1], "raise", calls={2})
    restored.load_state_dict(faulty.state_dict())  # its second call still raises
    with pytest.raises(RuntimeError, match="injected"):
        restored.fit(weights, plan, seed=1)


def test_make_virtual_workers_takes_everything_from_the_config(synthetic):
    x, y = synthetic
    cfg = ExperimentConfig(partition=PartitionConfig(workers=("a", "b"), holdout=0.25,
                                                     initial_share=0.5, growth_per_round=0.25),
                           federation=FederationConfig(model="mlp2nn"), seed=5)
    workers, parts = make_virtual_workers(x, y, cfg)
    assert all(w.model == "mlp2nn" for w in workers)
    kept = [len(p) - int(0.25 * len(p)) for p in parts]  # a quarter held out
    assert [w.num_examples for w in workers] == [max(1, int(0.5 * k)) for k in kept]
    for w in workers:
        w.set_round(3)  # 0.5 + 2 x 0.25: all of it
    assert [w.num_examples for w in workers] == kept
    again, again_parts = make_virtual_workers(x, y, cfg)  # the config's seed: the same split
    assert all((p == q).all() for p, q in zip(parts, again_parts))
    with pytest.raises(FedlearnError, match="whole ExperimentConfig"):
        make_virtual_workers(x, y, cfg.partition)
    # data every round would fail on: refused here, not retried as worker failures
    with pytest.raises(FedlearnError, match="labels go from 0 to 10, but mlp2nn has 10 outputs"):
        make_virtual_workers(x, torch.where(y == 9, 10, y), cfg)
    with pytest.raises(FedlearnError, match="mlp2nn cannot take inputs of shape"):
        make_virtual_workers(x[:, :, :8, :8], y, cfg)


def test_a_model_said_twice_differently_is_refused_before_round_1(synthetic):
    from fedlearn.config import ConfigError
    from fedlearn.server import FederatedServer

    x, y = synthetic
    workers = [VirtualWorker("bob", x, y, model="tutorial_cnn")]
    cfg = ExperimentConfig(partition=PartitionConfig(workers=("bob",)),
                           federation=FederationConfig(model="mlp2nn", device="cpu"))
    with pytest.raises(ConfigError, match="federation.model.*train another model"):
        FederatedServer(workers, cfg, x, y)
