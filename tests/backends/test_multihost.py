"""Bob and Alice as real Datasite servers on hosts of their own.

Each owner runs ``fedlearn datasite serve`` as a separate process in its own
network namespace with its own address (veth pairs, ``ip netns``; as root, e.g.
in CI), or on a loopback port where namespaces are unavailable. The data
scientist trains over the network with ``fedlearn train --backend pysyft``.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from local_hosts import local_hosts  # tools/, on sys.path (tests/conftest.py)
from test_pysyft import needs_syft  # noqa: E402 (the test folder is on sys.path)

from fedlearn.backends.pysyft.process import ServerProcess, free_port
from fedlearn.config import DataConfig, ExperimentConfig, FederationConfig, TrainPlan

ADMIN, SCIENTIST, EMAIL = "owner-password-1", "scientist-password-1", "ds@lab.example"
SIZE = ["--train-size", "1000"]
AS_ROOT = ["--allow-root"] if os.geteuid() == 0 else []  # namespaces need root (CI)


def env_for(mnist_dir, tmp):
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "FEDLEARN_DATA": mnist_dir, "FEDLEARN_ADMIN_PASSWORD": ADMIN,
            "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST, "TMPDIR": str(tmp),
            "PYTHONWARNINGS": "ignore", "NO_PROXY": "*"}


@pytest.fixture(scope="module")
def servers(mnist_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    # in CI (root, as .ci/run runs) the hosts must be real namespaces, never a quiet fallback
    with local_hosts(["bob", "alice"], isolate=True if os.environ.get("CI") else None) as hosts:
        procs = [ServerProcess(h, 8080 if h.isolated else free_port(),
                               ["--shard", f"{i}/2", *SIZE, "--scientist", EMAIL, *AS_ROOT],
                               env_for(mnist_dir, root / h.name))
                 for i, h in enumerate(hosts)]
        try:
            for p in procs:
                p.wait_ready()
            yield procs
        finally:
            for p in procs:
                p.stop()


def owners(urls) -> list:
    """Each owner logged in to their Datasite."""
    from fedlearn.backends.pysyft import Datasite

    return [Datasite.connect(url, email="info@openmined.org", password=ADMIN) for url in urls]


def approve_now(urls, sites=None) -> set:
    """Act as each owner: read every pending request's code, then approve it."""
    approved = set()
    for site in sites or owners(urls):
        for request in site.requests():
            assert "def fedlearn_round" in request["code"]
            assert request["requester"] == EMAIL
            site.approve(request["id"])
            approved.add(site.name)
    return approved


def approve_pending(urls, timeout=120) -> set:
    """Approve requests as they arrive until every owner has approved one."""
    deadline, approved, sites = time.monotonic() + timeout, set(), owners(urls)  # logged in once
    while len(approved) < len(urls) and time.monotonic() < deadline:
        approved |= approve_now(urls, sites)
        time.sleep(0.5)
    return approved


def oracle(mnist_dir, rounds):
    from fedlearn.data import load_mnist
    from fedlearn.server.federation import run_federation
    from fedlearn.workers import make_virtual_workers

    cfg = ExperimentConfig(data=DataConfig(data_dir=mnist_dir, train_size=1000, test_size=500),
                           plan=TrainPlan(batch_size=32),
                           federation=FederationConfig(rounds=rounds, device="cpu"))
    data = load_mnist(cfg.data, seed=cfg.seed)
    workers, _ = make_virtual_workers(data.train_x, data.train_y, cfg)
    return cfg, data, run_federation(workers, cfg, data.test_x, data.test_y)


@needs_syft
def test_one_round_over_the_network_equals_the_in_process_oracle(servers, mnist_dir, tmp_path):
    if servers[0].host.isolated:  # a non-loopback address must be announced loudly
        assert "WARNING: bob serves on 10." in servers[0].output
    out = tmp_path / "run"
    train = subprocess.Popen(
        [sys.executable, "-m", "fedlearn", "train", "--backend", "pysyft", "--email", EMAIL,
         *[f"--datasite={p.host.name}={p.url}" for p in servers], "--rounds", "1",
         "--test-size", "500", "--batch-size", "32", "--device", "cpu", "--out", str(out),
         "--no-progress", "--approval-timeout", "240"],
        env=env_for(mnist_dir, tmp_path / "scientist"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert approve_pending([p.url for p in servers]) == {"bob", "alice"}
    output, _ = train.communicate(timeout=300)
    assert train.returncode == 0, output
    got = torch.load(out / "model.pt", weights_only=True)
    _, _, expected = oracle(mnist_dir, rounds=1)
    assert max((got[k] - expected.weights[k]).abs().max().item() for k in got) <= 1e-6
    history = __import__("json").loads((out / "history.json").read_text())
    assert history[0]["examples"] == {"bob": 500, "alice": 500}
    assert history[0]["test_accuracy"] == pytest.approx(expected.history[0]["test_accuracy"])


@needs_syft
def test_a_server_stopped_mid_run_is_left_out_and_cleans_up(servers, mnist_dir):
    from fedlearn.backends.pysyft import SyftWorker
    from fedlearn.backends.pysyft.remote import wait_for_approval
    from fedlearn.data import load_mnist
    from fedlearn.server.federation import FederatedServer

    cfg = ExperimentConfig(data=DataConfig(data_dir=mnist_dir, train_size=1000, test_size=500),
                           plan=TrainPlan(batch_size=32),
                           federation=FederationConfig(rounds=2, device="cpu"))
    data = load_mnist(cfg.data, seed=0)
    workers = [SyftWorker.connect(p.host.name, p.url, email=EMAIL, password=SCIENTIST)
               for p in servers]
    for worker in workers:  # the same code again: the first test's requests are reused
        worker.submit("tutorial_cnn", max_calls=20)
    approve_now([p.url for p in servers])
    wait_for_approval(workers, timeout=30)
    server = FederatedServer(workers, cfg, data.test_x, data.test_y)
    assert server.step().failed == {}
    alice = servers[1]
    assert alice.stop() == 0  # SIGTERM: a clean shutdown
    assert "alice: stopped; its database and files are deleted" in alice.output
    files = Path(alice.env["TMPDIR"]) / "syft"
    assert not any(files.glob("*/db")), list(files.glob("*"))
    record = server.step()
    assert set(record.failed) == {"alice"} and record.examples == {"bob": 500}
    assert all(torch.isfinite(v).all() for v in server.weights.values())


def test_serve_refuses_the_pysyft_default_password(tmp_path):
    env = {**os.environ, "FEDLEARN_ADMIN_PASSWORD": "changethis"}
    r = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "serve", "--name", "bob"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "published default password" in r.stderr
    assert "syft" not in r.stderr.lower().replace("pysyft", "")  # refused before syft loads


@needs_syft
def test_owner_commands_say_clearly_when_the_datasite_is_unreachable_or_the_password_wrong(
        servers, tmp_path):
    env = {**os.environ, "FEDLEARN_ADMIN_PASSWORD": ADMIN}
    port = free_port()  # nothing listens there
    r = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "requests", "--url",
                        f"http://127.0.0.1:{port}"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "cannot reach a Datasite" in r.stderr  # fix the URL: a user error
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    env["FEDLEARN_ADMIN_PASSWORD"] = "not-the-owner-password"
    r = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "requests", "--url",
                        servers[0].url], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "login to" in r.stderr and "Traceback" not in r.stderr
