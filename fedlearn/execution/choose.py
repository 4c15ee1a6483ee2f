"""One entry point from a configuration to its executor, refusing what cannot run.

As Opacus' ``create_accountant``: a name is looked up, an unknown one is refused (the config
already refused it), never a silent default.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from fedlearn.config import ConfigError, ExperimentConfig
from fedlearn.execution.base import ClientExecutor
from fedlearn.execution.sequential import Sequential
from fedlearn.execution.together import Together, together_refusals
from fedlearn.workers.base import Worker


def make_executor(config: ExperimentConfig, workers: Sequence[Worker], model: torch.nn.Module,
                  device: torch.device) -> ClientExecutor:
    """``config.execution.executor``; ``auto`` trains clients together on a GPU when they can
    be (on a CPU sequential measures faster: benchmarks/hardware_speed.py). ``ray`` starts or
    joins a Ray runtime (:mod:`fedlearn.execution.ray`), whose actors choose the same way
    (``config.execution.ray_actor_clients``). The caller closes what it gets."""
    execution = config.execution
    wanted = execution.executor
    if wanted == "sequential":
        return Sequential()
    if wanted == "ray":
        from fedlearn.execution.ray import RayExecutor

        if device.type == "cuda" and execution.ray_client_gpus == 0:
            raise ConfigError("execution.ray_client_gpus", "the run trains on cuda but a Ray "
                              "client gets no GPU: give --ray-client-gpus (a fraction shares "
                              "one)")
        together = _together(execution.ray_actor_clients, "execution.ray_actor_clients",
                             together_refusals(config, workers, model), device)
        return RayExecutor(execution, workers, together=together, device=device.type,
                           per_round=config.workers_per_round(len(workers)))
    if _together(wanted, "execution.executor", together_refusals(config, workers, model),
                 device):
        return Together()
    return Sequential()


def _together(wanted: str, field: str, reasons: list[str], device: torch.device) -> bool:
    """``together`` where asked (refused with the reasons if it cannot be), or ``auto`` on a GPU."""
    if wanted == "together" and reasons:
        raise ConfigError(field, f"clients cannot be trained together here: "
                          f"{'; '.join(reasons)}; use sequential or auto")
    return wanted == "together" or (wanted == "auto" and device.type == "cuda" and not reasons)
