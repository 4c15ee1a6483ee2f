"""Compressing updates for the slow upload link.

- Stochastic b-bit quantization (QSGD-style; Alistarh et al. 2017, "QSGD:
  Communication-Efficient SGD via Gradient Quantization and Encoding"; and
  Konečný et al. 2016, "Federated Learning: Strategies for Improving
  Communication Efficiency"): per tensor, values are mapped onto 2^b evenly
  spaced levels between its min and max and rounded up or down at random so that
  the result is unbiased. Wire size: b bits per value plus min and max (float32).
- Top-k sparsification with error feedback (Stich, Cordonnier & Jaggi 2018,
  "Sparsified SGD with Memory"): only the k largest-magnitude coordinates of
  (update + residual) are sent, as int32 indices and float32 values; what was
  not sent is kept in the worker's residual and added next round.

Counters (integer buffers such as BatchNorm's ``num_batches_tracked``) are sent exactly.
Encoded payloads are dicts of tensors; :func:`payload_nbytes` counts exactly what
a compact wire format would carry (b-bit codes are counted packed).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from fedlearn.config import CompressionConfig
from fedlearn.updates.update import State, is_counter


def quantize(t: torch.Tensor, bits: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Unbiased stochastic quantization of ``t`` to ``bits`` bits per value."""
    flat = t.detach().flatten().float().cpu()
    low, high = flat.min(), flat.max()
    levels = 2 ** bits - 1
    scale = (high - low) / levels if high > low else torch.tensor(1.0)
    position = (flat - low) / scale  # in [0, levels]
    floor = position.floor()
    up = torch.rand(flat.shape, generator=generator) < (position - floor)
    codes = (floor + up).clamp(0, levels).to(torch.uint8)
    return {"codes": codes, "low": low.reshape(1), "scale": scale.reshape(1)}


def dequantize(q: Mapping[str, torch.Tensor], shape, dtype=torch.float32) -> torch.Tensor:
    return (q["low"] + q["codes"].float() * q["scale"]).reshape(shape).to(dtype)


def topk_sparsify(t: torch.Tensor, fraction: float) -> dict[str, torch.Tensor]:
    """The ceil(fraction * n) largest-magnitude entries of ``t``: indices and values."""
    flat = t.detach().flatten().float()
    k = max(1, math.ceil(fraction * flat.numel()))
    indices = flat.abs().topk(k, sorted=False).indices
    return {"indices": indices.to(torch.int32).cpu(), "values": flat[indices].cpu()}


def densify(s: Mapping[str, torch.Tensor], shape, dtype=torch.float32) -> torch.Tensor:
    out = torch.zeros(math.prod(shape), dtype=torch.float32)
    out[s["indices"].long()] = s["values"]
    return out.reshape(shape).to(dtype)


def payload_nbytes(payload: Mapping[str, Mapping[str, torch.Tensor]], bits: int = 8) -> int:
    """Bytes on the wire for an encoded update; quantization codes are packed ``bits`` per value."""
    total = 0
    for parts in payload.values():
        for name, t in parts.items():
            if name == "codes":
                total += math.ceil(t.numel() * bits / 8)
            else:
                total += t.numel() * t.element_size()
    return total


class UpdateCompressor:
    """One worker's encoder: stateless for quantization, a residual for top-k."""

    def __init__(self, config: CompressionConfig):
        self.config = config
        self.residual: dict[str, torch.Tensor] = {}

    def encode(self, delta: State,
               generator: torch.Generator) -> dict[str, dict[str, torch.Tensor]]:
        c = self.config
        payload: dict[str, dict[str, torch.Tensor]] = {
            k: {"exact": v.detach().clone()} for k, v in delta.items() if is_counter(v)}
        if c.method == "quantize":
            return payload | {k: quantize(v, c.bits, generator) for k, v in delta.items()
                              if k not in payload}
        for k, v in delta.items():
            if k in payload:
                continue
            corrected = v + self.residual[k] if c.error_feedback and k in self.residual else v
            payload[k] = topk_sparsify(corrected, c.topk_fraction)
            if c.error_feedback:
                sent = densify(payload[k], v.shape).to(v)
                self.residual[k] = (corrected - sent).detach()
        return payload

    @staticmethod
    def decode(payload, reference: State) -> dict[str, torch.Tensor]:
        out = {}
        for k, ref in reference.items():
            parts = payload[k]
            tensor = (parts["exact"] if "exact" in parts  # a counter, sent as it is
                      else dequantize(parts, ref.shape) if "codes" in parts
                      else densify(parts, ref.shape))
            out[k] = tensor.to(device=ref.device, dtype=ref.dtype)
        return out

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.residual.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.residual = dict(state)
