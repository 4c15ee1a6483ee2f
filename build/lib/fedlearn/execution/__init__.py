"""How a round's clients run: one after the other, together, in local processes, or on Ray.

- :mod:`.base` — :class:`ClientExecutor`, :class:`WorkerReply`, :func:`checked_fit`: the
  contract every executor keeps and the check every update passes.
- :mod:`.sequential` — :class:`Sequential`, the reference.
- :mod:`.concurrent` — :class:`Concurrent`, every call at once to workers on other machines
  (Datasites over HTTP).
- :mod:`.together` — :class:`Together`, a round's in-process clients as one computation.
- :mod:`.processes` — :class:`~fedlearn.execution.processes.ProcessExecutor`, long-lived
  local worker processes of one thread each.
- :mod:`.ray` — :class:`~fedlearn.execution.ray.RayExecutor` (``ray`` imported there only).
- :mod:`.choose` — :func:`make_executor`, from ``config.execution``.

Layering: this package sits above :mod:`fedlearn.workers` and below :mod:`fedlearn.server`
(tests/test_layers.py checks it); nothing here imports the server.
"""
from fedlearn.execution.base import (
    ClientExecutor,
    WorkerReply,
    WorkerTimeout,
    call_with_timeout,
    checked,
    checked_fit,
    trainer,
)
from fedlearn.execution.choose import make_executor
from fedlearn.execution.concurrent import Concurrent
from fedlearn.execution.sequential import Sequential
from fedlearn.execution.together import Together, together_refusals

__all__ = ["ClientExecutor", "Concurrent", "Sequential", "Together", "WorkerReply", "WorkerTimeout",
           "call_with_timeout", "checked", "checked_fit", "make_executor", "together_refusals",
           "trainer"]
