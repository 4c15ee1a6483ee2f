"""A worker with the client's side of the round done where the worker runs.

:class:`ClientSideWorker` wraps any in-process worker: its ``fit`` trains as the inner worker
does, then clips, compresses and masks the update (:mod:`fedlearn.updates.client_side`)
before returning it, so whatever executor runs the worker — this process, a Ray actor —
runs those steps there too, and what comes back is what crosses the wire. Its state (the top-k
residual, its secure-aggregation key and ledger) is the client's own: it travels with the
worker's state, as a DP-SGD worker's ledger does, and never into the server's.
"""
from __future__ import annotations

import dataclasses

from fedlearn.config import ExperimentConfig
from fedlearn.updates import Update
from fedlearn.updates.client_side import ClientSide, RoundOrders
from fedlearn.updates.secagg import MaskingOrders
from fedlearn.workers.base import DelegatingWorker, Worker


def with_client_sides(workers, config: ExperimentConfig) -> list:
    """``workers``, each wrapped in a :class:`ClientSideWorker` where ``config`` has a client
    side (DP-FedAvg's clipping, compression, secure aggregation); one already wrapped, or not a
    :class:`Worker` (the server refuses it with the reason), stays as it is."""
    if config.dp is None and not config.secure_aggregation and \
            config.compression.method == "none":
        return list(workers)
    return [ClientSideWorker(w, config) if isinstance(w, Worker)
            and not isinstance(w, ClientSideWorker) else w for w in workers]


class ClientSideWorker(DelegatingWorker):
    """``ClientSideWorker(worker, config)``: ``worker`` with ``config``'s clip, compression and
    masking applied on its side. The server relays its orders (:meth:`configure`) and, under
    secure aggregation, the protocol's other stages (``secagg_keys``, ``secagg_share``,
    ``secagg_reveal``: :mod:`fedlearn.server.secure_rounds`). A worker that masks where it
    trains (a Datasite's approved code) answers those stages itself."""

    def __init__(self, inner: Worker, config: ExperimentConfig):
        super().__init__(inner)
        # clip where the worker trains if it can (a Datasite's approved code), else here
        there = config.dp is not None and inner.clip_where_trained(config.dp.clip_norm)
        # and compress there (a Datasite's approved code quantizes): only the codes leave it
        self.compressed_there = (config.compression.method != "none"
                                 and inner.compresses_where_trained(config.compression))
        self.client = ClientSide(inner.name, config, clip=not there,
                                 compress=not self.compressed_there)
        self.orders: RoundOrders | None = None

    @property
    def _masker(self):
        """Who answers secure aggregation's stages: the inner worker if it masks where it
        trains, else this client side."""
        return self.inner if self.inner.masks_where_trained() else self.client

    @property
    def secagg_run(self) -> str:
        """The run a secure round's context names: the Datasite code's own, where it masks."""
        return getattr(self.inner, "secagg_run", "fedlearn") if self._masker is self.inner \
            else "fedlearn"

    def secagg_keys(self, context):
        return self._masker.secagg_keys(context)

    def secagg_share(self, context, roster, threshold):
        return self._masker.secagg_share(context, roster, threshold)

    def secagg_reveal(self, context, roster, ciphertexts, survivors, dropped, threshold):
        return self._masker.secagg_reveal(context, roster, ciphertexts, survivors, dropped,
                                          threshold)

    def configure(self, orders: RoundOrders) -> None:
        """This round's orders; they go with the worker's state to wherever it trains."""
        self.orders = orders

    def fit(self, weights, plan, *, seed, batches=None) -> Update:
        if self._masker is self.inner or self.compressed_there:  # it needs the orders there
            self.inner.configure(self.orders)  # type: ignore[attr-defined]
        return self.upload(self.inner.fit(weights, plan, seed=seed, batches=batches))

    def upload(self, update: Update) -> Update:
        """An update trained elsewhere (several clients batched together) as it leaves here."""
        if self.orders is None:
            raise RuntimeError(f"worker {self.name!r}: no orders for this round")
        return self.client.encode(update, self.orders)

    def state_dict(self) -> dict:
        # plain data only: a checkpoint is loaded with torch.load(weights_only=True)
        return {"worker": self.inner.state_dict(), "client_side": self.client.state_dict(),
                "orders": dataclasses.asdict(self.orders) if self.orders else None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("worker") is not None:
            self.inner.load_state_dict(state["worker"])
        self.client.load_state_dict(state.get("client_side", {}))
        orders = state.get("orders")
        if orders and orders.get("secagg"):
            orders = {**orders, "secagg": MaskingOrders(**orders["secagg"])}
        self.orders = RoundOrders(**orders) if orders else None
