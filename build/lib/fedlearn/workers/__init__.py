"""Workers: data owners that train on their own data and return only updates.

Every backend offers the same small interface (see :class:`Worker`), so one
federation loop drives them all: in-process (:mod:`.inprocess`), DP-SGD through
Opacus (:mod:`.dp_sgd`, imported when used), faults for tests and demos
(:mod:`.faults`), fine-tuning afterwards (:mod:`.personalization`). The PySyft
backend lives in ``fedlearn.backends.pysyft`` and is imported only when asked for.
"""
from fedlearn.workers.base import Worker
from fedlearn.workers.inprocess import VirtualWorker, make_virtual_workers

__all__ = ["Worker", "VirtualWorker", "make_virtual_workers"]
