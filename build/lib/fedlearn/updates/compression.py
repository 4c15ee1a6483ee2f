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
from fedlearn.portable import quantize_change
from fedlearn.portable import quantize_tensor as quantize  # noqa: F401 (the one quantizer)
from fedlearn.topk_portable import topk_densify as densify
from fedlearn.topk_portable import topk_sparsify, topk_with_feedback  # noqa: F401
from fedlearn.updates.update import State, is_counter


def dequantize(q: Mapping[str, torch.Tensor], shape, dtype=torch.float32) -> torch.Tensor:
    return (q["low"] + q["codes"].float() * q["scale"]).reshape(shape).to(dtype)


def _entries_problem(payload, reference: State, names: list[str], check) -> str | None:
    """What is wrong with ``payload``, one entry per weight of ``reference``: a counter sent
    exactly, anything else a dict of the tensors ``names`` that ``check(key, reference tensor,
    entry)`` accepts (it returns None or the problem)."""
    if not isinstance(payload, dict) or sorted(payload) != sorted(reference):
        return "not one entry per weight"
    for k, ref in reference.items():
        parts = payload[k]
        if is_counter(ref):
            exact = parts.get("exact") if isinstance(parts, dict) else None
            if (not isinstance(parts, dict) or sorted(parts) != ["exact"]
                    or not isinstance(exact, torch.Tensor) or exact.shape != ref.shape
                    or exact.dtype != ref.dtype):
                return f"{k!r} is not sent exactly as a {ref.dtype} counter"
            continue
        if not isinstance(parts, dict) or sorted(parts) != sorted(names) or not all(
                isinstance(v, torch.Tensor) for v in parts.values()):
            return f"{k!r} is not {', '.join(names[:-1])} and {names[-1]}"
        problem = check(k, ref, parts)
        if problem is not None:
            return problem
    return None


def quantized_problem(payload, reference: State, bits: int) -> str | None:
    """What is wrong with ``payload`` as :func:`~fedlearn.portable.quantize_change`'s output for
    ``reference``'s keys, shapes and dtypes at ``bits`` bits (None: nothing). A quantized update
    from elsewhere (a Datasite) is checked before it is decoded."""

    def check(k: str, ref: torch.Tensor, parts) -> str | None:
        codes, low, scale = parts["codes"], parts["low"], parts["scale"]
        if (codes.dtype != torch.uint8 or codes.shape != (ref.numel(),)
                or (codes.numel() and int(codes.max()) > 2 ** bits - 1)):
            return f"{k!r}'s codes are not {ref.numel()} {bits}-bit values"
        if any(v.dtype != torch.float32 or v.shape != (1,) or not torch.isfinite(v).all()
               for v in (low, scale)) or float(scale) <= 0:
            return f"{k!r}'s low and scale are not one finite float32 each (scale > 0)"
        return None

    return _entries_problem(payload, reference, ["codes", "low", "scale"], check)


def sparse_problem(payload, reference: State, fraction: float) -> str | None:
    """What is wrong with ``payload`` as :func:`~fedlearn.topk_portable.topk_with_feedback`'s
    output for ``reference`` at ``fraction`` (None: nothing): per tensor exactly
    ceil(fraction * n) distinct int32 indices in range and as many finite float32 values."""

    def check(k: str, ref: torch.Tensor, parts) -> str | None:
        n, indices, values = ref.numel(), parts["indices"], parts["values"]
        k_sent = max(1, math.ceil(fraction * n))
        if (indices.dtype != torch.int32 or indices.shape != (k_sent,)
                or int(indices.min()) < 0 or int(indices.max()) >= n
                or indices.unique().numel() != k_sent):
            return f"{k!r}'s indices are not {k_sent} distinct int32 positions below {n}"
        if values.dtype != torch.float32 or values.shape != (k_sent,) or not bool(
                torch.isfinite(values).all()):
            return f"{k!r}'s values are not {k_sent} finite float32 numbers"
        return None

    return _entries_problem(payload, reference, ["indices", "values"], check)


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
        if c.method == "quantize":  # the same code a Datasite's approved function runs
            return quantize_change(dict(delta), c.bits, generator)
        # the same function a Datasite's approved top-k code runs, on the client's residual
        residual = self.residual if c.error_feedback else {}
        return topk_with_feedback(dict(delta), residual, c.topk_fraction)

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
