"""Where a round's tasks go on Ray, and what Ray's failures mean for them.

:func:`pick` chooses a free actor's next task so that each client's data tends to live on one
actor; :func:`chunks` cuts a round into one task per actor when actors train their clients
together. The rest read Ray's errors: which mean the actor is gone (its clients run again
elsewhere), and the line of a long Ray report that says why.
"""
from __future__ import annotations

import re
from collections.abc import Sequence


def pick(queue: Sequence[int], names: Sequence[str], held: set, held_anywhere: set) -> int:
    """Which queued task a free actor takes (its position in ``queue``; ``names[i]``: the
    first client of ``queue[i]``): one whose data it already holds, else one no actor holds
    yet, else the first (a core left idle costs more than fetching a shard twice). So each
    client's data tends to live on one actor, and the actors together hold about one copy."""
    for wanted in (lambda name: name in held, lambda name: name not in held_anywhere):
        for i, name in enumerate(names):
            if wanted(name):
                return i
    return 0


def chunks(n: int, parts: int) -> list[list[int]]:
    """0..n-1 in ``parts`` contiguous runs as equal as can be (the first ones longer)."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [list(range(a, b)) for a, b in zip(bounds, bounds[1:]) if b > a]


def actor_gone_errors() -> tuple:
    """Ray's errors that mean the actor (or its process or node) is gone: rerun elsewhere."""
    from ray import exceptions as e

    return (e.OutOfMemoryError, e.RayActorError, e.WorkerCrashedError, e.NodeDiedError,
            e.LocalRayletDiedError)


def cause_line(exc: BaseException) -> str:
    """An actor's creation error ends with the exception its ``__init__`` raised."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return type(exc).__name__
    # Ray's memory monitor explains itself in its first lines, then lists processes and advice
    reason = [line for line in lines if line.startswith("OOM kill reason")]
    return f"{lines[0]}; {reason[0]}" if reason else lines[-1]


def first_line(exc: BaseException) -> str:
    """Ray's errors carry the remote traceback below their first line."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
