"""What a fault on Ray means for the clients it hit: a pure policy on plain data (no Ray here).

The executor turns what Ray reports into a :class:`Fault`; :func:`decide` says what follows:
run the task again on a live actor, or fail its clients with a reason (the round's failure
policy then counts them, as for any failed client). Actors that die while starting are started
again a bounded number of times (:func:`restart_after_start_failure`), then the run is refused
with their error (:func:`start_refusal`). The same rules as before the split, now testable by
hand (tests/test_ray_parts.py): an actor that died is rerun up to ``reruns`` times; Ray's
out-of-memory kill is not rerun (it would run out again); a timeout kills and replaces its
actor (a hung call cannot be stopped otherwise); an error in the call fails its clients and
keeps the actor.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["actor_died", "out_of_memory", "timeout", "error", "short_reply"]


@dataclass(frozen=True)
class Fault:
    """What went wrong with one actor call; ``detail``: the words that say why."""

    kind: FaultKind
    detail: str


@dataclass(frozen=True)
class Decision:
    rerun: bool  # run the task again, on a live actor
    replace_actor: bool  # the actor is gone or hung: kill it and start another
    reason: str | None = None  # the clients' failure, when not rerun


def decide(fault: Fault, deaths: int, reruns: int, holder: str = "its Ray actor") -> Decision:
    """``deaths``: how many times the task's actor has died under it, this fault included;
    ``holder``: what ran it, in the reason (the same policy serves local processes)."""
    if fault.kind == "out_of_memory":  # rerunning would run out of memory again
        return Decision(False, True, f"out of memory: Ray killed its actor ({fault.detail})")
    if fault.kind == "actor_died":
        if deaths <= reruns:
            return Decision(True, True)
        return Decision(False, True, f"{holder} died {deaths} times: {fault.detail}")
    if fault.kind == "timeout":
        return Decision(False, True, f"WorkerTimeout: no reply within {fault.detail}")
    if fault.kind == "short_reply":  # never expected; a reply must not be lost
        return Decision(False, False, f"{holder} answered {fault.detail}")
    return Decision(False, False, fault.detail)  # e.g. its shard cannot load on that node


def restart_after_start_failure(failures_in_a_row: int, actors: int) -> bool:
    """Start another actor after one died starting (its node may have gone away) — but not
    without end: one that cannot import fedlearn never starts."""
    return failures_in_a_row <= actors


def start_refusal(failures: Sequence[str], start_timeout: float) -> str:
    """Why the run is refused when no actor came up."""
    if not failures:
        return (f"no Ray actor started within {start_timeout:g} s (each needs the resources "
                "of one client: --ray-client-cpus / --ray-client-gpus)")
    last = failures[-1]
    hint = ("Ray's memory monitor killed them: the nodes' memory is above its threshold "
            "(RAY_memory_usage_threshold)" if "OOM kill reason" in last
            else "e.g. fedlearn or its requirements missing on a node (every node needs them)")
    return f"Ray actors failed to start ({len(failures)} times): {hint}; Ray said: {last}"


def stranded(failures: Sequence[str], starting: bool, start_timeout: float) -> str:
    """The failure of clients left waiting with no live actor."""
    why = (f"actors failed to start: {failures[-1]}" if not starting and failures
           else f"none started within {start_timeout:g} s")
    return f"no Ray actor alive to run it ({why})"


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
