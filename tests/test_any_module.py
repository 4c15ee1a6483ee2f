"""Any nn.Module trains right: integer buffers keep their dtype and are aggregated by the stated
rule (the example-weighted mean of the changes, rounded); dropout draws from the (seed, round,
worker) seed, so the same seed gives the same weights."""
from __future__ import annotations

import pytest
import torch

from fedlearn.aggregation import apply_delta, coordinate_median, fedavg, trimmed_mean
from fedlearn.config import (
    CompressionConfig,
    DPConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    ServerOptimizerConfig,
    TrainPlan,
)
from fedlearn.server import run_federation
from fedlearn.server.optimizers import adam_step, momentum_step
from fedlearn.updates import add_change, cast_like, state_change
from fedlearn.updates.privacy import add_gaussian_noise, clip_update, dp_average
from fedlearn.workers import VirtualWorker


def test_counter_change_is_exact_and_keeps_its_dtype():
    old = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5), "flag": torch.tensor([True, False])}
    new = {"w": torch.tensor([1.5, 1.0]), "n": torch.tensor(12), "flag": torch.tensor([True, True])}
    change = state_change(new, old)
    assert change["n"].dtype == torch.int64 and int(change["n"]) == 7
    assert change["flag"].tolist() == [False, True]  # a flip
    back = add_change(old, change, scale=0.5)  # a server learning rate: floats only
    assert back["n"].dtype == torch.int64 and int(back["n"]) == 12
    assert back["flag"].tolist() == [True, True]
    assert torch.allclose(back["w"], torch.tensor([1.25, 1.5]))


def test_fedavg_of_counters_is_the_weighted_mean_rounded():
    # by hand: (3*10 + 1*20) / 4 = 12.5 -> 12 (round half to even); (3*10 + 2*20) / 5 = 14
    deltas = [{"n": torch.tensor(10), "w": torch.tensor([1.0])},
              {"n": torch.tensor(20), "w": torch.tensor([3.0])}]
    out = fedavg(deltas, [3, 1])
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 12
    assert int(fedavg(deltas, [3, 2])["n"]) == 14
    assert int(fedavg(deltas, [1, 2])["n"]) == 17  # 16.67 rounds up, never truncates
    flips = [{"f": torch.tensor([True, False])}, {"f": torch.tensor([False, False])},
             {"f": torch.tensor([True, True])}]
    assert fedavg(flips, [1, 1, 1])["f"].tolist() == [True, False]  # the majority flipped
    assert int(coordinate_median(deltas)["n"]) == 15
    assert int(trimmed_mean(deltas, 0.0)["n"]) == 15
    assert cast_like(torch.tensor(2.5, dtype=torch.float64), torch.tensor(0)).dtype == torch.int64


def test_server_optimizers_and_dp_leave_counters_exact():
    w = {"w": torch.tensor([0.0]), "n": torch.tensor(4)}
    d = {"w": torch.tensor([1.0]), "n": torch.tensor(3)}
    new, velocity = momentum_step(w, d, None, lr=0.5, beta=0.9)
    assert int(new["n"]) == 7 and new["n"].dtype == torch.int64 and set(velocity) == {"w"}
    new, m, v = adam_step(w, d, None, None, lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    assert int(new["n"]) == 7 and set(m) == set(v) == {"w"}
    clipped, norm = clip_update({"w": torch.tensor([3.0, 4.0]), "n": torch.tensor(100)}, 1.0)
    assert norm == 5.0 and int(clipped["n"]) == 100  # counters are outside the norm
    noised = add_gaussian_noise(clipped, 1.0, torch.Generator().manual_seed(0))
    assert int(noised["n"]) == 100 and noised["n"].dtype == torch.int64
    assert int(dp_average([clipped, clipped], 2)["n"]) == 100


def _bn_run(**over):
    y = torch.randint(0, 10, (240,), generator=torch.Generator().manual_seed(1))
    x = torch.rand(240, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    config = ExperimentConfig(
        seed=3, plan=TrainPlan(epochs=1, batch_size=20, lr=0.05),
        federation=FederationConfig(model="bn_cnn", rounds=2, fraction=1.0),
        partition=PartitionConfig(workers=("bob", "alice")), **over)
    workers = [VirtualWorker(n, x[i * 120:(i + 1) * 120], y[i * 120:(i + 1) * 120],
                             model="bn_cnn") for i, n in enumerate(("bob", "alice"))]
    return run_federation(workers, config, x[:40], y[:40])


@pytest.mark.parametrize("over", [
    {}, {"server": ServerOptimizerConfig(optimizer="adam")},
    {"compression": CompressionConfig(method="topk", topk_fraction=0.1)},
    {"dp": DPConfig(noise_multiplier=0.5, clip_norm=1.0)},
    {"secure_aggregation": True}], ids=["fedavg", "adam", "topk", "dp", "secagg"])
def test_batchnorm_counter_stays_an_exact_integer_through_rounds(over):
    result = _bn_run(**over)
    counters = [k for k in result.weights if k.endswith("num_batches_tracked")]
    assert counters, "the model has BatchNorm counters"
    for k in counters:
        # each of the 2 workers takes 6 steps a round: the mean change is 6, twice
        assert result.weights[k].dtype == torch.int64 and int(result.weights[k]) == 12, k


def test_same_seed_same_weights_with_dropout():
    torch.manual_seed(123)
    first = _bn_run().weights
    torch.manual_seed(456)  # the caller's global random state must not matter
    second = _bn_run().weights
    for k in first:
        assert torch.equal(first[k], second[k]), k
    state = torch.random.get_rng_state()
    _bn_run()
    assert torch.equal(state, torch.random.get_rng_state())  # and is left as it was


def test_apply_delta_keeps_dtypes():
    w = {"n": torch.tensor(1), "w": torch.tensor([1.0])}
    out = apply_delta(w, {"n": torch.tensor(2), "w": torch.tensor([1.0])}, 2.0)
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 3 and float(out["w"]) == 3.0
