"""Secure aggregation's four stages through the federation, with clients dropping at each one."""
import pytest
import torch

from fedlearn.config import (
    ConfigError,
    ExperimentConfig,
    FederationConfig,
    RobustnessConfig,
    SecAggConfig,
    TrainPlan,
)
from fedlearn.secagg_portable import secagg_scale
from fedlearn.server.federation import run_federation
from fedlearn.updates.secagg import SecAggLedger, SecAggRefused
from fedlearn.workers import VirtualWorker
from fedlearn.workers.client_side import ClientSideWorker, with_client_sides
from fedlearn.workers.faults import FaultInjectingWorker


def workers(synthetic, n=3):
    x, y = synthetic
    size = len(x) // n
    return [VirtualWorker(f"w{i}", x[i * size:(i + 1) * size], y[i * size:(i + 1) * size],
                          model="mlp2nn") for i in range(n)]


def cfg(rounds=1, **extra):
    return ExperimentConfig(plan=TrainPlan(batch_size=10, lr=0.05),
                            federation=FederationConfig(model="mlp2nn", rounds=rounds,
                                                        device="cpu"), seed=4, **extra)


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


class FailsAt(ClientSideWorker):
    """A client whose side fails one stage of secure aggregation (as if it went offline)."""

    def __init__(self, inner, config, stage):
        super().__init__(inner, config)
        self.stage = stage

    def secagg_keys(self, context):
        if self.stage == "keys":
            raise ConnectionError("offline before advertising keys")
        return super().secagg_keys(context)

    def secagg_share(self, context, roster, threshold):
        if self.stage == "share":
            raise ConnectionError("offline before sharing keys")
        return super().secagg_share(context, roster, threshold)

    def fit(self, weights, plan, *, seed, batches=None):
        update = super().fit(weights, plan, seed=seed, batches=batches)
        if self.stage == "masked":
            raise ConnectionError("its masked input never arrived")
        return update

    def secagg_reveal(self, *args):
        if self.stage == "unmask":
            raise ConnectionError("offline before unmasking")
        return super().secagg_reveal(*args)


@pytest.mark.parametrize("n,bits,value_range", [(3, 32, 32768.0), (10, 32, 32768.0),
                                                (3, 64, 32768.0), (3, 16, 128.0),
                                                (10, 16, 128.0)])
