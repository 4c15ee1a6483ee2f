"""What crosses the wire between the server and a worker, and how big it is.

A model's state holds two kinds of tensors. Floating ones (weights, BatchNorm's running
statistics) change by training and are averaged. Integer and boolean buffers (BatchNorm's
``num_batches_tracked``, a flag) are counters: their change is exact, is aggregated by the
same example-weighted mean **rounded to the nearest integer** (a boolean's change is a flip,
kept where the weighted majority flipped), and is never scaled, clipped, compressed or noised.
Every function below keeps each tensor's dtype.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

State = Mapping[str, torch.Tensor]  # a model's weights, or a change to them, by name


@dataclass(frozen=True)
class Update:
    """A worker's reply to one round: its weight change, not its data.

    ``delta`` is (local weights - global weights); ``num_examples`` is how many
    examples the local training used, the FedAvg weight; ``metrics`` holds plain
    numbers (train loss, steps...). An update encoded on the client
    (:mod:`fedlearn.updates.client_side`) says so in ``encoding`` and carries ``payload``
    instead of ``delta``: ``"compressed"`` (codes, or top-k indices and values, per tensor) or
    ``"masked"`` (one vector the server can only add to others).
    """

    worker: str
    delta: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict = field(default_factory=dict)
    encoding: str = "delta"  # "delta", "compressed" or "masked"
    payload: dict = field(default_factory=dict)


def is_counter(t: torch.Tensor) -> bool:
    """An integer or boolean buffer: counted, not trained (BatchNorm's num_batches_tracked)."""
    return not (t.is_floating_point() or t.is_complex())


def trained(state: State) -> dict[str, torch.Tensor]:
    """The floating entries of ``state``: what clipping, compression, noise and norms see."""
    return {k: v for k, v in state.items() if not is_counter(v)}


def cast_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` (computed in floating point) in ``like``'s dtype and device; a counter's value
    is rounded to the nearest integer first (a boolean: 1 from one half up), never truncated."""
    if is_counter(like):
        value = value.round() if like.dtype != torch.bool else value >= 0.5
    return value.to(device=like.device, dtype=like.dtype)


def state_change(new: State, old: State) -> dict[str, torch.Tensor]:
    """new - old, key by key, in each dtype (a boolean's change is new XOR old)."""
    return {k: (new[k] ^ old[k].to(new[k].device)) if new[k].dtype == torch.bool
            else new[k] - old[k].to(new[k].device) for k in old}


def add_change(state: State, change: State, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """state + scale * change, key by key, in each dtype (a new dict; the inputs are untouched).

    ``scale`` (a server learning rate) applies to the floating entries; a counter takes its
    aggregated change as it is.
    """
    out = {}
    for k, v in state.items():
        c = change[k]
        if v.dtype == torch.bool:
            out[k] = v ^ c.to(device=v.device, dtype=torch.bool)
        elif is_counter(v):
            out[k] = v + cast_like(c, v)
        else:
            out[k] = v + scale * c.to(v.dtype)
    return out


def update_norm(update: State) -> float:
    """Global L2 norm over every floating tensor of an update (counters are not trained)."""
    return math.sqrt(sum(float(t.to(torch.float64).pow(2).sum())
                         for t in trained(update).values()))


def state_nbytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes of raw tensor payload in a state dict: what a compact wire format sends."""
    return sum(t.numel() * t.element_size() for t in state.values())


def detached_cpu_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain, detached CPU copies: safe to hand to another party or serialise."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
