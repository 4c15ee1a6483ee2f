"""fedlearn: federated learning on plain PyTorch, from Bob and Alice to real data owners.

The data's path through the package:

- :mod:`fedlearn.data` — load MNIST (or bring your own tensors) and split it between workers;
- :mod:`fedlearn.models`, :mod:`fedlearn.training` — plain PyTorch, no federation inside;
- :mod:`fedlearn.workers` — the data owners: in-process, DP-SGD, faulty, personalized;
- :mod:`fedlearn.server` — the loop (select → train → aggregate → evaluate), server
  optimizers, availability, checkpoints; :mod:`fedlearn.aggregation` — FedAvg and robust
  rules; :mod:`fedlearn.updates` — clip, compress, mask, noise;
- :mod:`fedlearn.backends.pysyft` — Bob and Alice as PySyft 0.9.5 Datasites (imported only
  when used);
- :mod:`fedlearn.experiment` — one call from a config to files on disk; :mod:`fedlearn.cli`.
"""
from fedlearn.aggregation import fedavg
from fedlearn.config import (
                             AvailabilityConfig,
                             CompressionConfig,
                             ConfigError,
                             DataConfig,
                             DPConfig,
                             DPSGDConfig,
                             ExperimentConfig,
                             FederationConfig,
                             PartitionConfig,
                             TrainPlan,
)
from fedlearn.data import load_mnist, partition
from fedlearn.errors import FedlearnError
from fedlearn.experiment import run_experiment
from fedlearn.models import build_model
from fedlearn.server import FederatedServer, FederationResult, RoundFailedError, run_federation
from fedlearn.training import evaluate, train_epochs
from fedlearn.updates import Update
from fedlearn.workers import VirtualWorker, Worker, make_virtual_workers

__all__ = ["AvailabilityConfig", "CompressionConfig", "ConfigError", "DPConfig", "DPSGDConfig",
           "DataConfig", "ExperimentConfig", "FederatedServer", "FederationConfig",
           "FederationResult", "FedlearnError", "PartitionConfig", "RoundFailedError",
           "TrainPlan", "Update", "VirtualWorker", "Worker", "build_model", "evaluate",
           "fedavg", "load_mnist", "make_virtual_workers", "partition", "run_experiment",
           "run_federation", "train_epochs"]
