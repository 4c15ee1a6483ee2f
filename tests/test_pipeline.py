"""clip -> compress -> mask -> aggregate -> noise, combined with FedAvg and with each other."""

import pytest
import torch

from fedlearn.config import (
    CompressionConfig,
    ConfigError,
    DPConfig,
    ExperimentConfig,
    FederationConfig,
    RobustnessConfig,
    TrainPlan,
)
from fedlearn.server.checkpoint import load_checkpoint
from fedlearn.server.federation import run_federation
from fedlearn.workers import VirtualWorker
from fedlearn.workers.faults import FaultInjectingWorker

NAMES = ["a", "b", "c"]


def workers(synthetic, sizes=(50, 70, 80)):
    x, y = synthetic
    out, start = [], 0
    for n, size in zip(NAMES, sizes):
        out.append(VirtualWorker(n, x[start:start + size], y[start:start + size], model="mlp2nn"))
        start += size
    return out


def cfg(rounds=1, **extra):
    return ExperimentConfig(plan=TrainPlan(batch_size=25, lr=0.05),
                            federation=FederationConfig(model="mlp2nn", rounds=rounds,
                                                        device="cpu"),
                            seed=2, **extra)


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_secure_aggregation_equals_plain_fedavg(synthetic):
    x, y = synthetic
    plain = run_federation(workers(synthetic), cfg(rounds=2), x, y)
    secure = run_federation(workers(synthetic), cfg(rounds=2, secure_aggregation=True), x, y)
    assert max_diff(plain.weights, secure.weights) <= 1e-6
    assert secure.history[0]["secure_aggregation"] == {"masked_updates": 3, "dropped": [],
                                                       "threshold": 2, "ring_bits": 32}
    n = sum(p.numel() for p in plain.weights.values())
    assert secure.history[0]["bytes_up"]["a"] == 4 * n + 4  # [w*delta, w] in a 32-bit ring


def test_secure_aggregation_recovers_a_dropout(synthetic):
    x, y = synthetic
    ws = workers(synthetic)
    ws[1] = FaultInjectingWorker(ws[1], "disappear")
    secure = run_federation(ws, cfg(secure_aggregation=True), x, y)
    ws = workers(synthetic)
    ws[1] = FaultInjectingWorker(ws[1], "disappear")
    plain = run_federation(ws, cfg(), x, y)
    assert secure.history[0]["secure_aggregation"]["dropped"] == ["b"]
    assert max_diff(plain.weights, secure.weights) <= 1e-6


def test_secure_aggregation_needs_two_workers(synthetic):
    x, y = synthetic
    with pytest.raises(ConfigError, match="at least 2 workers") as info:
        run_federation(workers(synthetic)[:1], cfg(secure_aggregation=True), x, y)
    assert info.value.path == "secure_aggregation"


def test_dp_fedavg_records_a_growing_epsilon_and_resumes_exactly(synthetic, tmp_path):
    x, y = synthetic
    dp = DPConfig(clip_norm=0.5, noise_multiplier=1.0, delta=1e-5)
    full = run_federation(workers(synthetic), cfg(rounds=3, dp=dp), x, y,
                          checkpoint=tmp_path / "f.pt")
    eps = [h["epsilon"] for h in full.history]
    assert 0 < eps[0] < eps[1] < eps[2]
    run_federation(workers(synthetic), cfg(rounds=2, dp=dp), x, y, checkpoint=tmp_path / "p.pt")
    assert load_checkpoint(tmp_path / "p.pt")["strategy"]["server_side"]["privacy"]["history"]
    resumed = run_federation(workers(synthetic), cfg(rounds=3, dp=dp), x, y,
                             checkpoint=tmp_path / "p.pt", resume=True)
    assert [h["epsilon"] for h in resumed.history] == eps
    assert all(torch.equal(full.weights[k], resumed.weights[k]) for k in full.weights)


def test_clipping_bounds_every_contribution(synthetic):
    x, y = synthetic
    start = run_federation(workers(synthetic), cfg(rounds=1, dp=DPConfig(clip_norm=0.01,
                                                                          noise_multiplier=0.0)),
                           x, y, weights=None)
    from fedlearn.server.federation import initial_weights
    w0 = initial_weights(cfg(), torch.device("cpu"))
    moved = sum((start.weights[k] - w0[k]).double().pow(2).sum() for k in w0).sqrt()
    assert moved <= 0.01 * 3 / 3 + 1e-6  # mean of three updates, each clipped to 0.01


