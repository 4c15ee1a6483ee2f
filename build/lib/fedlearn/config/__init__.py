"""Validated, frozen configuration: one dataclass per concern.

The CLI (whose flags are generated from these fields) and the notebooks both build
these; library code never sees an argparse namespace. Every check raises
:class:`ConfigError` naming the field's path (``federation.rounds``), what was wrong and
what is allowed, before any work starts.
"""
from fedlearn.config.availability import AvailabilityConfig
from fedlearn.config.data import PARTITIONS, DataConfig, PartitionConfig, Scheme
from fedlearn.config.execution import (
    ACTOR_CLIENTS,
    EXECUTORS,
    ActorClients,
    ExecutionConfig,
    ExecutorName,
)
from fedlearn.config.experiment import OPTIONAL_SECTIONS, SECTIONS, ExperimentConfig
from fedlearn.config.federation import (
    AGGREGATORS,
    ALGORITHMS,
    DEVICES,
    MODELS,
    ON_TOO_FEW,
    SERVER_LR_DEFAULTS,
    SERVER_OPTIMIZERS,
    Aggregator,
    Algorithm,
    Device,
    FederationConfig,
    ModelName,
    ModelSpec,
    OnTooFew,
    RobustnessConfig,
    ServerOptimizerConfig,
    ServerOptimizerName,
    WarmStartConfig,
    model_label,
)
from fedlearn.config.fields import (
    ConfigError,
    Section,
    choice,
    number,
    option,
    positive_int,
    registered,
    renamed,
    require,
)
from fedlearn.config.plan import PRECISIONS, Precision, TrainPlan
from fedlearn.config.privacy import (
    COMPRESSIONS,
    QUANTIZE_BITS,
    CompressionConfig,
    CompressionMethod,
    DPConfig,
    DPSGDConfig,
    SecAggConfig,
)

__all__ = [
    "ACTOR_CLIENTS", "AGGREGATORS", "ALGORITHMS", "COMPRESSIONS", "DEVICES", "EXECUTORS",
    "MODELS", "ON_TOO_FEW",
    "OPTIONAL_SECTIONS", "PARTITIONS", "PRECISIONS", "QUANTIZE_BITS", "SECTIONS",
    "SERVER_LR_DEFAULTS", "SERVER_OPTIMIZERS", "AvailabilityConfig", "CompressionConfig",
    "ConfigError", "DPConfig", "DPSGDConfig", "DataConfig", "ExecutionConfig", "ExperimentConfig",
    "FederationConfig", "ModelSpec", "PartitionConfig", "RobustnessConfig", "SecAggConfig",
    "Section", "ServerOptimizerConfig", "TrainPlan", "WarmStartConfig", "choice", "model_label",
    "number", "option", "positive_int", "registered", "renamed", "require",
    # the choices as types: a typo in a script is caught by a type checker too
    "ActorClients", "Aggregator", "Algorithm", "CompressionMethod", "Device", "ExecutorName",
    "ModelName", "OnTooFew", "Precision", "Scheme", "ServerOptimizerName",
]
