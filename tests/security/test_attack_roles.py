"""Attack 2: a guest (no account) or the data scientist had the server sign chosen bytes with its
key — the root admin's — through ``network.ping``, and forged root calls with the signature."""
from __future__ import annotations

import pytest
from attacks import new_key, payload, signed_call
from target import EMAIL, SCIENTIST

REFUSAL = "refused by fedlearn's Datasite policy"


def refused(answer) -> bool:
    return REFUSAL in str(payload(answer))


def private_asset_id(url):
    """The action id of Bob's private images, as any guest can list it."""
    from fedlearn.backends.pysyft.connection import login

    scientist = login(url, EMAIL, SCIENTIST)
    return scientist, scientist.datasets["mnist"].assets["images"].action_id


@pytest.mark.parametrize("path,args", [
    ("network.ping", (b"forge me" * 4,)),
    ("network.exchange_credentials_with", ()),
    ("user.get_all", ()),
    ("code.request_code_execution", ()),
    ("request.submit", ()),
    ("blob_storage.allocate", ()),
    ("user.delete", ()),
    ("project.add_event", ()),
])
def test_a_guest_can_neither_sign_nor_read_nor_submit(served, path, args):
    guest = new_key()
    assert refused(signed_call(guest, served.url, path, *args))
    assert refused(signed_call(guest, served.url, path, *args, blocking=False))  # queued jobs too


def test_a_guest_cannot_fetch_the_private_images(served):
    _, images = private_asset_id(served.url)
    answer = signed_call(new_key(), served.url, "action.get", uid=images)
    assert refused(answer)


def test_a_guest_still_sees_what_pysyft_shows_everyone(served):
    """Dataset metadata and mocks stay public (a documented PySyft limitation, not data)."""
    answer = payload(signed_call(new_key(), served.url, "dataset.get_all"))
    assert not refused(answer) and [d.name for d in answer] == ["mnist"]


def test_the_scientist_cannot_sign_chosen_bytes_or_forge_root_calls(served):
    import requests
    import syft as sy
    from attacks import post_api_call, server_uid
    from syft.client.api import SignedSyftAPICall, SyftAPICall
    from syft.server.credentials import SyftVerifyKey

    scientist, images = private_asset_id(served.url)
    key = scientist.credentials
    assert refused(signed_call(key, served.url, "network.ping", b"x" * 32))
    assert refused(signed_call(key, served.url, "network.exchange_credentials_with"))
    # What ping's signature was for: a call that claims the server's (root's) key. Signed
    # by anything else it fails verification, and ping no longer signs for non-admins.
    root = SyftVerifyKey.from_string(
        requests.get(served.url + "/api/v2/metadata", timeout=30).json()["verify_key"])
    message = sy.serialize(SyftAPICall(server_uid=server_uid(served.url), path="action.get",
                                       args=[], kwargs={"uid": images}, blocking=True),
                           to_bytes=True)
    forged = SignedSyftAPICall(credentials=root, serialized_message=message,
                               signature=key.signing_key.sign(message).signature)
    answer = post_api_call(served.url, sy.serialize(forged, to_bytes=True))
    assert answer in (400, 500) or "signature" in str(payload(answer)).lower()
    # the scientist's own key reaches syft's permission check, which hides the images
    direct = str(payload(signed_call(key, served.url, "action.get", uid=images)))
    assert direct.startswith("SyftError") and "not found" in direct, direct
