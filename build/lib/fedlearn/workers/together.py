"""Many in-process clients trained together: one batched computation instead of a loop.

On a GPU one client's B = 10 step is mostly kernel-launch overhead, so a round's clients go
faster as one computation: their weights stacked along a new first dimension, each step's
gradients for all of them at once with ``torch.func`` (``vmap`` over ``grad`` of a
``functional_call``), and plain SGD — momentum, weight decay and FedProx's proximal term as
``torch.optim.SGD`` and :func:`fedlearn.training.train_epochs` apply them — on the stack.

Each client keeps its own data, its own seeded shuffling (the same permutations
``train_epochs`` draws) and its own number of steps: a client with less data stops early (its
slot is masked), and a short last batch is padded and masked out of the mean. The updates equal
those of training each client alone, within float tolerance (the sums are ordered differently).
This runs on the clients' side: it returns updates, never samples.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from fedlearn.config import TrainPlan
from fedlearn.models import build_model
from fedlearn.training import num_batches
from fedlearn.updates import State, Update


def can_train_together(model: nn.Module) -> str | None:
    """None if ``model`` can be trained stacked; else why not (state or randomness per call)."""
    if any(True for _ in model.buffers()):
        return f"{type(model).__name__} has buffers (e.g. batch norm statistics)"
    random = [type(m).__name__ for m in model.modules()
              if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.AlphaDropout))]
    if random:
        return f"{type(model).__name__} draws random numbers in training ({random[0]})"
    return None


def fit_together(clients: Sequence[tuple[str, torch.Tensor, torch.Tensor]], model_spec,
                 weights: State, plan: TrainPlan, seeds: Sequence[int]) -> list[Update]:
    """Train every (name, x, y) client from ``weights`` as ``plan`` says; one update each."""
    device = next(iter(weights.values())).device
    model = build_model(model_spec, seed=0).to(device)
    k = len(clients)
    params = {name: weights[name].detach().unsqueeze(0).repeat(k, *[1] * weights[name].dim())
              for name, _ in model.named_parameters()}
    anchor = {name: p.clone() for name, p in params.items()} if plan.prox_mu > 0 else None
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    bs, sizes = plan.batch_size, [len(y) for _, _, y in clients]
    per_epoch = [num_batches(n, bs) for n in sizes]
    orders = []  # the permutations train_epochs draws: one generator per client, one per epoch
    for (_, _, y), seed in zip(clients, seeds):
        generator = torch.Generator().manual_seed(seed)
        orders.append([torch.randperm(len(y), generator=generator).to(device)
                       for _ in range(plan.epochs)])

    bf16 = plan.precision == "bf16"

    def loss_fn(p, x, y, mask, start):
        with (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
              else contextlib.nullcontext()):
            logits = functional_call(model, p, (x,))
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        loss = (ce * mask).sum() / mask.sum().clamp(min=1)
        if anchor is None:
            return loss, loss
        prox = sum(((p[n] - start[n]) ** 2).sum() for n in p)
        return loss + plan.prox_mu / 2 * prox, loss

    step_all = vmap(grad_and_value(loss_fn, has_aux=True))
    loss_sum = torch.zeros(k, device=device)
    seen = torch.zeros(k, dtype=torch.long)
    for step in range(max(e * plan.epochs for e in per_epoch)):
        xs, ys, masks, active = [], [], [], []
        for c, (_, x, y) in enumerate(clients):
            running = step < per_epoch[c] * plan.epochs
            epoch, b = divmod(step, per_epoch[c]) if running else (0, 0)
            idx = orders[c][epoch][b * bs:(b + 1) * bs] if running else orders[c][0][:0]
            pad = bs - len(idx)
            xs.append(torch.cat([x[idx], x[:1].expand(pad, *x.shape[1:])]))
            ys.append(torch.cat([y[idx], y[:1].expand(pad)]))
            masks.append(torch.cat([torch.ones(len(idx), device=device),
                                    torch.zeros(pad, device=device)]))
            active.append(running)
            seen[c] += len(idx)
        mask = torch.stack(masks)
        grads, (_, losses) = step_all(params, torch.stack(xs), torch.stack(ys), mask,
                                      anchor if anchor is not None else params)
        on = torch.tensor(active, device=device)
        loss_sum += torch.where(on, losses.detach() * mask.sum(1), 0.0)
        with torch.no_grad():  # torch.optim.SGD, per client, only where it still trains
            for name, p in params.items():
                shape = (k,) + (1,) * (p.dim() - 1)
                d_p = grads[name] + plan.weight_decay * p if plan.weight_decay else grads[name]
                v = plan.momentum * velocity[name] + d_p if plan.momentum else d_p
                live = on.view(shape)
                velocity[name] = torch.where(live, v, velocity[name])
                params[name] = torch.where(live, p - plan.lr * v, p)
    updates = []
    for c, (name, _, _) in enumerate(clients):
        delta = {n: params[n][c] - weights[n] for n in params}
        examples = int(seen[c])
        metrics = {"loss": (loss_sum[c] / max(examples, 1)).item(),
                   "steps": per_epoch[c] * plan.epochs, "examples": examples}
        updates.append(Update(name, delta, examples, metrics))
    return updates
