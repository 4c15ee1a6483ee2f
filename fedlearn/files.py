"""Writing a file so that readers see the old version or the new one, never half of it."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *,
                 durable: bool = False) -> None:
    """Write through ``write(file)`` into a private temporary file beside ``path``, then
    rename it over ``path``. ``durable`` also fsyncs first (checkpoints: survive a power cut).

    The temporary name is ``.<name>.<random>.tmp``; a process killed mid-write leaves one
    behind and never a truncated ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
