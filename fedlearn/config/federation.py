"""The server's side of a run: the algorithm and its rounds, what a round needs to count,
how the server applies the aggregate, and an optional warm start."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from fedlearn.config.fields import (
    Section,
    choice,
    number,
    option,
    positive_int,
    renamed,
    require,
)

ModelName = Literal["tutorial_cnn", "mcmahan_cnn", "mlp2nn", "dp_cnn", "bn_cnn"]
MODELS: tuple[ModelName, ...] = get_args(ModelName)
Algorithm = Literal["fedavg", "model_hopping"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)
Aggregator = Literal["mean", "median", "trimmed_mean", "krum"]
AGGREGATORS: tuple[str, ...] = get_args(Aggregator)
OnTooFew = Literal["retry", "skip", "stop"]
ON_TOO_FEW: tuple[str, ...] = get_args(OnTooFew)
ServerOptimizerName = Literal["sgd", "momentum", "adam"]
SERVER_OPTIMIZERS: tuple[str, ...] = get_args(ServerOptimizerName)
# FedAdam's steps are ~lr per coordinate whatever the update's size (Reddi et al. 2021),
# so the 1.0 that suits FedAvg and FedAvgM would be far too large for it
SERVER_LR_DEFAULTS = {"sgd": 1.0, "momentum": 1.0, "adam": 0.01}

# a ready-made model's name, or an nn.Module class or zero-argument factory of your own
ModelSpec = ModelName | Callable[[], Any]


def workers_per_round(num_workers: int, fraction: float) -> int:
    """max(1, round(C * K)): how many of K workers are asked each round."""
    return max(1, int(round(fraction * num_workers)))


def model_label(model: ModelSpec) -> str:
    """``"tutorial_cnn"``, or ``"my_package.MyNet"`` for a model class or factory."""
    if isinstance(model, str):
        return model
    return f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', repr(model))}"


@dataclass(frozen=True, kw_only=True)
class FederationConfig(Section):
    """Which algorithm trains which model, for how many rounds, with whom."""

    SECTION = "federation"
    TITLE = "the server"

    algorithm: Algorithm = option("fedavg", choices=ALGORITHMS,
                            help="fedavg, or model_hopping: one model hops between the "
                                 "workers' batches, one step each (the PySyft 0.2 tutorial)")
    model: ModelSpec = option("tutorial_cnn", choices=MODELS,
                              help="a ready-made model; in Python also any nn.Module class or "
                                   "zero-argument factory")
    rounds: int = option(5, help="federated rounds")
    fraction: float = option(1.0, help="C: fraction of workers asked each round")
    target_accuracy: float | None = option(None, metavar="ACC", help="stop once test accuracy "
                                           "reaches ACC, e.g. 0.99")
    device: Device = option("auto", choices=DEVICES, help="auto uses CUDA when present")
    eval_batch_size: int = option(1000, cli=False, help="test-set batch size")

    def validate(self) -> None:
        require(self.algorithm != "fedsgd", "algorithm", "'fedsgd' is now called "
                "'model_hopping' (the PySyft 0.2 tutorial's scheme); McMahan et al.'s FedSGD "
                "is 'fedavg' with one local epoch and a batch as large as a client's data")
        choice(self.algorithm, "algorithm", ALGORITHMS)
        if isinstance(self.model, str):
            choice(self.model, "model", MODELS)
        else:
            from torch import nn

            require(not isinstance(self.model, nn.Module), "model", "is a model object "
                    f"({type(self.model).__name__}(...)); give its class "
                    f"({type(self.model).__name__}) or a zero-argument factory, so every worker "
                    "and every round builds a fresh copy from the same weights")
            require(callable(self.model), "model", "must be one of "
                    f"{', '.join(MODELS)}, or an nn.Module class or zero-argument factory "
                    f"(got {type(self.model).__name__})")
        positive_int(self.rounds, "rounds")
        number(self.fraction, "fraction", 0, 1, low_open=True)
        if self.target_accuracy is not None:
            number(self.target_accuracy, "target_accuracy", 0, 1, low_open=True)
        choice(self.device, "device", DEVICES)
        positive_int(self.eval_batch_size, "eval_batch_size")


@dataclass(frozen=True, kw_only=True)
class RobustnessConfig(Section):
    """How updates are combined, which are refused, and what a round needs to count."""

    SECTION = "robustness"
    TITLE = "when workers fail or misbehave"

    aggregator: Aggregator = option("mean", choices=AGGREGATORS,
                                    help="mean (example-weighted: FedAvg's), or the robust "
                                         "median, trimmed_mean, krum")
    trim_fraction: float = option(0.2, help="trimmed_mean: share cut from each end")
    krum_byzantine: int = option(1, help="krum: how many hostile workers to tolerate")
    max_update_norm: float | None = option(None, metavar="NORM",
                                           help="refuse updates whose L2 norm is larger")
    min_updates: int = option(1, help="valid updates a round needs to count")
    round_timeout: float | None = option(None, metavar="SECONDS", help="give up on a worker "
                                         "that has not replied after this long")
    on_too_few: OnTooFew = option("retry", choices=ON_TOO_FEW,
                                  help="a round with too few updates is retried with a fresh "
                                       "sample, skipped, or stops the run")
    max_retries: int = option(2, help="retries of a round with too few updates")

    def validate(self) -> None:
        renamed(self.aggregator, "aggregator", "fedavg", "mean",
                "the example-weighted mean; FedAvg names the algorithm")
        choice(self.aggregator, "aggregator", AGGREGATORS)
        number(self.trim_fraction, "trim_fraction", 0, 0.5, high_open=True)
        positive_int(self.krum_byzantine, "krum_byzantine", minimum=0)
        if self.max_update_norm is not None:
            number(self.max_update_norm, "max_update_norm", 0, low_open=True)
        positive_int(self.min_updates, "min_updates")
        if self.round_timeout is not None:
            number(self.round_timeout, "round_timeout", 0, low_open=True)
        choice(self.on_too_few, "on_too_few", ON_TOO_FEW)
        positive_int(self.max_retries, "max_retries", minimum=0)


@dataclass(frozen=True, kw_only=True)
class ServerOptimizerConfig(Section):
    """How the server applies the aggregate: plain SGD with learning rate 1 (FedAvg's), FedAvgM
    or FedAdam (:mod:`fedlearn.server.optimizers`)."""

    SECTION = "server"
    TITLE = "how the server applies the average"

    optimizer: ServerOptimizerName = option("sgd", flag="--server-optimizer",
                                            choices=SERVER_OPTIMIZERS,
                                            help="sgd (FedAvg's: add the average), momentum "
                                                 "(FedAvgM), adam (FedAdam)")
    lr: float | None = option(None, flag="--server-lr",
                              help="server learning rate (default: 1.0 for sgd and "
                                   "momentum, 0.01 for adam)")
    momentum: float = option(0.9, flag="--server-momentum",
                             help="FedAvgM's beta; FedAdam's beta1")
    adam_beta2: float = option(0.99, help="FedAdam's beta2")
    adam_tau: float = option(1e-3, help="FedAdam's tau (adaptivity)")

    def validate(self) -> None:
        renamed(self.optimizer, "optimizer", "fedavg", "sgd",
                "server SGD with learning rate 1 is what FedAvg does; FedAvg names the algorithm")
        choice(self.optimizer, "optimizer", SERVER_OPTIMIZERS)
        if self.lr is not None:
            number(self.lr, "lr", 0, low_open=True)
        number(self.momentum, "momentum", 0, 1, high_open=True)
        number(self.adam_beta2, "adam_beta2", 0, 1, high_open=True)
        number(self.adam_tau, "adam_tau", 0, low_open=True)

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's own default."""
        return self.lr if self.lr is not None else SERVER_LR_DEFAULTS[self.optimizer]


@dataclass(frozen=True, kw_only=True)
class WarmStartConfig(Section):
    """The server first trains on a small proxy set that no worker holds."""

    SECTION = "warm_start"
    TITLE = "warm start"

    size: int = option(0, flag="--warm-start-size", metavar="N",
                       help="proxy images the server trains on before round 1 (0: off)")
    epochs: int = option(1, flag="--warm-start-epochs", help="passes over the proxy set")

    def validate(self) -> None:
        positive_int(self.size, "size", minimum=0)
        positive_int(self.epochs, "epochs")


