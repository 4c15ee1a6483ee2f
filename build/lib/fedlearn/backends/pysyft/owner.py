r"""The data owner's side: a PySyft 0.9.5 Datasite holding one owner's private shard.

:class:`Datasite` launches a Datasite (in-process, or a real uvicorn HTTP server
with ``port=``) whose admin password is random (never PySyft's published
``changethis``), uploads the owner's shard as a private asset with a small mock,
registers a data-scientist account, reviews code requests — showing and checking
what will really run (:mod:`fedlearn.backends.pysyft.review`) — approves or denies
them, and ``land()``\ s with its temporary files removed.

syft is imported only through :mod:`fedlearn.backends.pysyft.loading`, when first
needed, and always hardened.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedlearn.backends.pysyft.connection import login, login_to_handle
from fedlearn.backends.pysyft.console import quiet_syft
from fedlearn.backends.pysyft.loading import (
    PYSYFT_DEFAULT_EMAIL,
    PYSYFT_DEFAULT_PASSWORD,
    require_syft,
    set_root_credentials,
)
from fedlearn.backends.pysyft.owner_limits import current, terms
from fedlearn.backends.pysyft.review import RequestReview
from fedlearn.backends.pysyft.secure_training_code import SECRET_ASSET
from fedlearn.backends.pysyft.server_process import install_child_hooks
from fedlearn.backends.pysyft.shards import mocks, shard_problem
from fedlearn.backends.pysyft.sparse_training_code import MOCK_SLOT, PRIVATE_SLOT, RESIDUAL_ASSET
from fedlearn.backends.pysyft.training_code import DATASET
from fedlearn.errors import FedlearnError

ADMIN_EMAIL = PYSYFT_DEFAULT_EMAIL  # the owner's account keeps syft's e-mail, never the password


def _random_bytes() -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(32), dtype=np.uint8).copy()


class ApprovalRefused(FedlearnError):
    """The owner asked to approve a request that does not pass fedlearn's checks."""


class UnknownRequest(FedlearnError, KeyError):
    """No code request has the id the owner gave."""

    def __str__(self) -> str:  # a KeyError would quote its message
        return str(self.args[0]) if self.args else ""


class SyftRefused(FedlearnError, RuntimeError):
    """PySyft refused an action (its own reason is in the message)."""


def private_syft_root() -> Path:
    """``$TMPDIR/syft``, where syft 0.9.5 puts every Datasite's database and blobs, made 0700:
    its files are 0644, so only a closed folder keeps other local users out."""
    root = Path(tempfile.gettempdir()) / "syft"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.stat().st_uid == os.getuid():
        root.chmod(0o700)
    return root


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_result(result, what: str):
    """PySyft reports many failures as returned SyftError objects: turn them into exceptions."""
    sy = require_syft()
    if isinstance(result, sy.SyftError):
        raise SyftRefused(f"PySyft: {what} failed: {result.message}")
    return result


def ask_fedlearn(client, path: str, **kwargs) -> tuple[str | None, Any]:
    """Call one of fedlearn's own paths (``fedlearn.*``), answered by the server itself
    (:mod:`fedlearn.backends.pysyft.call_guard`): (the refusal or None, the value)."""
    sy = require_syft()
    from syft.client.api import SyftAPICall

    call = SyftAPICall(server_uid=client.id, path=path, args=[], kwargs=kwargs, blocking=True)
    with quiet_syft():
        result = client.api.make_call(call)
    if isinstance(result, sy.SyftError):
        return result.message, None
    return None, getattr(result, "value", result)


