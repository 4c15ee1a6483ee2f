"""Finding 1 of #24: a request carrying more than the code review shows, and code changed after
approval. Each crafted request is stored as an attacker would have had it stored (the service
called directly as the scientist: the API no longer accepts ``request.submit`` from them at all,
see test_every_endpoint.py), then reviewed and approved through fedlearn as the owner would."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow
DS = ("ds@lab.example", "scientist-password-1")


@pytest.fixture(scope="module")
def bob():
    from fedlearn.backends.pysyft import Datasite, SyftWorker, require_syft

    try:
        require_syft()
    except ImportError as exc:
        pytest.skip(f"syft 0.9.5 not installed: {exc}")
    rng = np.random.default_rng(0)
    site = Datasite.launch("bob")
    site.upload_mnist(rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
                      rng.integers(0, 10, 60), mock_size=4)
    site.register_scientist(*DS)
    worker = SyftWorker.connect("bob", site.handle, email=DS[0], password=DS[1])
    request_id = worker.submit("tutorial_cnn", max_calls=3)
    yield site, worker, request_id
    site.land()


def _server_and_context(site, worker):
    from syft.service.context import AuthedServiceContext
    from syft.service.user.user_roles import ServiceRole

    server = site.handle.python_server
    return server, AuthedServiceContext(server=server, credentials=worker.client.verify_key,
                                        role=ServiceRole.DATA_SCIENTIST)


def _fedlearn_code(server):
    from fedlearn.backends.pysyft.training_code import FUNCTION_NAME

    codes = server.services.user_code.stash.get_all(server.verify_key).unwrap()
    return next(c for c in codes if c.service_func_name == FUNCTION_NAME)


def _status_change(server, code, status_link=None):
    from syft.service.code.user_code import UserCodeStatus
    from syft.service.request.request import UserCodeStatusChange
    from syft.store.linked_obj import LinkedObject

    return UserCodeStatusChange(value=UserCodeStatus.APPROVED,
                                linked_obj=status_link or code.status_link,
                                linked_user_code=LinkedObject.from_obj(code, server_uid=server.id))


def _store_request(server, context, changes) -> str:
    from syft.service.request.request import SubmitRequest

    request = server.services.request.submit(context=context,
                                             request=SubmitRequest(changes=changes))
    return str(getattr(request, "value", request).id)


def _read_images_change(server, worker):
    from syft.service.action.action_object import ActionObject
    from syft.service.action.action_permissions import ActionPermission
    from syft.service.action.action_service import ActionService
    from syft.service.request.request import ActionStoreChange
    from syft.store.linked_obj import LinkedObject

    images = worker.assets["images"].action_id
    link = LinkedObject.from_uid(images, ActionObject, ActionService, server.id)
    return ActionStoreChange(linked_obj=link, apply_permission_type=ActionPermission.READ)


def _role_change(server, worker):
    from syft.service.request.request import ObjectMutation
    from syft.service.user.user_roles import ServiceRole
    from syft.store.linked_obj import LinkedObject

    user = server.services.user.stash.get_by_verify_key(
        server.verify_key, worker.client.verify_key).unwrap()
    return ObjectMutation(linked_obj=LinkedObject.from_obj(user, server_uid=server.id),
                          attr_name="role", value=ServiceRole.ADMIN, match_type=True)


@pytest.mark.parametrize("extra", ["read the images", "become admin"])
def test_a_request_with_one_more_change_is_refused_even_with_force(bob, extra):
    from fedlearn.backends.pysyft import ApprovalRefused

    site, worker, _ = bob
    server, context = _server_and_context(site, worker)
    code = _fedlearn_code(server)
    more = _read_images_change(server, worker) if extra == "read the images" else \
        _role_change(server, worker)
    crafted = _store_request(server, context, [_status_change(server, code), more])
    shown = {r["id"]: r for r in site.requests()}[crafted]
    assert any("UserCodeStatusChange" in p and "nothing else" in p for p in shown["problems"])
    for force in (False, True):
        with pytest.raises(ApprovalRefused, match="carries the changes"):
            site.approve(crafted, force=force, warn=lambda message: None)
    assert worker.assets["images"].data is None  # still no read permission
    assert worker.client.api.services.user.get_current_user().role.name == "DATA_SCIENTIST"


def test_a_status_change_linking_fedlearns_code_to_another_codes_status_is_refused(bob):
    import syft as sy
    from syft.service.policy.policy import OutputPolicyExecuteCount

    from fedlearn.backends.pysyft import ApprovalRefused

    site, worker, _ = bob
    server, context = _server_and_context(site, worker)

    def evil(images):
        return images

    evil_code = sy.syft_function(
        input_policy=sy.MixedInputPolicy(client=worker.client, images=worker.assets["images"]),
        output_policy=OutputPolicyExecuteCount(limit=1))(evil)
    worker.client.code.request_code_execution(evil_code)
    codes = server.services.user_code.stash.get_all(server.verify_key).unwrap()
    evil_stored = next(c for c in codes if c.service_func_name == "evil")
    crafted = _store_request(server, context, [
        _status_change(server, _fedlearn_code(server), status_link=evil_stored.status_link)])
    shown = {r["id"]: r for r in site.requests()}[crafted]
    assert "the status change approves another code's status, not this code's" in \
        shown["problems"]
    with pytest.raises(ApprovalRefused, match="another code's status"):
        site.approve(crafted, force=True, warn=lambda message: None)


def test_a_request_without_code_is_listed_and_can_be_denied(bob):
    site, worker, _ = bob
    server, context = _server_and_context(site, worker)
    plain = _store_request(server, context, [_read_images_change(server, worker)])
    shown = {r["id"]: r for r in site.requests()}[plain]
    assert shown["function"] == "(no code)" and "carries no code" in shown["problems"][0]
    site.deny(plain, "no")
    assert plain not in {r["id"] for r in site.requests()}


def test_code_changed_after_approval_does_not_run_and_calls_are_counted(bob):
    from fedlearn.config import TrainPlan
    from fedlearn.models import build_model

    site, worker, request_id = bob
    site.approve(request_id, max_calls=2)
    weights = build_model("tutorial_cnn", seed=0).state_dict()
    assert worker.fit(weights, TrainPlan(), seed=0).num_examples == 60
    shown = {r["id"]: r for r in site.requests(include_decided=True)}[request_id]
    assert (shown["calls"], shown["approved_calls"]) == (1, 2)

    server, _ = _server_and_context(site, worker)
    code = _fedlearn_code(server)
    original = code.parsed_code
    code.parsed_code = original + "\n# anything the reviewer did not see\n"
    server.services.user_code.stash.update(server.verify_key, code).unwrap()
    with pytest.raises(RuntimeError, match="changed after the owner approved it"):
        worker.fit(weights, TrainPlan(), seed=0)
    code.parsed_code = original
    server.services.user_code.stash.update(server.verify_key, code).unwrap()

    assert worker.fit(weights, TrainPlan(), seed=0).num_examples == 60  # call 2 of 2
    with pytest.raises(RuntimeError, match="approved 2 calls .* all have run"):
        worker.fit(weights, TrainPlan(), seed=0)


def test_a_new_run_is_a_new_request_and_the_same_run_reuses_its_own(bob):
    site, worker, request_id = bob
    assert worker.submit("tutorial_cnn", max_calls=3) == request_id
    other = worker.submit("tutorial_cnn", max_calls=3, run="1" * 32)
    assert other != request_id
    shown = {r["id"]: r for r in site.requests()}[other]
    assert shown["status"] == "pending" and shown["run"] == "1" * 32 and not shown["problems"]
