"""Writing a file so that readers see the old version or the new one, never half of it."""
from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *,
                 durable: bool = False) -> None:
    """Write through ``write(file)`` into a private temporary file beside ``path``, then
    rename it over ``path``. ``durable`` also fsyncs first (checkpoints: survive a power cut).

    The temporary name is ``.<name>.<random>.tmp``; a process killed mid-write leaves one
    behind and never a truncated ``path``. A Ctrl-C (or a SIGTERM the program turned into one)
    that arrives during the write is held until the file is in place, then raised: the
    interrupted run keeps the checkpoint it was saving, and the user sees an interrupt, not a
    half-written file's error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with interrupts_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs; deliver the first one after it.

    Only signals that Python handles (Ctrl-C's ``KeyboardInterrupt``, a handler the program
    installed) can be held; one left to the operating system still ends the process at once.
    Python runs handlers in the main thread only, so elsewhere the block runs as it is. A block
    that fails drops the held signal: its own error is the one to report.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, FrameType | None]] = []
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}
    for number in DEFERRED_SIGNALS:
        handler = signal.getsignal(number)
        if callable(handler):
            previous[number] = handler
            signal.signal(number, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        signum, frame = held[0]
        previous[signum](signum, frame)
