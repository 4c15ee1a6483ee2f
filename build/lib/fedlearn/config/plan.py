"""What a worker does with the global weights: plain local SGD."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from fedlearn.config.fields import Section, choice, number, option, positive_int, require

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True, kw_only=True)
class TrainPlan(Section):
    """Local training at each worker: E epochs of minibatch SGD from the global weights."""

    SECTION = "plan"
    TITLE = "local training at each worker"

    epochs: int = option(1, flag="--local-epochs", help="E: passes over local data per round")
    batch_size: int = option(64, help="B: local minibatch size")
    lr: float = option(0.01, help="SGD learning rate")
    momentum: float = option(0.9, help="SGD momentum")
    weight_decay: float = option(0.0, help="L2 penalty")
    prox_mu: float = option(0.0, metavar="MU", help="FedProx (Li et al. 2020): (mu/2)||w - "
                            "w_global||^2 added to the local loss; 0 = FedAvg")
    precision: Precision = option("fp32", choices=PRECISIONS,
                            help="bf16: bfloat16 autocast in local training, where the hardware "
                                 "has native bf16 (AVX512-BF16 or AMX CPUs, recent GPUs)")
    channels_last: bool = option(False, help="NHWC memory format in local training, for "
                                             "convolutional models")

    def validate(self) -> None:
        number(self.prox_mu, "prox_mu", 0)
        positive_int(self.epochs, "epochs")
        positive_int(self.batch_size, "batch_size")
        number(self.lr, "lr", 0, low_open=True)
        number(self.momentum, "momentum", 0, 1, high_open=True)
        number(self.weight_decay, "weight_decay", 0)
        choice(self.precision, "precision", PRECISIONS)
        require(isinstance(self.channels_last, bool), "channels_last",
                f"must be True or False (got {self.channels_last!r})")
