"""Trap weights: training images out of fedlearn's approved, unmodified function (issue #24, 4).

The construction is the "imprint" of Fowl et al. 2022, "Robbing the Fed: directly obtaining
private data in federated learning with modified models", here done with weights alone
(Boenisch et al. 2023, "When the curious abandon honesty: federated learning is not
private"), for the ready-made ``mlp2nn`` (fc1 784->200, fc2 200->200, fc3 200->10, ReLU):

- fc1: every row is ``SCALE * a`` for one unit direction ``a``, the biases ``-SCALE * t_i``
  with rising thresholds ``t_0 < ... < t_199``: unit i fires for image x iff ``a.x > t_i``;
- fc2: one gate unit takes every fc1 unit with weight ``GATE`` and stays on (bias 1); every
  other unit is off (weights 0, bias -1);
- fc3: the gate feeds class c's logit with weight ``c - 4.5``, so no image's gradient is 0.

One full-batch SGD step (batch_size >= N, one epoch, no momentum) then changes fc1 row i by
``-lr/N * GATE * sum_{j: a.x_j > t_i} g_j x_j`` and its bias by the same sum without ``x_j``.
Where one image j alone has ``t_i < a.x_j <= t_{i+1}``, the difference of rows i and i+1
divided by the difference of their bias changes is ``x_j`` exactly; ``g_j``, known from the
bias difference, gives the label (the attacker can compute the logits of ``x_j``). Bins
holding two images or more give a blend, not integer grey levels: the next call splits
them. Thresholds start at quantiles of ``a.x`` over public images (the MNIST test set).

Distances: an image is *recovered exactly* when a reconstruction is within half a grey level
of it everywhere (it rounds to the same uint8 image), and *recognisable* when a
reconstruction, clipped to [0, 255], is within PSNR >= 25 dB of it (root-mean-square error
<= 14.3 grey levels). A lower bar would count look-alikes: for 300 training images, the
nearest of 2,000 public MNIST test images reaches 14.4 dB (median) and 24.5 dB (best).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from fedlearn.data.mnist import MNIST_MEAN, MNIST_STD

UNITS = 200  # fc1 rows of mlp2nn: one threshold each
SCALE, GATE = 1e-4, 1.0  # small fc1 rows keep the gate's output (and the logits) small
CLASS_WEIGHTS = torch.arange(10, dtype=torch.float32) - 4.5
PLAN = {"epochs": 1, "batch_size": 8192, "lr": 10.0, "momentum": 0.0, "weight_decay": 0.0,
        "prox_mu": 0.0, "precision": "fp32", "channels_last": False}
RECOGNISABLE_DB = 25.0


class Guess(NamedTuple):
    image: torch.Tensor  # (784,) grey levels, not rounded
    label: int
    clean: bool  # integer grey levels: one image, not a blend


def grey(x: torch.Tensor) -> torch.Tensor:
    """Normalised (..., 784) -> grey levels 0..255 (as floats, not rounded)."""
    return (x * MNIST_STD + MNIST_MEAN) * 255.0


def normalised(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> (N, 784), as fedlearn's function normalises them."""
    return ((torch.as_tensor(images).float() / 255.0 - MNIST_MEAN) / MNIST_STD).flatten(1)


def trap_weights(direction: torch.Tensor, thresholds: torch.Tensor) -> dict[str, torch.Tensor]:
    """mlp2nn weights whose fc1 units fire for images with ``direction . x`` above each
    threshold (``thresholds``: UNITS rising values)."""
    fc1 = (SCALE * direction).expand(UNITS, -1).clone()
    fc2 = torch.zeros(UNITS, UNITS)
    fc2[0] = GATE
    fc2_bias = torch.full((UNITS,), -1.0)
    fc2_bias[0] = 1.0
    fc3 = torch.zeros(10, UNITS)
    fc3[:, 0] = CLASS_WEIGHTS
    return {"fc1.weight": fc1, "fc1.bias": -SCALE * thresholds.float(), "fc2.weight": fc2,
            "fc2.bias": fc2_bias, "fc3.weight": fc3, "fc3.bias": torch.zeros(10)}


def logits(weights: dict, x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ weights["fc1.weight"].T + weights["fc1.bias"])
    h = torch.relu(h @ weights["fc2.weight"].T + weights["fc2.bias"])
    return h @ weights["fc3.weight"].T + weights["fc3.bias"]


