"""The whole worker contract, declared once: what the server may ask of a data owner.

Every backend subclasses :class:`Worker` — in-process, DP-SGD, a PySyft Datasite, a
wrapper — and overrides what it does; the defaults say what a worker that does not
do something does (no new data per round, no state of its own, no personalization),
so the server never has to probe with ``hasattr``. Wrappers (fault injection,
timing) subclass :class:`DelegatingWorker`, which forwards everything.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from fedlearn.config import DPSGDConfig, ModelSpec, TrainPlan
from fedlearn.errors import FedlearnError
from fedlearn.updates import Update, state_change


class Worker:
    """A data owner. The server may send weights and a plan; it never sees samples.

    ``num_examples`` is the size of the local training set: metadata a data owner
    reports (it is also the FedAvg weight), not data.
    """

    name: str
    # True where training runs inside code the owner approved (PySyft): anything that
    # would have to run there too (compression, masking, DP-SGD...) is refused
    remote: bool = False
    # the sample-level DP-SGD this worker trains with (DPSGDWorker); the server checks it
    # against the run's config, so a run never claims a privacy it does not have
    dp_sgd: DPSGDConfig | None = None
    # the architecture this worker trains, where it says (in-process workers do); the server
    # refuses a run whose config names another, before round 1. None: the worker does not say
    model: ModelSpec | None = None

    @property
    def num_examples(self) -> int:
        raise NotImplementedError

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        """Train from ``weights`` as ``plan`` says; return the weight change."""
        raise NotImplementedError

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Loss and accuracy of ``weights`` on the local data."""
        raise NotImplementedError

    def set_round(self, round_: int) -> None:
        """Called before each round; a device whose local data grows uses it. Default: none."""

    def clip_where_trained(self, max_norm: float) -> bool:
        """Clip every update to L2 norm ``max_norm`` where the worker trains, before it leaves
        (a Datasite's approved code does). False: this worker cannot, so its client side clips
        it (:mod:`fedlearn.workers.client_side`) — the default."""
        return False

    def compresses_where_trained(self, compression) -> bool:
        """True if the worker compresses its update as ``compression`` (a
        :class:`~fedlearn.config.CompressionConfig`) says where it trains, so only the codes
        leave (a Datasite's approved code quantizes); False — the default — and its client
        side does (:mod:`fedlearn.workers.client_side`)."""
        return False

    def masks_where_trained(self) -> bool:
        """True if the worker answers secure aggregation's stages itself and masks its update
        where it trains (a Datasite's approved code); False — the default — and its client side
        does (:mod:`fedlearn.workers.client_side`)."""
        return False

    def waits_on_network(self) -> bool:
        """True if a call to this worker is mostly waiting for another machine (a Datasite
        over HTTP), so the server may wait on several at once
        (:mod:`fedlearn.execution.concurrent`); False — the default — for work on this
        machine's cores."""
        return False

    def shares_this_machine(self) -> bool:
        """True — the default — if the worker's training uses this machine's cores (in this
        process, in its worker processes, or a Datasite served from this machine); False for
        a Datasite on another host. ``auto`` asks workers all at once only when none shares
        this machine: on one machine they would only compete for its cores
        (benchmarks/secagg_datasites.py)."""
        return True

    def state_dict(self) -> dict | None:
        """The worker's own state to checkpoint (e.g. a privacy ledger); None: it has none."""
        return None

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def personalize(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, steps: int,
                    seed: int) -> dict:
        """Fine-tune locally and report held-out accuracy before and after."""
        raise FedlearnError(f"worker {self.name!r} ({type(self).__name__}) cannot personalize: "
                            "it keeps no held-out data")


class DelegatingWorker(Worker):
    """A worker that wraps another and forwards everything it does not change."""

    def __init__(self, inner: Worker):
        self.inner = inner
        self.name = inner.name
        self.remote = inner.remote
        self.dp_sgd = inner.dp_sgd
        self.model = inner.model

    @property
    def num_examples(self) -> int:
        return self.inner.num_examples

    def fit(self, weights, plan, *, seed, batches=None) -> Update:
        return self.inner.fit(weights, plan, seed=seed, batches=batches)

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.inner.evaluate(weights)

    def set_round(self, round_: int) -> None:
        self.inner.set_round(round_)

    def clip_where_trained(self, max_norm: float) -> bool:
        return self.inner.clip_where_trained(max_norm)

    def compresses_where_trained(self, compression) -> bool:
        return self.inner.compresses_where_trained(compression)

    def masks_where_trained(self) -> bool:
        return self.inner.masks_where_trained()

    def waits_on_network(self) -> bool:
        return self.inner.waits_on_network()

    def shares_this_machine(self) -> bool:
        return self.inner.shares_this_machine()

    def state_dict(self) -> dict | None:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def personalize(self, weights, plan, *, steps, seed) -> dict:
        return self.inner.personalize(weights, plan, steps=steps, seed=seed)


def own_storage(state: dict) -> dict:
    """``state`` (an object's ``__dict__``) with every tensor that is a view into a larger one
    copied out: pickled as they are (to a Ray actor), views into one partition-ordered tensor
    would each carry the whole dataset, not their shard."""
    return {key: value.clone() if isinstance(value, torch.Tensor)
            and value.untyped_storage().nbytes() > value.nbytes else value
            for key, value in state.items()}


def weight_change(model: torch.nn.Module,
                  weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The update a worker sends: its trained weights minus the global ones it started from."""
    return state_change({k: v.detach() for k, v in model.state_dict().items()}, weights)
