"""The models, as plain PyTorch modules with no federation inside.

- ``TutorialCNN``: the network of the original PySyft federated-learning tutorial
  (itself the PyTorch MNIST example): conv 1->20 k5, pool, conv 20->50 k5, pool,
  fc 800->500, fc 500->10.
- ``McMahanCNN`` and ``MLP2NN``: the "CNN" and "2NN" of McMahan et al. 2017,
  "Communication-Efficient Learning of Deep Networks from Decentralized Data".
- ``DPCNN``: the small tanh CNN of Papernot et al. 2021, "Tempered Sigmoid
  Activations for Deep Learning with Differential Privacy": bounded activations
  keep per-sample gradients small, so less of them is lost to DP-SGD clipping.
- ``BatchNormCNN``: a small CNN with batch normalization (Ioffe & Szegedy 2015) and dropout
  (Srivastava et al. 2014): integer buffers and random draws in training, the two things a
  federated library most easily gets wrong (see :mod:`fedlearn.updates.update`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fedlearn.config import MODELS, ConfigError, ModelSpec, model_label


class TutorialCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 20, 12, 12)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 50, 4, 4)
        x = F.relu(self.fc1(x.flatten(1)))  # (B, 500)
        return self.fc2(x)  # (B, 10) logits


class McMahanCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(7 * 7 * 64, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 7, 7)
        x = F.relu(self.fc1(x.flatten(1)))  # (B, 512)
        return self.fc2(x)  # (B, 10) logits


class MLP2NN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 200)
        self.fc2 = nn.Linear(200, 200)
        self.fc3 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))  # (B, 200)
        x = F.relu(self.fc2(x))  # (B, 200)
        return self.fc3(x)  # (B, 10) logits


class DPCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, 2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.tanh(self.conv1(x)), 2, 1)  # (B, 16, 13, 13)
        x = F.max_pool2d(torch.tanh(self.conv2(x)), 2, 1)  # (B, 32, 4, 4)
        x = torch.tanh(self.fc1(x.flatten(1)))  # (B, 32)
        return self.fc2(x)  # (B, 10) logits


class BatchNormCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 5, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # (B, 16, 12, 12)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # (B, 32, 4, 4)
        return self.fc(self.dropout(x.flatten(1)))  # (B, 10) logits


# The registry of ready-made models, by the name federation.model takes (its Literal,
# fedlearn.config.ModelName, lists the same names: tests/test_registries.py)
_REGISTRY = {"tutorial_cnn": TutorialCNN, "mcmahan_cnn": McMahanCNN, "mlp2nn": MLP2NN,
             "dp_cnn": DPCNN, "bn_cnn": BatchNormCNN}
assert tuple(_REGISTRY) == MODELS


def model_factory(model: ModelSpec) -> Callable[[], nn.Module]:
    """The constructor behind ``model``: a ready-made name, or your own class or factory."""
    if isinstance(model, str):
        if model not in _REGISTRY:
            raise ConfigError("federation.model", f"unknown value {model!r}; allowed: "
                              f"{', '.join(MODELS)}, or an nn.Module class or zero-argument "
                              "factory")
        return _REGISTRY[model]
    if not callable(model):
        raise ConfigError("federation.model", "must be a name or an nn.Module class or "
                          f"zero-argument factory (got {type(model).__name__})")
    return model


def build_model(model: ModelSpec, seed: int | None = None) -> nn.Module:
    """A fresh model; with ``seed`` its initial weights are reproducible.

    ``model`` is one of the ready-made names (:data:`fedlearn.config.MODELS`) or any
    ``nn.Module`` class or zero-argument factory of your own.
    """
    factory = model_factory(model)
    if seed is None:
        net = factory()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = factory()
    if not isinstance(net, nn.Module):
        raise ConfigError("federation.model", f"{model_label(model)}() returned a "
                          f"{type(net).__name__}, not an nn.Module")
    return net


def check_data_fits(model: ModelSpec, x: torch.Tensor, y: torch.Tensor, *,
                    part: str = "training") -> None:
    """Refuse, before round 1, data that every round would fail on the same way: inputs that
    are not finite, inputs the model cannot take, labels outside its outputs (retried as
    worker failures otherwise, then reported as a failed round)."""
    if len(x) == 0:
        return
    if not torch.isfinite(x).all():
        raise ConfigError("data", f"the {part} inputs contain NaN or infinite values "
                          f"({int((~torch.isfinite(x)).sum())} of {x.numel()})")
    net = build_model(model, seed=0).eval()
    try:
        with torch.no_grad():
            out = net(x[:2].cpu())
    except RuntimeError as exc:  # e.g. a shape the first layer cannot take
        raise ConfigError("federation.model", f"{model_label(model)} cannot take inputs of "
                          f"shape {tuple(x.shape[1:])}: {str(exc).splitlines()[0]}") from exc
    classes, low, high = out.shape[-1], int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ConfigError("data", f"the {part} labels go from {low} to {high}, but "
                          f"{model_label(model)} has {classes} outputs: labels must be "
                          f"0..{classes - 1}")
