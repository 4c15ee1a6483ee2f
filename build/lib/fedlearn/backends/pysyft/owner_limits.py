"""What a data owner allows beyond approving code: learning-rate and batch bounds, and a budget.

Why: an approved, unmodified training function still gives the images away to whoever
chooses the weights ("trap weights": Fowl et al. 2022, "Robbing the Fed"; Boenisch et al.
2023, "When the curious abandon honesty: federated learning is not private"; gradient
inversion: Zhu et al. 2019, "Deep leakage from gradients", Geiping et al. 2020, "Inverting
gradients"). Approval cannot stop that; noise can. ``serve --dp-epsilon E --dp-delta D``
gives every data scientist a budget of (E, D)-differential privacy on this Datasite's
shard; the Datasite then runs only fedlearn's DP-SGD function
(:mod:`.dp_training_code`), and its own accountant — Opacus's RDP accountant (Mironov
2017, "Rényi differential privacy"), one ledger per scientist in
:class:`.state.DatasiteState`, so it survives restarts — refuses the call that would
exceed the budget. ``--max-lr`` and ``--max-batch-size`` bound every call's plan; they
cost honest users little and make a one-step, full-batch trap impossible, but with small
steps a trap still works: they raise the attacker's cost, they do not stop them.

What a call is charged: DP-SGD as the DP function runs it, Poisson sampling at Opacus's
rate ``q = 1 / ceil(N / batch_size)`` for ``epochs * ceil(N / batch_size)`` steps at the
source's noise multiplier, N being the shard size. It is charged durably *before* the
call runs, so a call that fails afterwards (or is refused by the function itself) has
still been paid for. Evaluation costs no ε because under a budget it is refused: its loss
and accuracy on the private data carry no noise, and with weights of their choosing a
scientist turns each into an exact counting query, from which enough answers rebuild the
data (Dinur and Nissim 2003, "Revealing information while preserving privacy"); there is
no finite ε to charge. The scientist evaluates on their own test data instead.

The budget is per account: two scientists who pool their results spend the sum.
"""
from __future__ import annotations

import functools
import json
import math
import re
import threading
from dataclasses import asdict, dataclass, replace
from typing import TypeGuard

import numpy as np

from fedlearn.backends.pysyft.dp_training_code import dp_variant_in
from fedlearn.backends.pysyft.training_code import LIMITS
from fedlearn.config import ConfigError

# Below this noise multiplier one full-batch step already costs eps > 10 at delta = 1e-5,
# and one epoch of batch-256 training on 30,000 images eps > 7.6 (Opacus RDP): subsampling
# stops amplifying, so no useful training fits a budget worth the name (eps <= 10, Ponomareva
# et al. 2023, "How to DP-fy ML"). fedlearn's own DP-SGD run uses 1.05.
NOISE_FLOOR = 0.5
_TERMS = re.compile(r"\[fedlearn-terms (\{.*?\})\]")
_LEDGER = threading.Lock()  # the server may run two calls at once: check and charge together


@dataclass(frozen=True, kw_only=True)
class OwnerLimits:
    """The owner's terms for every call on this Datasite (None: not set)."""

    max_lr: float | None = None  # --max-lr: refuse a plan with a larger learning rate
    max_batch_size: int | None = None  # --max-batch-size: refuse a plan with a larger batch
    dp_epsilon: float | None = None  # --dp-epsilon: each scientist's budget; DP-SGD only
    dp_delta: float | None = None  # --dp-delta: the budget's delta, below 1 / shard size
    examples: int | None = None  # the shard size N the accountant charges for (set by serve)

    def __post_init__(self):
        high_lr, high_batch = LIMITS["lr"][1], LIMITS["batch_size"][1]
        if self.max_lr is not None and not (_real(self.max_lr) and 0 < self.max_lr <= high_lr):
            raise ConfigError("max_lr", f"must be a number in (0, {high_lr:g}] (got "
                              f"{self.max_lr!r}); the approved code refuses more anyway")
        if self.max_batch_size is not None and not (
                _integer(self.max_batch_size) and 1 <= self.max_batch_size <= high_batch):
            raise ConfigError("max_batch_size", f"must be an integer in 1..{high_batch} (got "
                              f"{self.max_batch_size!r})")
        if (self.dp_epsilon is None) != (self.dp_delta is None):
            raise ConfigError("dp_epsilon" if self.dp_epsilon is None else "dp_delta",
                              "a privacy budget needs both --dp-epsilon and --dp-delta")
        if self.dp_epsilon is not None and not (_real(self.dp_epsilon) and self.dp_epsilon > 0):
            raise ConfigError("dp_epsilon", f"must be a finite number > 0 (got "
                              f"{self.dp_epsilon!r})")
        if self.dp_delta is not None and not (_real(self.dp_delta) and 0 < self.dp_delta < 1):
            raise ConfigError("dp_delta", f"must be a number in (0, 1) (got {self.dp_delta!r})")
        if self.examples is not None and not (_integer(self.examples) and self.examples >= 1):
            raise ConfigError("examples", f"must be an integer >= 1 (got {self.examples!r})")
        if self.dp_delta is not None and self.examples and self.dp_delta >= 1 / self.examples:
            raise ConfigError("dp_delta", f"must be below 1/N = {1 / self.examples:.3g} for "
                              f"N = {self.examples} images (got {self.dp_delta:g}): at 1/N a "
                              "mechanism may publish one whole image")

    @property
    def budget(self) -> bool:
        return self.dp_epsilon is not None

    def for_shard(self, examples: int) -> OwnerLimits:
        """These terms for a shard of ``examples`` images (what the accountant charges for)."""
        return replace(self, examples=examples)


