"""PySyft 0.9.5 Datasites as fedlearn workers (the Datasite API).

Two roles, two classes:

- :class:`Datasite` is the **data owner's** side: launch a Datasite (in-process,
  or a real uvicorn HTTP server with ``port=``), upload the owner's shard as a
  private asset with a small mock, register a data-scientist account, review and
  approve code requests, and ``land()`` with its temporary files removed.
- :class:`SyftWorker` is the **data scientist's** view of one Datasite. It has the
  same interface as :class:`fedlearn.workers.VirtualWorker`, so the same
  federation loop drives both. It can read the mock, never the data; it submits
  the training code once (one code request per owner for the whole run) and then
  calls it once per round.

PySyft issue #9391: the execution-count limit of an output policy is not
enforced in 0.9.5, and were it enforced, a call past the limit would silently
return the last stored result. Every call therefore sends a fresh nonce that the
code echoes; a result without it raises :class:`StaleResultError`.

syft is imported only through :mod:`fedlearn.backends.syft_import`, when first needed.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from fedlearn.backends.syft_code import (FUNCTION_NAME, load_training_function,
                                         training_function_source)
from fedlearn.backends.syft_import import SYFT_VERSION, SyftUnavailableError, require_syft  # noqa: F401
from fedlearn.config import TrainPlan
from fedlearn.updates import Update, detached_cpu_state

DEFAULT_ADMIN = ("info@openmined.org", "changethis")
DATASET = "mnist"


class StaleResultError(RuntimeError):
    """A Datasite returned a result that was not computed for this call."""


def _check(result, what: str):
    """PySyft reports many failures as returned SyftError objects: turn them into exceptions."""
    sy = require_syft()
    if isinstance(result, sy.SyftError):
        raise RuntimeError(f"PySyft: {what} failed: {result.message}")
    return result


class Datasite:
    """A data owner (e.g. Bob) running a PySyft Datasite."""

    def __init__(self, name: str, handle, admin):
        self.name = name
        self._handle = handle
        self._admin = admin

    @classmethod
    def launch(cls, name: str, *, port: int | str | None = None,
               host: str = "127.0.0.1") -> Datasite:
        """Start a Datasite: in-process (``port=None``) or an HTTP server (``port="auto"``)."""
        sy = require_syft()
        handle = sy.orchestra.launch(name=name, reset=True, host=host, port=port)
        admin = handle.login(email=DEFAULT_ADMIN[0], password=DEFAULT_ADMIN[1])
        return cls(name, handle, admin)

    @classmethod
    def serve(cls, name: str, *, host: str, port: int, url: str, admin_email: str,
              admin_password: str) -> Datasite:
        """Start a network Datasite whose admin password was set before syft was imported.

        Proves the published default password does not open it; stops it otherwise.
        """
        sy = require_syft()
        handle = sy.orchestra.launch(name=name, reset=True, host=host, port=port)
        try:
            admin = _login(url, admin_email, admin_password)
            try:
                _login(url, DEFAULT_ADMIN[0], DEFAULT_ADMIN[1])
                opened = True
            except Exception:
                opened = False
            if opened:
                raise RuntimeError(f"{name}: PySyft's default admin password still opens this "
                                   "Datasite; refusing to serve")
        except BaseException:
            handle.land()
            raise
        site = cls(name, handle, admin)
        site._url = url
        return site

    @classmethod
    def connect(cls, url: str, *, email: str, password: str) -> Datasite:
        """Log in to a running Datasite as its owner (admin), e.g. to review requests."""
        admin = _login(url, email, password)
        return cls(str(admin.name), None, admin)

    @property
    def url(self) -> str | None:
        if getattr(self, "_url", None):
            return self._url
        port = getattr(self._handle, "port", None)
        return f"http://localhost:{port}" if port else None

    @property
    def handle(self):
        """What a data scientist logs in through (in-process) — see :meth:`SyftWorker.connect`."""
        return self._handle

    def upload_mnist(self, images: np.ndarray, labels: np.ndarray, *, mock_size: int = 16,
                     seed: int = 0) -> None:
        """Upload a shard as private assets ``images`` (N, 28, 28) uint8 and ``labels`` (N,).

        The mocks are seeded random noise of the same dtype and shape per sample:
        enough for a data scientist to write code against, nothing about the data.
        """
        sy = require_syft()
        images, labels = np.asarray(images), np.asarray(labels).astype(np.int64)
        if images.dtype != np.uint8 or images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"{self.name}: need uint8 images (N, 28, 28) and N labels, got "
                             f"{images.dtype} {images.shape} and {labels.shape}")
        rng = np.random.default_rng(seed)
        dataset = sy.Dataset(name=DATASET, description=f"{self.name}'s private MNIST shard",
                             asset_list=[
            # shape is set explicitly: PySyft would infer it from the mock
            sy.Asset(name="images", data=images, shape=images.shape,
                     mock=rng.integers(0, 256, (mock_size, *images.shape[1:]), dtype=np.uint8)),
            sy.Asset(name="labels", data=labels, shape=labels.shape,
                     mock=rng.integers(0, 10, mock_size).astype(np.int64))])
        _check(self._admin.upload_dataset(dataset), f"upload to {self.name}")

    def register_scientist(self, email: str, password: str, name: str = "Data Scientist") -> None:
        _check(self._admin.register(name=name, email=email, password=password,
                                    password_verify=password), f"register {email}")

    def requests(self, *, include_decided: bool = False) -> list[dict]:
        """Code requests as plain dicts (id, status, function, requester, time, code)."""
        rows = []
        for r in _check(self._admin.requests, f"list requests on {self.name}"):
            status = str(r.status).rpartition(".")[2].lower()
            if include_decided or status == "pending":
                rows.append({"id": str(r.id), "status": status,
                             "function": r.code.service_func_name,
                             "requester": r.requesting_user_email, "time": str(r.request_time),
                             "code": r.code.raw_code})
        return rows

    def pending_requests(self) -> list:
        return [r for r in self._admin.requests if str(r.status).endswith("PENDING")]

    def request(self, request_id):
        matches = [r for r in self._admin.requests if str(r.id) == str(request_id)]
        if not matches:
            raise KeyError(f"{self.name}: no code request with id {request_id}")
        return matches[0]

    def review(self, request_id) -> str:
        """The exact source the data scientist asks to run on this owner's data."""
        return self.request(request_id).code.raw_code

    def approve(self, request_id) -> None:
        """Approve the request with this id (never 'the latest one': it may be another)."""
        _check(self.request(request_id).approve(), f"approve {request_id} on {self.name}")

    def deny(self, request_id, reason: str) -> None:
        _check(self.request(request_id).deny(reason=reason), f"deny {request_id} on {self.name}")

    def land(self) -> None:
        """Stop the Datasite and delete its SQLite and blob files."""
        if self._handle is None:
            raise RuntimeError(f"{self.name}: only the process that launched a Datasite can "
                               "stop it")
        server_id = self._admin.id
        self._handle.land()
        shutil.rmtree(self.files_dir(server_id), ignore_errors=True)

    @staticmethod
    def files_dir(server_id) -> Path:
        """Where syft 0.9.5 keeps a Datasite's database and blobs."""
        return Path(tempfile.gettempdir()) / "syft" / str(server_id)

    @property
    def server_id(self) -> str:
        return str(self._admin.id)