def reconstruct(delta: dict, weights: dict, *, lr: float, examples: int):
    """Per bin (rows i, i+1; the last row alone): (image in grey levels (784,), label, the
    bin's bias difference). Empty bins are left out."""
    rows = torch.cat([delta["fc1.weight"].double(), torch.zeros(1, 784, dtype=torch.float64)])
    bias = torch.cat([delta["fc1.bias"].double(), torch.zeros(1, dtype=torch.float64)])
    found = []
    for i in range(UNITS):
        step = bias[i] - bias[i + 1]
        if step == 0:
            continue
        x = ((rows[i] - rows[i + 1]) / step).float()
        # the bias change is -lr/N * GATE * g, and g = w.softmax(logits) - w[label]
        g = -float(step) * examples / (lr * GATE)
        p = torch.softmax(logits(weights, x[None]), 1)[0]
        label = int((CLASS_WEIGHTS - (float(CLASS_WEIGHTS @ p) - g)).abs().argmin())
        found.append((i, grey(x), label, float(step)))
    return found


def is_clean(image: torch.Tensor) -> bool:
    """A single image, not a blend of several: every grey level an integer in 0..255."""
    return bool((image - image.round()).abs().max() < 0.05
                and image.min() > -0.5 and image.max() < 255.5)


def attack(call: Callable[[dict], dict | None], public: np.ndarray, examples: int, *,
           calls: int, lr: float = PLAN["lr"], seed: int = 0) -> list[Guess]:
    """Up to ``calls`` calls of ``call(weights) -> delta`` (None: refused, stop there).

    Returns every bin's reconstruction. The first call bins by quantiles of the measurement
    over ``public`` images; each later call spends all UNITS thresholds on bins that held
    two images or more (their reconstruction is not clean).
    """
    direction = torch.randn(784, generator=torch.Generator().manual_seed(seed))
    direction /= direction.norm()
    measured = np.sort((normalised(public) @ direction).numpy())
    span = measured[-1] - measured[0]
    quantiles = np.quantile(measured, np.linspace(0, 1, UNITS))
    quantiles[0], quantiles[-1] = measured[0] - span, measured[-1] + span
    thresholds = torch.as_tensor(quantiles, dtype=torch.float64)
    guesses: list[Guess] = []
    pending: list[tuple[float, float]] = []  # bins that held two images or more
    for _ in range(calls):
        weights = trap_weights(direction, thresholds)
        delta = call(weights)
        if delta is None:
            break
        for i, image, label, _step in reconstruct(delta, weights, lr=lr, examples=examples):
            guesses.append(Guess(image, label, is_clean(image)))
            if not guesses[-1].clean and i + 1 < UNITS:
                pending.append((float(thresholds[i]), float(thresholds[i + 1])))
        if not pending:
            break
        taken, pending = pending[:UNITS // 3], pending[UNITS // 3:]
        per_bin = UNITS // len(taken) - 1  # sub-bins per blended bin: at least 2
        points = np.unique(np.concatenate([np.linspace(lo, hi, per_bin + 1)
                                           for lo, hi in taken]))
        top = points[-1] + span * np.arange(1, UNITS - len(points) + 1)  # rows that never fire
        thresholds = torch.as_tensor(np.concatenate([points, top]), dtype=torch.float64)
    return guesses


def psnr(guesses: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (grey levels 0..255) of each guess (G, 784), clipped
    to [0, 255], against each true image (N, 784): (G, N)."""
    mse = torch.cdist(guesses.clamp(0, 255).double(), truth.double()) ** 2 / guesses.shape[1]
    return 10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-12))


def score(found: list[Guess], images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How many private images came back exactly (with their label) and recognisably, and
    the best PSNR any guess reached."""
    if not found:
        return {"exact": 0, "exact_with_label": 0, "recognisable": 0, "best_psnr_db": 0.0}
    truth = torch.as_tensor(images).flatten(1).float()
    guesses = torch.stack([guess.image for guess in found])
    errors = torch.stack([(guesses - image).abs().amax(1) for image in truth], 1)  # (G, N)
    closest = errors.argmin(0)
    exact = errors.min(0).values < 0.5
    labelled = exact & (torch.tensor([found[int(g)].label for g in closest])
                        == torch.as_tensor(labels))
    best = psnr(guesses, truth).max(0).values
    return {"exact": int(exact.sum()), "exact_with_label": int(labelled.sum()),
            "recognisable": int((best >= RECOGNISABLE_DB).sum()),
            "best_psnr_db": round(float(best.max()), 1)}