def _real(value) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _integer(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


_installed = OwnerLimits()


def install(limits: OwnerLimits) -> None:
    """The terms of the Datasite this process serves; the forked server child inherits them."""
    global _installed
    _installed = limits


def current() -> OwnerLimits:
    return _installed


def terms(limits: OwnerLimits) -> str:
    """The terms in words and in a machine-readable tag, for the dataset's public description."""
    said = []
    if limits.max_lr is not None:
        said.append(f"lr <= {limits.max_lr:g}")
    if limits.max_batch_size is not None:
        said.append(f"batch_size <= {limits.max_batch_size}")
    if limits.budget:
        said.append(f"DP-SGD only (noise multiplier >= {NOISE_FLOOR:g}), a privacy budget of "
                    f"epsilon = {limits.dp_epsilon:g} at delta = {limits.dp_delta:g} per data "
                    "scientist, no evaluation")
    else:
        said.append("no privacy budget: an approved request can reveal training images to "
                    "whoever chooses the weights")
    tag = json.dumps({k: v for k, v in asdict(limits).items() if v is not None},
                     sort_keys=True)
    return f"Owner's terms: {'; '.join(said)}. [fedlearn-terms {tag}]"


def parse_terms(text: str) -> OwnerLimits:
    """The terms in a description written by :func:`terms`; no tag: no terms."""
    found = _TERMS.search(text or "")
    if found is None:
        return OwnerLimits()
    try:
        fields = json.loads(found[1])
    except json.JSONDecodeError as exc:
        raise ConfigError("terms", f"the Datasite's terms tag is not JSON ({exc})") from exc
    if not isinstance(fields, dict) or set(fields) - set(OwnerLimits.__dataclass_fields__):
        raise ConfigError("terms", f"the Datasite's terms tag is not fedlearn's ({found[1]})")
    return OwnerLimits(**fields)


def run_refusal(limits: OwnerLimits, plan, noise: float | None) -> tuple[str, str] | None:
    """(option, why) if a run with this ``plan`` and DP-SGD ``noise`` (None: plain training)
    would be refused under these terms: the scientist's side checks before submitting."""
    if limits.max_lr is not None and plan.lr > limits.max_lr:
        return "plan.lr", f"the owner allows lr <= {limits.max_lr:g} (asked {plan.lr:g})"
    if limits.max_batch_size is not None and plan.batch_size > limits.max_batch_size:
        return "plan.batch_size", (f"the owner allows batch_size <= {limits.max_batch_size} "
                                   f"(asked {plan.batch_size})")
    if limits.budget and noise is None:
        return "dp_sgd.noise_multiplier", (
            f"the owner set a privacy budget (epsilon = {limits.dp_epsilon:g}, delta = "
            f"{limits.dp_delta:g}): train with DP-SGD, --dp-sgd-noise Z (Z >= {NOISE_FLOOR:g}) "
            "and --dp-sgd-clip C")
    if limits.budget and noise is not None and noise < NOISE_FLOOR:
        return "dp_sgd.noise_multiplier", (f"must be >= {NOISE_FLOOR:g} on a Datasite with a "
                                           f"privacy budget (got {noise:g})")
    return None


def review_problems(limits: OwnerLimits, source: str) -> list[str]:
    """What a code request's source must satisfy under these terms (empty: nothing)."""
    if not limits.budget:
        return []
    dp = dp_variant_in(source)
    if dp is None:
        return [f"this Datasite has a privacy budget (epsilon = {limits.dp_epsilon:g}, delta = "
                f"{limits.dp_delta:g}): it runs only fedlearn's DP-SGD function (the data "
                "scientist trains with --dp-sgd-noise and --dp-sgd-clip)"]
    problems = []
    if not dp.ready_made:
        problems.append(f"under a privacy budget only fedlearn's ready-made models run: the "
                        f"model class {dp.model} is the data scientist's own, and its code "
                        "could carry data past the noise (a buffer, a side channel)")
    if dp.noise_multiplier < NOISE_FLOOR:
        problems.append(f"noise multiplier {dp.noise_multiplier:g} is below this Datasite's "
                        f"floor of {NOISE_FLOOR:g}")
    return problems


@functools.lru_cache(maxsize=256)
def _rdp_of_one_step(noise: float, rate: float) -> tuple[float, ...]:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp

    return tuple(rdp.compute_rdp(q=rate, noise_multiplier=noise, steps=1,
                                 orders=RDPAccountant.DEFAULT_ALPHAS))


def epsilon(history: list, delta: float) -> float:
    """``RDPAccountant.get_epsilon(delta)`` of Opacus for a history of (noise, sample rate,
    steps), the same sums in the same order; each (noise, rate) is computed once."""
    if not history:
        return 0.0
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp

    total = sum(np.array(_rdp_of_one_step(n, q)) * s for n, q, s in history)
    return float(rdp.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=total,
                                       delta=delta)[0])


