"""Atomic checkpoints that load safely.

A checkpoint is written to a temporary file in the same directory, flushed to
disk and renamed over the old one, so a run killed at any moment leaves either
the previous checkpoint or the new one — never half a file. Loading uses
``torch.load(weights_only=True)``: tensors and plain containers only, no pickle.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fedlearn.errors import FedlearnError
from fedlearn.files import atomic_write

FORMAT_VERSION = 1


class CheckpointError(FedlearnError, RuntimeError):
    """A checkpoint is unreadable or belongs to another configuration."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    atomic_write(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **payload}, f),
                 durable=True)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or not a fedlearn checkpoint "
                              f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a fedlearn checkpoint of format "
                              f"version {FORMAT_VERSION}")
    return payload
