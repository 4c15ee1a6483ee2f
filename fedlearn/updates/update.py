"""What crosses the wire between the server and a worker, and how big it is."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

State = Mapping[str, torch.Tensor]  # a model's weights, or a change to them, by name


@dataclass(frozen=True)
class Update:
    """A worker's reply to one round: its weight change, not its data.

    ``delta`` is (local weights - global weights); ``num_examples`` is how many
    examples the local training used, the FedAvg weight; ``metrics`` holds plain
    numbers (train loss, steps...).
    """

    worker: str
    delta: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict = field(default_factory=dict)


def state_nbytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes of raw tensor payload in a state dict: what a compact wire format sends."""
    return sum(t.numel() * t.element_size() for t in state.values())


def detached_cpu_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain, detached CPU copies: safe to hand to another party or serialise."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
