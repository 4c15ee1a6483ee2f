"""The owner's terms (bounds and privacy budget) and the DP-SGD function they require, unit by unit.

The budget's accountant is checked against Opacus's own numbers, its ledger through a real
DatasiteState on disk (closed and reopened: what a restart does).
"""
from __future__ import annotations

import dataclasses
import secrets

import numpy as np
import pytest
import torch

from fedlearn.backends.pysyft import owner_limits
from fedlearn.backends.pysyft.dp_training_code import (
    dp_training_function_source,
    dp_variant_in,
    load_dp_training_function,
)
from fedlearn.backends.pysyft.owner_limits import (
    NOISE_FLOOR,
    OwnerLimits,
    call_refusal,
    parse_terms,
    review_problems,
    terms,
)
from fedlearn.backends.pysyft.state import DatasiteState
from fedlearn.backends.pysyft.training_code import training_function_source
from fedlearn.config import ConfigError, DPSGDConfig, TrainPlan

PLAN = {"epochs": 1, "batch_size": 50, "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0,
        "prox_mu": 0.0, "precision": "fp32", "channels_last": False}
DP_SOURCE = dp_training_function_source("mlp2nn", 1.0, 1.0)
BUDGET = OwnerLimits(dp_epsilon=4.0, dp_delta=1e-5, examples=1000)  # four calls of PLAN


@pytest.mark.parametrize("fields, flag", [
    ({"max_lr": 0}, "max_lr"), ({"max_lr": 11.0}, "max_lr"), ({"max_lr": float("nan")}, "max_lr"),
    ({"max_batch_size": 0}, "max_batch_size"), ({"max_batch_size": 2.5}, "max_batch_size"),
    ({"max_batch_size": 10_000}, "max_batch_size"), ({"dp_epsilon": 1.0}, "dp_delta"),
    ({"dp_delta": 1e-5}, "dp_epsilon"), ({"dp_epsilon": -1.0, "dp_delta": 1e-5}, "dp_epsilon"),
    ({"dp_epsilon": float("inf"), "dp_delta": 1e-5}, "dp_epsilon"),
    ({"dp_epsilon": 1.0, "dp_delta": 1.0}, "dp_delta"),
    ({"dp_epsilon": 1.0, "dp_delta": 1e-3, "examples": 1000}, "dp_delta"),  # delta >= 1/N
])
def test_bad_terms_are_refused_naming_the_flag(fields, flag):
    with pytest.raises(ConfigError) as refused:
        OwnerLimits(**fields)
    assert refused.value.path == flag


def test_a_budget_too_loose_for_the_shard_is_refused_when_the_shard_is_known():
    limits = OwnerLimits(dp_epsilon=1.0, dp_delta=1e-3)
    with pytest.raises(ConfigError, match="below 1/N"):
        limits.for_shard(1000)
    assert limits.for_shard(999).examples == 999


@pytest.mark.parametrize("limits", [OwnerLimits(), OwnerLimits(max_lr=0.5, max_batch_size=64),
                                    BUDGET, OwnerLimits(max_lr=2, dp_epsilon=8, dp_delta=1e-6)])
def test_terms_round_trip_through_the_public_description(limits):
    text = "bob's private MNIST shard. " + terms(limits)
    assert parse_terms(text) == limits
    said = "privacy budget of epsilon" if limits.budget else "can reveal training images"
    assert said in text


def test_a_description_without_terms_means_none_and_a_forged_tag_is_refused():
    assert parse_terms("bob's private MNIST shard") == OwnerLimits()
    with pytest.raises(ConfigError):
        parse_terms('[fedlearn-terms {"run_anything": true}]')