def _with(history: list, noise: float, rate: float, steps: int) -> list:
    """``history`` plus one charge; equal (noise, rate) entries merge (RDP adds up)."""
    merged, added = [], False
    for n, q, s in history:
        if (n, q) == (noise, rate) and not added:
            merged.append([n, q, s + steps])
            added = True
        else:
            merged.append([n, q, s])
    return merged if added else merged + [[noise, rate, steps]]


def call_refusal(limits: OwnerLimits, state, *, scientist: str, plan: dict, mode: str,
                 source: str) -> str | None:
    """Why this call must not run (one line for the scientist), or None after charging it.

    Called by the server's guard right before an approved call runs, with the plan the
    scientist sent. See the module docstring for what is charged and why evaluation is
    refused under a budget.
    """
    if not isinstance(plan, dict):
        return "the plan must be a dict"
    if mode == "fit":
        lr, batch = plan.get("lr"), plan.get("batch_size")
        if limits.max_lr is not None and not (_real(lr) and lr <= limits.max_lr):
            return (f"the owner allows lr <= {limits.max_lr:g} on this Datasite (the plan "
                    f"asks {lr!r})")
        if limits.max_batch_size is not None and not (_integer(batch)
                                                      and batch <= limits.max_batch_size):
            return (f"the owner allows batch_size <= {limits.max_batch_size} on this Datasite "
                    f"(the plan asks {batch!r})")
    if not limits.budget:
        return None
    assert limits.dp_epsilon is not None and limits.dp_delta is not None  # a budget has both
    dp = dp_variant_in(source)
    if dp is None:
        return "this Datasite has a privacy budget: it runs only fedlearn's DP-SGD function"
    if mode != "fit":
        return ("this Datasite has a privacy budget and does not evaluate: a loss or accuracy "
                "on its private data would carry no noise; evaluate on your own test data")
    if limits.examples is None:
        return "this Datasite does not know its shard size, so it cannot charge a call"
    epochs, batch = plan.get("epochs"), plan.get("batch_size")
    low_e, high_e = LIMITS["epochs"]
    if not (_integer(epochs) and low_e <= epochs <= high_e and _integer(batch) and batch >= 1):
        return "the plan's epochs and batch_size must be integers in the approved code's bounds"
    per_epoch = math.ceil(limits.examples / batch)
    rate, steps = 1 / per_epoch, epochs * per_epoch
    with _LEDGER:
        history = state.ledger(scientist)
        charged = _with(history, dp.noise_multiplier, rate, steps)
        after = epsilon(charged, limits.dp_delta)
        if after > limits.dp_epsilon:
            spent = epsilon(history, limits.dp_delta)
            state.log("refuse", scientist=scientist, why="privacy budget", spent=spent,
                      would_reach=after, budget=limits.dp_epsilon)
            return (f"privacy budget: this call would bring your privacy loss to epsilon = "
                    f"{after:.3g} on this Datasite, over the owner's budget of "
                    f"{limits.dp_epsilon:g} (delta = {limits.dp_delta:g}); spent "
                    f"{spent:.3g}, remaining {max(limits.dp_epsilon - spent, 0):.3g}")
        state.charge(scientist, charged, epsilon=after, noise_multiplier=dp.noise_multiplier,
                     sample_rate=rate, steps=steps)
    return None
