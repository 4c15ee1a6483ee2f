"""A round's global weights in one block of shared memory: written once, read by every process.

The parent copies the weights into the block at the start of each round
(:meth:`SharedWeights.write`); each worker process maps the same block and reads the tensors
as views of it (:class:`AttachedWeights`), so no client's call copies or pickles the weights
(a worker copies them into its model itself, as in-process). The block is remade only when the
weights' layout (names, dtypes, shapes) changes. Values are copied bit for bit, so the weights
stay identical to the parent's.
"""
from __future__ import annotations

from collections.abc import Mapping
from multiprocessing import shared_memory

import torch

# (name, dtype, shape, byte offset) for each tensor, in the weights' order
Layout = tuple[tuple[str, str, tuple[int, ...], int], ...]
ALIGN = 64  # each tensor starts on a cache line


def layout_of(weights: Mapping[str, torch.Tensor]) -> tuple[Layout, int]:
    """Where each tensor lies in the block, and the block's size in bytes."""
    rows, offset = [], 0
    for name, tensor in weights.items():
        rows.append((name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape),
                     offset))
        offset += -(-tensor.numel() * tensor.element_size() // ALIGN) * ALIGN
    return tuple(rows), max(offset, 1)


def views(block: shared_memory.SharedMemory, layout: Layout) -> dict[str, torch.Tensor]:
    """The tensors of ``layout`` as views of ``block`` (no copy)."""
    out = {}
    for name, dtype, shape, offset in layout:
        kind = getattr(torch, dtype)
        count = 1
        for size in shape:
            count *= size
        flat = (torch.frombuffer(block.buf, dtype=kind, count=count, offset=offset)
                if count else torch.empty(0, dtype=kind))
        out[name] = flat.view(shape)
    return out


class SharedWeights:
    """The parent's side: :meth:`write` puts a round's weights in the block and says where."""

    def __init__(self) -> None:
        self.block: shared_memory.SharedMemory | None = None
        self.layout: Layout = ()
        self._views: dict[str, torch.Tensor] = {}

    def write(self, weights: Mapping[str, torch.Tensor]) -> tuple[str, Layout]:
        layout, nbytes = layout_of(weights)
        if self.block is None or layout != self.layout:
            self.close()
            self.block = shared_memory.SharedMemory(create=True, size=nbytes)
            self.layout, self._views = layout, views(self.block, layout)
        with torch.no_grad():
            for name, tensor in weights.items():
                self._views[name].copy_(tensor.detach().cpu())
        return self.block.name, self.layout

    def close(self) -> None:
        """Free the block (the processes that mapped it keep their mapping until they drop it)."""
        self._views = {}  # views pin the buffer: dropped before it is closed
        if self.block is not None:
            self.block.close()
            self.block.unlink()
            self.block = None


class AttachedWeights:
    """A worker process's side: the weights of the block the parent names, mapped once."""

    def __init__(self) -> None:
        self.block: shared_memory.SharedMemory | None = None
        self.weights: dict[str, torch.Tensor] = {}

    def get(self, name: str, layout: Layout) -> dict[str, torch.Tensor]:
        if self.block is None or self.block.name != name:
            self.weights = {}
            if self.block is not None:
                self.block.close()
            self.block = shared_memory.SharedMemory(name=name)
            self.weights = views(self.block, layout)
        return self.weights
