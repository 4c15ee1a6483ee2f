"""The PySyft backend against the in-process backend as an oracle (same seed, same weights)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from fedlearn.config import DataConfig, ExperimentConfig, FederationConfig, TrainPlan
from fedlearn.data.partition import partition
from fedlearn.server.federation import run_federation

try:
    from fedlearn.backends.pysyft import require_syft
    require_syft()
    HAVE_SYFT = True
except ImportError:
    HAVE_SYFT = False

if not HAVE_SYFT and os.environ.get("CI") and sys.version_info < (3, 13):
    pytest.fail("syft 0.9.5 must be installed in CI on Python < 3.13", pytrace=False)
needs_syft = pytest.mark.skipif(not HAVE_SYFT, reason="syft 0.9.5 not installed (Python >= 3.13?)")


def uint8_digits(n: int, seed: int = 123):
    """Random uint8 'images' (n, 28, 28) and labels: what a Datasite holds, without MNIST."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def small_config():
    return ExperimentConfig(data=DataConfig(train_size=1000, test_size=500),
                            plan=TrainPlan(batch_size=32),
                            federation=FederationConfig(rounds=1, device="cpu"))


def oracle_and_syft(mnist_small, port):
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.data import to_uint8
    from fedlearn.workers import make_virtual_workers

    cfg = small_config()
    x, y = mnist_small.train_x[:1000], mnist_small.train_y[:1000]
    virtual, parts = make_virtual_workers(x, y, cfg)
    expected = run_federation(virtual, cfg, mnist_small.test_x, mnist_small.test_y)
    sites, workers = launch_syft_workers(to_uint8(x).numpy(), y.numpy(), parts,
                                         cfg.partition.workers, model="tutorial_cnn",
                                         max_calls=5, port=port)
    try:
        got = run_federation(workers, cfg, mnist_small.test_x, mnist_small.test_y)
        local = [w.evaluate(got.weights) for w in workers]
    finally:
        for site in sites:
            site.land()
    return expected, got, workers, local


@needs_syft
@pytest.mark.parametrize("port", [None, "auto"], ids=["in-process", "http-server"])
def test_one_round_matches_in_process_workers(mnist_small, port):
    expected, got, workers, local = oracle_and_syft(mnist_small, port)
    diff = max((got.weights[k] - expected.weights[k]).abs().max().item() for k in expected.weights)
    assert diff <= 1e-6
    assert got.history[0]["examples"] == expected.history[0]["examples"] == \
        {"bob": 500, "alice": 500}
    assert got.history[0]["test_accuracy"] == pytest.approx(expected.history[0]["test_accuracy"])
    assert [w.num_examples for w in workers] == [500, 500]
    assert all(0 <= m["accuracy"] <= 1 and m["examples"] == 500 for m in local)


@needs_syft
@pytest.mark.pysyft
@pytest.mark.slow
def test_batchnorm_and_dropout_give_the_same_weights_through_datasites():
    """bn_cnn (BatchNorm + Dropout), 2 rounds, 2 owners, one seed: the Datasites' weights are
    torch.equal to the in-process ones — dropout masks come from the call's seed, the
    normalisation is the same function, and num_batches_tracked stays int64 both ways."""
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.data import MNIST_NORMALISATION, normalise
    from fedlearn.workers import make_virtual_workers

    images, labels = uint8_digits(240)
    x, y = normalise(torch.as_tensor(images), MNIST_NORMALISATION), torch.as_tensor(labels)
    cfg = ExperimentConfig(plan=TrainPlan(batch_size=32),
                           federation=FederationConfig(model="bn_cnn", rounds=2, device="cpu"))
    virtual, parts = make_virtual_workers(x, y, cfg)
    expected = run_federation(virtual, cfg, x[:100], y[:100])
    reviews = []
    sites, workers = launch_syft_workers(images, labels, parts, cfg.partition.workers,
                                         model="bn_cnn", max_calls=6, on_review=reviews.append)
    try:
        got = run_federation(workers, cfg, x[:100], y[:100])
    finally:
        for site in sites:
            site.land()
    assert [r.matches for r in reviews] == ["bn_cnn", "bn_cnn"]
    assert all(r.normalisation == MNIST_NORMALISATION.describe() for r in reviews)
    assert set(got.weights) == set(expected.weights)
    for key, value in expected.weights.items():
        assert got.weights[key].dtype == value.dtype, key
        assert torch.equal(got.weights[key], value), key
    for key in ("bn1.num_batches_tracked", "bn2.num_batches_tracked"):
        assert got.weights[key].dtype == torch.int64 and got.weights[key].item() > 0
    assert got.history[-1]["test_accuracy"] == expected.history[-1]["test_accuracy"]


