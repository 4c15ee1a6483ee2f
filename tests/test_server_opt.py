"""Server optimizers on hand-computed examples; FedProx with mu = 0 is FedAvg."""
import pytest
import torch

from fedlearn.config import (
    ConfigError,
    ExperimentConfig,
    FederationConfig,
    ServerOptimizerConfig,
    TrainPlan,
)
from fedlearn.server.federation import run_federation
from fedlearn.server.optimizers import adam_step, fedavg_step, momentum_step
from fedlearn.workers import VirtualWorker


def test_fedavg_momentum_and_adam_by_hand():
    w, d = {"a": torch.tensor([1.0, 2.0])}, {"a": torch.tensor([0.5, -1.0])}
    assert torch.equal(fedavg_step(w, d)["a"], torch.tensor([1.5, 1.0]))
    new, v = momentum_step(w, d, None, lr=1.0, beta=0.9)
    assert torch.equal(v["a"], d["a"]) and torch.equal(new["a"], torch.tensor([1.5, 1.0]))
    new, v = momentum_step(new, d, v, lr=1.0, beta=0.9)  # v = 0.9 * d + d = 1.9 d
    assert torch.allclose(v["a"], torch.tensor([0.95, -1.9]))
    assert torch.allclose(new["a"], torch.tensor([2.45, -0.9]))
    new, m, v = adam_step(w, d, None, None, lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    # m = 0.1 d = [0.05, -0.1]; v = 0.01 d^2 = [0.0025, 0.01]; step = 0.1 m / (sqrt v + tau)
    expected = torch.tensor([1 + 0.1 * 0.05 / (0.05 + 1e-3), 2 - 0.1 * 0.1 / (0.1 + 1e-3)])
    assert torch.allclose(new["a"], expected)


def cfg(server=None, **fed):
    return ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.1),
                            server=ServerOptimizerConfig(**(server or {})),
                            federation=FederationConfig(**{"model": "mlp2nn", "rounds": 2,
                                                           "device": "cpu", **fed}))


def workers(synthetic):
    x, y = synthetic
    return [VirtualWorker("bob", x[:100], y[:100], model="mlp2nn"),
            VirtualWorker("alice", x[100:], y[100:], model="mlp2nn")]


def test_fedprox_with_mu_zero_is_fedavg_and_mu_pulls_towards_the_global_model(synthetic):
    x, y = synthetic
    plain = run_federation(workers(synthetic), cfg(), x, y)
    import dataclasses
    zero = dataclasses.replace(cfg(), plan=TrainPlan(batch_size=20, lr=0.1, prox_mu=0.0))
    assert all(torch.equal(run_federation(workers(synthetic), zero, x, y).weights[k],
                           plain.weights[k]) for k in plain.weights)
    from fedlearn.models import build_model
    w = build_model("mlp2nn", seed=0).state_dict()
    free = workers(synthetic)[0].fit(w, TrainPlan(batch_size=20, lr=0.1, epochs=3), seed=0)
    prox = workers(synthetic)[0].fit(w, TrainPlan(batch_size=20, lr=0.1, epochs=3, prox_mu=1.0),
                                     seed=0)
    norm = lambda d: sum(v.pow(2).sum() for v in d.values()).sqrt()  # noqa: E731
    assert norm(prox.delta) < norm(free.delta)


def test_server_lr_one_fedavg_equals_plain_and_adam_state_survives_resume(synthetic, tmp_path):
    x, y = synthetic
    plain = run_federation(workers(synthetic), cfg(), x, y)
    same = run_federation(workers(synthetic), cfg({"optimizer": "sgd", "lr": 1.0}), x, y)
    assert all(torch.equal(plain.weights[k], same.weights[k]) for k in plain.weights)
    adam = cfg({"optimizer": "adam", "lr": 0.01}, rounds=3)
    straight = run_federation(workers(synthetic), adam, x, y)
    import dataclasses
    two = dataclasses.replace(adam, federation=dataclasses.replace(adam.federation, rounds=2))
    run_federation(workers(synthetic), two, x, y, checkpoint=tmp_path / "c.pt")
    resumed = run_federation(workers(synthetic), adam, x, y, checkpoint=tmp_path / "c.pt",
                             resume=True)
    assert all(torch.equal(resumed.weights[k], straight.weights[k]) for k in straight.weights)
    assert straight.history[-1]["test_accuracy"] > 0.3


