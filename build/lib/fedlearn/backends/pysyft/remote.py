"""The data scientist's side of Datasites on other machines.

``fedlearn train --backend pysyft --datasite bob=http://HOST:PORT ...`` logs in
to each owner's Datasite as a data scientist, submits the training code (one
code request per owner for the whole run), waits for each owner to approve it,
and hands :class:`~fedlearn.backends.pysyft.SyftWorker` objects to the same
federation loop the in-process workers use.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedlearn.backends.pysyft.training_code import check_run
from fedlearn.config import ConfigError, DPSGDConfig, TrainPlan
from fedlearn.errors import FedlearnError
from fedlearn.experiment import CHECKPOINT
from fedlearn.files import atomic_write

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_URL = re.compile(r"^https?://[^/:\s]+:\d{1,5}/?$")


class ApprovalError(FedlearnError, RuntimeError):
    """An owner rejected the code request, or did not approve it in time."""


@dataclass(frozen=True)
class DatasiteAddress:
    """``bob=http://10.0.0.2:8080``: a data owner's name and where their Datasite listens."""

    name: str
    url: str

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ConfigError("datasite", f"owner name must be letters, digits, - or _ "
                              f"(got {self.name!r})")
        if not _URL.match(self.url):
            raise ConfigError("datasite", f"{self.name}: URL must look like http://HOST:PORT "
                              f"or https://HOST:PORT (got {self.url!r})")

    @classmethod
    def parse(cls, text: str) -> DatasiteAddress:
        name, sep, url = text.partition("=")
        if not sep:
            raise ConfigError("datasite", f"must look like NAME=http://HOST:PORT (got {text!r})")
        return cls(name.strip(), url.strip())


def parse_addresses(texts) -> tuple[DatasiteAddress, ...]:
    addresses = tuple(DatasiteAddress.parse(t) for t in texts)
    names = [a.name for a in addresses]
    if len(set(names)) != len(names):
        raise ConfigError("datasite", f"owner names must be distinct (got {names})")
    return addresses


def wait_for_approval(workers, *, timeout: float, poll: float = 2.0, on_wait=None,
                      clock=time.monotonic, sleep=time.sleep) -> None:
    """Block until every worker's code request is approved.

    ``on_wait(name, request_id)`` is called once per owner still pending, so the
    user sees whom they are waiting for. A rejection raises at once with the
    owner's reason; ``timeout`` seconds without all approvals raise too. Either
    way nothing has run on anyone's data.
    """
    deadline = clock() + timeout
    told: set[str] = set()
    while True:
        pending = []
        for worker in workers:
            status, reason = worker.approval()
            if status == "rejected":
                raise ApprovalError(f"{worker.name} rejected the code request "
                                    f"{worker.request_id}: {reason or 'no reason given'}")
            if status != "approved":
                pending.append(worker)
                if worker.name not in told and on_wait is not None:
                    on_wait(worker.name, worker.request_id)
                told.add(worker.name)
        if not pending:
            return
        if clock() >= deadline:
            names = ", ".join(f"{w.name} ({w.request_id})" for w in pending)
            raise ApprovalError(f"not approved within {timeout:g} s: {names}. The requests stay "
                                "pending; once approved, rerun the same command (same --out)")
        sleep(poll)


RUN_FILE = "datasite_run.json"


def run_id_for(out: Path, *, resume: bool) -> str:
    """This run's id on the Datasites, kept in ``out``: the code requests name it, so a new
    run needs new approvals while ``--resume`` (or a rerun still waiting for approval) uses
    the ones it has."""
    path = out / RUN_FILE
    if path.exists() and (resume or not (out / CHECKPOINT).exists()):
        try:
            return check_run(json.loads(path.read_text())["run"])
        except (ValueError, KeyError, TypeError, FedlearnError) as exc:
            raise ConfigError("out", f"{path} is damaged ({exc}); remove it to start a new "
                              "run") from exc
    run = uuid.uuid4().hex
    atomic_write(path, lambda f: f.write(json.dumps({"run": run}).encode()))
    return run


def connect_datasites(addresses, *, email: str, password: str | Mapping[str, str], model: str,
                      max_calls: int, approval_timeout: float, run: str,
                      plan: TrainPlan | None = None, dp: DPSGDConfig | None = None,
                      on_wait=None, poll: float = 2.0,
                      normalisation=None, secure: bool = False,
                      topk: float | None = None) -> list:
    """Log in to every Datasite, submit the code, wait for approvals; return the workers.

    Each owner's terms (:mod:`.owner_limits`) are read first: a ``plan`` or a choice of
    ``dp`` they would refuse is refused here, before anything is submitted. ``password``: the
    scientist's on every Datasite, or each owner's by name (independent owners choose their
    own). ``normalisation`` (a :class:`fedlearn.data.Normalisation`; default MNIST's) is declared
    in the code request: what the approved code does to each owner's data. ``secure``: submit
    the secure-aggregation function (:mod:`.secure_training_code`); ``topk``: the top-k function
    sending that share of each tensor (:mod:`.sparse_training_code`).
    """
    from fedlearn.data.normalisation import MNIST_NORMALISATION, check_normalisation

    normalisation = check_normalisation(normalisation or MNIST_NORMALISATION)
    from fedlearn.backends.pysyft.connection import (
        DatasiteRefused,
        DatasiteUnreachable,
        LoginError,
    )
    from fedlearn.backends.pysyft.hardening import RefusedBySecurityPolicy
    from fedlearn.backends.pysyft.owner_limits import run_refusal
    from fedlearn.backends.pysyft.scientist import SyftWorker

    workers = []
    for address in addresses:
        try:
            worker = SyftWorker.connect(address.name, address.url, email=email,
                                        password=password if isinstance(password, str)
                                        else password[address.name])
        except (LoginError, ConnectionError):  # DatasiteUnreachable, DatasiteRefused
            raise
        except RefusedBySecurityPolicy as exc:  # e.g. a Datasite answering with a code gadget
            raise DatasiteRefused(f"{address.name}: {address.url} sent something fedlearn "
                                  f"refuses to decode ({exc}); is it really a Datasite?") from exc
        except Exception as exc:  # a server that is not a Datasite
            what = " ".join(str(exc).split())[:200]
            raise DatasiteUnreachable(f"{address.name}: cannot reach a Datasite at "
                                      f"{address.url} ({type(exc).__name__}: {what})") from exc
        refused = run_refusal(worker.terms(), plan or TrainPlan(),
                              dp.noise_multiplier if dp else None)
        if refused is not None:
            raise ConfigError(refused[0], f"{address.name}: {refused[1]}")
        workers.append(worker)
    for worker in workers:
        worker.submit(model, max_calls=max_calls, run=run, dp=dp, normalisation=normalisation,
                      secure=secure, topk=topk)
    wait_for_approval(workers, timeout=approval_timeout, on_wait=on_wait, poll=poll)
    return workers
