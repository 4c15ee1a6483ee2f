"""Local training and evaluation: plain PyTorch minibatch SGD on in-memory tensors.

Nothing here knows about federation. The training and evaluation functions live in
:mod:`fedlearn.portable`, the self-contained file every PySyft code request inlines, and are
re-exported here: in-process workers, Ray workers, the centralized baseline and the code an
owner approves run literally the same code, so their numbers compare. What stays here is
what only the scientist's machine needs: whether a device computes bf16 natively.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fedlearn.config import ConfigError, TrainPlan
from fedlearn.portable import evaluate, make_optimizer, num_batches, predict, train_epochs


def derive_seed(seed: int, round_: int, worker: int) -> int:
    """The seed of one worker's call in one round: every draw of a run comes from
    ``(seed, round, worker)`` (numpy's SeedSequence), so a resumed run draws the same."""
    return int(np.random.SeedSequence([seed, round_, worker]).generate_state(1)[0])


__all__ = ["check_compute", "derive_seed", "evaluate", "make_optimizer",
           "native_bf16", "num_batches", "predict", "train_epochs"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU that says so, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 is emulated, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no cheap way to tell
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_compute(plan: TrainPlan, model: nn.Module, device: torch.device) -> None:
    """Refuse a precision or memory format this device or model cannot use well."""
    if plan.precision == "bf16" and not native_bf16(device):
        raise ConfigError("plan.precision", f"bf16 needs native bfloat16 on {device.type}: a "
                          "CPU with AVX512-BF16 or AMX, or a GPU with bf16 support; use fp32")
    if plan.channels_last and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ConfigError("plan.channels_last", f"is for convolutional models; "
                          f"{type(model).__name__} has no Conv2d layer")
