import dataclasses

import pytest
import torch

from fedlearn.aggregation import fedavg
from fedlearn.config import ExperimentConfig, FederationConfig, PartitionConfig, TrainPlan
from fedlearn.models import build_model
from fedlearn.server.checkpoint import CheckpointError, load_checkpoint
from fedlearn.server.federation import (
    FederatedServer,
    derive_seed,
    initial_weights,
    run_federation,
    select_workers,
)
from fedlearn.training import make_optimizer, train_epochs
from fedlearn.workers import VirtualWorker, make_virtual_workers


def config(**fed):
    fed = {"model": "mlp2nn", "rounds": 2, "device": "cpu", **fed}
    return ExperimentConfig(plan=TrainPlan(batch_size=32, lr=0.05),
                            federation=FederationConfig(**fed), seed=3)


def test_fedavg_round_equals_hand_made_weighted_average(synthetic):
    x, y = synthetic
    cfg = config(rounds=1)
    bob = VirtualWorker("bob", x[:150], y[:150], model="mlp2nn")
    alice = VirtualWorker("alice", x[150:], y[150:], model="mlp2nn")
    result = run_federation([bob, alice], cfg, x, y)
    start = initial_weights(cfg, torch.device("cpu"))
    finals = []
    for i, (xs, ys) in enumerate([(x[:150], y[:150]), (x[150:], y[150:])]):
        m = build_model("mlp2nn")
        m.load_state_dict(start)
        train_epochs(m, make_optimizer(m, cfg.plan), xs, ys, cfg.plan, seed=derive_seed(3, 1, i))
        finals.append(m.state_dict())
    expected = fedavg(finals, [150, 50])  # averaging weights == start + averaged deltas
    for k in expected:
        assert torch.allclose(result.weights[k], expected[k], atol=1e-6)
    record = result.history[0]
    assert record["examples"] == {"bob": 150, "alice": 50}
    assert record["bytes_down"]["bob"] == record["bytes_up"]["alice"] == 199_210 * 4
    assert 0 <= record["test_accuracy"] <= 1 and record["train_seconds"] > 0


def test_model_hopping_with_one_worker_is_sgd_with_momentum(synthetic):
    x, y = synthetic
    cfg = dataclasses.replace(config(algorithm="model_hopping", rounds=1),
                              plan=TrainPlan(batch_size=32, lr=0.05, momentum=0.9))
    result = run_federation([VirtualWorker("bob", x, y, model="mlp2nn")], cfg, x, y)
    m = build_model("mlp2nn")
    m.load_state_dict(initial_weights(cfg, torch.device("cpu")))
    train_epochs(m, make_optimizer(m, cfg.plan), x, y, cfg.plan, seed=derive_seed(3, 1, 0))
    for k, v in m.state_dict().items():
        assert torch.allclose(result.weights[k], v, atol=1e-5)
    assert result.history[0]["examples"] == {"bob": 200}


def test_model_hopping_alternates_between_workers(synthetic):
    x, y = synthetic
    calls = []

    class Spy(VirtualWorker):
        def fit(self, weights, plan, *, seed, batches=None):
            calls.append((self.name, batches))
            return super().fit(weights, plan, seed=seed, batches=batches)

    workers = [Spy("bob", x[:64], y[:64], model="mlp2nn"),
               Spy("alice", x[64:160], y[64:160], model="mlp2nn")]
    run_federation(workers, config(algorithm="model_hopping", rounds=1), x, y)
    assert calls == [("bob", (0, 1)), ("alice", (0, 1)), ("bob", (1, 2)), ("alice", (1, 2)),
                     ("alice", (2, 3))]


def test_client_sampling_is_seeded():
    a = [select_workers(100, 0.1, seed=1, round_=r) for r in range(1, 4)]
    assert a == [select_workers(100, 0.1, seed=1, round_=r) for r in range(1, 4)]
    assert all(len(s) == 10 and len(set(s)) == 10 for s in a)
    assert a[0] != a[1] and a[0] != select_workers(100, 0.1, seed=2, round_=1)
    assert select_workers(3, 0.01, seed=0, round_=1).__len__() == 1