def test_under_a_budget_review_accepts_only_the_dp_function_with_enough_noise():
    assert review_problems(OwnerLimits(), training_function_source("mlp2nn")) == []
    plain = review_problems(BUDGET, training_function_source("mlp2nn"))
    assert len(plain) == 1 and "only fedlearn's DP-SGD function" in plain[0]
    assert review_problems(BUDGET, DP_SOURCE) == []
    weak = dp_training_function_source("mlp2nn", NOISE_FLOOR / 2, 1.0)
    assert "below this Datasite's floor" in review_problems(BUDGET, weak)[0]
    edited = DP_SOURCE.replace("secrets.randbits(63)", "seed")  # the scientist's seed: no
    assert dp_variant_in(edited) is None and review_problems(BUDGET, edited)


def test_the_dp_function_is_read_back_exactly_ready_made_or_not():
    read = dp_variant_in(dp_training_function_source("dp_cnn", 1.3, 0.1, "ab" * 16))
    assert (read.model, read.ready_made, read.noise_multiplier, read.max_grad_norm,
            read.run) == ("dp_cnn", True, 1.3, 0.1, "ab" * 16)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(784, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))  # logits

    own = dp_variant_in(dp_training_function_source(Tiny, 1.0, 1.0))
    assert (own.model, own.ready_made) == ("Tiny", False)
    assert "the data scientist's own" in review_problems(BUDGET, dp_training_function_source(
        Tiny, 1.0, 1.0))[0]


def test_the_owners_bounds_refuse_a_plan_before_anything_runs(tmp_path):
    limits, state = OwnerLimits(max_lr=0.5, max_batch_size=64), DatasiteState(tmp_path)
    ask = {"scientist": "eve", "mode": "fit", "source": training_function_source("mlp2nn")}
    assert "lr <= 0.5" in call_refusal(limits, state, plan={**PLAN, "lr": 10.0}, **ask)
    assert "batch_size <= 64" in call_refusal(limits, state, plan={**PLAN, "batch_size": 8192},
                                              **ask)
    assert "lr <= 0.5" in call_refusal(limits, state, plan={**PLAN, "lr": "0.1"}, **ask)
    assert call_refusal(limits, state, plan=PLAN, **ask) is None
    assert state.ledger("eve") == []  # no budget: nothing charged


def test_the_scientist_is_refused_before_submitting_what_the_terms_would_refuse():
    from fedlearn.config import TrainPlan

    plan, run_refusal = TrainPlan(lr=0.1, batch_size=32), owner_limits.run_refusal
    assert run_refusal(OwnerLimits(), plan, None) is None
    assert run_refusal(OwnerLimits(max_lr=0.05), plan, None)[0] == "plan.lr"
    assert run_refusal(OwnerLimits(max_batch_size=16), plan, None)[0] == "plan.batch_size"
    option, why = run_refusal(BUDGET, plan, None)
    assert option == "dp_sgd.noise_multiplier" and "--dp-sgd-noise" in why
    assert "must be >= 0.5" in run_refusal(BUDGET, plan, 0.3)[1]
    assert run_refusal(BUDGET, plan, 1.0) is None


def test_the_budget_is_charged_persisted_and_refuses_once_spent(tmp_path):
    from opacus.accountants import RDPAccountant

    state = DatasiteState(tmp_path)
    ask = {"scientist": "eve", "plan": PLAN, "mode": "fit", "source": DP_SOURCE}
    assert call_refusal(BUDGET, state, **ask) is None
    # what was charged: Opacus's sample rate 1/ceil(N/B) for ceil(N/B) steps at the noise
    assert state.ledger("eve") == [[1.0, 1 / 20, 20]]
    expected = RDPAccountant()
    expected.history = [(1.0, 1 / 20, 20)]
    assert owner_limits.epsilon(state.ledger("eve"), 1e-5) == expected.get_epsilon(1e-5)
    calls = 1
    while (refusal := call_refusal(BUDGET, state, **ask)) is None:
        calls += 1
        assert calls < 10
    assert calls == 4
    state.close()

    reopened = DatasiteState(tmp_path)  # a restart
    assert reopened.ledger("eve") == [[1.0, 1 / 20, 20 * calls]]  # merged: RDP adds up
    spent = owner_limits.epsilon(reopened.ledger("eve"), 1e-5)
    assert spent <= 4.0 < owner_limits.epsilon([[1.0, 1 / 20, 20 * (calls + 1)]], 1e-5)
    again = call_refusal(BUDGET, reopened, **ask)
    assert again == refusal and f"spent {spent:.3g}, remaining {4.0 - spent:.3g}" in again
    assert "over the owner's budget of 4" in again
    assert call_refusal(BUDGET, reopened, **{**ask, "scientist": "ann"}) is None  # per account
    assert [e["event"] for e in reopened.entries()].count("charge") == calls + 1
    assert reopened.verify() == len(reopened.entries())


