"""Warm start: the server pre-trains the initial model on a small proxy set it holds.

Federated deployments often start from a model trained centrally on public or
proxy data instead of from random weights (Bonawitz et al. 2019, "Towards
Federated Learning at Scale"; Nguyen et al. 2023, "Where to Begin? On the
Impact of Pre-Training and Initialization in Federated Learning"). The proxy
set is split off the training data *before* the clients get theirs, so it is
disjoint from every client's data.
"""
from __future__ import annotations

import torch

from fedlearn.config import ConfigError, ModelSpec, TrainPlan
from fedlearn.models import build_model
from fedlearn.training import evaluate, make_optimizer, train_epochs


def split_proxy(num_examples: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (proxy indices, client indices): disjoint, together all of them, both sorted."""
    if not 0 < size < num_examples:
        raise ConfigError("warm_start.size", f"must be between 1 and {num_examples - 1} "
                          f"(the training set has {num_examples} images; got {size})")
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed ^ 0x5EED))
    return order[:size].sort().values, order[size:].sort().values


def warm_start_weights(model: ModelSpec, x: torch.Tensor, y: torch.Tensor, plan: TrainPlan, *,
                       epochs: int, seed: int, device: torch.device | str = "cpu"
                       ) -> tuple[dict[str, torch.Tensor], dict]:
    """Train ``model`` (initialised from ``seed``) on the proxy set; return weights and metrics."""
    net = build_model(model, seed=seed).to(device)
    x, y = x.to(device), y.to(device)
    central = TrainPlan(epochs=epochs, batch_size=plan.batch_size, lr=plan.lr,
                        momentum=plan.momentum, weight_decay=plan.weight_decay)
    metrics = train_epochs(net, make_optimizer(net, central), x, y, central, seed=seed)
    metrics["proxy_accuracy"] = evaluate(net, x, y)["accuracy"]
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, metrics
