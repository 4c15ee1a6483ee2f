"""Data: loading MNIST (or bringing your own tensors) and splitting it between workers.

- :mod:`.mnist` — MNIST from a local folder or torchvision, checked, normalised, cached.
- :mod:`.normalisation` — the declared :class:`Normalisation` (x / divide_by, then mean and
  std per channel) and :func:`normalise`, the same code a Datasite's approved request runs.
- :mod:`.partition` — IID, label shards (McMahan 2017), Dirichlet(α), unbalanced sizes.
"""
from fedlearn.data.mnist import (
                                 MNIST_FILES,
                                 MNIST_MEAN,
                                 MNIST_STD,
                                 DataError,
                                 MnistTensors,
                                 cache_dir,
                                 load_mnist,
                                 to_uint8,
)
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation, normalise
from fedlearn.data.partition import label_histograms, partition

__all__ = ["MNIST_FILES", "MNIST_MEAN", "MNIST_NORMALISATION", "MNIST_STD", "DataError",
           "MnistTensors", "Normalisation", "cache_dir", "label_histograms", "load_mnist",
           "normalise", "partition", "to_uint8"]
