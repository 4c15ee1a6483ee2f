"""Data: loading MNIST (or bringing your own tensors) and splitting it between workers.

- :mod:`.mnist` — MNIST from a local folder or torchvision, checked, normalised, cached.
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
from fedlearn.data.partition import label_histograms, partition

__all__ = ["MNIST_FILES", "MNIST_MEAN", "MNIST_STD", "DataError", "MnistTensors", "cache_dir",
           "label_histograms", "load_mnist", "partition", "to_uint8"]
