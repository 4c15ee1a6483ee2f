"""What a data owner may upload as a shard, and the mock a data scientist sees instead.

A shard is ``images`` — the model's inputs: uint8 images (N, H, W) or (N, C, H, W), or
float32 images or tabular features (N, F) with finite values — and N integer class labels.
The approved code normalises the inputs as the scientist's request declares
(:class:`fedlearn.data.Normalisation`, shown to the owner at review). Anything else (float64,
NaN, strings, objects) is refused before it reaches the Datasite.
"""
from __future__ import annotations

import numpy as np


def shard_problem(images: np.ndarray, labels: np.ndarray) -> str | None:
    """What would keep (images, labels) from being a shard the approved code can train on."""
    if images.dtype not in (np.uint8, np.float32) or images.ndim not in (2, 3, 4):
        return (f"need uint8 images (N, H, W) or (N, C, H, W), or float32 images or features "
                f"(N, F), got {images.dtype} {images.shape}; convert floats with "
                ".astype(np.float32)")
    if images.dtype == np.float32 and not np.isfinite(images).all():
        return "the float32 images or features hold NaN or infinite values"
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        return (f"need {len(images)} integer labels (N,), got {labels.dtype} {labels.shape}")
    if len(labels) and labels.min() < 0:
        return "labels must be class indices >= 0"
    return None


def mocks(images: np.ndarray, labels: np.ndarray, size: int,
          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random noise of the shard's dtype and per-sample shape, and random labels below
    the largest class: enough to write code against, nothing about the data."""
    rng = np.random.default_rng(seed)
    shape = (size, *images.shape[1:])
    mock = (rng.integers(0, 256, shape, dtype=np.uint8) if images.dtype == np.uint8
            else rng.standard_normal(shape).astype(np.float32))
    classes = max(2, int(labels.max(initial=0)) + 1)
    return mock, rng.integers(0, classes, size).astype(np.int64)
