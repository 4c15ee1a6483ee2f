"""Injected faults end in a correct completed run or a clear stop — never a wrong model or a
hang."""
import dataclasses

import pytest
import torch

from fedlearn.aggregation import apply_delta, fedavg
from fedlearn.config import ExperimentConfig, FederationConfig, RobustnessConfig, TrainPlan
from fedlearn.server.checkpoint import load_checkpoint, save_checkpoint
from fedlearn.server.federation import RoundFailedError, derive_seed, run_federation
from fedlearn.workers import VirtualWorker
from fedlearn.workers.faults import FaultInjectingWorker

NAMES = ["a", "b", "c", "d", "e"]


def make_workers(synthetic):
    x, y = synthetic
    return [VirtualWorker(n, x[i * 40:(i + 1) * 40], y[i * 40:(i + 1) * 40], model="mlp2nn")
            for i, n in enumerate(NAMES)]


ROBUSTNESS = {f.name for f in dataclasses.fields(RobustnessConfig)}


def cfg(**changes):
    robust = {k: changes.pop(k) for k in list(changes) if k in ROBUSTNESS}
    fed = {"model": "mlp2nn", "rounds": 2, "device": "cpu", **changes}
    return ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.05),
                            federation=FederationConfig(**fed),
                            robustness=RobustnessConfig(**robust), seed=1)


def run(synthetic, fault, config=None, **kw):
    workers = make_workers(synthetic)
    workers[-1] = FaultInjectingWorker(workers[-1], fault, calls={2}, **kw)
    x, y = synthetic
    return run_federation(workers, config or cfg(), x, y)


EXCLUDED = {"raise": "failed", "disappear": "failed", "nan": "rejected",
            "wrong_shape": "rejected", "missing_key": "rejected", "inflate_examples": "rejected"}


@pytest.fixture
def without_e_in_round_2(synthetic):
    """The oracle: round 2 aggregates a..d only, computed by hand from the workers."""
    x, y = synthetic
    workers = make_workers(synthetic)
    first = run_federation(workers, dataclasses.replace(cfg(), federation=dataclasses.replace(
        cfg().federation, rounds=1)), x, y).weights
    ups = [w.fit(first, cfg().plan, seed=derive_seed(1, 2, i)) for i, w in enumerate(workers[:4])]
    return apply_delta(first, fedavg([u.delta for u in ups], [u.num_examples for u in ups]))


@pytest.mark.parametrize("fault", sorted(EXCLUDED))
def test_bad_worker_is_left_out_with_its_reason(synthetic, without_e_in_round_2, fault):
    result = run(synthetic, fault)
    second = result.history[1]
    assert set(second[EXCLUDED[fault]]) == {"e"} and second[EXCLUDED[fault]]["e"]
    assert "e" not in second["examples"] and not result.history[0]["failed"]
    for k, v in without_e_in_round_2.items():
        assert torch.allclose(result.weights[k], v, atol=1e-6), k


def test_hanging_worker_times_out(synthetic, without_e_in_round_2):
    result = run(synthetic, "hang", cfg(round_timeout=1.0), hang_seconds=3.0)
    assert result.history[1]["failed"] == {"e": "WorkerTimeout: no reply within 1 s"}
    for k, v in without_e_in_round_2.items():
        assert torch.allclose(result.weights[k], v, atol=1e-6)


def test_norm_bound_rejects_a_hostile_update(synthetic):
    result = run(synthetic, "random", cfg(max_update_norm=50.0), scale=10.0)
    assert "exceeds the bound" in result.history[1]["rejected"]["e"]


@pytest.mark.parametrize("aggregator", ["median", "trimmed_mean", "krum"])
def test_robust_rules_shrug_off_one_hostile_worker(synthetic, aggregator):
    x, y = synthetic

    def run_with(aggregator, hostile):
        workers = make_workers(synthetic)
        if hostile:
            workers[-1] = FaultInjectingWorker(workers[-1], "random", scale=5.0)
        config = dataclasses.replace(cfg(rounds=3, aggregator=aggregator),
                                     plan=TrainPlan(epochs=5, batch_size=20, lr=0.05))
        return run_federation(workers, config, x, y).history[-1]["test_accuracy"]

    robust = run_with(aggregator, hostile=True)
    assert robust >= run_with(aggregator, hostile=False) - 0.05
    assert run_with("mean", hostile=True) < robust - 0.1  # the mean is hurt by the same attack


