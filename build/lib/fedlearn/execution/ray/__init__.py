"""Ray: a simulation's clients on long-lived Ray actors, on this machine or a cluster.

``ray`` is imported inside this package only, when ``executor='ray'`` is asked for:
:mod:`.runtime` (join or start Ray), :mod:`.pool` (the actors), :mod:`.schedule` and
:mod:`.faults` (pure: who goes where, what a fault means), :mod:`.actor` (its shard
:mod:`.cache`), :mod:`.wire` (what crosses), :mod:`.executor` (the round).
"""
from fedlearn.execution.ray.executor import RayExecutor

__all__ = ["RayExecutor"]