def test_under_a_budget_evaluation_and_plain_code_are_refused_and_cost_nothing(tmp_path):
    state = DatasiteState(tmp_path)
    evaluate = call_refusal(BUDGET, state, scientist="eve", plan={}, mode="evaluate",
                            source=DP_SOURCE)
    assert "does not evaluate" in evaluate
    plain = call_refusal(BUDGET, state, scientist="eve", plan=PLAN, mode="fit",
                         source=training_function_source("mlp2nn"))
    assert "only fedlearn's DP-SGD function" in plain
    assert "shard size" in call_refusal(dataclasses.replace(BUDGET, examples=None), state,
                                        scientist="eve", plan=PLAN, mode="fit",
                                        source=DP_SOURCE)
    assert state.ledger("eve") == []


def uint8_digits(n: int):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def test_the_dp_function_draws_what_the_in_process_dp_sgd_worker_draws(monkeypatch):
    from fedlearn.data.mnist import _normalise
    from fedlearn.models import build_model
    from fedlearn.workers.dp_sgd import DPSGDWorker

    images, labels = uint8_digits(96)
    plan = TrainPlan(epochs=2, batch_size=16, lr=0.1, momentum=0.5)
    weights = dict(build_model("mlp2nn", seed=3).state_dict())
    worker = DPSGDWorker("bob", _normalise(torch.as_tensor(images)),
                         torch.as_tensor(labels).long(), model="mlp2nn",
                         dp=DPSGDConfig(noise_multiplier=1.1, max_grad_norm=0.5))
    expected = worker.fit(weights, plan, seed=1234)
    monkeypatch.setattr(secrets, "randbits", lambda bits: 1234)  # its secret seed, made known
    out = load_dp_training_function("mlp2nn", 1.1, 0.5)(
        images, labels, weights, dataclasses.asdict(plan), 5, "0" * 32, "fit")
    assert "refused" not in out, out
    assert all(torch.equal(out["delta"][k], expected.delta[k]) for k in expected.delta)
    assert out["num_examples"] == expected.num_examples == 192
    assert np.isnan(out["loss"])  # no statistic of the data beyond the noised change


def test_the_dp_function_refuses_evaluation_and_a_proximal_term():
    from fedlearn.models import build_model

    images, labels = uint8_digits(8)
    weights = dict(build_model("mlp2nn").state_dict())
    function = load_dp_training_function("mlp2nn", 1.0, 1.0)
    evaluated = function(images, labels, weights, {}, 0, "0" * 32, "evaluate")
    assert "does not evaluate" in evaluated["refused"]
    proximal = function(images, labels, weights, {**PLAN, "prox_mu": 0.1}, 0, "0" * 32, "fit")
    assert "prox_mu must be 0" in proximal["refused"]


@pytest.mark.parametrize("flags, said", [
    (["--max-lr", "20"], "argument --max-lr: must be a number in (0, 10]"),
    (["--dp-epsilon", "8", "--dp-delta", "1e-5"], "argument --dp-epsilon: needs --state-dir"),
])
def test_serve_refuses_bad_terms_in_one_line_before_anything_starts(flags, said):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FEDLEARN_ADMIN_PASSWORD": "owner-password-1"}
    done = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "serve", "--name", "bob",
                           *flags], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(f"fedlearn: error: {said}")
    assert len(done.stderr.strip().splitlines()) == 1
