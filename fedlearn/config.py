"""Validated, frozen configuration: one dataclass per concern.

The CLI and the notebook both build these; library code never sees an argparse
namespace. Every check raises :class:`ConfigError` naming the argument, what was
wrong and what is allowed, before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fedlearn.errors import FedlearnError

PARTITIONS = ("iid", "shards", "dirichlet", "unbalanced")
MODELS = ("tutorial_cnn", "mcmahan_cnn", "mlp2nn", "dp_cnn")
ALGORITHMS = ("fedavg", "fedsgd")
AGGREGATORS = ("fedavg", "median", "trimmed_mean", "krum")
ON_TOO_FEW = ("retry", "skip", "stop")
SERVER_OPTIMIZERS = ("fedavg", "momentum", "adam")
SERVER_LR_DEFAULTS = {"fedavg": 1.0, "momentum": 1.0, "adam": 0.01}
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(FedlearnError, ValueError):
    """A configuration value is not allowed. ``argument`` names the culprit."""

    def __init__(self, argument: str, message: str):
        self.argument = argument
        self.detail = message
        super().__init__(f"{argument}: {message}")


def _check(ok: bool, argument: str, message: str) -> None:
    if not ok:
        raise ConfigError(argument, message)


def _positive_int(value, argument: str, minimum: int = 1) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           argument, f"must be an integer >= {minimum} (got {value!r})")


def _number(value, argument: str, low: float, high: float = math.inf, *,
            low_open: bool = False, high_open: bool = False) -> None:
    """A real, finite number in the interval; the message spells the interval out."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = f"{left}{low:g}, {'inf' if high == math.inf else f'{high:g}'}{right}"
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value)
          and (value > low if low_open else value >= low)
          and (value < high if high_open else value <= high))
    _check(ok, argument, f"must be a finite number in {interval} (got {value!r})")


# a ready-made model's name, or an nn.Module class or zero-argument factory of your own
ModelSpec = str | Callable[[], Any]


def model_label(model: ModelSpec) -> str:
    """``"tutorial_cnn"``, or ``"my_package.MyNet"`` for a model class or factory."""
    if isinstance(model, str):
        return model
    return f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', repr(model))}"


