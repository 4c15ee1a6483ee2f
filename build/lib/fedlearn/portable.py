"""The code that ships inside every code request: normalisation, local training, evaluation.

This source is copied into every code request; any edit changes what owners approve.
:mod:`fedlearn.backends.pysyft.training_code` inlines this file (everything after this
docstring) into the function a data scientist submits to a Datasite, and fedlearn's
in-process workers, the Ray workers and the centralized baseline import the very same
functions (through :mod:`fedlearn.training`), so every backend runs literally the same code
and the same seed gives the same weights. An owner's review recognises the generated
function by its SHA-256, and ``tests/test_portable.py`` pins this file's: change it only on
purpose, and update the pinned digest in the same commit.

So the rules here are strict: plain ``torch`` and the standard library only (no import of
fedlearn), no module-level state (no constants, no globals), and annotations that Python
can evaluate where the code is ``exec``-ed (no ``from __future__ import annotations``).
``plan`` is anything with the attributes of :class:`fedlearn.config.TrainPlan`: the Datasite
passes a ``types.SimpleNamespace``.
"""
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def normalise(x: torch.Tensor, divide_by: float, mean: tuple, std: tuple) -> torch.Tensor:
    """``(x / divide_by - mean) / std`` as float32, per channel (per feature for tables).

    ``x`` is (N, H, W) single-channel images (given a channel axis: (N, 1, H, W)), (N, C, H,
    W) images, or (N, F) tabular features, of any real dtype (uint8 pixels, float images or
    features). ``mean`` and ``std`` hold one value for all channels or one per channel
    (C, or F for tables). Raises ValueError, naming the mismatch, for anything else.
    """
    x = torch.as_tensor(x)
    if x.dtype == torch.bool or x.is_complex() or x.dim() not in (2, 3, 4):
        raise ValueError(f"normalise takes real (N, H, W), (N, C, H, W) or (N, F) data, got "
                         f"{x.dtype} of shape {tuple(x.shape)}")
    if x.dim() == 3:  # (N, 28, 28) uint8 -> (N, 1, 28, 28): one channel
        x = x.unsqueeze(1)
    values = [divide_by, *mean, *std]
    if len(mean) != len(std) or len(mean) not in (1, x.shape[1]):
        raise ValueError(f"the normalisation has {len(mean)} mean(s) and {len(std)} std(s), "
                         f"the data {x.shape[1]} channel(s) or feature(s): give one mean and "
                         "one std, or one of each per channel")
    if not all(math.isfinite(v) for v in values) or min([divide_by, *std]) <= 0:
        raise ValueError("the normalisation's divide_by and stds must be finite and > 0, its "
                         "means finite")
    shape = (1, len(mean)) + (1,) * (x.dim() - 2)  # broadcast over the channel axis
    m = torch.tensor(mean, dtype=torch.float32).reshape(shape)
    s = torch.tensor(std, dtype=torch.float32).reshape(shape)
    # normalised once, not per sample
    return ((x.float() / float(divide_by) - m) / s).contiguous()


def make_optimizer(model: nn.Module, plan) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=plan.lr, momentum=plan.momentum,
                           weight_decay=plan.weight_decay)


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, plan, *, seed: int,
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
           plan, seed: int, start: int, stop: int, epochs: int, progress) -> dict:
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
def clip_change(delta: dict, max_norm: float) -> dict:
    """``delta`` scaled so that the L2 norm of its floating tensors is at most ``max_norm``:
    DP-FedAvg's per-client clipping (McMahan et al. 2018, "Learning Differentially Private
    Recurrent Language Models"). Integer buffers (counters) pass unchanged, outside the norm."""
    norm = math.sqrt(sum(float(v.to(torch.float64).pow(2).sum()) for v in delta.values()
                         if v.is_floating_point() or v.is_complex()))
    factor = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {k: v * factor if v.is_floating_point() or v.is_complex() else v
            for k, v in delta.items()}


@torch.no_grad()
def quantize_tensor(t: torch.Tensor, bits: int, generator: torch.Generator) -> dict:
    """Unbiased stochastic quantization of ``t`` to ``bits`` bits per value (QSGD-style:
    Alistarh et al. 2017, "QSGD: Communication-Efficient SGD via Gradient Quantization and
    Encoding"; Konečný et al. 2016, "Federated Learning: Strategies for Improving Communication
    Efficiency"): its values mapped onto 2^bits evenly spaced levels between its min and max,
    rounded up or down at random (``generator``) so that the mean is exact."""
    flat = t.detach().flatten().float().cpu()
    low, high = flat.min(), flat.max()
    levels = 2 ** bits - 1
    scale = (high - low) / levels if high > low else torch.tensor(1.0)
    position = (flat - low) / scale  # in [0, levels]
    floor = position.floor()
    up = torch.rand(flat.shape, generator=generator) < (position - floor)
    codes = (floor + up).clamp(0, levels).to(torch.uint8)
    return {"codes": codes, "low": low.reshape(1), "scale": scale.reshape(1)}


def quantize_change(delta: dict, bits: int, generator: torch.Generator) -> dict:
    """``delta`` as it goes on the wire quantized: ``bits``-bit codes per floating tensor
    (:func:`quantize_tensor`, drawing from ``generator`` tensor by tensor in ``delta``'s
    order), counters (integer buffers) exactly."""
    out = {k: {"exact": v.detach().clone()} for k, v in delta.items()
           if not (v.is_floating_point() or v.is_complex())}
    for k, v in delta.items():
        if k not in out:
            out[k] = quantize_tensor(v, bits, generator)
    return out


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

