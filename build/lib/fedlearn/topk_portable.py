"""Top-k sparsification with error feedback, as stateless functions shipped inside a code request.

Stich, Cordonnier & Jaggi 2018, "Sparsified SGD with Memory": each tensor sends only the
ceil(fraction * n) largest-magnitude coordinates of (update + residual), as int32 indices and
float32 values; what was not sent becomes the new residual, added to the next round's update,
so nothing is lost, only delayed. Counters (integer and boolean buffers such as BatchNorm's
``num_batches_tracked``) are sent exactly.

The residual is the caller's: in-process it is the client's own (:class:`fedlearn.updates.
compression.UpdateCompressor`); on a Datasite it is the owner's, kept by the Datasite's server
between calls and handed to the approved function (:mod:`fedlearn.backends.pysyft.
residual_keeper`), never returned. Both run these functions, so both send the same coordinates.

Like fedlearn/portable.py: torch and the standard library only, no import of fedlearn, no
module-level state; every name starts ``topk_`` so it can be inlined beside portable.py.
"""
import math

import torch


def topk_sparsify(t: torch.Tensor, fraction: float) -> dict:
    """The ceil(fraction * n) largest-magnitude entries of ``t``: indices and values."""
    flat = t.detach().flatten().float()
    k = max(1, math.ceil(fraction * flat.numel()))
    indices = flat.abs().topk(k, sorted=False).indices
    return {"indices": indices.to(torch.int32).cpu(), "values": flat[indices].cpu()}


def topk_densify(s: dict, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The dense tensor a sparse entry stands for (zeros where nothing was sent)."""
    out = torch.zeros(math.prod(shape), dtype=torch.float32)
    out[s["indices"].long()] = s["values"]
    return out.reshape(shape).to(dtype)


def topk_with_feedback(delta: dict, residual: dict, fraction: float) -> dict:
    """The sparse payload of ``delta`` + ``residual``; ``residual`` is updated in place to what
    was not sent (pass a fresh ``{}`` for top-k without error feedback)."""
    payload = {k: {"exact": v.detach().clone()} for k, v in delta.items()
               if not (v.is_floating_point() or v.is_complex())}
    for k, v in delta.items():
        if k in payload:
            continue
        corrected = v + residual[k] if k in residual else v
        payload[k] = topk_sparsify(corrected, fraction)
        residual[k] = (corrected - topk_densify(payload[k], v.shape).to(v)).detach()
    return payload
