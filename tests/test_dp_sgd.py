"""DP-SGD at the workers through Opacus: one accountant per worker for the whole run."""
import dataclasses

import pytest
import torch

from fedlearn.config import ConfigError, DPSGDConfig, ExperimentConfig, FederationConfig, TrainPlan
from fedlearn.server.federation import run_federation
from fedlearn.workers.dp_sgd import DPSGDWorker


def test_each_worker_keeps_one_accountant_and_clean_keys(synthetic):
    x, y = synthetic
    dp = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    workers = [DPSGDWorker("bob", x[:100], y[:100], model="mlp2nn", dp=dp),
               DPSGDWorker("alice", x[100:], y[100:], model="mlp2nn", dp=dp)]
    cfg = ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.1, momentum=0.0), dp_sgd=dp,
                           federation=FederationConfig(model="mlp2nn", rounds=3, device="cpu"))
    result = run_federation(workers, cfg, x, y)
    eps = [h["worker_epsilon"]["bob"] for h in result.history]
    assert 0 < eps[0] < eps[1] < eps[2]  # grows: never reset per round
    assert set(result.weights) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                   "fc3.weight", "fc3.bias"}  # no "_module." keys
    assert all(torch.isfinite(v).all() for v in result.weights.values())
    assert result.history[-1]["examples"] == {"bob": 100, "alice": 100}


def test_dp_sgd_is_seeded(synthetic):
    x, y = synthetic
    dp = DPSGDConfig(noise_multiplier=0.5)
    plan = TrainPlan(batch_size=20, lr=0.1, momentum=0.0)
    from fedlearn.models import build_model
    w = build_model("mlp2nn", seed=0).state_dict()
    a = DPSGDWorker("bob", x, y, model="mlp2nn", dp=dp).fit(w, plan, seed=3)
    b = DPSGDWorker("bob", x, y, model="mlp2nn", dp=dp).fit(w, plan, seed=3)
    assert all(torch.equal(a.delta[k], b.delta[k]) for k in w)


def test_plan_must_not_change_mid_run(synthetic):
    x, y = synthetic
    from fedlearn.models import build_model
    w = build_model("mlp2nn", seed=0).state_dict()
    worker = DPSGDWorker("bob", x, y, model="mlp2nn", dp=DPSGDConfig())
    worker.fit(w, TrainPlan(batch_size=20, momentum=0.0), seed=0)
    with pytest.raises(ValueError, match="same for the whole run"):
        worker.fit(w, TrainPlan(batch_size=40, momentum=0.0), seed=0)


@pytest.mark.parametrize("kwargs,argument", [({"noise_multiplier": -1}, "noise_multiplier"),
                                             ({"max_grad_norm": 0}, "max_grad_norm"),
                                             ({"delta": 1.0}, "delta")])
def test_bad_dp_sgd_settings(kwargs, argument):
    with pytest.raises(ConfigError) as info:
        DPSGDConfig(**kwargs)
    assert info.value.path == f"dp_sgd.{argument}"


def test_worker_epsilon_survives_resume(synthetic, tmp_path):
    """Kill after 2 rounds, resume with fresh worker objects: epsilon continues, not restarts."""
    x, y = synthetic
    dp = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    cfg = ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.1, momentum=0.0), dp_sgd=dp,
                           federation=FederationConfig(model="mlp2nn", rounds=3, device="cpu"))

    def workers():
        return [DPSGDWorker("bob", x[:100], y[:100], model="mlp2nn", dp=dp),
                DPSGDWorker("alice", x[100:], y[100:], model="mlp2nn", dp=dp)]

    straight = run_federation(workers(), cfg, x, y)
    import dataclasses
    two = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=2))
    run_federation(workers(), two, x, y, checkpoint=tmp_path / "ck.pt")
    resumed = run_federation(workers(), cfg, x, y, checkpoint=tmp_path / "ck.pt", resume=True)
    assert resumed.history[-1]["worker_epsilon"] == straight.history[-1]["worker_epsilon"]
    assert all(torch.equal(resumed.weights[k], straight.weights[k]) for k in straight.weights)


def test_cli_builds_dp_sgd_workers():
    from fedlearn.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--dp-sgd-noise", "1.1", "--dp-sgd-clip", "0.1"])
    assert config_from_args(args).dp_sgd == DPSGDConfig(noise_multiplier=1.1, max_grad_norm=0.1)
    with pytest.raises(ConfigError, match="algorithm='fedavg'"):
        config_from_args(build_parser().parse_args(["train", "--dp-sgd-noise", "1",
                                                    "--algorithm", "model_hopping"]))


def test_a_run_configured_for_dp_sgd_refuses_workers_without_it(synthetic):
    """Otherwise config.json and the history would claim a privacy the run does not have."""
    from fedlearn.config import ExperimentConfig, FederationConfig
    from fedlearn.server.federation import run_federation
    from fedlearn.workers import VirtualWorker

    x, y = synthetic
    dp = DPSGDConfig(noise_multiplier=1.0)
    config = ExperimentConfig(dp_sgd=dp, federation=FederationConfig(model="mlp2nn", rounds=1,
                                                                     device="cpu"))
    plain = [VirtualWorker(n, x[:50], y[:50], model="mlp2nn") for n in ("bob", "alice")]
    with pytest.raises(ConfigError, match="alice") as err:
        run_federation(plain, config, x, y)
    assert err.value.path == "dp_sgd.noise_multiplier"
    private = [DPSGDWorker(n, x[:50], y[:50], model="mlp2nn", dp=dp) for n in ("bob", "alice")]
    with pytest.raises(ConfigError, match="bob"):  # DP-SGD workers, a config without it
        run_federation(private, dataclasses.replace(config, dp_sgd=None), x, y)
