"""Everything one run depends on: the sections, the seed, and the checks across them."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fedlearn.config.availability import AvailabilityConfig
from fedlearn.config.data import DataConfig, PartitionConfig
from fedlearn.config.execution import ExecutionConfig
from fedlearn.config.federation import (
    FederationConfig,
    RobustnessConfig,
    ServerOptimizerConfig,
    WarmStartConfig,
    model_label,
    workers_per_round,
)
from fedlearn.config.fields import ConfigError, Section, option, positive_int, require
from fedlearn.config.plan import TrainPlan
from fedlearn.config.privacy import CompressionConfig, DPConfig, DPSGDConfig, SecAggConfig

# ExperimentConfig's field -> the section's dataclass; the optional ones are off when None
SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig, "partition": PartitionConfig, "plan": TrainPlan,
    "federation": FederationConfig, "robustness": RobustnessConfig,
    "server": ServerOptimizerConfig, "warm_start": WarmStartConfig, "dp": DPConfig,
    "dp_sgd": DPSGDConfig, "compression": CompressionConfig, "secagg": SecAggConfig,
    "availability": AvailabilityConfig, "execution": ExecutionConfig}
OPTIONAL_SECTIONS = ("dp", "dp_sgd", "availability")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(Section):
    """One run: a section per concern, plus the seed of every random choice."""

    TITLE = "the experiment"

    data: DataConfig = option(default_factory=DataConfig, help="the data set")
    partition: PartitionConfig = option(default_factory=PartitionConfig,
                                        help="who holds which data")
    plan: TrainPlan = option(default_factory=TrainPlan, help="local training")
    federation: FederationConfig = option(default_factory=FederationConfig,
                                          help="algorithm, model, rounds")
    robustness: RobustnessConfig = option(default_factory=RobustnessConfig,
                                          help="aggregation rule and failure policy")
    server: ServerOptimizerConfig = option(default_factory=ServerOptimizerConfig,
                                           help="the server optimizer")
    warm_start: WarmStartConfig = option(default_factory=WarmStartConfig,
                                         help="server-side warm start")
    dp: DPConfig | None = option(None, help="DP-FedAvg (default: off)")
    dp_sgd: DPSGDConfig | None = option(None, help="DP-SGD in every in-process worker")
    compression: CompressionConfig = option(default_factory=CompressionConfig,
                                            help="upload encoding")
    secure_aggregation: bool = option(False, help="pairwise masking (Bonawitz et al. 2017): "
                                                  "the server learns only the sum")
    secagg: SecAggConfig = option(default_factory=SecAggConfig,
                                  help="secure aggregation's threshold and ring")
    availability: AvailabilityConfig | None = option(
        None, flag="--availability", help="simulate devices that come and go (default: off)")
    execution: ExecutionConfig = option(default_factory=ExecutionConfig,
                                        help="how the clients run")
    seed: int = option(0, help="seed for every random choice")

    def validate(self) -> None:
        for name, kind in SECTIONS.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL_SECTIONS:
                require(isinstance(value, kind), name,
                        f"must be a {kind.__name__} (got {type(value).__name__})")
        require(isinstance(self.secure_aggregation, bool), "secure_aggregation",
                f"must be True or False (got {self.secure_aggregation!r})")
        positive_int(self.seed, "seed", minimum=0)
        if not self.secure_aggregation and self.secagg != SecAggConfig():
            changed = [f.name for f in dataclasses.fields(SecAggConfig)
                       if getattr(self.secagg, f.name) != getattr(SecAggConfig(), f.name)]
            raise ConfigError(f"secagg.{changed[0]}", "sets secure aggregation's parameters, "
                              "but secure_aggregation is off (--secure-aggregation)")
        fed, robust = self.federation, self.robustness
        if fed.algorithm == "model_hopping" and self.server.optimizer != "sgd":
            raise ConfigError("server.optimizer", "model hopping keeps its own server momentum; "
                              f"{self.server.optimizer!r} works with algorithm='fedavg'")
        if fed.algorithm == "model_hopping" and robust.aggregator != "mean":
            raise ConfigError("robustness.aggregator", f"{robust.aggregator!r} needs several "
                              "updates per step; model hopping applies one worker's step at a time "
                              "(use mean)")
        if self.dp_sgd is not None and (self.plan.precision != "fp32" or self.plan.channels_last):
            raise ConfigError("plan.precision", "DP-SGD workers (Opacus's per-sample gradients) "
                              "train in fp32 with the default memory format")
        if self.dp_sgd is not None and fed.algorithm != "fedavg":
            raise ConfigError("dp_sgd.noise_multiplier", "DP-SGD workers train whole epochs: "
                              f"needs algorithm='fedavg' (got {fed.algorithm!r})")
        if self.execution.executor in ("ray", "processes") and fed.algorithm != "fedavg":
            where = "on Ray" if self.execution.executor == "ray" else "in worker processes"
            raise ConfigError("execution.executor", "model hopping passes one model from client "
                              f"to client, batch by batch: nothing in a round can run in "
                              f"parallel {where} (use algorithm='fedavg', or another executor)")
        for path, on in self._update_pipeline():
            if on and (fed.algorithm != "fedavg" or robust.aggregator != "mean"):
                raise ConfigError(path, "works with algorithm='fedavg' and aggregator='mean' "
                                  f"only (got {fed.algorithm!r} / {robust.aggregator!r})")

    def _update_pipeline(self) -> list[tuple[str, bool]]:
        dp_path = ("dp.target_epsilon" if self.dp is not None and self.dp.noise_multiplier is None
                   else "dp.noise_multiplier")
        return [(dp_path, self.dp is not None),
                ("compression.method", self.compression.method != "none"),
                ("secure_aggregation", self.secure_aggregation)]

    def workers_per_round(self, num_workers: int) -> int:
        """max(1, round(C * K)): how many of ``num_workers`` are asked each round."""
        return workers_per_round(num_workers, self.federation.fraction)

    def check_workers(self, num_workers: int, remote: Sequence[str] = (),
                      masking: Sequence[str] = (), compressing: Sequence[str] = ()) -> None:
        """The checks that need the federation's size, and the options that would have to
        run inside a Datasite's approved code (which does plain local SGD, secure
        aggregation's owner side for the ``masking`` ones, and quantizes for the
        ``compressing`` ones): refused, never silently dropped."""
        per_round = self.workers_per_round(num_workers)
        robust = self.robustness
        if robust.min_updates > per_round:
            raise ConfigError("robustness.min_updates", f"{robust.min_updates} is more than the "
                              f"{per_round} workers asked each round ({num_workers} workers, "
                              f"fraction {self.federation.fraction})")
        if self.secure_aggregation and per_round < 2:
            raise ConfigError("secure_aggregation", "needs at least 2 workers per round: with "
                              f"one, the sum is that worker's update ({per_round} asked)")
        threshold = self.secagg.threshold
        if self.secure_aggregation and threshold is not None and not (
                per_round // 2 < threshold <= per_round):
            raise ConfigError("secagg.threshold", f"must be more than half of the {per_round} "
                              f"workers asked each round and at most all of them, i.e. "
                              f"{per_round // 2 + 1}..{per_round} (got {threshold}): fewer "
                              "would let a minority unmask a client")
        if remote:
            self._refuse_for_remote(list(remote), set(masking), set(compressing))
        if remote and self.execution.executor in ("ray", "processes"):
            raise ConfigError("execution.executor", f"workers {', '.join(remote)} train inside "
                              f"their owners' Datasites: {self.execution.executor} can run "
                              "in-process clients only")
        if robust.aggregator == "krum" and per_round < 2 * robust.krum_byzantine + 3:
            raise ConfigError("robustness.aggregator", f"krum with krum_byzantine="
                              f"{robust.krum_byzantine} needs at least "
                              f"{2 * robust.krum_byzantine + 3} workers per round; "
                              f"{per_round} are asked")

    def _refuse_for_remote(self, remote: list[str], masking: set[str],
                           compressing: set[str]) -> None:
        part = self.partition
        if self.secure_aggregation and self.dp_sgd is not None:
            raise ConfigError("secure_aggregation", "secure aggregation and DP-SGD inside "
                              "Datasites are not combined yet (DP-FedAvg's clipping is)")
        method = self.compression.method
        if method == "topk" and self.secure_aggregation:
            raise ConfigError("compression.method", "top-k does not combine with secure "
                              "aggregation: each owner sends other coordinates, and masks "
                              "cancel only in a sum over the same coordinates; under secure "
                              "aggregation narrow the ring instead (--secagg-ring-bits 16)")
        if method != "none" and self.secure_aggregation:
            raise ConfigError("compression.method", "under secure aggregation a Datasite "
                              "sends ring elements, whose width is the wire's: choose "
                              "secagg.ring_bits (--secagg-ring-bits 16 halves the 32-bit "
                              "default); each owner's quantization codes have their own scale "
                              "and cannot be summed under masks")
        if method == "topk" and not self.compression.error_feedback:
            raise ConfigError("compression.error_feedback", "fedlearn's top-k function on a "
                              "Datasite always keeps the owner's residual (its server stores "
                              "it between rounds): drop --no-error-feedback")
        if self.dp_sgd is not None and method != "none":
            raise ConfigError("compression.method", "the DP-SGD function on a Datasite does "
                              "not compress (neither quantize nor top-k); drop --compression "
                              "or DP-SGD")
        inside = [("secure_aggregation",
                   self.secure_aggregation and not set(remote) <= masking),
                  ("compression.method", method != "none" and not set(remote) <= compressing),
                  ("federation.algorithm", self.federation.algorithm != "fedavg"),
                  ("plan.precision", self.plan.precision != "fp32"),
                  ("plan.channels_last", self.plan.channels_last),
                  ("partition.holdout", part.holdout > 0),
                  ("partition.initial_share", part.initial_share < 1),
                  ("partition.growth_per_round", part.growth_per_round > 0)]
        for path, on in inside:
            if on:
                raise ConfigError(path, "must run inside each Datasite's approved code, which "
                                  "the PySyft backend does not do (remote workers: "
                                  f"{', '.join(remote)}); use in-process workers")
        if self.warm_start.size > 0:
            raise ConfigError("warm_start.size", "the server's proxy set would be drawn from "
                              "images the Datasites hold, so it would not be disjoint from "
                              "their data; use in-process workers")

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): a model class or factory appears as its qualified name."""
        d = dataclasses.asdict(self)
        d["federation"]["model"] = model_label(self.federation.model)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentConfig:
        """The config :meth:`to_dict` wrote (a run's ``config.json``): JSON lists become tuples,
        a missing field keeps its default, an unknown one is refused by its path."""
        if not isinstance(d, dict):
            raise ConfigError("config", f"must be a JSON object (got {type(d).__name__})")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, value in d.items():
            if name not in known:
                raise ConfigError(name, f"unknown field; allowed: {', '.join(sorted(known))}")
            if name in SECTIONS and value is not None:
                values[name] = _section_from_dict(name, value)
            else:
                values[name] = value
        return cls(**values)

    def fingerprint(self) -> str:
        """Hash of everything that shapes the trajectory of a run.

        Rounds, the stop target, the device, where the data lives and how the clients run
        (in-process or on Ray: the same weights) are left out: a run may be resumed to more
        rounds, on another machine or another executor.
        """
        d = trajectory(self.to_dict())
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def changes_from(self, stored: dict[str, Any]) -> list[str]:
        """``"plan.lr: 0.05 -> 0.5"`` for every field of the trajectory that differs from
        ``stored`` (a :meth:`to_dict`, e.g. a checkpoint's)."""
        return [f"{path}: {old!r} -> {new!r}" for path, old, new
                in _differences(trajectory(stored), trajectory(self.to_dict()))]


def trajectory(d: dict[str, Any]) -> dict[str, Any]:
    """What of a configuration (a :meth:`ExperimentConfig.to_dict`) shapes a run's weights."""
    d = json.loads(json.dumps(d))  # a copy
    d.pop("execution", None)
    for key in ("rounds", "target_accuracy", "device"):
        d.get("federation", {}).pop(key, None)
    d.get("data", {}).pop("data_dir", None)
    return d


def _differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [diff for key in sorted(set(old) | set(new), key=str)
                for diff in _differences(old.get(key), new.get(key),
                                         f"{path}.{key}" if path else str(key))]
    return [] if old == new else [(path, old, new)]


def _section_from_dict(name: str, d: Any) -> Section:
    section = SECTIONS[name]
    if not isinstance(d, dict):
        raise ConfigError(name, f"must be a JSON object (got {type(d).__name__})")
    known = {f.name for f in dataclasses.fields(section)}  # type: ignore[arg-type]
    for key in d:
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown field; allowed: "
                              f"{', '.join(sorted(known))}")
    return section(**{key: tuple(v) if isinstance(v, list) else v for key, v in d.items()})
