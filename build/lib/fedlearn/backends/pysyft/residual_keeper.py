"""The Datasite's server keeps each owner's top-k residual between calls of approved code.

Top-k with error feedback (Stich et al. 2018) carries what an owner did not send into the
next round. That residual is as private as the update, so it must never leave the Datasite,
and PySyft 0.9.5's approved code keeps nothing between calls. fedlearn's top-k function
(:mod:`.sparse_training_code`) therefore takes the residual as one more input, bound to the
owner's private asset ``residual`` (a placeholder: its value is never used), and this module,
in the Datasite's server process, wraps syft's one place that runs approved code
(``execute_byte_code``, as called by the action service):

- before the function runs, the ``residual`` input is replaced by this approval's residual
  for this scientist, read from the owner's state (:class:`.state.DatasiteState`, the
  ``residuals`` table: it survives a restart), or ``{}`` the first time. syft runs approved
  code twice, on the private assets and on their mocks; the mock run (the asset's mock value
  says which) gets a fresh ``{}`` that is never stored;
- the function updates it in place (:func:`fedlearn.topk_portable.topk_with_feedback`) and
  returns only the sparse payload;
- after a call that sent a payload, the new residual is stored durably, before syft stores the
  result for the scientist. A refused or failed call leaves it as it was.

Calls of the same approval by the same scientist are serialised, so two calls at once cannot
both start from the same residual. Code that is not fedlearn's top-k function runs untouched;
without this server (a Datasite not served by fedlearn) the function finds the placeholder,
not a dict, and refuses to run.
"""
from __future__ import annotations

import io
import threading

import numpy as np
import torch

from fedlearn.backends.pysyft.sparse_training_code import (
    FUNCTION_NAME,
    PRIVATE_SLOT,
    RESIDUAL_ASSET,
)

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(key: tuple[str, str]) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def encode(residual: dict) -> bytes:
    """A residual as bytes for the state (tensors only, on the CPU)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in residual.items()}, buffer)
    return buffer.getvalue()


def decode(blob: bytes | None) -> dict:
    """The residual stored as ``blob`` (``{}`` for none); tensors only (``weights_only``)."""
    if blob is None:
        return {}
    residual = torch.load(io.BytesIO(blob), weights_only=True)
    if not isinstance(residual, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in residual.items()):
        raise ValueError("the stored top-k residual is not a dict of tensors")
    return residual


def is_private_slot(value) -> bool:
    """Whether ``value`` is the private value of the ``residual`` asset (not its mock)."""
    return (isinstance(value, np.ndarray) and value.shape == (1,) and value.dtype == np.uint8
            and int(value[0]) == PRIVATE_SLOT)


def run_keeping_residual(original, code_item, kwargs: dict, context):
    """Run ``code_item`` with ``original`` (syft's ``execute_byte_code``), handing fedlearn's
    top-k function its stored residual and storing the new one."""
    if code_item.service_func_name != FUNCTION_NAME or RESIDUAL_ASSET not in kwargs:
        return original(code_item, kwargs, context)
    if not is_private_slot(kwargs[RESIDUAL_ASSET]):  # the run on the mocks: nothing kept
        kwargs[RESIDUAL_ASSET] = {}
        return original(code_item, kwargs, context)
    from fedlearn.backends.pysyft.call_guard import state_for

    state = state_for(context.server)
    key = (str(code_item.id), str(context.credentials))
    with _lock(key):
        residual = decode(state.residual(*key))
        kwargs[RESIDUAL_ASSET] = residual
        out = original(code_item, kwargs, context)
        result = getattr(out, "result", None)
        if not getattr(out, "errored", True) and isinstance(result, dict) and "sparse" in result:
            state.keep_residual(*key, encode(residual))
    return out


def install() -> None:
    """Wrap the action service's ``execute_byte_code`` (idempotent)."""
    from syft.service.action import action_service

    original = action_service.execute_byte_code
    if getattr(original, "_fedlearn_residual", False):
        return

    def execute_byte_code(code_item, kwargs, context):
        return run_keeping_residual(original, code_item, kwargs, context)

    setattr(execute_byte_code, "_fedlearn_residual", True)
    action_service.execute_byte_code = execute_byte_code