@pytest.mark.parametrize("algorithm", ["fedavg", "model_hopping"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(synthetic, tmp_path, algorithm):
    x, y = synthetic
    cfg = dataclasses.replace(config(rounds=3, algorithm=algorithm, fraction=0.67),
                              plan=TrainPlan(batch_size=32, lr=0.05, momentum=0.5),
                              partition=PartitionConfig(workers=("a", "b", "c")))
    workers, _ = make_virtual_workers(x, y, cfg)
    full = run_federation(workers, cfg, x, y, checkpoint=tmp_path / "full.pt")
    short = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=2))
    run_federation(workers, short, x, y, checkpoint=tmp_path / "part.pt")
    assert load_checkpoint(tmp_path / "part.pt")["round"] == 2
    resumed = run_federation(workers, cfg, x, y, checkpoint=tmp_path / "part.pt", resume=True)
    assert [h["round"] for h in resumed.history] == [1, 2, 3]
    assert [h["selected"] for h in resumed.history] == [h["selected"] for h in full.history]
    for k in full.weights:
        assert torch.equal(full.weights[k], resumed.weights[k])


def test_resume_refuses_another_config(synthetic, tmp_path):
    x, y = synthetic
    workers = [VirtualWorker("bob", x, y, model="mlp2nn")]
    run_federation(workers, config(rounds=1), x, y, checkpoint=tmp_path / "c.pt")
    before = (tmp_path / "c.pt").read_bytes()
    other = dataclasses.replace(config(rounds=2), seed=4)
    with pytest.raises(CheckpointError, match=r"another configuration \(seed: 3 -> 4\)"):
        run_federation(workers, other, x, y, checkpoint=tmp_path / "c.pt", resume=True)
    other = config(rounds=2)
    other = dataclasses.replace(other, plan=dataclasses.replace(other.plan, lr=0.5))
    with pytest.raises(CheckpointError, match=r"another configuration \(plan.lr: 0.05 -> 0.5\)"):
        run_federation(workers, other, x, y, checkpoint=tmp_path / "c.pt", resume=True)
    two = [*workers, VirtualWorker("alice", x, y, model="mlp2nn")]
    with pytest.raises(CheckpointError, match=r"workers: \['bob'\] -> \['bob', 'alice'\]"):
        run_federation(two, config(rounds=2), x, y, checkpoint=tmp_path / "c.pt", resume=True)
    assert (tmp_path / "c.pt").read_bytes() == before


def test_stops_at_target_accuracy(synthetic):
    x, y = synthetic
    result = run_federation([VirtualWorker("bob", x, y, model="mlp2nn")],
                            config(rounds=20, target_accuracy=0.5), x, y)
    assert result.reached_target and len(result.history) < 20
    assert result.history[-1]["test_accuracy"] >= 0.5
    assert all(h["test_accuracy"] < 0.5 for h in result.history[:-1])


