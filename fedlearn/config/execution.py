"""How a round's selected clients run (:mod:`fedlearn.server.executors`)."""
from __future__ import annotations

from dataclasses import dataclass

from fedlearn.config.fields import Section, choice, option

EXECUTORS = ("auto", "one_after_the_other", "together")


@dataclass(frozen=True, kw_only=True)
class ExecutionConfig(Section):
    """One after the other, or a round's in-process clients trained together (one batched
    computation): ``auto`` picks what is fastest on the device in use."""

    SECTION = "execution"
    TITLE = "how the clients run"

    executor: str = option("auto", choices=EXECUTORS,
                           help="auto: together on a GPU, one after the other on a CPU (where "
                                "it measures faster); together needs plain in-process clients "
                                "of one model")

    def validate(self) -> None:
        choice(self.executor, "executor", EXECUTORS)