def _login(url: str, email: str, password: str):
    """Log in to a Datasite at ``http(s)://host:port``; PySyft wants host and port apart."""
    sy = require_syft()
    scheme, sep, rest = url.rstrip("/").partition("://")
    host, _, port = rest.rpartition(":")
    if not sep or scheme not in ("http", "https") or not host or not port.isdigit():
        raise ValueError(f"a Datasite URL looks like http://HOST:PORT (got {url!r})")
    try:
        return sy.login(url=f"{scheme}://{host}", port=int(port), email=email, password=password)
    except sy.SyftException as exc:
        raise PermissionError(f"login to {url} as {email} failed: {exc.public_message}") from exc
    except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
        raise ConnectionError(f"cannot reach a Datasite at {url} ({type(exc).__name__}); is "
                              "the server running, and are the host and port right?") from exc


class SyftWorker:
    """The data scientist's handle on one Datasite, with the fedlearn worker interface."""

    remote = True  # work that must run inside the approved code is refused for it

    def __init__(self, name: str, client):
        self.name = name
        self._client = client
        assets = _check(client.datasets[DATASET], f"find dataset on {name}").assets
        self._images, self._labels = assets["images"], assets["labels"]
        self._request_id = None
        self.calls = 0

    @classmethod
    def connect(cls, name: str, server, *, email: str, password: str) -> SyftWorker:
        """Log in as a data scientist through a launch handle or a ``http://`` URL."""
        if isinstance(server, str):
            client = _login(server, email, password)
        else:
            client = server.login(email=email, password=password)
        return cls(name, client)

    @property
    def num_examples(self) -> int:
        return int(self._images.shape[0])

    @property
    def request_id(self) -> str | None:
        return self._request_id

    @property
    def assets(self) -> dict:
        """The data scientist's asset pointers; ``.mock`` works, ``.data`` is refused."""
        return {"images": self._images, "labels": self._labels}

    def mock(self) -> tuple[np.ndarray, np.ndarray]:
        """The mock images and labels: all a data scientist may look at."""
        return np.asarray(self._images.mock), np.asarray(self._labels.mock)

    def submit(self, model: str, *, max_calls: int) -> str:
        """Submit the training code as one code request for the whole run; return its id.

        PySyft keeps one request per piece of code: if this scientist already asked
        this Datasite to run exactly this code (e.g. a resumed run), that request is
        used again instead of asking the owner twice.
        """
        sy = require_syft()
        from syft.service.policy.policy import OutputPolicyExecuteCount

        function = load_training_function(model)
        source = training_function_source(model).strip()
        for request in _check(self._client.requests, f"list requests on {self.name}"):
            if getattr(request.code, "raw_code", "").strip() == source:
                self._request_id = str(request.id)
                return self._request_id
        policy = sy.MixedInputPolicy(client=self._client, images=self._images,
                                     labels=self._labels, weights=dict, plan=dict, seed=int,
                                     nonce=str, mode=str)
        code = sy.syft_function(input_policy=policy,
                                output_policy=OutputPolicyExecuteCount(limit=max_calls))(function)
        request = _check(self._client.code.request_code_execution(code),
                         f"code request to {self.name}")
        self._request_id = str(request.id)
        return self._request_id

    def approval(self) -> tuple[str, str | None]:
        """("pending" | "approved" | "rejected", the owner's reason when rejected)."""
        if self._request_id is None:
            raise RuntimeError(f"{self.name}: nothing submitted yet")
        request = next((r for r in self._client.requests if str(r.id) == self._request_id), None)
        if request is None:
            raise RuntimeError(f"{self.name}: code request {self._request_id} is gone")
        status = str(request.status).rpartition(".")[2].lower()
        return status, (str(request.deny_reason) if status == "rejected" else None)

    def _call(self, weights: Mapping[str, torch.Tensor], mode: str, plan: dict, seed: int) -> dict:
        if self._request_id is None:
            raise RuntimeError(f"{self.name}: submit() the training code and have the owner "
                               "approve it before training")
        nonce = uuid.uuid4().hex
        out = self._invoke(weights=detached_cpu_state(weights), plan=plan, seed=int(seed),
                           nonce=nonce, mode=mode)
        self.calls += 1
        if not isinstance(out, dict) or out.get("nonce") != nonce:
            raise StaleResultError(
                f"{self.name} returned a result that was not computed for this call (nonce "
                "mismatch): PySyft 0.9.5 returns the last stored output once an output policy "
                "is used up (issue #9391). Submit a new code request.")
        return out

    def _invoke(self, **kwargs) -> dict:
        """One execution of the approved code on the Datasite, next to the data."""
        sy = require_syft()
        what = f"{kwargs['mode']} on {self.name}"
        try:
            remote = getattr(self._client.code, FUNCTION_NAME)
            pointer = _check(remote(images=self._images, labels=self._labels, **kwargs), what)
            return _check(pointer.get(), f"fetching the result of {what}")
        except sy.SyftException as exc:  # e.g. the request is not approved (yet)
            raise RuntimeError(f"PySyft: {what} failed: {exc}") from exc

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        if batches is not None:
            raise NotImplementedError(
                "the PySyft backend runs FedAvg only: per-batch model hopping (fedsgd) would "
                "be one code execution (~1-3 s) per minibatch")
        out = self._call(weights, "fit", dataclasses.asdict(plan), seed)
        delta = {k: v.to(next(iter(weights.values())).device) for k, v in out["delta"].items()}
        return Update(self.name, delta, int(out["num_examples"]), dict(out["metrics"]))

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict:
        return dict(self._call(weights, "evaluate", {}, 0)["metrics"])


def launch_syft_workers(images: np.ndarray, labels: np.ndarray, parts, names, *, model: str,
                        max_calls: int, port: int | str | None = None,
                        scientist: tuple[str, str] = ("scientist@fedlearn.example",
                                                      "fedlearn-scientist-pw"),
                        seed: int = 0) -> tuple[list[Datasite], list[SyftWorker]]:
    """Every step of the tutorial at once, for tests and benchmarks.

    For each name: launch a Datasite, upload its part of (images, labels),
    register the data scientist, log in as them (never as admin), submit the
    code request, and approve it by its id as the owner. Returns the Datasites
    (call ``land()`` on each) and the workers.
    """
    sites, workers = [], []
    try:
        for i, (name, part) in enumerate(zip(names, parts)):
            site = Datasite.launch(name, port=port)
            sites.append(site)
            site.upload_mnist(images[part], labels[part], seed=seed + i)
            site.register_scientist(*scientist)
            worker = SyftWorker.connect(name, site.url or site.handle, email=scientist[0],
                                        password=scientist[1])
            site.approve(worker.submit(model, max_calls=max_calls))
            workers.append(worker)
    except BaseException:
        for site in sites:
            site.land()
        raise
    return sites, workers
