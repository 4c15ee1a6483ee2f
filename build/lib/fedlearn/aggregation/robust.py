"""Robust aggregation rules and update validation, as pure functions.

- Coordinate-wise median and trimmed mean: Yin, Chen, Ramchandran & Bartlett 2018,
  "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates".
- Krum: Blanchard, El Mhamdi, Guerraoui & Stainer 2017, "Machine Learning with
  Adversaries: Byzantine Tolerant Gradient Descent".

Each takes a list of updates (dicts of tensors with the same keys and shapes)
and returns one; integer buffers (counters) come out rounded, in their dtype, and are left
out of norms and distances. They ignore example counts on purpose: a hostile worker could
inflate its own.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from fedlearn.updates.update import State, Update, cast_like, is_counter, update_norm


def _stack(updates: Sequence[State], key: str) -> torch.Tensor:
    return torch.stack([u[key].to(torch.float64) for u in updates])  # (n, *shape)


def coordinate_median(updates: Sequence[State]) -> dict[str, torch.Tensor]:
    """Per coordinate, the median (the mean of the two middle values for even n)."""
    if not updates:
        raise ValueError("coordinate_median: no updates")
    out = {}
    for k in updates[0]:
        values = _stack(updates, k).sort(dim=0).values
        n = len(updates)
        mid = (values[(n - 1) // 2] + values[n // 2]) / 2
        out[k] = cast_like(mid, updates[0][k])
    return out


def trimmed_mean(updates: Sequence[State], trim_fraction: float) -> dict[str, torch.Tensor]:
    """Per coordinate, drop the floor(trim_fraction * n) largest and smallest values, average
    the rest."""
    if not 0 <= trim_fraction < 0.5:
        raise ValueError(f"trim_fraction: must be in [0, 0.5) (got {trim_fraction!r})")
    n = len(updates)
    if n == 0:
        raise ValueError("trimmed_mean: no updates")
    cut = int(math.floor(trim_fraction * n))
    out = {}
    for k in updates[0]:
        values = _stack(updates, k).sort(dim=0).values[cut:n - cut]
        out[k] = cast_like(values.mean(dim=0), updates[0][k])
    return out


def krum_select(updates: Sequence[State], num_byzantine: int) -> int:
    """Index of the update with the smallest sum of squared distances to its n - f - 2 nearest
    others."""
    n = len(updates)
    if n < 2 * num_byzantine + 3:
        raise ValueError(f"krum: needs n >= 2f + 3 updates (n={n}, f={num_byzantine})")
    keys = [k for k, v in updates[0].items() if not is_counter(v)]
    flat = torch.stack([torch.cat([u[k].to(torch.float64).flatten() for k in keys])
                        for u in updates])  # (n, d)
    dist = torch.cdist(flat, flat) ** 2
    closest = n - num_byzantine - 2
    scores = [dist[i][torch.arange(n) != i].sort().values[:closest].sum() for i in range(n)]
    return int(torch.stack(scores).argmin())


def validate_update(delta: object, reference: State, num_examples, *, max_examples: int | None,
                    max_norm: float | None = None) -> str | None:
    """Why ``delta`` must not be aggregated, or None if it passes every check."""
    if not isinstance(delta, Mapping) or set(delta) != set(reference):
        got = sorted(delta) if isinstance(delta, Mapping) else type(delta).__name__
        return f"keys differ from the global model's (got {got})"
    for k, ref in reference.items():
        t = delta[k]
        if not isinstance(t, torch.Tensor):
            return f"{k}: not a tensor ({type(t).__name__})"
        if t.shape != ref.shape or t.dtype != ref.dtype:
            return f"{k}: shape {tuple(t.shape)} {t.dtype}, expected {tuple(ref.shape)} {ref.dtype}"
        if not torch.isfinite(t).all():
            return f"{k}: contains NaN or infinite values"
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        return f"implausible example count {num_examples!r} (must be a positive integer)"
    if max_examples is not None and num_examples > max_examples:
        return f"implausible example count {num_examples} (at most {max_examples} possible)"
    if max_norm is not None:
        norm = update_norm(delta)
        if norm > max_norm:
            return f"update norm {norm:.3g} exceeds the bound {max_norm:.3g}"
    return None


def validate_upload(update: object, reference: State, *, max_examples: int | None,
                    max_norm: float | None = None) -> str | None:
    """Why an update as it crossed the wire (plain, compressed or masked,
    :mod:`fedlearn.updates.client_side`) must not be aggregated, or None if it passes.

    A compressed one is checked as the change it decodes to; a masked one can only be checked
    for its form (one int64 vector: every weight and the weight slot) and its example count.
    """
    if not isinstance(update, Update):
        return f"not an Update ({type(update).__name__})"
    encoding = update.encoding
    if encoding == "delta":
        delta: object = update.delta
    elif encoding == "compressed":
        from fedlearn.updates.compression import UpdateCompressor

        payload = update.payload
        if not isinstance(payload, Mapping) or set(payload) != set(reference):
            return "compressed payload: keys differ from the global model's"
        try:
            delta = UpdateCompressor.decode(payload, reference)
        except Exception as exc:  # a malformed payload is the sender's fault, not a crash
            return f"compressed payload does not decode: {type(exc).__name__}: {exc}"
    elif encoding == "masked":
        size = sum(v.numel() for v in reference.values()) + 1
        masked = update.payload.get("masked") if isinstance(update.payload, Mapping) else None
        if (set(update.payload) != {"masked"} or not isinstance(masked, torch.Tensor)
                or masked.dtype not in (torch.int16, torch.int32, torch.int64)
                or tuple(masked.shape) != (size,)):
            return f"masked payload: expected one vector of {size} ring elements"
        delta = dict(reference)  # its form is right; its values are the masks' secret
        max_norm = None
    else:
        return f"unknown encoding {encoding!r}"
    return validate_update(delta, reference, update.num_examples, max_examples=max_examples,
                           max_norm=max_norm)
