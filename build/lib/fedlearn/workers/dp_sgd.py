"""Sample-level differential privacy at each worker: DP-SGD through Opacus.

Abadi et al. 2016, "Deep Learning with Differential Privacy": per-sample
gradients are clipped to ``max_grad_norm``, Gaussian noise of std
``noise_multiplier * max_grad_norm`` is added to their sum, and batches are drawn
by Poisson sampling. Opacus does all three and its RDP accountant tracks epsilon.

Each :class:`DPSGDWorker` keeps ONE PrivacyEngine — one accountant — for the
whole run, so its epsilon grows with every round it trains (building a new
engine per round would report one round's epsilon only). Opacus wraps the model
(state-dict keys gain a ``_module.`` prefix); the worker loads and returns the
plain inner model's weights, so wrapped keys never reach aggregation.

opacus is imported here only, when a DP-SGD worker is created.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from fedlearn.config import DPSGDConfig, ModelSpec, TrainPlan
from fedlearn.models import build_model
from fedlearn.training import make_optimizer
from fedlearn.updates import Update
from fedlearn.workers.base import Worker, own_storage, weight_change


class DPSGDWorker(Worker):
    """``DPSGDWorker("bob", x, y, model="tutorial_cnn", dp=DPSGDConfig(...))``."""

    def __init__(self, name: str, x: torch.Tensor, y: torch.Tensor, *, model: ModelSpec,
                 dp: DPSGDConfig, device: str | torch.device = "cpu"):
        self.name = name
        self._dp = self.dp_sgd = dp
        self._device = torch.device(device)
        self.__x, self.__y = x.to(self._device), y.to(self._device)
        self.model = model
        self._spec: ModelSpec = model  # the same, typed as never None
        # Opacus's wrapped engine, module, optimizer and loader, made on the first fit
        self._engine: Any = None
        self._module: Any = None
        self._optimizer: Any = None
        self._loader: Any = None
        self._plan: TrainPlan | None = None
        self._restored: dict | None = None

    @property
    def num_examples(self) -> int:
        return len(self.__y)

    def _make_private(self, plan: TrainPlan) -> None:
        from opacus import PrivacyEngine

        module = build_model(self._spec, seed=0).to(self._device)
        optimizer = make_optimizer(module, plan)
        dataset = torch.utils.data.TensorDataset(self.__x, self.__y)
        loader = torch.utils.data.DataLoader(dataset, batch_size=plan.batch_size)
        with warnings.catch_warnings():
            # the noise is drawn from torch's seeded generator on purpose: the same seed gives
            # the same run (README, DP-SGD); Opacus warns about that on every engine
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            self._engine = PrivacyEngine(accountant="rdp")
            self._module, self._optimizer, self._loader = self._engine.make_private(
                module=module, optimizer=optimizer, data_loader=loader,
                noise_multiplier=self._dp.noise_multiplier,
                max_grad_norm=self._dp.max_grad_norm, poisson_sampling=True)
        self._plan = plan
        if self._restored is not None:
            self._engine.accountant.load_state_dict(self._restored)

    def __getstate__(self) -> dict:
        # sent elsewhere (a Ray actor), the worker travels as its data and its ledger; Opacus's
        # engine is rebuilt there on the first fit, from the ledger
        state = {**self.__dict__, "_restored": self.state_dict() or None}
        state.update(_engine=None, _module=None, _optimizer=None, _loader=None, _plan=None)
        return own_storage(state)

    def state_dict(self) -> dict:
        """The worker's own privacy ledger, to survive a restart (its data is not in it)."""
        if self._engine is None:
            return dict(self._restored or {})
        return self._engine.accountant.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._restored = dict(state) if state else None
        if self._engine is not None and self._restored is not None:
            self._engine.accountant.load_state_dict(self._restored)

    def epsilon(self) -> float:
        if self._engine is None:
            if self._restored:
                from opacus.accountants import RDPAccountant

                accountant = RDPAccountant()
                accountant.load_state_dict(self._restored)
                return float(accountant.get_epsilon(self._dp.delta))
            return 0.0
        return float(self._engine.get_epsilon(self._dp.delta))

    def fit(self, weights: Mapping[str, torch.Tensor], plan: TrainPlan, *, seed: int,
            batches: tuple[int, int] | None = None) -> Update:
        if batches is not None:
            raise NotImplementedError("DP-SGD workers train whole epochs (FedAvg), not single hops")
        if self._engine is None:
            self._make_private(plan)
        elif plan != self._plan:
            raise ValueError(f"{self.name}: the plan must stay the same for the whole run: "
                             "the DP-SGD accountant was set up with the first one")
        inner = self._module._module  # the plain model inside Opacus's GradSampleModule
        inner.load_state_dict(weights)
        self._optimizer.original_optimizer.state.clear()  # no momentum carried across rounds
        loss_sum, seen = 0.0, 0
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(seed)  # Poisson sampling and the noise draw from this
            self._module.train()
            # Opacus's per-sample hooks fire on the first layer's output, whose input (the
            # images) needs no gradient; torch says so on every backward
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(plan.epochs):
                for xb, yb in self._loader:
                    if len(yb) == 0:  # Poisson sampling can draw an empty batch
                        continue
                    self._optimizer.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(self._module(xb), yb)
                    loss.backward()
                    self._optimizer.step()
                    loss_sum += loss.item() * len(yb)
                    seen += len(yb)
        delta = weight_change(inner, weights)
        metrics = {"loss": loss_sum / max(seen, 1), "examples": seen, "epsilon": self.epsilon()}
        # the FedAvg weight is the data size times epochs, not the random Poisson count
        return Update(self.name, delta, plan.epochs * self.num_examples, metrics)

    def evaluate(self, weights: Mapping[str, torch.Tensor]) -> dict:
        from fedlearn.training import evaluate

        model = build_model(self._spec, seed=0).to(self._device)
        model.load_state_dict(weights)
        return evaluate(model, self.__x, self.__y)