class Datasite:
    """A data owner (e.g. Bob) running a PySyft Datasite."""

    def __init__(self, name: str, handle, admin):
        self.name = name
        self._handle = handle
        self._admin = admin
        self._url: str | None = None  # set for a served Datasite

    @classmethod
    def launch(cls, name: str, *, port: int | str | None = None, host: str = "127.0.0.1",
               admin_email: str = ADMIN_EMAIL, admin_password: str | None = None) -> Datasite:
        """Start a Datasite: in-process (``port=None``) or an HTTP server (``port="auto"``).

        Without ``admin_password`` the admin gets a random one, known only to this
        object: nobody else can log in as the owner, even on an HTTP Datasite.
        """
        sy = require_syft()
        password = admin_password or secrets.token_urlsafe(24)
        set_root_credentials(admin_email, password)
        private_syft_root()
        if port is not None:  # an HTTP server in a forked child: it must die with us
            install_child_hooks(workspace=None)
            handle = sy.orchestra.launch(name=name, reset=True, host=host, port=port)
        else:
            with quiet_syft():
                handle = sy.orchestra.launch(name=name, reset=True, host=host, port=port)
        try:
            admin = login_to_handle(handle, admin_email, password)
        except BaseException:
            handle.land()
            raise
        return cls(name, handle, admin)

    @classmethod
    def serve(cls, name: str, *, host: str, port: int, url: str, admin_email: str,
              admin_password: str, reset: bool = True) -> Datasite:
        """Start a network Datasite with the owner's admin password.

        Proves the published default password does not open it; stops it otherwise.
        ``reset=False`` opens the store a previous run left (``serve --state-dir``).
        """
        sy = require_syft()
        set_root_credentials(admin_email, admin_password)
        handle = sy.orchestra.launch(name=name, reset=reset, host=host, port=port)
        try:
            admin = login(url, admin_email, admin_password)
            try:
                login(url, ADMIN_EMAIL, PYSYFT_DEFAULT_PASSWORD)
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
        admin = login(url, email, password)
        return cls(str(admin.name), None, admin)

    @property
    def url(self) -> str | None:
        if self._url:
            return self._url
        port = getattr(self._handle, "port", None)
        return f"http://localhost:{port}" if port else None

    @property
    def client(self):
        """The owner's own (admin) PySyft client: to upload data and review requests."""
        return self._admin

    @property
    def handle(self):
        """What a data scientist logs in through (in-process) — see :meth:`SyftWorker.connect`."""
        return self._handle

    def upload_mnist(self, images: np.ndarray, labels: np.ndarray, *, mock_size: int = 16,
                     seed: int = 0) -> None:
        """Upload a shard of MNIST: ``images`` (N, 28, 28) uint8 and ``labels`` (N,)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{self.name}: need uint8 images (N, 28, 28), got {images.dtype} "
                             f"{images.shape}")
        self.upload(images, labels, mock_size=mock_size, seed=seed, what="MNIST shard")

    def upload(self, images: np.ndarray, labels: np.ndarray, *, mock_size: int = 16,
               seed: int = 0, what: str = "shard") -> None:
        """Upload a shard as private assets ``images`` and ``labels`` (N,) int64, and this
        Datasite's secure-aggregation secret ``secagg_key`` (32 random bytes made here: only
        fedlearn's approved secure-aggregation function reads it, and never returns it;
        :mod:`.secure_training_code`), and ``residual``, the slot through which the server
        hands fedlearn's top-k function the owner's kept residual (:mod:`.residual_keeper`).

        ``images``: uint8 images (N, H, W) or (N, C, H, W), or float32 images or features
        (N, F), finite (:mod:`.shards`); the approved code normalises them as the request
        declares (the review shows how). The mocks are seeded noise of the same dtype and
        shape per sample (:func:`.shards.mocks`)."""
        sy = require_syft()
        images, labels = np.asarray(images), np.asarray(labels)
        problem = shard_problem(images, labels)
        if problem is not None:
            raise ValueError(f"{self.name}: {problem}")
        labels = labels.astype(np.int64)
        mock_images, mock_labels = mocks(images, labels, mock_size, seed)
        description = f"{self.name}'s private {what}. {terms(current())}"
        dataset = sy.Dataset(name=DATASET, description=description, asset_list=[
            # shape is set explicitly: PySyft would infer it from the mock
            sy.Asset(name="images", data=images, shape=images.shape, mock=mock_images),
            sy.Asset(name="labels", data=labels, shape=labels.shape, mock=mock_labels),
            sy.Asset(name=SECRET_ASSET, data=_random_bytes(), shape=(32,),
                     mock=_random_bytes()),
            # a placeholder: the server hands top-k code the owner's kept residual instead
            sy.Asset(name=RESIDUAL_ASSET, data=np.full(1, PRIVATE_SLOT, np.uint8), shape=(1,),
                     mock=np.full(1, MOCK_SLOT, np.uint8))])
        with quiet_syft():
            result = self._admin.upload_dataset(dataset)
        check_result(result, f"upload to {self.name}")

    def register_scientist(self, email: str, password: str, name: str = "Data Scientist") -> None:
        """Create the data scientist's account through the admin API (``user.create``):
        syft's ``register`` would send the admin's private key in the body of
        ``/register``, a route the Datasite keeps closed (:mod:`.http_door`)."""
        require_syft()
        from syft.service.user.user_roles import ServiceRole

        with quiet_syft():
            result = self._admin.api.services.user.create(
                name=name, email=email, password=password, password_verify=password,
                role=ServiceRole.DATA_SCIENTIST)
        check_result(result, f"register {email}")

    def _ask_server(self, path: str, **kwargs):
        """One of fedlearn's own admin calls (``fedlearn.requests``, ``fedlearn.approve``)."""
        refused, value = ask_fedlearn(self._admin, path, **kwargs)
        if refused is not None:
            raise ApprovalRefused(f"{self.name}: {refused}")
        return value

    def requests(self, *, include_decided: bool = False) -> list[dict]:
        """Requests as the server reviewed them, as plain dicts: id, status, function,
        requester and role, time, the input and output policies, the source, its SHA-256,
        the run, the calls asked for, approved and made, and every problem found."""
        rows = self._ask_server("fedlearn.requests")
        return [r for r in rows if include_decided or r["status"] == "pending"]

    def review_request(self, request_id) -> RequestReview:
        """What this request would run, on which inputs, for whom — and every problem found."""
        request_id = str(getattr(request_id, "id", request_id))
        rows = [r for r in self._ask_server("fedlearn.requests") if r["id"] == request_id]
        if not rows:
            raise UnknownRequest(f"{self.name}: no request with id {request_id}")
        fields = {k: v for k, v in rows[0].items() if k in RequestReview.__dataclass_fields__}
        return RequestReview(**fields)

    def pending_requests(self) -> list:
        return [r for r in self._admin.requests if str(r.status).endswith("PENDING")]

    def request(self, request_id):
        matches = [r for r in self._admin.requests if str(r.id) == str(request_id)]
        if not matches:
            raise UnknownRequest(f"{self.name}: no request with id {request_id}")
        return matches[0]

    def review(self, request_id) -> str:
        """The exact source the data scientist asks to run on this owner's data."""
        return self.review_request(request_id).code

    def approve(self, request_id, *, force: bool = False, max_calls: int | None = None,
                warn=None) -> RequestReview:
        """Approve the request with this id (never 'the latest one': it may be another).

        The server reviews the whole request as it stored it and refuses
        (:class:`ApprovalRefused`) unless fedlearn's checks pass: exactly one change,
        approving this code's own status; the images and labels bound to this
        Datasite's own assets, every other input user-owned and of the expected plain
        type; a registered data scientist asking; the source equal to fedlearn's
        generated function. ``force=True`` approves anyway, after printing the problems
        as a warning. The approval allows ``max_calls`` calls (default: as many as the
        scientist asked for); the server counts them and refuses the next one.
        """
        review = self.review_request(request_id)
        if review.problems:
            listed = "; ".join(review.problems)
            if not force:
                raise ApprovalRefused(f"{self.name}: not approving {request_id}: {listed}. "
                                      "Deny it, or approve with --force if you have read the "
                                      "code and trust it")
            (warn or _warn)(f"WARNING: {self.name}: approving {request_id} despite: {listed}")
        self._ask_server("fedlearn.approve", uid=self.request(request_id).id, force=force,
                         max_calls=max_calls)
        return review

    def deny(self, request_id, reason: str) -> None:
        with quiet_syft():
            result = self.request(request_id).deny(reason=reason)
        check_result(result, f"deny {request_id} on {self.name}")

    def land(self, *, keep_files: bool = False) -> None:
        """Stop the Datasite and delete its SQLite and blob files (unless ``keep_files``)."""
        if self._handle is None:
            raise RuntimeError(f"{self.name}: only the process that launched a Datasite can "
                               "stop it")
        server_id = self._admin.id
        self._handle.land()
        if not keep_files:
            shutil.rmtree(self.files_dir(server_id), ignore_errors=True)

    @staticmethod
    def files_dir(server_id) -> Path:
        """Where syft 0.9.5 keeps a Datasite's database and blobs."""
        return Path(tempfile.gettempdir()) / "syft" / str(server_id)

    @property
    def server_id(self) -> str:
        return str(self._admin.id)