@needs_syft
@pytest.mark.pysyft
@pytest.mark.slow
def test_dp_fedavg_updates_leave_the_datasite_clipped():
    """DP-FedAvg over Datasites: the approved code clips each update (plan["clip_norm"]) before
    it leaves, with the same function in-process clients use, so the weights are the
    in-process ones; what arrives is within the bound before anyone else touches it."""
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.config import DPConfig
    from fedlearn.data import MNIST_NORMALISATION, normalise
    from fedlearn.updates.update import update_norm
    from fedlearn.workers import make_virtual_workers

    images, labels = uint8_digits(200)
    x, y = normalise(torch.as_tensor(images), MNIST_NORMALISATION), torch.as_tensor(labels)
    cfg = ExperimentConfig(plan=TrainPlan(batch_size=32), seed=5,
                           federation=FederationConfig(model="mlp2nn", rounds=1, device="cpu"),
                           dp=DPConfig(clip_norm=0.05, noise_multiplier=0.5))
    virtual, parts = make_virtual_workers(x, y, cfg)
    expected = run_federation(virtual, cfg, x[:100], y[:100])
    sites, workers = launch_syft_workers(images, labels, parts, cfg.partition.workers,
                                         model="mlp2nn", max_calls=4)
    try:
        got = run_federation(workers, cfg, x[:100], y[:100])
        assert all(w.clip_norm == 0.05 for w in workers)  # the approved code clips
        weights = {k: v.clone() for k, v in got.weights.items()}
        arrived = workers[0].fit(weights, cfg.plan, seed=1)  # as it leaves the Datasite
    finally:
        for site in sites:
            site.land()
    assert update_norm(arrived.delta) <= 0.05 * (1 + 1e-6)
    for key, value in expected.weights.items():
        assert torch.allclose(got.weights[key], value, atol=1e-7), key


