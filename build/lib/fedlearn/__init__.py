"""fedlearn: federated learning on plain PyTorch, from Bob and Alice to real data owners.

The data's path through the package:

- :mod:`fedlearn.data` — load MNIST (or bring your own tensors) and split it between workers;
- :mod:`fedlearn.models`, :mod:`fedlearn.training` — plain PyTorch, no federation inside;
- :mod:`fedlearn.workers` — the data owners: in-process, DP-SGD, faulty, personalized;
- :mod:`fedlearn.execution` — how a round's clients run: sequential, together, on Ray;
- :mod:`fedlearn.server` — the loop (select → train → aggregate → evaluate), strategies,
  server optimizers, availability, checkpoints; :mod:`fedlearn.aggregation` — FedAvg and
  robust rules; :mod:`fedlearn.updates` — clip, compress, mask, noise;
- :mod:`fedlearn.backends.pysyft` — Bob and Alice as PySyft 0.9.5 Datasites (imported only
  when used);
- :mod:`fedlearn.experiment` — one call from a config to files on disk; :mod:`fedlearn.cli`.

No package imports one that sits above it (config, data ... workers, execution, server, then
experiment, cli and backends) and no two import each other: tests/test_layers.py.

The names below are imported on first use, so ``import fedlearn.server`` (a worker
process, a 1,000-client simulation) does not pay for matplotlib and friends.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees: the real names, not __getattr__'s Any
    from fedlearn.aggregation import (
        fedavg as fedavg,
    )
    from fedlearn.config import (
        AvailabilityConfig as AvailabilityConfig,
    )
    from fedlearn.config import (
        CompressionConfig as CompressionConfig,
    )
    from fedlearn.config import (
        ConfigError as ConfigError,
    )
    from fedlearn.config import (
        DataConfig as DataConfig,
    )
    from fedlearn.config import (
        DPConfig as DPConfig,
    )
    from fedlearn.config import (
        DPSGDConfig as DPSGDConfig,
    )
    from fedlearn.config import (
        ExecutionConfig as ExecutionConfig,
    )
    from fedlearn.config import (
        ExperimentConfig as ExperimentConfig,
    )
    from fedlearn.config import (
        FederationConfig as FederationConfig,
    )
    from fedlearn.config import (
        PartitionConfig as PartitionConfig,
    )
    from fedlearn.config import (
        RobustnessConfig as RobustnessConfig,
    )
    from fedlearn.config import (
        SecAggConfig as SecAggConfig,
    )
    from fedlearn.config import (
        ServerOptimizerConfig as ServerOptimizerConfig,
    )
    from fedlearn.config import (
        TrainPlan as TrainPlan,
    )
    from fedlearn.config import (
        WarmStartConfig as WarmStartConfig,
    )
    from fedlearn.data import (
        MnistTensors as MnistTensors,
    )
    from fedlearn.data import (
        Normalisation as Normalisation,
    )
    from fedlearn.data import (
        load_mnist as load_mnist,
    )
    from fedlearn.data import (
        normalise as normalise,
    )
    from fedlearn.data import (
        partition as partition,
    )
    from fedlearn.errors import (
        FedlearnError as FedlearnError,
    )
    from fedlearn.experiment import (
        run_experiment as run_experiment,
    )
    from fedlearn.models import (
        build_model as build_model,
    )
    from fedlearn.server import (
        FederatedServer as FederatedServer,
    )
    from fedlearn.server import (
        FederationResult as FederationResult,
    )
    from fedlearn.server import (
        RoundFailedError as RoundFailedError,
    )
    from fedlearn.server import (
        run_federation as run_federation,
    )
    from fedlearn.server.record import (
        RoundRecord as RoundRecord,
    )
    from fedlearn.training import (
        evaluate as evaluate,
    )
    from fedlearn.training import (
        train_epochs as train_epochs,
    )
    from fedlearn.updates import (
        Update as Update,
    )
    from fedlearn.workers import (
        VirtualWorker as VirtualWorker,
    )
    from fedlearn.workers import (
        Worker as Worker,
    )
    from fedlearn.workers import (
        make_virtual_workers as make_virtual_workers,
    )

_EXPORTS = {
    "fedlearn.aggregation": ["fedavg"],
    "fedlearn.config": ["AvailabilityConfig", "CompressionConfig", "ConfigError", "DataConfig",
                        "DPConfig", "DPSGDConfig", "ExecutionConfig", "ExperimentConfig",
                        "FederationConfig", "SecAggConfig",
                        "PartitionConfig", "RobustnessConfig", "ServerOptimizerConfig",
                        "TrainPlan", "WarmStartConfig"],
    "fedlearn.data": ["MnistTensors", "Normalisation", "load_mnist", "normalise", "partition"],
    "fedlearn.errors": ["FedlearnError"],
    "fedlearn.experiment": ["run_experiment"],
    "fedlearn.models": ["build_model"],
    "fedlearn.server": ["FederatedServer", "FederationResult", "RoundFailedError",
                        "run_federation"],
    "fedlearn.server.record": ["RoundRecord"],
    "fedlearn.training": ["evaluate", "train_epochs"],
    "fedlearn.updates": ["Update"],
    "fedlearn.workers": ["VirtualWorker", "Worker", "make_virtual_workers"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fedlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
