"""Attack 3: fedlearn's exact source submitted with an input policy binding ``nonce`` to the private
images; the owner saw identical source and approved; the echoed "nonce" was the images."""
from __future__ import annotations

import subprocess
import sys

from target import ADMIN, ADMIN_EMAIL

EVE = ("eve@lab.example", "eve-password-123")


def owner_command(served, *args):
    return subprocess.run([sys.executable, "-m", "fedlearn", "datasite", *args, "--url",
                           served.url], env=served.env, capture_output=True, text=True,
                          timeout=300)


def submit_with_nonce_bound_to_images(url) -> str:
    import syft as sy
    from syft.service.policy.policy import OutputPolicyExecuteCount

    from fedlearn.backends.pysyft.connection import login
    from fedlearn.backends.pysyft.training_code import load_training_function

    eve = login(url, *EVE)
    assets = eve.datasets["mnist"].assets
    policy = sy.MixedInputPolicy(client=eve, images=assets["images"], labels=assets["labels"],
                                 weights=dict, plan=dict, seed=int, nonce=assets["images"],
                                 mode=str)
    code = sy.syft_function(input_policy=policy, output_policy=OutputPolicyExecuteCount(
        limit=5))(load_training_function("tutorial_cnn"))
    return str(eve.code.request_code_execution(code).id)


def test_a_request_binding_an_input_to_the_images_is_shown_and_refused(served):
    from fedlearn.backends.pysyft import Datasite

    owner = Datasite.connect(served.url, email=ADMIN_EMAIL, password=ADMIN)
    owner.register_scientist(*EVE, name="Eve")
    request_id = submit_with_nonce_bound_to_images(served.url)

    shown = owner_command(served, "requests", "--code")
    assert shown.returncode == 0, shown.stderr
    block = shown.stdout[shown.stdout.index(request_id):]
    assert f"by {EVE[0]} (DATA_SCIENTIST)" in block
    assert "nonce    <- asset images of dataset mnist" in block
    assert "weights  <- user-owned dict" in block
    assert "output policy: OutputPolicyExecuteCount(limit=5)" in block
    assert "equals fedlearn's generated function for tutorial_cnn" in block  # same source...
    assert "PROBLEM: input 'nonce' is bound to asset images" in block  # ...other inputs

    refused = owner_command(served, "approve", request_id)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"not approving {request_id}" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    status = {r["id"]: r["status"] for r in owner.requests(include_decided=True)}
    assert status[request_id] == "pending"  # nothing was approved
