"""The declared normalisation: validated, applied alike in-process and by the approved code,
written into the code request, parsed back and shown to the owner."""
from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fedlearn.backends.pysyft.dp_training_code import dp_training_function_source, dp_variant_in
from fedlearn.backends.pysyft.training_code import (
    custom_model_in,
    normalisation_of,
    ready_made_in,
    source_digest,
    training_function_source,
)
from fedlearn.config import ConfigError, TrainPlan
from fedlearn.data import MNIST_NORMALISATION, Normalisation, normalise
from fedlearn.models import build_model
from fedlearn.training import make_optimizer, train_epochs

RGB = Normalisation(divide_by=255.0, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


class TabularMLP(nn.Module):
    """A model for 6 float features, as a practitioner with a table would write it."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 16)
        self.norm = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(F.relu(self.norm(self.hidden(x))))


def test_mnist_normalisation_is_what_it_always_was():
    images = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8)
    old = ((images.float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1).contiguous()
    assert torch.equal(normalise(images, MNIST_NORMALISATION), old)
    assert MNIST_NORMALISATION == Normalisation(255, 0.1307, 0.3081)  # numbers become tuples


def test_per_channel_images_and_tabular_features():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    x = normalise(images, RGB)
    for c in range(3):
        expected = (images[:, c].float() / 255.0 - RGB.mean[c]) / RGB.std[c]
        assert torch.allclose(x[:, c], expected)
    table = torch.randn(10, 6, dtype=torch.float64) * 5 + 2  # float64 in, float32 out
    one = normalise(table, Normalisation(mean=2.0, std=5.0))
    assert one.dtype == torch.float32 and one.shape == (10, 6)
    per_feature = Normalisation(mean=tuple(range(6)), std=(1.0,) * 6)
    assert torch.allclose(normalise(table, per_feature)[:, 3], (table[:, 3] - 3).float())
    with pytest.raises(ConfigError, match="3 mean.*the data 1 channel"):
        normalise(torch.zeros(2, 28, 28, dtype=torch.uint8), RGB)
    with pytest.raises(ConfigError, match="the data 6 channel"):
        normalise(table, RGB)


@pytest.mark.parametrize("kwargs, message", [
    ({"mean": (0.1, 0.2), "std": (1.0,)}, "as many values as mean"),
    ({"std": (0.0,)}, "> 0"),
    ({"std": (-1.0,)}, "> 0"),
    ({"mean": (float("nan"),)}, "finite"),
    ({"std": (float("inf"),)}, "finite"),
    ({"divide_by": 0.0}, "divide_by: must be > 0"),
    ({"mean": ()}, "non-empty"),
    ({"mean": ("0.5",)}, "tuple of numbers"),
    ({"std": (True,)}, "tuple of numbers"),
])
def test_a_bad_declaration_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Normalisation(**kwargs)
    with pytest.raises(ConfigError, match="must be a fedlearn.data.Normalisation"):
        normalise(torch.zeros(2, 3), (1.0, (0.0,), (1.0,)))


def test_the_declaration_is_in_the_request_and_read_back_by_the_review():
    mnist, rgb = training_function_source("bn_cnn"), training_function_source("bn_cnn",
                                                                              normalisation=RGB)
    assert "NORMALISATION = (255.0, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))" in rgb
    assert source_digest(mnist) != source_digest(rgb)  # another normalisation: another request
    assert ready_made_in(mnist) == ready_made_in(rgb) == "bn_cnn"
    assert normalisation_of(rgb) == RGB and normalisation_of(mnist) == MNIST_NORMALISATION
    assert RGB.describe() == ("x / 255, then minus mean (0.5, 0.4, 0.3), divided by std "
                              "(0.2, 0.25, 0.3), per channel (per feature for tables)")
    own = training_function_source(TabularMLP, normalisation=Normalisation())
    assert custom_model_in(own)[0] == "TabularMLP"
    dp = dp_variant_in(dp_training_function_source("mlp2nn", 1.0, 1.0, normalisation=RGB))
    assert dp is not None and dp.normalisation == RGB


@pytest.mark.parametrize("line", [
    "NORMALISATION = (255.0, (0.5,), (0.0,))",  # std 0: an invalid declaration
    "NORMALISATION = (255.0, (0.5,), (0.3,)) or __import__('os')",  # not a literal
    "NORMALISATION = (255.0, (0.5,), (0.3,), 1)",
])
def test_an_edited_declaration_is_not_fedlearns_code(line):
    source = training_function_source("mlp2nn")
    edited = source.replace("NORMALISATION = (255.0, (0.1307,), (0.3081,))", line)
    assert edited != source
    assert ready_made_in(edited) is None and custom_model_in(edited) is None
    assert dp_variant_in(edited) is None


def _run_generated(source, images, labels, weights, seed=5):
    namespace: dict = {}
    exec(source, namespace)  # as PySyft does on the Datasite
    plan = {"epochs": 1, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0,
            "prox_mu": 0.0, "precision": "fp32", "channels_last": False}
    return namespace["fedlearn_round"](images, labels, weights, plan, seed, uuid.uuid4().hex,
                                       "fit")


def test_the_approved_code_trains_on_float_features_as_in_process_does():
    rng = np.random.default_rng(0)
    features = (rng.standard_normal((40, 6)) * 3 + 1).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    declared = Normalisation(mean=(1.0,), std=(3.0,))
    start = dict(build_model(TabularMLP, seed=0).state_dict())
    out = _run_generated(training_function_source(TabularMLP, normalisation=declared),
                         features, labels, {k: v.clone() for k, v in start.items()})
    model = build_model(TabularMLP, seed=0)
    plan = TrainPlan(batch_size=8, lr=0.05)
    train_epochs(model, make_optimizer(model, plan), normalise(torch.as_tensor(features),
                 declared), torch.as_tensor(labels), plan, seed=5)
    for key, value in model.state_dict().items():
        assert torch.equal(out["delta"][key], value - start[key]), key
    assert out["delta"]["norm.num_batches_tracked"].dtype == torch.int64


def test_the_approved_code_refuses_a_declaration_that_does_not_fit_the_data():
    weights = dict(build_model("mlp2nn", seed=0).state_dict())
    images = np.zeros((8, 28, 28), np.uint8)
    out = _run_generated(training_function_source("mlp2nn", normalisation=RGB), images,
                         np.zeros(8, np.int64), weights)
    assert out == {"refused": "the normalisation has 3 mean(s) and 3 std(s), the data 1 "
                              "channel(s) or feature(s): give one mean and one std, or one of "
                              "each per channel"}
