"""Transport: ``serve --tls-cert/--tls-key [--client-ca]`` and the scientist reaching https://
Datasites with a CA file and a client certificate — certificates made by the test."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch
from certificates import CertificateAuthority
from target import ADMIN, ADMIN_EMAIL, EMAIL, SCIENTIST, run_cli, start_server


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mutual(ca, mnist_dir, tmp_path_factory):
    """Bob serving HTTPS and requiring client certificates signed by the CA."""
    cert, key = ca.issue("bob-server", server=True)
    owner = ca.issue("bob-owner", server=False)
    server = start_server(mnist_dir, tmp_path_factory.mktemp("tls"), "--tls-cert", cert,
                          "--tls-key", key, "--client-ca", ca.ca_file, "--ca-file", ca.ca_file,
                          "--client-cert", owner[0], "--client-key", owner[1])
    yield server
    server.stop()


@pytest.fixture
def tls_client():
    from fedlearn.backends.pysyft.connection import TLSClientConfig, use_tls

    def use(*args):
        use_tls(TLSClientConfig(*args) if args else None)

    yield use
    use_tls(None)


def test_a_client_certificate_opens_it_and_a_round_runs_over_tls(mutual, ca, tls_client):
    from fedlearn.backends.pysyft import SyftWorker
    from fedlearn.config import TrainPlan
    from fedlearn.models import build_model

    assert mutual.url.startswith("https://")
    scientist = ca.issue("scientist", server=False)
    tls_client(ca.ca_file, *scientist)
    worker = SyftWorker.connect("bob", mutual.url, email=EMAIL, password=SCIENTIST)
    request_id = worker.submit("tutorial_cnn", max_calls=5)
    owner = ca.issue("bob-owner-laptop", server=False)
    # the owner's command with their own certificate, in this process (target.run_cli: same
    # argv, exit code and output); it sets this process's TLS to the owner's certificate
    approve = run_cli(["datasite", "approve", request_id, "--url", mutual.url, "--ca-file",
                       ca.ca_file, "--client-cert", owner[0], "--client-key", owner[1]],
                      mutual.env)
    assert approve.returncode == 0, approve.stderr
    tls_client(ca.ca_file, *scientist)  # the scientist's certificate again
    update = worker.fit(build_model("tutorial_cnn").state_dict(), TrainPlan(batch_size=64),
                        seed=0)
    assert update.num_examples == 300 and all(torch.isfinite(v).all()
                                              for v in update.delta.values())


def test_without_the_right_certificates_nothing_gets_through(mutual, ca, tmp_path, tls_client):
    from fedlearn.backends.pysyft.connection import login

    tls_client(ca.ca_file)  # the right CA, but no client certificate
    with pytest.raises(ConnectionError, match="cannot reach a Datasite"):
        login(mutual.url, EMAIL, SCIENTIST)
    stranger = CertificateAuthority(tmp_path, "another CA")
    tls_client(stranger.ca_file, *stranger.issue("scientist", server=False))
    with pytest.raises(ConnectionError, match="TLS check failed"):
        login(mutual.url, EMAIL, SCIENTIST)  # the server is not the one the CA vouches for
    tls_client()
    with pytest.raises(ConnectionError):
        login(mutual.url.replace("https://", "http://"), EMAIL, SCIENTIST)  # plain HTTP


def test_the_scientists_command_trains_over_tls(ca, mnist_dir, tmp_path):
    """Server authentication only: the scientist's ``train`` checks the Datasite's certificate."""
    from fedlearn.backends.pysyft import Datasite
    from fedlearn.backends.pysyft.connection import TLSClientConfig, use_tls

    cert, key = ca.issue("alice-server", server=True)
    server = start_server(mnist_dir, tmp_path / "alice", "--tls-cert", cert, "--tls-key", key,
                          "--ca-file", ca.ca_file, name="alice")
    out = tmp_path / "run"
    try:
        train = subprocess.Popen(
            [sys.executable, "-m", "fedlearn", "train", "--backend", "pysyft", "--email", EMAIL,
             f"--datasite=alice={server.url}", "--ca-file", ca.ca_file, "--rounds", "1",
             "--test-size", "200", "--out", str(out), "--no-progress",
             "--approval-timeout", "240"],
            env={**server.env, "FEDLEARN_SCIENTIST_PASSWORD": SCIENTIST},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        approved = threading.Event()

        def approve_when_asked():
            use_tls(TLSClientConfig(ca.ca_file))
            owner = Datasite.connect(server.url, email=ADMIN_EMAIL, password=ADMIN)
            while not approved.is_set() and train.poll() is None:
                for request in owner.requests():
                    owner.approve(request["id"])
                    approved.set()
                approved.wait(1)

        threading.Thread(target=approve_when_asked, daemon=True).start()
        output, _ = train.communicate(timeout=400)
    finally:
        server.stop()
        use_tls(None)
    assert approved.is_set() and train.returncode == 0, output
    assert (out / "model.pt").exists()