def _choice(value, argument: str, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, argument,
           f"unknown value {value!r}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where MNIST comes from and how much of it to use (None = all)."""

    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None

    def __post_init__(self):
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(value, name)


@dataclass(frozen=True, kw_only=True)
class PartitionConfig:
    """How the training set is split between the named workers."""

    workers: tuple[str, ...] = ("bob", "alice")
    scheme: str = "iid"
    alpha: float = 0.5
    shards_per_worker: int = 2
    min_size: int = 10
    holdout: float = 0.0  # share of each worker's data kept aside (personalization)
    initial_share: float = 1.0  # share of its data a worker has at round 1 ...
    growth_per_round: float = 0.0  # ... and how much more arrives each round

    def __post_init__(self):
        _number(self.holdout, "holdout", 0, 1, high_open=True)
        _number(self.initial_share, "initial_share", 0, 1, low_open=True)
        _number(self.growth_per_round, "growth_per_round", 0, 1)
        object.__setattr__(self, "workers", tuple(self.workers))
        _check(len(self.workers) >= 1, "workers", "need at least one worker name")
        for name in self.workers:
            _check(isinstance(name, str) and name.strip() != "", "workers",
                   f"worker names must be non-empty strings (got {name!r})")
        dupes = sorted({n for n in self.workers if self.workers.count(n) > 1})
        _check(not dupes, "workers", f"duplicate worker names: {', '.join(dupes)}")
        _choice(self.scheme, "partition", PARTITIONS)
        _number(self.alpha, "alpha", 0, low_open=True)
        _positive_int(self.shards_per_worker, "shards_per_worker")
        _positive_int(self.min_size, "min_size")


@dataclass(frozen=True, kw_only=True)
class TrainPlan:
    """What a worker does with the global weights: plain local SGD."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    prox_mu: float = 0.0  # FedProx (Li et al. 2020): (mu/2)||w - w_global||^2 in the local loss

    def __post_init__(self):
        _number(self.prox_mu, "prox_mu", 0)
        _positive_int(self.epochs, "epochs")
        _positive_int(self.batch_size, "batch_size")
        _number(self.lr, "lr", 0, low_open=True)
        _number(self.momentum, "momentum", 0, 1, high_open=True)
        _number(self.weight_decay, "weight_decay", 0)


@dataclass(frozen=True, kw_only=True)
class FederationConfig:
    """The server side: which algorithm, how many rounds, who takes part."""

    algorithm: str = "fedavg"
    # a ready-made model (MODELS), or your own: any nn.Module class or zero-argument factory
    model: ModelSpec = "tutorial_cnn"
    rounds: int = 5
    fraction: float = 1.0
    target_accuracy: float | None = None
    device: str = "auto"
    eval_batch_size: int = 1000
    # robustness: how updates are combined, and what a round needs to count
    aggregator: str = "fedavg"
    trim_fraction: float = 0.2
    krum_byzantine: int = 1
    max_update_norm: float | None = None
    min_updates: int = 1
    round_timeout: float | None = None
    on_too_few: str = "retry"
    max_retries: int = 2
    # how the server applies the aggregate (server_opt.py): FedAvg, FedAvgM or FedAdam
    server_optimizer: str = "fedavg"
    # None: the optimizer's own default (SERVER_LR_DEFAULTS); FedAdam's steps are ~lr per
    # coordinate whatever the update's size (Reddi et al. 2021), so 1.0 would be far too large
    server_lr: float | None = None
    server_momentum: float = 0.9  # FedAvgM's beta; FedAdam's beta1
    adam_beta2: float = 0.99
    adam_tau: float = 1e-3
    warm_start_size: int = 0  # proxy images the server trains on before round 1 (0: off)
    warm_start_epochs: int = 1

    def __post_init__(self):
        _positive_int(self.warm_start_size, "warm_start_size", minimum=0)
        _positive_int(self.warm_start_epochs, "warm_start_epochs")
        _choice(self.server_optimizer, "server_optimizer", SERVER_OPTIMIZERS)
        if self.server_lr is not None:
            _number(self.server_lr, "server_lr", 0, low_open=True)
        _number(self.server_momentum, "server_momentum", 0, 1, high_open=True)
        _number(self.adam_beta2, "adam_beta2", 0, 1, high_open=True)
        _number(self.adam_tau, "adam_tau", 0, low_open=True)
        _choice(self.algorithm, "algorithm", ALGORITHMS)
        if isinstance(self.model, str):
            _choice(self.model, "model", MODELS)
        else:
            _check(callable(self.model), "model", "must be one of "
                   f"{', '.join(MODELS)}, or an nn.Module class or zero-argument factory "
                   f"(got {type(self.model).__name__})")
        _positive_int(self.rounds, "rounds")
        _number(self.fraction, "fraction", 0, 1, low_open=True)
        if self.target_accuracy is not None:
            _number(self.target_accuracy, "target_accuracy", 0, 1, low_open=True)
        _choice(self.device, "device", DEVICES)
        _positive_int(self.eval_batch_size, "eval_batch_size")
        _choice(self.aggregator, "aggregator", AGGREGATORS)
        _number(self.trim_fraction, "trim_fraction", 0, 0.5, high_open=True)
        _positive_int(self.krum_byzantine, "krum_byzantine", minimum=0)
        if self.max_update_norm is not None:
            _number(self.max_update_norm, "max_update_norm", 0, low_open=True)
        _positive_int(self.min_updates, "min_updates")
        if self.round_timeout is not None:
            _number(self.round_timeout, "round_timeout", 0, low_open=True)
        _choice(self.on_too_few, "on_too_few", ON_TOO_FEW)
        _positive_int(self.max_retries, "max_retries", minimum=0)
        if self.algorithm == "fedsgd" and self.server_optimizer != "fedavg":
            raise ConfigError("server_optimizer", "fedsgd keeps its own server momentum; "
                              f"{self.server_optimizer!r} works with algorithm='fedavg'")
        if self.algorithm == "fedsgd" and self.aggregator != "fedavg":
            raise ConfigError("aggregator", f"{self.aggregator!r} needs several updates per "
                              "step; fedsgd applies one worker's step at a time (use fedavg)")


COMPRESSIONS = ("none", "quantize", "topk")
QUANTIZE_BITS = (1, 2, 4, 8)


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """DP-FedAvg: clip every update to ``clip_norm``; the server adds Gaussian noise.

    Give ``noise_multiplier`` (z), or ``target_epsilon`` to have z chosen so that
    the whole run spends at most that epsilon at ``delta``.
    """

    clip_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5

    def __post_init__(self):
        _number(self.clip_norm, "clip_norm", 0, low_open=True)
        _check((self.noise_multiplier is None) != (self.target_epsilon is None), "noise_multiplier",
               "give exactly one of noise_multiplier and target_epsilon")
        if self.noise_multiplier is not None:
            _number(self.noise_multiplier, "noise_multiplier", 0)
        if self.target_epsilon is not None:
            _number(self.target_epsilon, "target_epsilon", 0, low_open=True)
        _number(self.delta, "delta", 0, 1, low_open=True, high_open=True)


@dataclass(frozen=True, kw_only=True)
class DPSGDConfig:
    """Sample-level DP-SGD inside each worker (Opacus): per-sample clipping plus noise."""

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5

    def __post_init__(self):
        _number(self.noise_multiplier, "dp_sgd_noise", 0)
        _number(self.max_grad_norm, "dp_sgd_clip", 0, low_open=True)
        _number(self.delta, "delta", 0, 1, low_open=True, high_open=True)


@dataclass(frozen=True, kw_only=True)
class CompressionConfig:
    """How a worker's update is encoded for the (slow) upload."""

    method: str = "none"
    bits: int = 8
    topk_fraction: float = 0.01
    error_feedback: bool = True

    def __post_init__(self):
        _choice(self.method, "compression", COMPRESSIONS)
        _check(self.bits in QUANTIZE_BITS and not isinstance(self.bits, bool), "bits",
               f"unsupported bit width {self.bits!r}; "
               f"allowed: {', '.join(map(str, QUANTIZE_BITS))}")
        _number(self.topk_fraction, "topk_fraction", 0, 1, low_open=True)


@dataclass(frozen=True, kw_only=True)
class AvailabilityConfig:
    """A population of devices that come and go (Bonawitz et al. 2019), simulated by
    :mod:`fedlearn.server.availability`."""

    mean_availability: float = 0.5  # share of rounds a device is idle, charging, unmetered
    over_selection: float = 1.3  # select this many times the reporting goal
    decline_rate: float = 0.05  # a selected device says no (user activity, battery)
    dropout_rate: float = 0.05  # a device that accepted vanishes mid-round
    deadline: float | None = None  # simulated seconds a round waits; None: no deadline
    download_mbps: float = 20.0  # median download bandwidth
    upload_ratio: float = 0.2  # upload = ratio x download (asymmetric links)
    bandwidth_spread: float = 0.8  # sigma of the log-normal spread between devices
    examples_per_second: float = 500.0  # median local training speed

    def __post_init__(self):
        _number(self.mean_availability, "mean_availability", 0, 1, low_open=True)
        _number(self.over_selection, "over_selection", 1)
        _number(self.decline_rate, "decline_rate", 0, 1, high_open=True)
        _number(self.dropout_rate, "dropout_rate", 0, 1, high_open=True)
        if self.deadline is not None:
            _number(self.deadline, "deadline", 0, low_open=True)
        _number(self.download_mbps, "download_mbps", 0, low_open=True)
        _number(self.upload_ratio, "upload_ratio", 0, low_open=True)
        _number(self.bandwidth_spread, "bandwidth_spread", 0)
        _number(self.examples_per_second, "examples_per_second", 0, low_open=True)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything one run depends on, plus the seed for every random choice."""

    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    plan: TrainPlan = field(default_factory=TrainPlan)
    federation: FederationConfig = field(default_factory=FederationConfig)
    dp: DPConfig | None = None
    dp_sgd: DPSGDConfig | None = None  # sample-level DP-SGD inside each in-process worker
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    secure_aggregation: bool = False
    availability: AvailabilityConfig | None = None  # devices that come and go
    seed: int = 0

    def __post_init__(self):
        if self.availability is not None:
            _check(isinstance(self.availability, AvailabilityConfig), "availability",
                   f"must be an AvailabilityConfig (got {type(self.availability).__name__})")
        _check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
               "seed", f"must be an integer >= 0 (got {self.seed!r})")
        fed = self.federation
        extras = [name for name, on in (("dp", self.dp is not None),
                                        ("compression", self.compression.method != "none"),
                                        ("secure_aggregation", self.secure_aggregation)) if on]
        if self.dp_sgd is not None and fed.algorithm != "fedavg":
            raise ConfigError("dp_sgd_noise", "DP-SGD workers train whole epochs: needs "
                              f"algorithm='fedavg' (got {fed.algorithm!r})")
        if extras and (fed.algorithm != "fedavg" or fed.aggregator != "fedavg"):
            raise ConfigError(extras[0], "works with algorithm='fedavg' and aggregator='fedavg' "
                              f"only (got {fed.algorithm!r} / {fed.aggregator!r})")

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): a model class or factory appears as its qualified name."""
        d = dataclasses.asdict(self)
        d["federation"]["model"] = model_label(self.federation.model)
        return d

    def fingerprint(self) -> str:
        """Hash of everything that shapes the trajectory of a run.

        Rounds, the stop target, the device and where the data lives are left out:
        a run may be resumed to more rounds or on another machine.
        """
        d = self.to_dict()
        for key in ("rounds", "target_accuracy", "device"):
            d["federation"].pop(key)
        d["data"].pop("data_dir")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
