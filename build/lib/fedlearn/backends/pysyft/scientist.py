"""The data scientist's side: a PySyft 0.9.5 Datasite as a fedlearn worker.

:class:`SyftWorker` has the same interface as :class:`fedlearn.workers.VirtualWorker`,
so the same federation loop drives both. It logs in as a **data scientist** (an
admin account, which bypasses approval, is refused: the server's answer about the
account's role decides, not the e-mail), can read the mock, never the data;
it submits the training code once (one code request per owner for the whole run)
and then calls it once per round.

PySyft issue #9391: the execution-count limit of an output policy is not
enforced in 0.9.5, and were it enforced, a call past the limit would silently
return the last stored result. Every call therefore sends a fresh nonce; the
code returns a digest of it, and a result without the right digest raises
:class:`StaleResultError`.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping

import numpy as np
import torch

from fedlearn.backends.pysyft.connection import (
    DatasiteRefused,
    LoginError,
    is_this_machine,
    login,
    login_to_handle,
    role_of,
)
from fedlearn.backends.pysyft.console import quiet_syft
from fedlearn.backends.pysyft.dp_training_code import load_dp_training_function
from fedlearn.backends.pysyft.loading import require_syft
from fedlearn.backends.pysyft.owner import SyftRefused, ask_fedlearn, check_result
from fedlearn.backends.pysyft.owner_limits import OwnerLimits
from fedlearn.backends.pysyft.review import request_status
from fedlearn.backends.pysyft.round_by_hand import is_fresh
from fedlearn.backends.pysyft.secure_training_code import FUNCTION_NAME as SECURE_FUNCTION
from fedlearn.backends.pysyft.secure_training_code import (
    SECRET_ASSET,
    load_secure_training_function,
)
from fedlearn.backends.pysyft.sparse_training_code import FUNCTION_NAME as SPARSE_FUNCTION
from fedlearn.backends.pysyft.sparse_training_code import (
    RESIDUAL_ASSET,
    load_sparse_training_function,
)
from fedlearn.backends.pysyft.training_code import (
    DATASET,
    FUNCTION_NAME,
    TUTORIAL_RUN,
    load_training_function,
)
from fedlearn.config import ConfigError, DPSGDConfig, TrainPlan
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation
from fedlearn.errors import FedlearnError
from fedlearn.secagg_portable import secagg_ring_dtype
from fedlearn.training import num_batches
from fedlearn.updates import Update, detached_cpu_state
from fedlearn.updates.client_side import masked_payload
from fedlearn.updates.compression import quantized_problem, sparse_problem
from fedlearn.workers.base import Worker

# syft 0.9.5's answer to code it already has a request for (a scientist may not resolve a
# request's code: notifications.resolve_object is not in fedlearn's flow)
_EXISTING = re.compile(r"Request ([0-9a-f]{32}) already exists for this UserCode")


class StaleResultError(FedlearnError, RuntimeError):
    """A Datasite returned a result that was not computed for this call."""


class InputRefusedError(FedlearnError, RuntimeError):
    """The approved code refused its inputs (out of bounds, wrong keys or shapes)."""


class SyftWorker(Worker):
    """The data scientist's handle on one Datasite, with the fedlearn worker interface."""

    remote = True  # work that would have to run inside the approved code is refused
    clip_norm: float | None = None  # DP-FedAvg's bound, applied by the approved code
    secure = False  # submitted the secure-aggregation function: it masks on the Datasite
    secagg_run = TUTORIAL_RUN  # the run its code names: secure aggregation's contexts start so
    quantize_bits: int | None = None  # the approved code quantizes the update to this many bits
    topk_fraction: float | None = None  # submitted the top-k function: it sends this share

    def __init__(self, name: str, client):
        self.name = name
        self._client = client
        # get_all(), not client.datasets[...]: indexing first looks for get_index, which a
        # data scientist lacks, and that miss makes syft fetch and decode the whole API again
        assets = check_result(client.datasets.get_all(), f"find dataset on {name}")
        if DATASET not in assets.keys():
            raise LoginError(f"{name}: this Datasite has no dataset {DATASET!r}; is it a "
                             "fedlearn Datasite?")
        assets = assets[DATASET].assets
        self._images, self._labels = assets["images"], assets["labels"]
        self._secret = assets[SECRET_ASSET] if SECRET_ASSET in assets.keys() else None
        self._residual = assets[RESIDUAL_ASSET] if RESIDUAL_ASSET in assets.keys() else None
        self._request_id: str | None = None
        self._masking = None  # the round's MaskingOrders, under secure aggregation
        self._wire_seed: int | None = None  # the round's seed of stochastic rounding
        self.calls = 0

    @classmethod
    def connect(cls, name: str, server, *, email: str, password: str) -> SyftWorker:
        """Log in as a data scientist through a launch handle or a ``http(s)://`` URL.

        Any other role is refused: an admin or data owner bypasses the owner's
        approval, so training under such an account would make the consent step fake.
        """
        if isinstance(server, str):
            client = login(server, email, password)
        else:
            client = login_to_handle(server, email, password)
        role = role_of(client)
        if role != "DATA_SCIENTIST":
            raise LoginError(f"{name}: {email} is a {role or 'unknown'} account on this "
                             "Datasite; fedlearn trains only as a data scientist, whose code "
                             "the owner must approve (an admin bypasses approval)")
        return cls(name, client)

    @property
    def num_examples(self) -> int:
        return int(self._images.shape[0])

    @property
    def request_id(self) -> str | None:
        return self._request_id

    @property
    def client(self):
        """The data scientist's own PySyft client on this Datasite."""
        return self._client

    @property
    def assets(self) -> dict:
        """The data scientist's asset pointers; ``.mock`` works, ``.data`` is refused."""
        return {"images": self._images, "labels": self._labels}

    def mock(self) -> tuple[np.ndarray, np.ndarray]:
        """The mock images and labels: all a data scientist may look at."""
        return np.asarray(self._images.mock), np.asarray(self._labels.mock)

    def terms(self) -> OwnerLimits:
        """The owner's limits on this Datasite: lr and batch bounds, a privacy budget."""
        refused, terms = ask_fedlearn(self._client, "fedlearn.terms")
        if refused is not None:  # e.g. a Datasite not served by fedlearn
            raise DatasiteRefused(f"{self.name}: the Datasite does not say its terms ({refused})")
        return OwnerLimits(**terms)

    def submit(self, model, *, max_calls: int, run: str = TUTORIAL_RUN,
               dp: DPSGDConfig | None = None,
               normalisation: Normalisation = MNIST_NORMALISATION, secure: bool = False,
               topk: float | None = None) -> str:
        """Submit the training code as one code request for the whole run; return its id.

        The code names the ``run``: a new run is a new request the owner must approve.
        If this scientist already asked this Datasite to run exactly this code (the same
        run, resumed), that request is used again instead of asking the owner twice.
        The owner's server allows at most ``max_calls`` calls of it. With ``dp`` the code
        is fedlearn's DP-SGD function with that noise multiplier and clipping bound (what
        a Datasite with a privacy budget runs); the owner sees both at review.
        ``normalisation`` is what the code does to the owner's data before training
        (default: MNIST's, for uint8 pixels); it is written into the code, so the owner
        reads it at review and a different one is a different request. ``secure``: the
        secure-aggregation function instead (:mod:`.secure_training_code`), which masks the
        update on the Datasite with the Datasite's own secret; each round then takes four
        calls (keys, shares, the masked fit, unmasking). ``topk``: the top-k function
        (:mod:`.sparse_training_code`), which sends that share of each tensor's entries and
        leaves the rest in the owner's residual, kept by the Datasite's server.
        """
        sy = require_syft()
        from syft.service.policy.policy import OutputPolicyExecuteCount

        if secure and dp is not None:
            raise FedlearnError("secure aggregation and DP-SGD on a Datasite are not combined "
                                "yet: use one (DP-FedAvg's clipping does combine)")
        if topk is not None and (secure or dp is not None):
            raise FedlearnError("top-k on a Datasite does not combine with secure aggregation "
                                "(each owner sends other coordinates, which masks cannot sum) "
                                "or with DP-SGD: use one")
        if topk is not None and self._residual is None:
            raise FedlearnError(f"{self.name}: this Datasite keeps no top-k residual (asset "
                                f"{RESIDUAL_ASSET}): it was served by an older fedlearn")
        if secure and self._secret is None:
            raise FedlearnError(f"{self.name}: this Datasite holds no secure-aggregation secret "
                                f"(asset {SECRET_ASSET}): it was served by an older fedlearn")
        inputs: dict = dict(images=self._images, labels=self._labels)
        if secure:
            function = load_secure_training_function(model, run, normalisation)
            inputs[SECRET_ASSET] = self._secret
        elif topk is not None:
            function = load_sparse_training_function(model, topk, run, normalisation)
            inputs[RESIDUAL_ASSET] = self._residual
        elif dp is None:
            function = load_training_function(model, run, normalisation)
        else:
            function = load_dp_training_function(model, dp.noise_multiplier, dp.max_grad_norm,
                                                 run, normalisation)
        self.dp_sgd = dp  # the server checks every worker trains as the run is configured
        self.secure, self.secagg_run = secure, run
        self.topk_fraction = None if topk is None else float(topk)
        users: dict = dict(weights=dict, plan=dict, seed=int, nonce=str, mode=str)
        if secure:
            users["message"] = dict
        policy = sy.MixedInputPolicy(client=self._client, **inputs, **users)
        try:
            with quiet_syft():
                code = sy.syft_function(input_policy=policy, output_policy=OutputPolicyExecuteCount(
                    limit=max_calls))(function)
                request = self._client.code.request_code_execution(code)
        except sy.SyftException as exc:
            request = sy.SyftError(message=str(exc.public_message))
        existing = _EXISTING.search(str(getattr(request, "message", "")))
        if existing is not None:  # the same code (same run): its request, not a new one
            request = next((r for r in self._client.requests if r.id.no_dash == existing[1]),
                           request)
        request = check_result(request, f"code request to {self.name}")
        self._request_id = str(request.id)
        return self._request_id

    def approval(self) -> tuple[str, str | None]:
        """("pending" | "approved" | "rejected", the owner's reason when rejected)."""
        if self._request_id is None:
            raise RuntimeError(f"{self.name}: nothing submitted yet")
        request = next((r for r in self._client.requests if str(r.id) == self._request_id), None)
        if request is None:
            raise RuntimeError(f"{self.name}: code request {self._request_id} is gone")
        # syft reads the status through the request's code, which it tries to resolve through
        # notifications.resolve_object: refused to a scientist, and syft logs that refusal
        # with a logging call that itself fails, a traceback on stderr at every poll
        with quiet_syft():
            status = request_status(request)
        return status, (str(request.deny_reason) if status == "rejected" else None)

    def _call(self, weights: Mapping[str, torch.Tensor], mode: str, plan: dict, seed: int,
              message: dict | None = None) -> dict:
        if self._request_id is None:
            raise RuntimeError(f"{self.name}: submit() the training code and have the owner "
                               "approve it before training")
        nonce = uuid.uuid4().hex
        extra = {"message": message or {}} if self.secure else {}
        out = self._invoke(weights=detached_cpu_state(weights), plan=plan, seed=int(seed),
                           nonce=nonce, mode=mode, **extra)
        self.calls += 1
        if isinstance(out, dict) and "refused" in out:
            raise InputRefusedError(f"{self.name}: the approved code refused this call: "
                                    f"{out['refused']}")
        if not is_fresh(out, {"nonce": nonce}):
            raise StaleResultError(
                f"{self.name} returned a result that was not computed for this call (nonce "
                "mismatch): PySyft 0.9.5 returns the last stored output once an output policy "
                "is used up (issue #9391). Submit a new code request.")
        return out

    def _invoke(self, **kwargs) -> dict:
        """One execution of the approved code on the Datasite, next to the data."""
        sy = require_syft()
        what = f"{kwargs.get('mode')} on {self.name}"
        try:
            name = (SECURE_FUNCTION if self.secure else SPARSE_FUNCTION
                    if self.topk_fraction is not None else FUNCTION_NAME)
            assets = {"images": self._images, "labels": self._labels}
            if self.secure:
                assets[SECRET_ASSET] = self._secret
            if self.topk_fraction is not None:
                assets[RESIDUAL_ASSET] = self._residual
            remote = getattr(self._client.code, name)
            with quiet_syft() as chatter:
                pointer = remote(**assets, **kwargs)
                result = pointer if isinstance(pointer, sy.SyftError) else pointer.get()
            if chatter.syft_error() is not None:  # the server's reason, which syft only printed
                what = f"{what} ({chatter.syft_error()})"
            return check_result(result, what)
        except sy.SyftException as exc:  # e.g. the request is not approved (yet)
            raise SyftRefused(f"PySyft: {what} failed: {exc}") from exc

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        if batches is not None:
            raise NotImplementedError(
                "the PySyft backend runs FedAvg only: per-batch model hopping would "
                "be one code execution (~1-3 s) per minibatch")
        asked = dataclasses.asdict(plan)
        if self.clip_norm is not None:  # the update leaves the Datasite already clipped
            asked["clip_norm"] = float(self.clip_norm)
        if self.secure:
            return self._masked_fit(weights, asked, plan, seed)
        if self.quantize_bits is not None:
            return self._quantized_fit(weights, asked, plan, seed)
        if self.topk_fraction is not None:
            return self._sparse_fit(weights, asked, plan, seed)
        out = self._call(weights, "fit", asked, seed)
        delta = {k: v.to(next(iter(weights.values())).device) for k, v in out["delta"].items()}
        examples = int(out["num_examples"])
        # the Datasite returns only the loss and the count; the steps follow from the plan
        metrics = {"loss": float(out["loss"]),
                   "steps": plan.epochs * num_batches(self.num_examples, plan.batch_size),
                   "examples": examples}
        return Update(self.name, delta, examples, metrics)

    def waits_on_network(self) -> bool:
        """Over HTTP the Datasite's server does the work; an in-process Datasite (a launch
        handle) runs in this process, and its server is not made for calls from threads."""
        from syft.client.client import HTTPConnection

        return isinstance(getattr(self._client, "connection", None), HTTPConnection)

    def shares_this_machine(self) -> bool:
        """An in-process Datasite does; one over HTTP does when its host is this machine."""
        if not self.waits_on_network():
            return True
        return is_this_machine(self._client.connection.url.host_or_ip)

    # -- secure aggregation: the owner's side runs in the approved code -----------------
    def masks_where_trained(self) -> bool:
        return self.secure

    def _round_id(self, context: str) -> str:
        prefix = f"{self.secagg_run}|"
        if not context.startswith(prefix):
            raise FedlearnError(f"{self.name}: a secure-aggregation round of another run "
                                f"({context!r}; this code is for run {self.secagg_run})")
        return context[len(prefix):]

    def secagg_keys(self, context: str) -> dict:
        return self._call({}, "keys", {}, 0, {"round": self._round_id(context)})["keys"]

    def secagg_share(self, context: str, roster, threshold: int) -> dict:
        return self._call({}, "share", {}, 0, {
            "round": self._round_id(context), "me": self.name,
            "roster": {k: dict(v) for k, v in roster.items()},
            "threshold": int(threshold)})["ciphertexts"]

    def secagg_reveal(self, context: str, roster, ciphertexts, survivors, dropped,
                      threshold: int) -> dict:
        return self._call({}, "unmask", {}, 0, {
            "round": self._round_id(context), "me": self.name,
            "roster": {k: dict(v) for k, v in roster.items()},
            "ciphertexts": dict(ciphertexts), "survivors": list(survivors),
            "dropped": list(dropped), "threshold": int(threshold)})["shares"]

    def configure(self, orders) -> None:
        """The round's orders (its masking orders, under secure aggregation)."""
        self._masking, self._wire_seed = orders.secagg, orders.wire_seed

    def compresses_where_trained(self, compression) -> bool:
        """The plain function quantizes on the Datasite (plan["quantize_bits"]); the top-k
        function submitted for this fraction sends top-k, its residual kept by the Datasite's
        server (:mod:`.residual_keeper`)."""
        if self.topk_fraction is not None and (
                compression.method != "topk" or compression.topk_fraction != self.topk_fraction):
            raise ConfigError("compression.method", f"{self.name}'s approved code sends top-k "
                              f"{self.topk_fraction:g}, not what the run is configured with "
                              f"({compression.method}): submit it as the run is configured")
        if compression.method == "topk":
            return self.topk_fraction is not None and compression.error_feedback
        if compression.method != "quantize" or self.secure or self.dp_sgd is not None \
                or self.topk_fraction is not None:
            return False
        self.quantize_bits = int(compression.bits)
        return True

    def _sparse_fit(self, weights, asked: dict, plan: TrainPlan, seed: int) -> Update:
        out = self._call(weights, "fit", asked, seed)
        return self._compressed(out, "sparse", plan, sparse_problem(
            out.get("sparse"), weights, float(self.topk_fraction or 0)))

    def _quantized_fit(self, weights, asked: dict, plan: TrainPlan, seed: int) -> Update:
        bits = self.quantize_bits
        if self._wire_seed is None or bits is None:
            raise RuntimeError(f"{self.name}: a quantized round without its orders")
        asked = {**asked, "quantize_bits": bits, "wire_seed": int(self._wire_seed)}
        out = self._call(weights, "fit", asked, seed)
        return self._compressed(out, "quantized", plan,
                                quantized_problem(out.get("quantized"), weights, bits))

    def _compressed(self, out: dict, key: str, plan: TrainPlan, problem: str | None) -> Update:
        """The Update for a compressed payload ``out[key]`` checked to have no ``problem``."""
        if problem is not None:
            raise StaleResultError(f"{self.name} returned a {key} update fedlearn cannot "
                                   f"decode: {problem}")
        metrics = {"loss": float(out["loss"]),
                   "steps": plan.epochs * num_batches(self.num_examples, plan.batch_size),
                   "examples": int(out["num_examples"])}
        return Update(self.name, {}, int(out["num_examples"]), metrics, encoding="compressed",
                      payload=out[key])

    def _masked_fit(self, weights, asked: dict, plan: TrainPlan, seed: int) -> Update:
        sa = self._masking
        if sa is None:
            raise RuntimeError(f"{self.name}: a secure round without its masking orders")
        out = self._call(weights, "fit", asked, seed, {
            "round": self._round_id(sa.context), "me": self.name,
            "roster": {k: dict(v) for k, v in sa.roster.items()}, "scale": float(sa.scale),
            "ring_bits": int(sa.ring_bits), "value_range": float(sa.value_range),
            "weighted": self.clip_norm is None})  # DP-FedAvg divides by a fixed count
        masked = np.asarray(out["masked"])
        if masked.dtype != secagg_ring_dtype(sa.ring_bits) or masked.ndim != 1:
            raise StaleResultError(f"{self.name} returned a masked vector of {masked.dtype} "
                                   f"{masked.shape}, not {sa.ring_bits}-bit ring elements")
        metrics = {"loss": float(out["loss"]),
                   "steps": plan.epochs * num_batches(self.num_examples, plan.batch_size),
                   "examples": int(out["num_examples"])}
        return Update(self.name, {}, int(out["num_examples"]), metrics, encoding="masked",
                      payload=masked_payload(masked))

    def clip_where_trained(self, max_norm: float) -> bool:
        """The plain function clips on the Datasite (plan["clip_norm"]); DP-SGD's cannot."""
        if self.dp_sgd is not None:
            return False
        self.clip_norm = max_norm
        return True

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict:
        out = self._call(weights, "evaluate", {}, 0)
        return {"loss": float(out["loss"]), "accuracy": float(out["accuracy"]),
                "examples": int(out["num_examples"])}