class Tabular(torch.nn.Module):
    """A practitioner's model for 6 float features (self-contained: PySyft execs its source)."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


@needs_syft
@pytest.mark.pysyft
@pytest.mark.slow
def test_float_features_with_a_declared_normalisation_go_through_datasites():
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.data import Normalisation, normalise
    from fedlearn.workers import make_virtual_workers

    rng = np.random.default_rng(4)
    features = (rng.standard_normal((120, 6)) * 4 + 2).astype(np.float32)
    labels = rng.integers(0, 3, 120)
    declared = Normalisation(mean=(2.0,) * 6, std=(4.0,) * 6)
    x, y = normalise(torch.as_tensor(features), declared), torch.as_tensor(labels)
    cfg = ExperimentConfig(plan=TrainPlan(batch_size=16),
                           federation=FederationConfig(model=Tabular, rounds=1, device="cpu"))
    virtual, parts = make_virtual_workers(x, y, cfg)
    expected = run_federation(virtual, cfg, x, y)
    reviews = []
    sites, workers = launch_syft_workers(features, labels, parts, cfg.partition.workers,
                                         model=Tabular, max_calls=3, force_approval=True,
                                         on_review=reviews.append, normalisation=declared)
    try:
        assert workers[0].mock()[0].dtype == np.float32
        got = run_federation(workers, cfg, x, y)
    finally:
        for site in sites:
            site.land()
    assert all("x / 1, then minus mean (2, 2, 2, 2, 2, 2)" in r.normalisation for r in reviews)
    assert all(torch.equal(got.weights[k], expected.weights[k]) for k in expected.weights)


@needs_syft
def test_a_launch_refuses_what_every_round_would_refuse_before_any_datasite_starts(monkeypatch):
    from fedlearn.backends.pysyft import Datasite, launch_syft_workers
    from fedlearn.config import ConfigError
    from fedlearn.data import Normalisation

    launched = []
    monkeypatch.setattr(Datasite, "launch", staticmethod(lambda *a, **k: launched.append(a)))
    images, labels = np.zeros((8, 3, 8, 8), np.uint8), np.arange(8) % 3
    two_means = Normalisation(divide_by=255.0, mean=(0.5, 0.5), std=(0.2, 0.2))
    for model, normalisation, labels_, message in (
            (Tabular, two_means, labels, "the normalisation has 2 mean"),
            ("mlp2nn", Normalisation(), labels, "mlp2nn cannot take inputs of shape"),
            (Tabular, Normalisation(), labels + 1, "labels go from 1 to 3")):
        with pytest.raises(ConfigError, match=message):
            launch_syft_workers(images if model != Tabular else images.reshape(8, -1)[:, :6],
                                labels_, [np.arange(8)], ["bob"], model=model, max_calls=1,
                                normalisation=normalisation)
    nan = images.reshape(8, -1)[:, :6].astype(np.float32)
    nan[3, 2] = np.nan
    with pytest.raises(ConfigError, match="images: contain NaN or infinite values"):
        launch_syft_workers(nan, labels, [np.arange(8)], ["bob"], model=Tabular, max_calls=1,
                            normalisation=Normalisation())
    assert launched == []  # refused before any Datasite started


@needs_syft
def test_scientist_sees_mock_not_data_and_needs_approval():
    from fedlearn.backends.pysyft import Datasite, SyftWorker
    from fedlearn.models import build_model

    bob = Datasite.launch("bob")
    try:
        images, labels = uint8_digits(200)
        bob.upload_mnist(images, labels, mock_size=8)
        bob.register_scientist("ds@fedlearn.example", "secret-password")
        worker = SyftWorker.connect("bob", bob.handle, email="ds@fedlearn.example",
                                    password="secret-password")
        mock_images, mock_labels = worker.mock()
        assert mock_images.shape == (8, 28, 28) and mock_images.dtype == np.uint8
        assert not any(np.array_equal(m, im) for m in mock_images for im in images)
        assert worker._images.data is None  # PySyft refuses the private data to a scientist
        weights = build_model("tutorial_cnn", seed=0).state_dict()
        with pytest.raises(RuntimeError, match="submit"):
            worker.fit(weights, TrainPlan(), seed=0)
        request_id = worker.submit("tutorial_cnn", max_calls=3)
        assert "def fedlearn_round" in bob.review(request_id)
        assert [str(r.id) for r in bob.pending_requests()] == [request_id]
        with pytest.raises(RuntimeError, match="PySyft"):  # not approved yet: nothing runs
            worker.fit(weights, TrainPlan(), seed=0)
        bob.approve(request_id)
        assert worker.fit(weights, TrainPlan(), seed=0).num_examples == 200
    finally:
        files = Datasite.files_dir(bob.server_id)
        assert files.is_dir()
        assert files.parent.stat().st_mode & 0o077 == 0  # $TMPDIR/syft: closed to other users
        bob.land()
    assert not files.exists()  # land() removes the Datasite's database and blobs


def test_stale_result_is_refused(monkeypatch):  # needs neither syft nor MNIST
    from fedlearn.backends.pysyft import StaleResultError, SyftWorker

    worker = SyftWorker.__new__(SyftWorker)
    worker.name, worker._request_id, worker.calls = "bob", "req", 0
    old = {"proof": "from-an-earlier-call", "delta": {}, "num_examples": 1, "loss": 0.0}
    monkeypatch.setattr(SyftWorker, "_invoke", lambda self, **kw: old)
    with pytest.raises(StaleResultError, match="9391"):
        worker.fit({"w": torch.zeros(1)}, TrainPlan(), seed=0)


def test_model_hopping_is_refused_clearly():
    from fedlearn.backends.pysyft import SyftWorker

    worker = SyftWorker.__new__(SyftWorker)
    worker.name = "bob"
    with pytest.raises(NotImplementedError, match="FedAvg only"):
        worker.fit({}, TrainPlan(), seed=0, batches=(0, 1))


def test_import_fedlearn_does_not_import_syft():
    code = ("import sys, fedlearn, fedlearn.server.federation, fedlearn.experiment, "
            "fedlearn.workers, fedlearn.backends.pysyft; print('syft' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_syft_the_error_says_what_to_do(monkeypatch):
    from fedlearn.backends.pysyft import Datasite, SyftUnavailableError

    monkeypatch.setitem(sys.modules, "syft", None)  # what a Python without syft sees
    with pytest.raises(SyftUnavailableError, match="pip install 'syft==0.9.5' sniffio.*in-process"):
        Datasite.launch("bob")


@needs_syft
def test_a_datasite_that_stops_mid_run_is_left_out(mnist_small):
    import dataclasses

    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.data import to_uint8
    from fedlearn.server.federation import FederatedServer

    cfg = small_config()
    cfg = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=2))
    x, y = mnist_small.train_x[:600], mnist_small.train_y[:600]
    parts = partition(y.numpy(), cfg.partition, seed=0)
    sites, workers = launch_syft_workers(to_uint8(x).numpy(), y.numpy(), parts,
                                         cfg.partition.workers, model="tutorial_cnn", max_calls=5)
    try:
        server = FederatedServer(workers, cfg, mnist_small.test_x, mnist_small.test_y)
        server.step()
        sites[1].land()  # Alice's Datasite goes away between rounds
        record = server.step()
    finally:
        sites[0].land()
    assert set(record.failed) == {"alice"} and record.examples == {"bob": 300}
    assert all(torch.isfinite(v).all() for v in server.weights.values())


@needs_syft
def test_approval_checks_the_requester_and_the_source_and_force_overrides():
    import syft as sy
    from syft.service.policy.policy import OutputPolicyExecuteCount

    from fedlearn.backends.pysyft import ApprovalRefused, Datasite, SyftWorker
    from fedlearn.backends.pysyft.training_code import load_training_function

    bob = Datasite.launch("bob")
    try:
        bob.upload_mnist(*uint8_digits(100), mock_size=4)
        # the admin submitting code: the admin bypasses approval, so the request is suspect
        assets = bob._admin.datasets["mnist"].assets
        policy = sy.MixedInputPolicy(client=bob._admin, images=assets["images"],
                                     labels=assets["labels"], weights=dict, plan=dict, seed=int,
                                     nonce=str, mode=str)
        code = sy.syft_function(input_policy=policy, output_policy=OutputPolicyExecuteCount(
            limit=3))(load_training_function("tutorial_cnn"))
        by_admin = str(bob._admin.code.request_code_execution(code).id)
        review = bob.review_request(by_admin)
        assert review.role == "ADMIN" and review.matches == "tutorial_cnn"
        assert any("not a data scientist" in p for p in review.problems)
        with pytest.raises(ApprovalRefused, match="not a data scientist"):
            bob.approve(by_admin)
        warnings = []
        bob.approve(by_admin, force=True, warn=warnings.append)
        assert "WARNING" in warnings[0] and "not a data scientist" in warnings[0]

        # a data scientist's code that is not fedlearn's generated function
        bob.register_scientist("ds@fedlearn.example", "secret-password")
        worker = SyftWorker.connect("bob", bob.handle, email="ds@fedlearn.example",
                                    password="secret-password")

        def fedlearn_round(images, labels, weights, plan, seed, nonce, mode):
            return {"images": images}

        ds_assets = worker.assets
        code = sy.syft_function(
            input_policy=sy.MixedInputPolicy(client=worker._client, images=ds_assets["images"],
                                             labels=ds_assets["labels"], weights=dict,
                                             plan=dict, seed=int, nonce=str, mode=str),
            output_policy=OutputPolicyExecuteCount(limit=3))(fedlearn_round)
        other = str(worker._client.code.request_code_execution(code).id)
        review = bob.review_request(other)
        assert review.role == "DATA_SCIENTIST" and review.matches is None
        assert review.problems == ["the source is not fedlearn's generated training function"]
        with pytest.raises(ApprovalRefused, match="not fedlearn's generated"):
            bob.approve(other)
        assert {r["id"]: r["status"] for r in bob.requests(include_decided=True)}[other] == \
            "pending"
    finally:
        bob.land()


@needs_syft
def test_the_approved_code_refuses_a_plan_out_of_its_bounds():
    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.backends.pysyft.scientist import InputRefusedError
    from fedlearn.models import build_model

    images, labels = uint8_digits(100)
    sites, workers = launch_syft_workers(images, labels, [np.arange(100)],
                                         ["bob"], model="tutorial_cnn", max_calls=3)
    try:
        with pytest.raises(InputRefusedError, match=r"bob: .*epochs must be in \[1, 50\]"):
            workers[0].fit(build_model("tutorial_cnn").state_dict(), TrainPlan(epochs=51),
                           seed=0)
    finally:
        sites[0].land()


@needs_syft
def test_train_with_pysyft_prints_what_a_user_needs_and_not_syfts_chatter(mnist_dir, tmp_path):
    """A log file (no terminal): what happened, one plain line per round; PySyft's own output
    (signing-key CRITICAL line, SQLite path, banners, upload bars) only with --verbose
    (which turns quiet_syft off: the test below)."""
    args = [sys.executable, "-m", "fedlearn", "train", "--backend", "pysyft", "--data-dir",
            mnist_dir, "--train-size", "600", "--test-size", "200", "--rounds", "2",
            "--batch-size", "32", "--model", "mlp2nn"]
    quiet = subprocess.run([*args, "--out", str(tmp_path / "quiet")], capture_output=True,
                           text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert quiet.returncode == 0, quiet.stderr
    said = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert said[0].startswith("Datasites up in this process: bob, alice"), said
    assert [line.split(":")[0] for line in said[1:]] == ["round 1/2", "round 2/2"], said
    assert "\r" not in quiet.stderr
    result = quiet.stdout.splitlines()
    assert len(result) == 2 and result[0].startswith("round 2: test accuracy"), result
    for chatter in ("CRITICAL", "SQLite", "sqlite:", "SyftSuccess", "Logged into", "project",
                    "Uploading", "changethis"):
        assert chatter not in quiet.stdout + quiet.stderr
    # --resume with no flag but --rounds: on the Datasites again, not this machine's data
    resumed = subprocess.run([sys.executable, "-m", "fedlearn", "train", "--out",
                              str(tmp_path / "quiet"), "--resume", "--rounds", "3"],
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert resumed.returncode == 0, resumed.stderr
    said = [line for line in resumed.stderr.splitlines() if line.strip()]
    assert said[0].startswith("Datasites up in this process: bob, alice"), said
    assert [line.split(":")[0] for line in said[1:]] == ["round 3/3"], said


def test_quiet_syft_keeps_chatter_aside_unless_verbose(capsys):
    from fedlearn.backends.pysyft import one_line, quiet_syft, set_verbose

    with quiet_syft() as said:
        print("Logged into <bob> ...\nSyftError: You have no access to the private data")
    assert capsys.readouterr().out == ""
    assert said.syft_error() == "You have no access to the private data"
    set_verbose(True)
    try:
        with quiet_syft():
            print("Logged into <bob>")
        assert "Logged into <bob>" in capsys.readouterr().out
    finally:
        set_verbose(False)
    assert one_line(RuntimeError("PySyft: a failed\n  detail")) == "a failed"
