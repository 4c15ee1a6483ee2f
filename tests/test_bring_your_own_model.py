"""Bring your own model and data: a model class and a data set defined here, federated
in-process and through in-process PySyft Datasites, checked against each other."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fedlearn.config import ConfigError, ExperimentConfig, FederationConfig, TrainPlan
from fedlearn.data import MNIST_NORMALISATION, normalise
from fedlearn.errors import FedlearnError
from fedlearn.models import build_model
from fedlearn.server import run_federation
from fedlearn.workers import make_virtual_workers

try:
    from fedlearn.backends.pysyft import require_syft
    require_syft()
    HAVE_SYFT = True
except ImportError:
    HAVE_SYFT = False


class TinyMLP(nn.Module):
    """A model of the user's own: nothing fedlearn ships."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(28 * 28, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(x.flatten(1))))


SCALE = 3.0


class NotSelfContained(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.out(x.flatten(1)) * SCALE  # a module global: exec on the Datasite lacks it


def synthetic_images(n: int = 400, seed: int = 0):
    """uint8 'images' whose bright square's position is the label: a data set of our own."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    images = (torch.rand(n, 28, 28, generator=g) * 60).to(torch.uint8)
    for i, label in enumerate(y.tolist()):
        r, c = 2 + 2 * label, 4 + 2 * (label % 5)
        images[i, r:r + 4, c:c + 4] = 255
    return images, y


def config(rounds=2):
    return ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.05),
                            federation=FederationConfig(model=TinyMLP, rounds=rounds,
                                                        device="cpu"))


def in_process_run(images, labels, cfg):
    x = normalise(images, MNIST_NORMALISATION)
    workers, parts = make_virtual_workers(x, labels, cfg)
    return run_federation(workers, cfg, x, labels), parts


def test_your_own_model_class_and_data_federate_in_process():
    images, labels = synthetic_images()
    cfg = config(rounds=3)
    result, _ = in_process_run(images, labels, cfg)
    assert result.history[-1]["test_accuracy"] > 0.6  # chance is 0.1
    assert set(result.weights) == set(TinyMLP().state_dict())
    assert cfg.to_dict()["federation"]["model"].endswith("test_bring_your_own_model.TinyMLP")


def test_a_factory_works_too_and_bad_models_are_refused():
    def factory():
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    assert isinstance(build_model(factory, seed=1), nn.Sequential)
    first, again = build_model(factory, seed=1), build_model(factory, seed=1)
    assert torch.equal(first[1].weight, again[1].weight)  # seeded, like the ready-made ones
    with pytest.raises(ConfigError, match="returned a int, not an nn.Module"):
        build_model(lambda: 3)
    with pytest.raises(ConfigError) as err:
        FederationConfig(model=42)
    assert err.value.path == "federation.model"
    with pytest.raises(ConfigError, match="unknown value 'resnet'"):
        FederationConfig(model="resnet")
    # a model object is callable too, but calling it runs forward(): refused here, naming the
    # class to give instead, not as a torch TypeError in round 1
    with pytest.raises(ConfigError, match=r"is a model object \(Sequential\(\.\.\.\)\); give its "
                       r"class \(Sequential\) or a zero-argument factory") as err:
        FederationConfig(model=factory())
    assert err.value.path == "federation.model"


def test_the_code_request_is_generated_from_your_class_and_checked_for_self_containment():
    from fedlearn.backends.pysyft.training_code import training_function_source

    source = training_function_source(TinyMLP)
    assert "class TinyMLP(nn.Module):" in source and "def fedlearn_round(" in source
    with pytest.raises(FedlearnError, match="NotSelfContained is not self-contained: .*SCALE"):
        training_function_source(NotSelfContained)
    with pytest.raises(FedlearnError, match="pass the nn.Module class"):
        training_function_source(lambda: TinyMLP())


@pytest.mark.pysyft
@pytest.mark.skipif(not HAVE_SYFT, reason="syft 0.9.5 not installed")
def test_your_own_model_through_pysyft_datasites_equals_the_in_process_oracle():
    from fedlearn.backends.pysyft import launch_syft_workers

    images, labels = synthetic_images()
    cfg = config(rounds=1)
    expected, parts = in_process_run(images, labels, cfg)
    reviews = []
    sites, workers = launch_syft_workers(images.numpy(), labels.numpy(), parts,
                                         cfg.partition.workers, model=TinyMLP, max_calls=4,
                                         force_approval=True, on_review=reviews.append)
    try:
        got = run_federation(workers, cfg, normalise(images, MNIST_NORMALISATION), labels)
    finally:
        for site in sites:
            site.land()
    # the owners were told the one thing fedlearn cannot check for them: the model is new
    assert [r.matches for r in reviews] == ["the data scientist's model class TinyMLP"] * 2
    assert all(len(r.problems) == 1 and "TinyMLP" in r.problems[0] for r in reviews)
    diff = max((got.weights[k] - expected.weights[k]).abs().max().item() for k in got.weights)
    assert diff <= 1e-6
    assert got.history[0]["test_accuracy"] == pytest.approx(expected.history[0]["test_accuracy"])
