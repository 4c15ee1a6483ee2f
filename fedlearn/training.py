"""Local training and evaluation: plain PyTorch minibatch SGD on in-memory tensors.

Nothing here knows about federation. Workers, the centralized baseline and the
PySyft code request all call these same functions, so their numbers compare.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fedlearn.config import ConfigError, TrainPlan


def derive_seed(seed: int, round_: int, worker: int) -> int:
    """The seed of one worker's call in one round: every draw of a run comes from
    ``(seed, round, worker)`` (numpy's SeedSequence), so a resumed run draws the same."""
    return int(np.random.SeedSequence([seed, round_, worker]).generate_state(1)[0])


def make_optimizer(model: nn.Module, plan: TrainPlan) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=plan.lr, momentum=plan.momentum,
                           weight_decay=plan.weight_decay)


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, plan: TrainPlan, *, seed: int,
                 batches: tuple[int, int] | None = None, progress=None) -> dict:
    """Run ``plan.epochs`` shuffled passes over (x, y) with ``optimizer``.

    ``seed`` fixes the shuffling and every random draw the model makes while training
    (dropout, a random augmentation inside ``forward``): they come from torch's default
    generator, reseeded here from ``seed`` (and ``start``) inside a fork of its state, so the
    same seed gives the same weights wherever the worker runs and the caller's random state is
    left as it was. ``batches=(start, stop)`` runs only those
    minibatches of a single pass (federated SGD visits one batch at a time).
    ``progress``, if given, is a tqdm-like object advanced once per batch.
    With ``plan.prox_mu`` > 0 the loss gains FedProx's proximal term
    (mu/2)·||w - w_start||² (Li et al. 2020, "Federated Optimization in
    Heterogeneous Networks"), which keeps local training near the global model.
    Returns the mean training loss and how many steps and examples were used.
    """
    n, bs = len(y), plan.batch_size
    start, stop = batches if batches is not None else (0, num_batches(n, bs))
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # one hop of model hopping (start > 0) must not replay the first hop's dropout masks
        torch.manual_seed(seed if start == 0 else seed ^ (start * 0x9E3779B1))
        return _train(model, optimizer, x, y, plan, seed, start, stop,
                      1 if batches is not None else plan.epochs, progress)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
           plan: TrainPlan, seed: int, start: int, stop: int, epochs: int, progress) -> dict:
    generator = torch.Generator().manual_seed(seed)
    n, bs = len(y), plan.batch_size
    model.train()
    # bf16: autocast the forward pass (weights and the optimizer stay fp32); channels-last:
    # NHWC convolutions. The fp32 default leaves the model in (or puts it back in) the
    # default memory format, so a scratch model shared between runs never carries one over.
    bf16 = getattr(plan, "precision", "fp32") == "bf16"
    nhwc = getattr(plan, "channels_last", False)
    model.to(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
    mu = getattr(plan, "prox_mu", 0.0)
    anchor = [p.detach().clone() for p in model.parameters()] if mu > 0 else None
    loss_sum = torch.zeros((), device=x.device)
    steps = examples = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        for b in range(start, stop):
            idx = order[b * bs:(b + 1) * bs]
            optimizer.zero_grad(set_to_none=True)
            xb = x[idx].contiguous(memory_format=torch.channels_last) if nhwc else x[idx]
            with (torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16
                  else contextlib.nullcontext()):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), y[idx])
            if anchor is not None:
                prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                (loss + mu / 2 * prox).backward()
            else:
                loss.backward()
            optimizer.step()
            # accumulate on the device: .item() per step would force a sync on CUDA
            loss_sum += loss.detach() * len(idx)
            steps += 1
            examples += len(idx)
            if progress is not None:
                progress.update(1)
    return {"loss": (loss_sum / max(examples, 1)).item(), "steps": steps, "examples": examples}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits for every row of ``x``, computed in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1000) -> dict:
    """Mean cross-entropy and accuracy of ``model`` on (x, y)."""
    logits = predict(model, x, batch_size)
    loss = F.cross_entropy(logits, y, reduction="mean").item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return {"loss": loss, "accuracy": accuracy, "examples": len(y)}


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
