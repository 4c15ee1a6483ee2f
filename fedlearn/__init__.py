"""fedlearn: federated learning on plain PyTorch, from Bob and Alice to real data owners.

The data's path through the package:

- :mod:`fedlearn.data` — load MNIST (or bring your own tensors) and split it between workers;
- :mod:`fedlearn.models`, :mod:`fedlearn.training` — plain PyTorch, no federation inside;
- :mod:`fedlearn.workers` — the data owners: in-process, DP-SGD, faulty, personalized;
- :mod:`fedlearn.server` — the loop (select → train → aggregate → evaluate), strategies,
  server optimizers, availability, checkpoints; :mod:`fedlearn.aggregation` — FedAvg and
  robust rules; :mod:`fedlearn.updates` — clip, compress, mask, noise;
- :mod:`fedlearn.backends.pysyft` — Bob and Alice as PySyft 0.9.5 Datasites (imported only
  when used);
- :mod:`fedlearn.experiment` — one call from a config to files on disk; :mod:`fedlearn.cli`.

The names below are imported on first use, so ``import fedlearn.server`` (a worker
process, a 1,000-client simulation) does not pay for matplotlib and friends.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "fedlearn.aggregation": ["fedavg"],
    "fedlearn.config": ["AvailabilityConfig", "CompressionConfig", "ConfigError", "DataConfig",
                        "DPConfig", "DPSGDConfig", "ExecutionConfig", "ExperimentConfig",
                        "FederationConfig",
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


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'fedlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
