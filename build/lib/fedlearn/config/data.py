"""Where the data comes from and how it is split between the workers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from fedlearn.config.fields import Section, choice, number, option, positive_int, require

Scheme = Literal["iid", "shards", "dirichlet", "unbalanced"]
PARTITIONS: tuple[str, ...] = get_args(Scheme)


@dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
    """Where MNIST comes from and how much of it to use (None = all)."""

    SECTION = "data"
    TITLE = "the data set"

    data_dir: str | None = option(None, metavar="DIR", help="local MNIST directory (default: "
                                  "$FEDLEARN_DATA, else download)")
    train_size: int | None = option(None, metavar="N", help="use a random N of the 60,000 "
                                    "training images (default: all)")
    test_size: int | None = option(None, metavar="N", help="use a random N of the 10,000 test "
                                   "images (default: all)")

    def validate(self) -> None:
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None:
                positive_int(value, name)


@dataclass(frozen=True, kw_only=True)
class PartitionConfig(Section):
    """How the training set is split between the named workers."""

    SECTION = "partition"
    TITLE = "who holds the data"

    workers: tuple[str, ...] = option(("bob", "alice"), metavar="NAME",
                                      help="names of the data owners")
    scheme: Scheme = option("iid", flag="--partition", choices=PARTITIONS,
                         help="iid; shards = label-sorted shards (McMahan 2017); dirichlet = "
                              "label shares ~ Dirichlet(alpha); unbalanced sizes")
    alpha: float = option(0.5, help="Dirichlet concentration; smaller = more skewed")
    shards_per_worker: int = option(2, help="label-sorted shards each worker gets")
    min_size: int = option(10, help="fewest samples a worker may hold")
    holdout: float = option(0.0, help="share of each worker's data kept aside to measure "
                                      "personalization")
    initial_share: float = option(1.0, help="share of its data a worker holds at round 1 ...")
    growth_per_round: float = option(0.0, help="... and the share that arrives each round")

    def validate(self) -> None:
        number(self.holdout, "holdout", 0, 1, high_open=True)
        number(self.initial_share, "initial_share", 0, 1, low_open=True)
        number(self.growth_per_round, "growth_per_round", 0, 1)
        require(isinstance(self.workers, (tuple, list)), "workers",
                f"must be a sequence of names (got {type(self.workers).__name__})")
        object.__setattr__(self, "workers", tuple(self.workers))
        require(len(self.workers) >= 1, "workers", "need at least one worker name")
        for name in self.workers:
            require(isinstance(name, str) and name.strip() != "", "workers",
                    f"worker names must be non-empty strings (got {name!r})")
        dupes = sorted({n for n in self.workers if self.workers.count(n) > 1})
        require(not dupes, "workers", f"duplicate worker names: {', '.join(dupes)}")
        choice(self.scheme, "scheme", PARTITIONS)
        number(self.alpha, "alpha", 0, low_open=True)
        positive_int(self.shards_per_worker, "shards_per_worker")
        positive_int(self.min_size, "min_size")
