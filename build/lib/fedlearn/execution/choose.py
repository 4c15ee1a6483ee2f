"""One entry point from a configuration to its executor, refusing what cannot run.

As Opacus' ``create_accountant``: a name is looked up, an unknown one is refused (the config
already refused it), never a silent default.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fedlearn.config import ConfigError, ExperimentConfig, registered
from fedlearn.execution.base import ClientExecutor
from fedlearn.execution.concurrent import Concurrent, network_refusals
from fedlearn.execution.sequential import Sequential
from fedlearn.execution.together import Together, together_refusals
from fedlearn.workers.base import Worker


def _sequential(config, workers, model, device) -> ClientExecutor:
    return Sequential()


def _in_process(config, workers, model, device) -> ClientExecutor:
    """``together`` (refused with the reasons if the clients cannot be), or ``auto``: every
    call at once for Datasites over HTTP on other hosts (:mod:`.concurrent`); together on a
    GPU when they can be; on a CPU, worker processes where the machine has several cores, a
    round several clients and the run enough work (:func:`.processes.auto_reasons`), else sequential
    (benchmarks/processes.py, benchmarks/hardware_speed.py)."""
    wanted = config.execution.executor
    if (wanted == "auto" and len(workers) > 1 and not network_refusals(workers)
            and not any(w.shares_this_machine() for w in workers)):
        return Concurrent()
    if _together(wanted, "execution.executor", together_refusals(config, workers, model),
                 device):
        return Together()
    if wanted == "auto":
        from fedlearn.execution.processes import ProcessExecutor, auto_reasons
        from fedlearn.execution.processes.cores import chosen_line, process_count

        if not auto_reasons(config, workers, device):
            return ProcessExecutor(processes=process_count(config, len(workers)),
                                   chosen=chosen_line(config, workers))
    return Sequential()


def _concurrent(config, workers, model, device) -> ClientExecutor:
    if reasons := network_refusals(workers):
        raise ConfigError("execution.executor", f"clients cannot be asked all at once here: "
                          f"{'; '.join(reasons)}")
    return Concurrent()


def _processes(config, workers, model, device) -> ClientExecutor:
    from fedlearn.execution.processes import ProcessExecutor, process_refusals
    from fedlearn.execution.processes.cores import process_count

    if reasons := process_refusals(config, workers, device):
        raise ConfigError("execution.executor", f"clients cannot be trained in worker "
                          f"processes here: {'; '.join(reasons)}; use sequential or auto")
    return ProcessExecutor(processes=process_count(config, len(workers)))


def _ray(config, workers, model, device) -> ClientExecutor:
    from fedlearn.execution.ray import RayExecutor

    execution = config.execution
    if device.type == "cuda" and execution.ray_client_gpus == 0:
        raise ConfigError("execution.ray_client_gpus", "the run trains on cuda but a Ray "
                          "client gets no GPU: give --ray-client-gpus (a fraction shares one)")
    together = _together(execution.ray_actor_clients, "execution.ray_actor_clients",
                         together_refusals(config, workers, model), device)
    return RayExecutor(execution, workers, together=together, device=device.type,
                       per_round=config.workers_per_round(len(workers)))


Maker = Callable[[ExperimentConfig, Sequence[Worker], torch.nn.Module, torch.device],
                 ClientExecutor]

# The registry of executors, by the name execution.executor takes (its Literal,
# fedlearn.config.ExecutorName, lists the same names: tests/test_registries.py).
EXECUTOR_MAKERS: dict[str, Maker] = {"auto": _in_process, "sequential": _sequential,
                                     "together": _in_process, "processes": _processes,
                                     "ray": _ray, "concurrent": _concurrent}


def make_executor(config: ExperimentConfig, workers: Sequence[Worker], model: torch.nn.Module,
                  device: torch.device) -> ClientExecutor:
    """The executor ``config.execution.executor`` names; ``processes`` starts local worker
    processes (:mod:`fedlearn.execution.processes`); ``ray`` starts or joins a Ray
    runtime (:mod:`fedlearn.execution.ray`), whose actors choose as ``auto`` does
    (``config.execution.ray_actor_clients``). The caller closes what it gets."""
    make = registered(EXECUTOR_MAKERS, config.execution.executor, "executor")
    return make(config, workers, model, device)


def _together(wanted: str, field: str, reasons: list[str], device: torch.device) -> bool:
    """``together`` where asked (refused with the reasons if it cannot be), or ``auto`` on a GPU."""
    if wanted == "together" and reasons:
        raise ConfigError(field, f"clients cannot be trained together here: "
                          f"{'; '.join(reasons)}; use sequential or auto")
    return wanted == "together" or (wanted == "auto" and device.type == "cuda" and not reasons)
