"""Local worker processes: a round's clients on every core of one machine, one thread each.

No cluster and no runtime: :mod:`.pool` (spawned processes, replaced, all ended),
:mod:`.child` (what one process runs), :mod:`.shared` (the round's weights in shared memory),
:mod:`.executor` (the round, with the Ray executor's pure schedule and fault policy),
:mod:`.cores` (how many processes, and when ``auto`` chooses them).
"""
from fedlearn.execution.processes.cores import auto_reasons, physical_cores, process_refusals
from fedlearn.execution.processes.executor import ProcessExecutor

__all__ = ["ProcessExecutor", "auto_reasons", "physical_cores", "process_refusals"]