def test_the_secure_sum_is_example_weighted_fedavg(synthetic, n, bits, value_range):
    x, y = synthetic
    plain = run_federation(workers(synthetic, n), cfg(), x, y)
    secure = run_federation(workers(synthetic, n), cfg(
        secure_aggregation=True, secagg=SecAggConfig(ring_bits=bits, value_range=value_range)),
        x, y)
    # the stated bound: each client rounds w*delta by at most 1/(2*scale); the sum is divided
    # by the total weight (plus float32's rounding of the result)
    scale = secagg_scale(value_range, n, bits)
    bound = n / (2 * scale) / (len(x) // n * n) + 1e-7
    assert max_diff(plain.weights, secure.weights) <= bound
    record = secure.history[0]["secure_aggregation"]
    assert record == {"masked_updates": n, "dropped": [], "threshold": n // 2 + 1,
                      "ring_bits": bits}
    size = sum(p.numel() for p in plain.weights.values()) + 1  # [w*delta, w]
    assert secure.history[0]["bytes_up"]["w0"] == size * bits // 8


@pytest.mark.parametrize("stage", ["keys", "share", "masked", "unmask"])
def test_a_client_dropping_at_any_stage_leaves_the_exact_sum_of_the_others(synthetic, stage):
    x, y = synthetic
    config = cfg(secure_aggregation=True)
    ws = with_client_sides(workers(synthetic, 4), config)
    ws[2] = FailsAt(ws[2].inner, config, stage)
    secure = run_federation(ws, config, x, y)
    record = secure.history[0]["secure_aggregation"]
    plain_workers = workers(synthetic, 4)
    if stage == "unmask":  # its input counts; only its shares are missing (3 of 4 suffice)
        assert record["no_shares_from"] == ["w2"] and record["dropped"] == []
    else:  # the plain FedAvg of the others, each trained as it was (same seeds)
        plain_workers[2] = FaultInjectingWorker(plain_workers[2], "disappear")
        assert record["dropped"] == ["w2"] and record["masked_updates"] == 3
    plain = run_federation(plain_workers, cfg(), x, y)
    assert max_diff(plain.weights, secure.weights) <= 1e-5


def test_too_few_clients_left_ends_the_round_without_an_aggregate(synthetic):
    x, y = synthetic
    config = cfg(secure_aggregation=True, secagg=SecAggConfig(threshold=3),
                 robustness=RobustnessConfig(on_too_few="skip"))
    ws = with_client_sides(workers(synthetic, 3), config)
    ws[0] = FailsAt(ws[0].inner, config, "masked")
    result = run_federation(ws, config, x, y)
    record = result.history[0]
    assert record["skipped"] and "fewer than the threshold 3" in \
        record["secure_aggregation"]["failed"]


def test_out_of_range_is_refused_not_clipped(synthetic):
    x, y = synthetic
    config = cfg(secure_aggregation=True, secagg=SecAggConfig(value_range=1e-3),
                 robustness=RobustnessConfig(on_too_few="skip"))
    result = run_federation(workers(synthetic), config, x, y)
    record = result.history[0]
    assert record["skipped"]
    assert all("range" in why for why in record["failed"].values()), record["failed"]


def test_the_threshold_must_be_a_majority_and_is_only_for_secure_aggregation(synthetic):
    x, y = synthetic
    with pytest.raises(ConfigError, match="more than half") as info:
        run_federation(workers(synthetic, 4), cfg(secure_aggregation=True,
                                                  secagg=SecAggConfig(threshold=2)), x, y)
    assert info.value.path == "secagg.threshold"
    with pytest.raises(ConfigError, match="secure_aggregation is off") as info:
        cfg(secagg=SecAggConfig(ring_bits=64))
    assert info.value.path == "secagg.ring_bits"
    with pytest.raises(ConfigError, match="allowed: 16, 32, 64"):
        SecAggConfig(ring_bits=8)


def test_a_client_masks_one_input_per_round_and_reveals_one_share_kind_per_peer():
    ledger = SecAggLedger()
    ledger.record_mask("run|1", ["a", "b", "c"], weights_digest="w1")
    with pytest.raises(SecAggRefused, match="already masked"):
        ledger.record_mask("run|1", ["a", "b"])
    with pytest.raises(SecAggRefused, match="would reveal the difference"):
        ledger.record_mask("run|2", ["a", "b"], weights_digest="w1")  # same weights, fewer
    with pytest.raises(SecAggRefused, match="both as survivors and as dropped"):
        ledger.record_reveal("run|1", "a", ["a", "b", "c"], ["c"])
    ledger.record_reveal("run|1", "a", ["a", "b"], ["c"])
    with pytest.raises(SecAggRefused, match="key share was revealed"):
        ledger.record_reveal("run|1", "a", ["a", "b", "c"], [])
    with pytest.raises(SecAggRefused, match="exactly the round's clients"):
        ledger.record_reveal("run|1", "a", ["a"], ["b"])
    with pytest.raises(SecAggRefused, match="nothing to unmask"):
        ledger.record_reveal("run|9", "a", ["a", "b"], [])
    again = SecAggLedger(ledger.state())  # plain data: it survives a checkpoint
    with pytest.raises(SecAggRefused, match="already masked"):
        again.record_mask("run|1", ["a", "b", "c"])


def test_no_masked_upload_equals_its_clients_update(synthetic):
    x, y = synthetic
    config = cfg(secure_aggregation=True)
    seen = []

    class Spy(ClientSideWorker):
        def upload(self, update):
            out = super().upload(update)
            seen.append((update, out))
            return out

    ws = [Spy(w, config) for w in workers(synthetic)]
    run_federation(ws, config, x, y)
    assert len(seen) == 3
    for update, out in seen:
        masked = out.payload["masked"]
        plain = torch.cat([v.flatten() for v in update.delta.values()])
        assert out.delta == {} and out.encoding == "masked"
        # almost every coordinate of the upload is a uniform ring element, not the update
        scale = 2.0 ** 14
        quantized = torch.round(plain.double() * update.num_examples * scale).to(torch.int64)
        same = (masked[:-1].to(torch.int64) == quantized).float().mean().item()
        assert same < 0.01