def test_all_four_compose(synthetic):
    x, y = synthetic
    config = cfg(rounds=2, dp=DPConfig(clip_norm=1.0, noise_multiplier=0.1),
                 compression=CompressionConfig(method="quantize", bits=8), secure_aggregation=True)
    result = run_federation(workers(synthetic), config, x, y)
    assert all(torch.isfinite(v).all() for v in result.weights.values())
    assert result.history[-1]["epsilon"] > 0 and result.history[-1]["secure_aggregation"]


@pytest.mark.parametrize("compression,ratio", [(CompressionConfig(method="quantize", bits=8), 3.9),
                                               (CompressionConfig(method="topk",
                                                                  topk_fraction=0.01), 30)])
def test_compression_cuts_upload_bytes(synthetic, compression, ratio):
    x, y = synthetic
    plain = run_federation(workers(synthetic), cfg(), x, y).history[0]
    small = run_federation(workers(synthetic), cfg(compression=compression), x, y).history[0]
    assert plain["bytes_up"]["a"] / small["bytes_up"]["a"] >= ratio
    assert small["bytes_down"] == plain["bytes_down"]  # the download stays full precision


def test_topk_residuals_survive_resume(synthetic, tmp_path):
    x, y = synthetic
    c = CompressionConfig(method="topk", topk_fraction=0.05)
    full = run_federation(workers(synthetic), cfg(rounds=3, compression=c), x, y)
    run_federation(workers(synthetic), cfg(rounds=2, compression=c), x, y,
                   checkpoint=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    # each residual is its client's own state (on its device), not the server's
    residuals = {n: s["client_side"]["residual"] for n, s in state["worker_states"].items()}
    assert set(residuals) == set(NAMES) and all(residuals.values())
    assert "residual" not in str(list(state["strategy"]))
    resumed = run_federation(workers(synthetic), cfg(rounds=3, compression=c), x, y,
                             checkpoint=tmp_path / "c.pt", resume=True)
    assert all(torch.equal(full.weights[k], resumed.weights[k]) for k in full.weights)


def test_server_state_never_holds_an_individual_update(synthetic, tmp_path):
    x, y = synthetic
    seen = []

    class Spy(VirtualWorker):
        def fit(self, *args, **kwargs):
            update = super().fit(*args, **kwargs)
            seen.append(update.delta)
            return update

    x_, y_ = synthetic
    ws = [Spy(n, x_[i * 60:(i + 1) * 60], y_[i * 60:(i + 1) * 60], model="mlp2nn")
          for i, n in enumerate(NAMES)]
    run_federation(ws, cfg(rounds=2, secure_aggregation=True), x, y, checkpoint=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    def tensors(part):
        if isinstance(part, torch.Tensor):
            return [part]
        if isinstance(part, dict):
            return [t for value in part.values() for t in tensors(value)]
        return []

    server_tensors = tensors(state["weights"]) + tensors(state["strategy"])
    for delta in seen:
        for k, v in delta.items():
            assert not any(t.shape == v.shape and torch.allclose(t, v) for t in server_tensors)
    assert "delta" not in state["history"] and len(state["history"]) < 5000


def test_remote_workers_refuse_what_they_cannot_do(synthetic):
    x, y = synthetic

    class Remote(VirtualWorker):
        remote = True

    ws = [Remote(n, x[:50], y[:50], model="mlp2nn") for n in NAMES]
    for extra, why in (({"secure_aggregation": True}, "inside each Datasite"),
                       ({"compression": CompressionConfig(method="quantize")},
                        "inside each Datasite"),  # this worker cannot quantize where it trains
                       ({"compression": CompressionConfig(method="topk")},
                        "inside each Datasite"),  # nor send top-k there
                       ({"compression": CompressionConfig(method="topk", error_feedback=False)},
                        "always keeps the owner's residual")):
        with pytest.raises(ConfigError, match=why):
            run_federation(ws, cfg(**extra), x, y)


def test_extras_need_plain_fedavg():
    with pytest.raises(ConfigError, match="fedavg"):
        ExperimentConfig(robustness=RobustnessConfig(aggregator="median"),
                         secure_aggregation=True)
