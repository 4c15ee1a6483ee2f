import pytest

from fedlearn.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    TrainPlan,
)

BAD = [
    (FederationConfig, {"rounds": 0}, "rounds"),
    (FederationConfig, {"rounds": 2.5}, "rounds"),
    (FederationConfig, {"algorithm": "fedmagic"}, "algorithm"),
    (FederationConfig, {"model": "resnet"}, "model"),
    (FederationConfig, {"fraction": 0}, "fraction"),
    (FederationConfig, {"fraction": 1.5}, "fraction"),
    (FederationConfig, {"target_accuracy": 99}, "target_accuracy"),
    (FederationConfig, {"device": "tpu"}, "device"),
    (TrainPlan, {"lr": 0}, "lr"),
    (TrainPlan, {"lr": -0.1}, "lr"),
    (TrainPlan, {"batch_size": 0}, "batch_size"),
    (TrainPlan, {"epochs": 0}, "epochs"),
    (TrainPlan, {"momentum": 1.0}, "momentum"),
    (TrainPlan, {"weight_decay": -1}, "weight_decay"),
    (PartitionConfig, {"scheme": "random"}, "scheme"),
    (PartitionConfig, {"alpha": 0}, "alpha"),
    (PartitionConfig, {"alpha": -1.0}, "alpha"),
    (PartitionConfig, {"workers": ()}, "workers"),
    (PartitionConfig, {"workers": ("bob", "bob")}, "workers"),
    (PartitionConfig, {"workers": ("bob", "")}, "workers"),
    (PartitionConfig, {"workers": ("bob", "  ")}, "workers"),
    (PartitionConfig, {"shards_per_worker": 0}, "shards_per_worker"),
    (DataConfig, {"train_size": 0}, "train_size"),
    (ExperimentConfig, {"seed": -1}, "seed"),
]


@pytest.mark.parametrize("cls,kwargs,argument", BAD)
def test_bad_values_name_the_field_path(cls, kwargs, argument):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    path = argument if cls is ExperimentConfig else f"{cls.SECTION}.{argument}"
    assert info.value.path == path
    assert argument in str(info.value)
    assert "got" in str(info.value) or "allowed" in str(info.value) \
        or "duplicate" in str(info.value) or "at least one" in str(info.value)


def test_configs_are_frozen_and_keyword_only():
    plan = TrainPlan()
    with pytest.raises(Exception):
        plan.lr = 1.0
    with pytest.raises(TypeError):
        TrainPlan(1, 64)


def test_fingerprint_ignores_rounds_and_device_but_not_training_choices():
    a = ExperimentConfig(federation=FederationConfig(rounds=3, device="cpu"))
    b = ExperimentConfig(federation=FederationConfig(rounds=9, device="auto"),
                         data=DataConfig(data_dir="/elsewhere"))
    c = ExperimentConfig(federation=FederationConfig(rounds=3), plan=TrainPlan(lr=0.02))
    d = ExperimentConfig(seed=1)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert a.fingerprint() != d.fingerprint()


def test_the_old_name_fedsgd_says_what_it_is_now():
    """'fedsgd' named the PySyft 0.2 tutorial's model hopping, which McMahan's FedSGD is not."""
    with pytest.raises(ConfigError, match="model_hopping.*FedSGD is 'fedavg' with one local"):
        FederationConfig(algorithm="fedsgd")


def test_an_unbounded_interval_is_written_open():
    with pytest.raises(ConfigError, match=r"must be a finite number in \(0, inf\) \(got inf\)"):
        TrainPlan(lr=float("inf"))
    with pytest.raises(ConfigError, match=r"must be a finite number in \(0, 1\] \(got 1.5\)"):
        FederationConfig(fraction=1.5)
