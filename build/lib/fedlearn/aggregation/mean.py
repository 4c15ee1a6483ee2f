"""Aggregation rules as pure functions on dicts of tensors.

FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
from Decentralized Data", Algorithm 1) averages client updates weighted by the
number of examples each client trained on — an unweighted mean is not FedAvg.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from fedlearn.updates.update import State, add_change, cast_like, state_change


def weighted_average(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * s_i / sum_i w_i, key by key (computed in float64, returned in each dtype;
    an integer or boolean entry rounded to the nearest value: :mod:`fedlearn.updates.update`)."""
    if len(states) == 0:
        raise ValueError("weighted_average: no states to average")
    if len(states) != len(weights):
        raise ValueError(f"weighted_average: {len(states)} states but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weighted_average: weights must be >= 0 with a positive sum, "
                         f"got {list(weights)}")
    keys = list(states[0].keys())
    for s in states[1:]:
        if list(s.keys()) != keys:
            raise ValueError("weighted_average: states have different keys")
    total = float(sum(weights))
    out = {}
    for k in keys:
        acc = torch.zeros_like(states[0][k], dtype=torch.float64)
        for s, w in zip(states, weights):
            acc += s[k].to(torch.float64) * (w / total)
        out[k] = cast_like(acc, states[0][k])
    return out


def fedavg(deltas: Sequence[State], num_examples: Sequence[int]) -> dict[str, torch.Tensor]:
    """The FedAvg aggregate of client deltas: their example-weighted mean."""
    return weighted_average(deltas, [float(n) for n in num_examples])


def state_delta(new: State, old: State) -> dict[str, torch.Tensor]:
    """new - old, key by key, each in its dtype."""
    return state_change(new, old)


def apply_delta(state: State, delta: State, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """state + scale * delta, key by key (a new dict; the inputs are untouched); ``scale`` is
    for the floating entries, a counter takes its change as it is."""
    return add_change(state, delta, scale)
