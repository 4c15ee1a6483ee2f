"""Tensors across Ray as numpy arrays: Ray moves numpy buffers without pickling them (a
McMahan-CNN state, 6.6 MB, goes to an actor and back in about 3 ms as numpy, 70 ms as torch
tensors here). Values are unchanged, so the weights stay bit-identical; a dtype numpy lacks
(bfloat16) travels as a tensor. What an actor is sent and answers are small dataclasses
below."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedlearn.updates import Update


def to_wire(state) -> dict:
    """Tensors as numpy arrays, in nested dicts too (a compressed update's payload)."""
    return {k: to_wire(v) if isinstance(v, dict)
            else v.detach().cpu().numpy() if isinstance(v, torch.Tensor)
            and v.dtype != torch.bfloat16 else v for k, v in state.items()}


def from_wire(state: dict) -> dict:
    # a copy: Ray's arrays are read-only views of its object store
    return {k: from_wire(v) if isinstance(v, dict)
            else torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v
            for k, v in state.items()}


def update_to_wire(update):
    """An Update as plain parts; anything else as it is (the driver's check refuses it)."""
    if isinstance(update, Update) and isinstance(update.delta, dict) and all(
            isinstance(v, torch.Tensor) for v in update.delta.values()):
        return ("update", update.worker, to_wire(update.delta), update.num_examples,
                update.metrics, update.encoding, to_wire(update.payload))
    return update


def update_from_wire(reply):
    if isinstance(reply, tuple) and len(reply) == 7 and reply[0] == "update":
        _, worker, delta, num_examples, metrics, encoding, payload = reply
        return Update(worker, from_wire(delta), num_examples, metrics, encoding,
                      from_wire(payload))
    return reply


@dataclass(frozen=True)
class ActorCall:
    """What an actor is sent for one client: its name, its shard (a list holding the object
    store reference, so Ray does not resolve it before the actor looks in its cache), the
    shard's size for the cache's bound, the worker's own state, and the call's seed."""

    client: str
    shard: list
    shard_bytes: int
    state: dict | None
    seed: int


@dataclass(frozen=True)
class CallReply:
    """One client's result: an update on the wire (``ok``) or the reason it failed; the worker's
    state comes back on failure too (a call that failed still counted, as in-process)."""

    ok: bool
    payload: Any  # update_to_wire(update), or the failure's reason
    state: dict | None


@dataclass(frozen=True)
class ActorAnswer:
    """An actor's answer to one task: a reply per call, how many were trained together, how
    many shards it had to fetch, and the clients whose shards it now keeps."""

    replies: list[CallReply]
    trained_together: int = 0
    fetched: int = 0
    held: tuple[str, ...] = ()
