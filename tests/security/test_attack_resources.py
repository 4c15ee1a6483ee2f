"""Attack 6: approved code used as a resource sink — a 20 MB ``nonce`` stored and echoed, unbounded
epochs and batch sizes — and inputs of the wrong shape."""
from __future__ import annotations

import dataclasses

import pytest
from target import ADMIN, ADMIN_EMAIL, EMAIL, SCIENTIST, tree_size, workspace_of


@pytest.fixture(scope="module")
def approved(served):
    from fedlearn.backends.pysyft import Datasite, SyftWorker

    worker = SyftWorker.connect("bob", served.url, email=EMAIL, password=SCIENTIST)
    request_id = worker.submit("tutorial_cnn", max_calls=50)
    review = Datasite.connect(served.url, email=ADMIN_EMAIL, password=ADMIN).approve(request_id)
    assert review.problems == [] and review.matches == "tutorial_cnn"
    return worker


def call(worker, **changes):
    from fedlearn.config import TrainPlan
    from fedlearn.models import build_model

    kwargs = dict(weights=dict(build_model("tutorial_cnn").state_dict()),
                  plan=dataclasses.asdict(TrainPlan(batch_size=64)), seed=0,
                  nonce="0123456789abcdef" * 2, mode="fit")
    kwargs.update(changes)
    out = worker._invoke(**kwargs)
    if "refused" in out:
        raise RuntimeError(out["refused"])
    return out


def test_a_huge_nonce_is_refused_before_it_is_stored(served, approved):
    before = tree_size(workspace_of(served))
    with pytest.raises(RuntimeError, match="refused by fedlearn's Datasite policy: a text of"):
        call(approved, nonce="a" * 20_000_000)
    assert tree_size(workspace_of(served)) - before < 2_000_000  # no 20 MB copy on the server


FP32 = {"precision": "fp32", "channels_last": False}


@pytest.mark.parametrize("changes,error", [
    ({"plan": {"epochs": 10**6, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
               "weight_decay": 0.0, "prox_mu": 0.0, **FP32}}, "epochs must be in \\[1, 50\\]"),
    ({"plan": {"epochs": 1, "batch_size": 10**9, "lr": 0.01, "momentum": 0.9,
               "weight_decay": 0.0, "prox_mu": 0.0, **FP32}}, "batch_size must be in"),
    ({"plan": {"epochs": 1, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
               "weight_decay": 0.0, "prox_mu": 0.0, "precision": "bf16",
               "channels_last": False}}, "trains in fp32"),
    ({"nonce": "not hex at all, but short!"}, "nonce must be 32 lowercase hex digits"),
    ({"weights": {"fc2.bias": __import__("torch").zeros(10)}}, "exactly the model's keys"),
    ({"mode": "echo"}, "mode must be 'fit' or 'evaluate'"),
])
def test_the_approved_code_checks_its_inputs(approved, changes, error):
    with pytest.raises(RuntimeError, match=error):
        call(approved, **changes)


def test_a_real_round_still_works_and_returns_only_the_change(served, approved):
    from fedlearn.config import TrainPlan
    from fedlearn.models import build_model

    update = approved.fit(build_model("tutorial_cnn").state_dict(), TrainPlan(batch_size=64),
                          seed=1)
    assert update.num_examples == 300 and set(update.metrics) == {"loss", "steps", "examples"}
    out = call(approved)
    assert set(out) == {"proof", "delta", "num_examples", "loss"}  # no input comes back
