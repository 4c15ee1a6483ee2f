"""Secure aggregation between Datasites: Bob, Alice and Carol each mask on their own Datasite.

The owners' side runs in their approved code with a secret only their Datasite holds; the
scientist relays keys and ciphertexts and gets masked vectors; the Datasites' servers record
what they masked and revealed, and refuse what would unmask one owner.
"""
import uuid

import numpy as np
import pytest
import torch

from fedlearn.config import (
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    SecAggConfig,
    TrainPlan,
)
from fedlearn.data import MNIST_NORMALISATION, normalise
from fedlearn.secagg_portable import secagg_scale
from fedlearn.server.federation import run_federation

pytestmark = [pytest.mark.pysyft, pytest.mark.slow]
NAMES = ("bob", "alice", "carol")


def uint8_digits(n: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def config(seed: int, **extra):
    return ExperimentConfig(plan=TrainPlan(batch_size=20, lr=0.05), seed=seed,
                            partition=PartitionConfig(workers=NAMES),
                            federation=FederationConfig(model="mlp2nn", rounds=1, device="cpu"),
                            **extra)


@pytest.fixture(scope="module")
def owners(request):
    """Three Datasites (in-process, or served over HTTP) with the secure function approved."""
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.workers import make_virtual_workers

    images, labels = uint8_digits(180)
    x, y = normalise(torch.as_tensor(images), MNIST_NORMALISATION), torch.as_tensor(labels)
    _, parts = make_virtual_workers(x, y, config(0))
    reviews = []
    sites, workers = launch_syft_workers(images, labels, parts, NAMES, model="mlp2nn",
                                         max_calls=60, port=request.param,
                                         on_review=reviews.append, secure=True)
    yield {"x": x, "y": y, "sites": sites, "workers": workers, "reviews": reviews,
           "parts": parts}
    for site in sites:
        site.land()


def plain_fedavg(owners, cfg, dropping=None):
    """Plain FedAvg of in-process workers holding the Datasites' shards: the oracle."""
    from fedlearn.workers import VirtualWorker
    from fedlearn.workers.faults import FaultInjectingWorker

    x, y = owners["x"], owners["y"]
    plain = dataclasses_replace(cfg, secure_aggregation=False, secagg=SecAggConfig(),
                                execution=ExecutionConfig())
    virtual = [VirtualWorker(name, x[part], y[part], model="mlp2nn")
               for name, part in zip(NAMES, owners["parts"])]
    if dropping is not None:
        virtual = [FaultInjectingWorker(w, "disappear") if w.name == dropping else w
                   for w in virtual]
    return run_federation(virtual, plain, x[:60], y[:60])


def dataclasses_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def bound(cfg, owners, examples):
    return owners / (2 * secagg_scale(cfg.secagg.value_range, owners, cfg.secagg.ring_bits)) \
        / examples + 1e-7


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("owners", [None, "auto"], ids=["in-process", "http"], indirect=True)
def test_three_datasites_give_fedavg_and_the_scientist_sees_only_masked_vectors(owners):
    x, y, workers = owners["x"], owners["y"], owners["workers"]
    assert [r.matches for r in owners["reviews"]] == \
        ["mlp2nn with secure aggregation (the owner's key never leaves)"] * 3
    assert all(r.problems == [] for r in owners["reviews"])
    assert all(w.assets["images"].data is None for w in workers)  # no read permission
    secret = workers[0]._secret
    assert secret.data is None  # nor on the owner's secret
    served = owners["sites"][0].url is not None
    cfg = config(11, secure_aggregation=True,
                 execution=ExecutionConfig(executor="concurrent" if served else "auto"))
    got = run_federation(workers, cfg, x[:60], y[:60])
    expected = plain_fedavg(owners, cfg)
    assert max_diff(got.weights, expected.weights) <= bound(cfg, 3, len(x))
    record = got.history[0]
    assert record["secure_aggregation"] == {"masked_updates": 3, "dropped": [],
                                            "threshold": 2, "ring_bits": 32}
    n = sum(v.numel() for v in got.weights.values()) + 1
    assert record["bytes_up"] == {name: 4 * n for name in NAMES}
    # over HTTP every stage may ask the three Datasites at once (asked for above);
    # an in-process Datasite runs in this process, so one after the other
    assert record["compute"]["clients"] == ("concurrent" if served else "sequential")
    # auto would not: all three Datasites share this machine's cores
    assert all(w.shares_this_machine() for w in workers)


@pytest.mark.parametrize("owners", [None], ids=["in-process"], indirect=True)
@pytest.mark.parametrize("stage", ["share", "masked"])
def test_carol_dropping_out_leaves_the_exact_sum_of_bob_and_alice(owners, stage, monkeypatch):
    x, y, workers = owners["x"], owners["y"], owners["workers"]
    carol = workers[2]
    if stage == "share":
        monkeypatch.setattr(carol, "secagg_share", _offline)
    else:
        monkeypatch.setattr(carol, "fit", _offline)
    cfg = config(20 + len(stage), secure_aggregation=True)  # new weights: a new sum
    got = run_federation(workers, cfg, x[:60], y[:60])
    record = got.history[0]["secure_aggregation"]
    assert record["dropped"] == ["carol"] and record["masked_updates"] == 2
    expected = plain_fedavg(owners, cfg, dropping="carol")
    assert max_diff(got.weights, expected.weights) <= bound(cfg, 3, len(x))


def _offline(*args, **kwargs):
    raise ConnectionError("carol's Datasite went offline")


def _round(worker, round_id):
    """Keys and shares of one round, as the scientist relays them."""
    keys = {w.name: w.secagg_keys(f"{w.secagg_run}|{round_id}") for w in worker}
    context = f"{worker[0].secagg_run}|{round_id}"
    shares = {w.name: w.secagg_share(context, keys, 2) for w in worker}
    return context, keys, shares


@pytest.mark.parametrize("owners", [None], ids=["in-process"], indirect=True)
def test_what_would_unmask_one_owner_is_refused_by_its_datasite(owners):
    import dataclasses

    from fedlearn.backends.pysyft.owner import SyftRefused
    from fedlearn.backends.pysyft.scientist import InputRefusedError
    from fedlearn.models import build_model

    workers, bob, alice = owners["workers"], owners["workers"][0], owners["workers"][1]
    round_id = f"7|{uuid.uuid4().hex[:16]}"
    context, keys, shares = _round(workers, round_id)
    torch.manual_seed(33)
    weights = build_model("mlp2nn").state_dict()
    plan = dataclasses.asdict(TrainPlan(batch_size=20, lr=0.05))
    scale = secagg_scale(32768.0, 3, 32)
    message = {"round": round_id, "me": "bob", "roster": keys, "scale": scale,
               "ring_bits": 32, "value_range": 32768.0, "weighted": True}
    masked = np.asarray(bob._call(weights, "fit", plan, 1, message)["masked"])

    # what came back is not bob's update: compare with the same training in-process
    from fedlearn.workers import VirtualWorker
    part = owners["parts"][0]
    plain = VirtualWorker("bob", owners["x"][part], owners["y"][part], model="mlp2nn").fit(
        weights, TrainPlan(batch_size=20, lr=0.05), seed=1)
    vector = np.append(np.concatenate([v.double().numpy().ravel()
                                       for v in plain.delta.values()]) * plain.num_examples,
                       plain.num_examples)
    quantized = np.rint(vector * scale).astype(np.int64).astype(np.uint32)
    assert masked.dtype == np.uint32 and (masked == quantized).mean() < 0.01

    with pytest.raises(SyftRefused, match="already masked"):  # a second input, same round
        bob._call({k: v + 1 for k, v in weights.items()}, "fit", plan, 1, message)
    smaller = f"8|{uuid.uuid4().hex[:16]}"  # the same weights summed without carol
    _, keys2, _ = _round(workers[:2], smaller)
    with pytest.raises(SyftRefused, match="would reveal the difference"):
        bob._call(weights, "fit", plan, 1, {**message, "round": smaller, "roster": keys2})

    unmask = {"round": round_id, "me": "bob", "roster": keys,
              "ciphertexts": {sender: out["bob"] for sender, out in shares.items()},
              "survivors": ["alice", "bob", "carol"], "dropped": [], "threshold": 2}
    with pytest.raises(SyftRefused, match="both as survivors and as dropped"):
        bob._call({}, "unmask", {}, 0, {**unmask, "dropped": ["carol"]})
    assert set(bob._call({}, "unmask", {}, 0, unmask)["shares"]["b"]) == set(NAMES)
    with pytest.raises(SyftRefused, match="seed share was revealed"):  # now carol's key too
        bob._call({}, "unmask", {}, 0, {**unmask, "survivors": ["alice", "bob"],
                                        "dropped": ["carol"]})
    with pytest.raises(SyftRefused, match="nothing to unmask"):  # alice masked nothing here
        alice._call({}, "unmask", {}, 0, {**unmask, "me": "alice", "ciphertexts": {
            sender: out["alice"] for sender, out in shares.items()}})

    # a value out of the declared range is refused on the Datasite, never clipped
    with pytest.raises(InputRefusedError, match="outside the declared range"):
        alice._call(weights, "fit", plan, 1, {**message, "me": "alice", "scale": 1.0,
                                              "value_range": 1e-6})


def test_the_cli_trains_bob_and_alice_with_secure_aggregation(mnist_dir, tmp_path):
    """`fedlearn train --backend pysyft --secure-aggregation`: the owners approve the secure
    function, each round is masked on their Datasites, the record says so."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "fedlearn", "train", "--backend", "pysyft", "--data-dir",
         mnist_dir, "--train-size", "300", "--test-size", "100", "--rounds", "1",
         "--batch-size", "32", "--model", "mlp2nn", "--secure-aggregation", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    history = json.loads((out / "history.json").read_text())
    assert history[0]["secure_aggregation"] == {"masked_updates": 2, "dropped": [],
                                                "threshold": 2, "ring_bits": 32}
