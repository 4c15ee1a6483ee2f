"""Which client goes to which free actor: pure functions on plain data (no Ray here).

A round's calls are cut into tasks, what one actor call trains: one client, or with
``together`` a contiguous chunk per actor (:func:`tasks_for`). A free actor takes the queued
task :func:`pick` chooses, so each client's data tends to live on one actor. Tested by hand
examples in tests/test_ray_parts.py.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    """One client's call in a round: its position in the round's calls, its name, its seed,
    and how many times an actor died running it before (0: the first try)."""

    job: int
    client: str
    seed: int
    attempt: int = 0


Task = tuple[Call, ...]  # what one actor call trains


def tasks_for(clients: Sequence[str], seeds: Sequence[int], actors: int, together: bool
              ) -> list[Task]:
    """One task per client, or with ``together`` one contiguous chunk per actor."""
    calls = [Call(j, name, seed) for j, (name, seed) in enumerate(zip(clients, seeds))]
    groups = chunks(len(calls), actors) if together else [[j] for j in range(len(calls))]
    return [tuple(calls[j] for j in group) for group in groups]


def again(task: Task) -> Task:
    """The task to run once more after its actor died."""
    return tuple(dataclasses.replace(call, attempt=call.attempt + 1) for call in task)


def pick(queue: Sequence[object], names: Sequence[str], held: set, held_anywhere: set) -> int:
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
