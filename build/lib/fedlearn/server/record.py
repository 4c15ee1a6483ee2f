"""What one round did: typed records, each built by the part of the round that knows it.

A strategy's round returns a :class:`TrainingReport` (who trained, who failed and why,
bytes, privacy spent); ``FederatedServer.step()`` adds the selection and the evaluation
and returns the round's :class:`RoundRecord`. The history (``history.json``, the
checkpoint) keeps each record as plain JSON data (:meth:`RoundRecord.to_dict`); optional
parts appear there only when the round had them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fedlearn.execution.base import WorkerReply


@dataclass
class TrainingReport:
    """The workers' side of one round, as a strategy returns it with the new weights."""

    train_loss: dict[str, float | None] = field(default_factory=dict)  # per worker that reported
    examples: dict[str, int] = field(default_factory=dict)  # the FedAvg weights
    bytes_down: dict[str, int] = field(default_factory=dict)
    bytes_up: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # worker -> what went wrong
    rejected: dict[str, str] = field(default_factory=dict)  # worker -> why it was refused
    worker_epsilon: dict[str, float] | None = None  # DP-SGD workers' own budgets
    epsilon: float | None = None  # DP-FedAvg's budget after this round
    noise_multiplier: float | None = None
    secure_aggregation: dict[str, Any] | None = None

    def count(self, name: str, reply: WorkerReply) -> None:
        """Add one reply of worker ``name`` (a worker may reply many times: model hopping)."""
        self.bytes_down[name] = self.bytes_down.get(name, 0) + reply.bytes_down
        if reply.failed is not None:
            self.failed[name] = reply.failed
        if reply.rejected is not None:
            self.rejected[name] = reply.rejected
        if reply.update is not None:
            self.bytes_up[name] = self.bytes_up.get(name, 0) + reply.bytes_up

    def problems(self) -> str:
        """One line: who failed or was refused, and why."""
        return "; ".join(f"{n}: {r}" for n, r in {**self.failed, **self.rejected}.items())


@dataclass(kw_only=True)
class RoundRecord(TrainingReport):
    """A round as the history keeps it: the strategy's :class:`TrainingReport` (whose fields
    are declared once, there) plus the selection, how the clients ran and the evaluation."""

    round: int
    attempt: int = 0
    selected: list[str] = field(default_factory=list)
    skipped: bool = False
    # only in some rounds
    availability: dict[str, Any] | None = None  # simulated devices: counts per outcome...
    declined_clients: list[str] | None = None  # ... and who declined, dropped out, straggled
    dropped_clients: list[str] | None = None
    stragglers_clients: list[str] | None = None
    late_clients: list[str] | None = None
    # how the clients were trained: precision, memory format, sequential, together or on Ray
    compute: dict[str, Any] | None = None
    # set once the round is over
    train_seconds: float = 0.0
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")
    seconds: float = 0.0

    OPTIONAL = ("availability", "declined_clients", "dropped_clients", "stragglers_clients",
                "late_clients", "worker_epsilon", "epsilon", "noise_multiplier",
                "secure_aggregation", "compute")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, as ``history.json`` holds it."""
        d = dataclasses.asdict(self)
        d = {"round": d.pop("round"), "attempt": d.pop("attempt"),
             "selected": d.pop("selected"), **d}  # the round first, as a reader looks for it
        for name in self.OPTIONAL:
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoundRecord:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def __getitem__(self, key: str) -> Any:
        """``record["test_accuracy"]`` reads like the history's JSON does."""
        return self.to_dict()[key]