def test_retry_draws_again_and_succeeds(synthetic):
    x, y = synthetic
    workers = [FaultInjectingWorker(w, "raise", calls={1}) for w in make_workers(synthetic)]
    result = run_federation(workers, cfg(rounds=1, min_updates=5), x, y)
    assert result.history[0]["attempt"] == 1 and not result.history[0]["failed"]


def test_too_few_updates_stops_clearly_and_keeps_the_checkpoint(synthetic, tmp_path):
    x, y = synthetic
    ckpt = tmp_path / "c.pt"
    workers = make_workers(synthetic)
    workers[0] = FaultInjectingWorker(workers[0], "raise", calls={2, 3, 4})
    with pytest.raises(RoundFailedError,
                       match="round 2: fewer than min_updates=5.*a: RuntimeError"):
        run_federation(workers, cfg(rounds=3, min_updates=5, max_retries=2), x, y, checkpoint=ckpt)
    assert load_checkpoint(ckpt)["round"] == 1


def test_skip_keeps_the_weights(synthetic):
    x, y = synthetic
    workers = [FaultInjectingWorker(w, "disappear", calls={2}) for w in make_workers(synthetic)]
    result = run_federation(workers, cfg(on_too_few="skip"), x, y)
    assert result.history[1]["skipped"] and len(result.history[1]["failed"]) == 5
    assert result.history[1]["test_accuracy"] == result.history[0]["test_accuracy"]


def test_crash_during_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"round": 1})

    def dies_midway(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"round": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["round"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_unknown_fault():
    with pytest.raises(ValueError, match="allowed"):
        FaultInjectingWorker(None, "explode")


def test_tampered_checkpoint_with_code_in_it_is_refused(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "c.pt"
    torch.save({"format_version": 1, "evil": Payload()}, bad)  # a pickle that would run code
    from fedlearn.server.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(bad)
    bad.write_bytes(pickle.dumps({"format_version": 2}))
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


@pytest.mark.parametrize("fault,scale", [("sign_flip", 10.0), ("random", 10.0)])
def test_oversized_sign_flips_and_noise_are_rejected_leaving_the_exact_model(
        synthetic, without_e_in_round_2, fault, scale):
    """A bound between the honest updates' norms and the hostile one's: the hostile update is
    rejected and round 2 is exactly the average of the four honest ones."""
    from fedlearn.aggregation import update_norm

    x, y = synthetic
    workers = make_workers(synthetic)
    first = run_federation(workers, dataclasses.replace(cfg(), federation=dataclasses.replace(
        cfg().federation, rounds=1)), x, y).weights
    honest = [update_norm(w.fit(first, cfg().plan, seed=derive_seed(1, 2, i)).delta)
              for i, w in enumerate(workers)]
    bound = 2 * max(honest)  # a sign flip x10 or noise of std 10 lies far above it
    result = run(synthetic, fault, cfg(max_update_norm=bound), scale=scale)
    assert "exceeds the bound" in result.history[1]["rejected"]["e"]
    assert not result.history[0]["rejected"]  # round 1: e was honest and counted
    for k, v in without_e_in_round_2.items():
        assert torch.allclose(result.weights[k], v, atol=1e-6), k


def test_a_sign_flip_within_the_bound_is_averaged_in_unless_a_robust_rule_is_used(synthetic):
    """Honest-sized hostile updates pass every check, so FedAvg takes them in (README says so;
    the robust rules above are the defence against them)."""
    x, y = synthetic
    flipped = run(synthetic, "sign_flip", cfg(rounds=2))
    honest = run_federation(make_workers(synthetic), cfg(rounds=2), x, y)
    assert not flipped.history[1]["rejected"]
    assert any(not torch.equal(flipped.weights[k], honest.weights[k]) for k in honest.weights)