@pytest.mark.parametrize("kwargs,path", [({"optimizer": "sgdx"}, "server.optimizer"),
                                         ({"lr": 0}, "server.lr"),
                                         ({"momentum": 1.0}, "server.momentum")])
def test_bad_server_optimizer_settings(kwargs, path):
    with pytest.raises(ConfigError) as err:
        ServerOptimizerConfig(**kwargs)
    assert err.value.path == path
    with pytest.raises(ConfigError) as err:
        ExperimentConfig(federation=FederationConfig(algorithm="model_hopping"),
                         server=ServerOptimizerConfig(optimizer="adam"))
    assert err.value.path == "server.optimizer"
    with pytest.raises(ConfigError) as err:
        TrainPlan(prox_mu=-0.1)
    assert err.value.path == "plan.prox_mu"


def test_each_server_optimizer_has_its_own_default_step_size():
    """FedAdam moves each coordinate by about lr whatever the update's size: 1.0 would be huge."""
    from fedlearn.server.optimizers import server_step

    weights, delta = {"w": torch.zeros(2)}, {"w": torch.tensor([0.1, -0.1])}
    # first Adam step by hand: m = 0.1 d, sqrt(v) = 0.1 |d|, step = lr * 0.01 / (0.01 + 1e-3)
    adam_first = 0.01 / (0.01 + 1e-3)
    for kind, expected in (("sgd", 0.1), ("momentum", 0.1), ("adam", 0.01 * adam_first)):
        new, _ = server_step(weights, delta, {}, ServerOptimizerConfig(optimizer=kind))
        assert new["w"][0].item() == pytest.approx(expected, rel=1e-5), kind
    explicit = ServerOptimizerConfig(optimizer="adam", lr=0.1)
    assert server_step(weights, delta, {}, explicit)[0]["w"][0].item() == \
        pytest.approx(0.1 * adam_first, rel=1e-5)


def test_each_algorithm_is_a_strategy_that_owns_its_state():
    import dataclasses

    from fedlearn.server.strategies import FedAvg, ModelHopping, make_strategy

    weights = {"w": torch.zeros(3)}
    adam = ExperimentConfig(server=ServerOptimizerConfig(optimizer="adam"),
                            federation=FederationConfig(device="cpu"))
    fedavg = make_strategy(adam, weights)
    assert isinstance(fedavg, FedAvg) and fedavg.state_dict() == {"server_state": {}}
    new = fedavg.optimizer.step(weights, {"w": torch.tensor([0.1, -0.1, 0.0])})
    assert set(fedavg.state_dict()["server_state"]) == {"m", "v"} and new["w"][0] > 0
    hopping = make_strategy(
        ExperimentConfig(federation=FederationConfig(algorithm="model_hopping")), weights)
    assert isinstance(hopping, ModelHopping)
    assert torch.equal(hopping.state_dict()["velocity"]["w"], torch.zeros(3))
    broken = dataclasses.replace(adam.federation)
    object.__setattr__(broken, "algorithm", "fedprox")  # past validation, as a bug would be
    with pytest.raises(ValueError, match="algorithm: unknown 'fedprox'"):
        make_strategy(dataclasses.replace(adam, federation=broken), weights)


def test_unknown_names_raise_instead_of_falling_through(synthetic):
    """Past the config's validation (a bug, or a hand-made object), no silent default."""
    import dataclasses

    from fedlearn.config import PartitionConfig, RobustnessConfig
    from fedlearn.data import partition
    from fedlearn.server.optimizers import server_step
    from fedlearn.server.rounds import aggregate
    from fedlearn.updates import Update

    def bent(obj, **changes):
        obj = dataclasses.replace(obj)
        for key, value in changes.items():
            object.__setattr__(obj, key, value)
        return obj

    weights = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="server optimizer: unknown 'nesterov'"):
        server_step(weights, weights, {}, bent(ServerOptimizerConfig(), optimizer="nesterov"))
    with pytest.raises(ValueError, match="aggregator: unknown 'mode'"):
        aggregate([Update("a", weights, 1)], bent(RobustnessConfig(), aggregator="mode"))
    _, y = synthetic
    with pytest.raises(ValueError, match="partition: unknown 'random'"):
        partition(y.numpy(), bent(PartitionConfig(), scheme="random"), 0)
