"""run_experiment on a practitioner's own data set and model: 8x8 'digits', a small CNN with
BatchNorm and Dropout defined here, through partition, workers, server and plots."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fedlearn import ExperimentConfig, FederationConfig, TrainPlan, run_experiment
from fedlearn.config import ConfigError, DataConfig
from fedlearn.data import MnistTensors, Normalisation, normalise


class Digits8(nn.Module):
    """A CNN for (N, 1, 8, 8) inputs with BatchNorm and Dropout: nothing fedlearn ships."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.25)
        self.out = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)  # (N, 8, 4, 4)
        return self.out(self.drop(x.flatten(1)))


def digits(n: int, seed: int):
    """uint8 8x8 'digits': noise plus a bright pixel whose position is the label."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    images = (torch.rand(n, 1, 8, 8, generator=g) * 80).to(torch.uint8)
    images[torch.arange(n), 0, y // 4 * 2, y % 4 * 2] = 255
    return images, y


def own_data():
    (train, train_y), (test, test_y) = digits(400, 0), digits(100, 1)
    declared = Normalisation(divide_by=255.0, mean=(0.2,), std=(0.3,))
    return normalise(train, declared), train_y, normalise(test, declared), test_y


def config(**data):
    return ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.05), data=DataConfig(**data),
                            federation=FederationConfig(model=Digits8, rounds=3, device="cpu"))


def test_your_own_tensors_go_through_the_whole_experiment(tmp_path):
    data = own_data()
    result = run_experiment(config(), tmp_path / "run", data=data)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint.pt", "config.json", "data.sha256", "history.json", "learning_curve.png",
        "model.pt"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 3 and history[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert sum(history[0]["examples"].values()) == 400  # the 400 given, split between owners
    assert set(result.weights) == set(Digits8().state_dict())
    assert result.weights["bn.num_batches_tracked"].dtype == torch.int64
    # the same call with MnistTensors and a seeded subset; and again: the same weights
    again = run_experiment(config(), tmp_path / "again", data=MnistTensors(*data))
    assert all(torch.equal(result.weights[k], again.weights[k]) for k in result.weights)
    small = run_experiment(config(train_size=100, test_size=50), tmp_path / "small", data=data)
    assert sum(small.history[0]["examples"].values()) == 100


def test_a_run_resumes_only_on_the_data_it_started_with(tmp_path):
    """The fingerprint cannot see data=: the run keeps its data's digest and a resume with
    other tensors is refused, naming data, before anything is overwritten."""
    data, out = own_data(), tmp_path / "run"
    run_experiment(config(), out, data=data)
    before = (out / "checkpoint.pt").read_bytes()
    shuffled = (data[0], data[1].flip(0), data[2], data[3])
    with pytest.raises(ConfigError, match="trained on other data") as err:
        run_experiment(config(), out, data=shuffled, resume=True)
    assert err.value.path == "data" and (out / "checkpoint.pt").read_bytes() == before
    more = ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.05),
                            federation=FederationConfig(model=Digits8, rounds=4, device="cpu"))
    assert len(run_experiment(more, out, data=data, resume=True).history) == 4


@pytest.mark.parametrize("bad, message", [
    (lambda d: d[:3], "must be \\(train_x, train_y, test_x, test_y\\)"),
    (lambda d: (d[0].to(torch.uint8), *d[1:]), "normalise raw pixels first"),
    (lambda d: (d[0], d[1][:5], *d[2:]), "train_y must be 400 integer class labels"),
    (lambda d: (d[0], d[1].float(), *d[2:]), "train_y must be 400 integer"),
    (lambda d: (*d[:2], d[2][:, :, :4], d[3]), "differ in shape"),
    # what would fail every round the same way: refused before round 1, not retried
    (lambda d: (d[0], d[1] + 3, *d[2:]), "the training labels go from 3 to 12, but "
     "test_experiment_own_data.Digits8 has 10 outputs: labels must be 0..9"),
    (lambda d: (d[0].index_fill(0, torch.tensor([7]), float("nan")), *d[1:]),
     r"the training inputs contain NaN or infinite values \(64 of 25600\)"),
    (lambda d: (*d[:3], d[3] + 3), "the test labels go from 3 to 12"),
    (lambda d: (*d[:2], d[2].index_fill(0, torch.tensor([7]), float("inf")), d[3]),
     "the test inputs contain NaN or infinite values"),
    (lambda d: (d[0].expand(-1, 3, -1, -1), d[1], d[2].expand(-1, 3, -1, -1), d[3]),
     r"Digits8 cannot take inputs of shape \(3, 8, 8\)"),
])
def test_bad_data_is_refused_before_anything_is_written(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        run_experiment(config(), tmp_path / "run", data=bad(own_data()))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="data_dir"):
        run_experiment(config(data_dir="/somewhere"), tmp_path / "run", data=own_data())
