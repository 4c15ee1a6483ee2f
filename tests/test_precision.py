"""bf16 autocast and channels-last as run options: close to fp32, refused where they cannot
run, and the fp32 default untouched (bit for bit: tools/reference_weights.py)."""
import pytest
import torch

from fedlearn.config import (
    ConfigError,
    DPSGDConfig,
    ExperimentConfig,
    FederationConfig,
    TrainPlan,
)
from fedlearn.models import build_model
from fedlearn.server.federation import run_federation
from fedlearn.training import check_compute, make_optimizer, train_epochs
from fedlearn.workers import VirtualWorker

CPU = torch.device("cpu")


def images(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def trained(plan, x, y):
    model = build_model("mcmahan_cnn", seed=0)
    train_epochs(model, make_optimizer(model, plan), x, y, plan, seed=3)
    return model.state_dict()


def test_channels_last_trains_the_same_model_in_fp32():
    x, y = images()
    plain = trained(TrainPlan(batch_size=20, lr=0.05), x, y)
    nhwc = trained(TrainPlan(batch_size=20, lr=0.05, channels_last=True), x, y)
    for k in plain:
        assert torch.allclose(plain[k], nhwc[k], atol=1e-5), k
        assert nhwc[k].is_contiguous() or nhwc[k].is_contiguous(
            memory_format=torch.channels_last)


def test_bf16_is_close_to_fp32_and_really_lower_precision():
    """Runs everywhere: a CPU without native bf16 emulates it, with the same rounding."""
    x, y = images()
    start = build_model("mcmahan_cnn", seed=0).state_dict()
    fp32 = trained(TrainPlan(batch_size=20, lr=0.05), x, y)
    bf16 = trained(TrainPlan(batch_size=20, lr=0.05, precision="bf16"), x, y)
    change = sum((fp32[k] - start[k]).norm() ** 2 for k in start) ** 0.5
    gap = sum((fp32[k] - bf16[k]).norm() ** 2 for k in start) ** 0.5
    assert 0 < gap < 0.25 * change  # not the fp32 path, and close to it
    assert all(v.dtype == torch.float32 for v in bf16.values())  # the weights stay fp32


def test_a_shared_scratch_model_never_carries_channels_last_into_an_fp32_run(synthetic):
    """In-process workers share one scratch model per architecture and thread."""
    x, y = images()
    w = build_model("mcmahan_cnn", seed=0).state_dict()
    fresh = VirtualWorker("bob", x, y, model="mcmahan_cnn").fit(w, TrainPlan(batch_size=20),
                                                                seed=1)
    VirtualWorker("alice", x, y, model="mcmahan_cnn").fit(
        w, TrainPlan(batch_size=20, channels_last=True), seed=1)
    again = VirtualWorker("bob", x, y, model="mcmahan_cnn").fit(w, TrainPlan(batch_size=20),
                                                                seed=1)
    assert all(torch.equal(fresh.delta[k], again.delta[k]) for k in fresh.delta)


def test_refused_where_it_cannot_run(synthetic, monkeypatch):
    x, y = synthetic
    cnn = build_model("mcmahan_cnn")
    monkeypatch.setattr("fedlearn.training.native_bf16", lambda device: False)
    with pytest.raises(ConfigError, match="native bfloat16") as err:
        check_compute(TrainPlan(precision="bf16"), cnn, CPU)
    assert err.value.path == "plan.precision"
    with pytest.raises(ConfigError, match="no Conv2d") as err:  # an MLP has no NHWC to gain
        config = ExperimentConfig(plan=TrainPlan(channels_last=True),
                                  federation=FederationConfig(model="mlp2nn", device="cpu"))
        run_federation([VirtualWorker("bob", x, y, model="mlp2nn")], config, x, y)
    assert err.value.path == "plan.channels_last"
    with pytest.raises(ConfigError, match="fp32") as err:  # Opacus trains in fp32
        ExperimentConfig(plan=TrainPlan(precision="bf16"), dp_sgd=DPSGDConfig())
    assert err.value.path == "plan.precision"
    with pytest.raises(ConfigError) as err:
        TrainPlan(precision="fp16")
    assert err.value.path == "plan.precision"


def test_the_cli_flags_and_the_record():
    from fedlearn.cli import build_parser
    from fedlearn.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--precision", "bf16", "--channels-last"])
    plan = config_from_args(args).plan
    assert (plan.precision, plan.channels_last) == ("bf16", True)


def test_history_records_how_the_clients_were_trained(synthetic):
    x, y = synthetic
    config = ExperimentConfig(plan=TrainPlan(batch_size=50, channels_last=True),
                              federation=FederationConfig(model="mcmahan_cnn", rounds=1,
                                                          device="cpu"))
    x4 = x.reshape(-1, 1, 28, 28) if x.dim() == 4 else x
    result = run_federation([VirtualWorker("bob", x4, y, model="mcmahan_cnn")], config, x4, y)
    assert result.history[0]["compute"] == {"precision": "fp32", "memory_format": "channels_last",
                                            "clients": "sequential"}
