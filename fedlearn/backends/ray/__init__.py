"""Ray backend: a simulation's clients on long-lived Ray actors, on this machine or a cluster.

``ray`` is imported inside this package only, when ``executor='ray'`` is asked for.
"""
from fedlearn.backends.ray.executor import RayExecutor

__all__ = ["RayExecutor"]
