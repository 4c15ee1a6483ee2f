"""PySyft 0.9.5 Datasites as fedlearn workers: the owner's side and the data scientist's.

- :mod:`.owner` — :class:`Datasite`: launch or serve, upload the private shard, review
  and approve code requests (:mod:`.review` checks what will really run).
- :mod:`.scientist` — :class:`SyftWorker`: the same interface as the in-process
  workers; submits the generated code (:mod:`.training_code`) and calls it per round.
- :mod:`.launch` — :func:`launch_syft_workers`: every step of the tutorial at once.
- :mod:`.serve` and :mod:`.remote` — a Datasite as a network server, and reaching
  one by URL (:mod:`.connection`: login, role check, TLS).
- :mod:`.console` — PySyft's console chatter kept off the screen unless ``--verbose``.
- :mod:`.loading`, :mod:`.hardening`, :mod:`.service_policy` — the only place syft is
  imported, and the patches every such process runs with (docs/security-audit.md).
"""
from fedlearn.backends.pysyft.console import one_line, quiet_syft, set_verbose
from fedlearn.backends.pysyft.launch import launch_syft_workers
from fedlearn.backends.pysyft.loading import SYFT_VERSION, SyftUnavailableError, require_syft
from fedlearn.backends.pysyft.owner import ApprovalRefused, Datasite
from fedlearn.backends.pysyft.scientist import StaleResultError, SyftWorker

__all__ = ["SYFT_VERSION", "ApprovalRefused", "Datasite", "StaleResultError",
           "SyftUnavailableError", "SyftWorker", "launch_syft_workers", "one_line", "quiet_syft",
           "require_syft", "set_verbose"]
