"""Top-k with error feedback from Datasites: the owner's residual stays on the Datasite.

The approved top-k function (:mod:`fedlearn.backends.pysyft.sparse_training_code`) runs
:func:`fedlearn.topk_portable.topk_with_feedback` — the very function in-process clients run —
on the residual the Datasite's server keeps for it (:mod:`fedlearn.backends.pysyft.
residual_keeper`). So a Datasite's rounds are bit for bit an in-process client's, its stored
residual is the in-process client's residual, the scientist receives only indices and values,
and the bytes that cross HTTP shrink with them.
"""
import pytest
import torch
from test_pysyft_quantized import ResponseBytes, digits_for

from fedlearn.config import (
    CompressionConfig,
    ConfigError,
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    TrainPlan,
)
from fedlearn.server.federation import FederatedServer

pytestmark = [pytest.mark.pysyft, pytest.mark.slow]
TOPK = CompressionConfig(method="topk", topk_fraction=0.05)


def config(compression=TOPK, rounds=3) -> ExperimentConfig:
    # bn_cnn: BatchNorm's counter travels exactly beside the top-k entries
    return ExperimentConfig(plan=TrainPlan(batch_size=32, lr=0.05), seed=3,
                            federation=FederationConfig(model="bn_cnn", rounds=rounds,
                                                        device="cpu"),
                            compression=compression,
                            execution=ExecutionConfig(executor="sequential"))


@pytest.fixture(scope="module")
def digits():
    return digits_for(config())


def trained(workers, cfg, x, y) -> FederatedServer:
    server = FederatedServer(workers, cfg, x[:100], y[:100])
    with server:
        for _ in range(cfg.federation.rounds):
            server.step()
    return server


def datasites(digits, cfg, port=None, reviews=None):
    from fedlearn.backends.pysyft import launch_syft_workers

    images, labels, _, _, parts = digits
    topk = cfg.compression.topk_fraction if cfg.compression.method == "topk" else None
    return launch_syft_workers(images, labels, parts, cfg.partition.workers, model="bn_cnn",
                               max_calls=8, port=port, topk=topk,
                               on_review=None if reviews is None else reviews.append)


def test_a_datasite_sends_top_k_exactly_as_an_in_process_client_and_keeps_its_residual(digits):
    """...and the scientist gets indices and values only, never the residual."""
    import dataclasses

    from fedlearn.backends.pysyft import call_guard, residual_keeper
    from fedlearn.backends.pysyft.scientist import InputRefusedError
    from fedlearn.models import build_model
    from fedlearn.workers import make_virtual_workers

    _, _, x, y, _ = digits
    expected = trained(make_virtual_workers(x, y, config())[0], config(), x, y)
    reviews: list = []
    sites, workers = datasites(digits, config(), reviews=reviews)
    try:
        got = trained(workers, config(), x, y)
        for review in reviews:  # the owners read what they approve
            assert review.problems == [] and "sending top-k (0.05" in review.matches
        for k, v in expected.weights.items():
            assert torch.equal(got.weights[k], v), k
        assert got.weights["bn1.num_batches_tracked"].dtype == torch.int64
        assert [h["bytes_up"] for h in got.history] == [h["bytes_up"] for h in expected.history]
        # each owner's residual is on its own Datasite and equals the in-process one
        for site, client in zip(sites, expected.workers):
            state = call_guard.state_for(site.handle.python_server)
            # this test's approval is the Datasite's latest (same-named Datasites of earlier
            # tests share the state directory)
            approved = state._db.execute("SELECT code_id, scientist FROM approvals ORDER BY "
                                         "approved_at DESC LIMIT 1").fetchone()
            kept_for = state._db.execute("SELECT code_id, scientist FROM residuals WHERE "
                                         "code_id = ?", (approved[0],)).fetchall()
            assert kept_for == [approved]  # this approval's, for this scientist
            # durable: in the owner's SQLite state (reopened after a restart: the unit tests)
            kept = residual_keeper.decode(state.residual(*approved))
            mine = client.state_dict()["client_side"]["residual"]
            assert sorted(kept) == sorted(mine) and all(torch.equal(kept[k], mine[k])
                                                        for k in mine)
            assert sum(v.abs().sum() for v in kept.values()) > 0
        # what the scientist gets: indices and values, never the residual
        bob, weights = workers[0], build_model("bn_cnn", seed=0).state_dict()
        plan = dataclasses.asdict(TrainPlan(batch_size=32))
        out = bob._call(weights, "fit", plan, 1)
        assert sorted(out) == ["loss", "num_examples", "proof", "sparse"]
        assert bob._residual.data is None  # the asset is private: no read permission
        with pytest.raises(InputRefusedError, match="does not also quantize"):
            bob._call(weights, "fit", {**plan, "quantize_bits": 8, "wire_seed": 1}, 1)
        # code that sends top-k never runs a round configured otherwise
        for other in (CompressionConfig(), CompressionConfig(method="topk", topk_fraction=0.1)):
            with pytest.raises(ConfigError, match="approved code sends top-k 0.05"):
                FederatedServer(workers, config(other), x, y)
    finally:
        for site in sites:
            site.land()


def test_over_http_the_responses_shrink_with_top_k(digits, monkeypatch):
    _, _, x, y, _ = digits
    counter = ResponseBytes(monkeypatch)
    measured, estimate = {}, {}
    for name, compression in (("plain", CompressionConfig()), ("top-k", TOPK)):
        # two rounds: the second sends what the first left in the residual too
        cfg = config(compression, rounds=2)
        sites, workers = datasites(digits, cfg, port="auto")
        try:
            before = counter.total
            run = trained(workers, cfg, x, y)
            measured[name] = counter.total - before
            estimate[name] = sum(sum(h["bytes_up"].values()) for h in run.history)
        finally:
            for site in sites:
                site.land()
    print(f"HTTP responses over 2 rounds: float32 {measured['plain']:,} B, top-k 5% "
          f"{measured['top-k']:,} B; fedlearn's estimate {estimate['plain']:,} vs "
          f"{estimate['top-k']:,} B")
    assert estimate["plain"] / estimate["top-k"] > 8  # 5% of the entries, with their indices
    saved = measured["plain"] - measured["top-k"]
    assert saved > 0.5 * (estimate["plain"] - estimate["top-k"]), measured