def test_server_state_holds_no_single_worker_update(synthetic):
    x, y = synthetic
    server = FederatedServer([VirtualWorker("bob", x[:100], y[:100], model="mlp2nn"),
                              VirtualWorker("alice", x[100:], y[100:], model="mlp2nn")],
                             config(), x, y)
    server.step()
    state = server.state_dict()
    assert set(state) == {"fingerprint", "workers", "round", "weights", "strategy", "history",
                          "config", "retired", "worker_states"}
    # FedAvg with plain workers: no tensor beside the weights (no model-sized zeros)
    assert state["strategy"] == {"server_state": {}} and state["worker_states"] == {}
    assert "delta" not in state["history"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(bad)


@pytest.mark.parametrize("changes,argument", [
    ({"secure_aggregation": True}, "secure_aggregation"),
    ({"compression": "8bit"}, "compression.method"),
    ({"algorithm": "model_hopping"}, "federation.algorithm"),
    ({"warm_start_size": 100}, "warm_start.size"),
    ({"holdout": 0.2}, "partition.holdout"),
    ({"growth_per_round": 0.1}, "partition.growth_per_round"),
    ({"precision": "bf16"}, "plan.precision"),
])
def test_options_a_remote_worker_cannot_honour_are_refused(synthetic, changes, argument):
    """The PySyft backend's approved code does local SGD (or DP-SGD): anything else is refused."""
    from fedlearn.config import CompressionConfig, ConfigError, DPSGDConfig, WarmStartConfig
    from fedlearn.workers import Worker

    class RemoteWorker(Worker):
        remote = True
        num_examples = 10

        def __init__(self, name):
            self.name = name

    fed = FederationConfig(algorithm=changes.get("algorithm", "fedavg"), device="cpu")
    part = PartitionConfig(holdout=changes.get("holdout", 0.0),
                           growth_per_round=changes.get("growth_per_round", 0.0))
    cfg = ExperimentConfig(federation=fed, partition=part,
                           plan=TrainPlan(precision=changes.get("precision", "fp32")),
                           warm_start=WarmStartConfig(size=changes.get("warm_start_size", 0)),
                           secure_aggregation=changes.get("secure_aggregation", False),
                           dp_sgd=DPSGDConfig(noise_multiplier=1.0) if "dp_sgd" in changes
                           else None,
                           compression=CompressionConfig(method="quantize", bits=8)
                           if "compression" in changes else CompressionConfig())
    x, y = synthetic
    with pytest.raises(ConfigError, match="PySyft backend|not be disjoint") as err:
        FederatedServer([RemoteWorker("bob"), RemoteWorker("alice")], cfg, x, y)
    assert err.value.path == argument


def test_a_round_returns_a_typed_record_and_the_history_keeps_its_json(synthetic):
    from fedlearn.server.record import RoundRecord

    x, y = synthetic
    server = FederatedServer([VirtualWorker("bob", x[:100], y[:100], model="mlp2nn"),
                              VirtualWorker("alice", x[100:], y[100:], model="mlp2nn")],
                             config(), x, y)
    record = server.step()
    assert isinstance(record, RoundRecord)
    assert record.round == 1 and record.examples == {"bob": 100, "alice": 100}
    assert record.failed == {} and 0 <= record.test_accuracy <= 1
    assert server.history[-1] == record.to_dict()  # plain data, as history.json holds it
    assert "epsilon" not in record.to_dict()  # optional parts appear only when the round had them
    assert RoundRecord.from_dict(record.to_dict()) == record
    assert record["test_accuracy"] == record.test_accuracy


def test_how_clients_run_is_an_executor_that_cannot_change_the_result(synthetic):
    """The seam for training clients together or on a cluster: any executor must give the
    replies sequential gives. Here one that runs the calls in reverse order."""
    from fedlearn.execution import ClientExecutor, Sequential, checked_fit
    from fedlearn.server.strategies import make_strategy

    class Reversed(ClientExecutor):
        name = "reversed"

        def fit(self, jobs, weights, plan, robust, round_=None):
            replies = [checked_fit(w, weights, plan, robust, seed=s) for w, s in jobs[::-1]]
            return replies[::-1]

    x, y = synthetic
    cfg = config(rounds=2, fraction=0.75)
    workers = [VirtualWorker(n, x[i * 50:(i + 1) * 50], y[i * 50:(i + 1) * 50], model="mlp2nn")
               for i, n in enumerate(("a", "b", "c", "d"))]
    plain = run_federation(workers, cfg, x, y)
    other = run_federation(workers, cfg, x, y, executor=Reversed())
    assert all(torch.equal(plain.weights[k], other.weights[k]) for k in plain.weights)
    assert plain.history[0]["compute"]["clients"] == Sequential.name == "sequential"
    assert other.history[0]["compute"]["clients"] == "reversed"
    with pytest.raises(ValueError, match="model hopping"):
        make_strategy(config(algorithm="model_hopping"), plain.weights, executor=Reversed())
