"""The top-k function a Datasite approves, and the server part that keeps its residual, driven
by hand: no Datasite, no syft (the keeper is called with a stand-in for syft's executor)."""
from __future__ import annotations

import dataclasses
import types
import uuid

import numpy as np
import pytest
import torch

from fedlearn.backends.pysyft import call_guard, residual_keeper
from fedlearn.backends.pysyft.sparse_training_code import (
    FUNCTION_NAME,
    MOCK_SLOT,
    PRIVATE_SLOT,
    sparse_training_function_source,
    sparse_variant_in,
)
from fedlearn.backends.pysyft.state import DatasiteState
from fedlearn.config import TrainPlan
from fedlearn.models import build_model
from fedlearn.topk_portable import topk_densify

RUN = "c" * 32


@pytest.fixture(scope="module")
def function():
    namespace: dict = {}
    exec(sparse_training_function_source("bn_cnn", 0.05, RUN), namespace)
    return namespace[FUNCTION_NAME]


def call(function, residual, mode="fit", plan=None):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40)
    weights = dict(build_model("bn_cnn", seed=0).state_dict())
    asked = dataclasses.asdict(TrainPlan(batch_size=8)) if plan is None else plan
    return weights, function(images=images, labels=labels, residual=residual, weights=weights,
                             plan={} if mode == "evaluate" else asked, seed=1,
                             nonce=uuid.uuid4().hex, mode=mode)


def test_the_review_recognises_the_top_k_function_and_nothing_else():
    source = sparse_training_function_source("bn_cnn", 0.05, RUN)
    found = sparse_variant_in(source)
    assert found is not None and found.ready_made and found.model == "bn_cnn"
    assert found.fraction == 0.05  # read from the source's TOPK_FRACTION line
    leaky = source.replace('"sparse": topk_with_feedback(delta, residual, TOPK_FRACTION),',
                           '"sparse": topk_with_feedback(delta, residual, TOPK_FRACTION), '
                           '"kept": residual,')
    assert leaky != source and sparse_variant_in(leaky) is None
    assert sparse_variant_in(source.replace("TOPK_FRACTION = 0.05", "TOPK_FRACTION = 2.0")) is None


def test_the_function_returns_only_the_sparse_change_and_keeps_the_rest_in_its_residual(function):
    residual: dict = {}
    weights, out = call(function, residual)
    assert sorted(out) == ["loss", "num_examples", "proof", "sparse"]  # never the residual
    assert residual and sorted(residual) == sorted(k for k, v in weights.items()
                                                   if v.is_floating_point())
    for k, sent in out["sparse"].items():  # what left + what stayed = the whole change
        if "indices" in sent:
            assert sent["indices"].numel() == max(1, -(-weights[k].numel() * 5 // 100))
            change = topk_densify(sent, weights[k].shape) + residual[k]
            assert change.abs().sum() > 0


def test_without_fedlearns_server_the_function_refuses_to_run(function):
    for slot in (np.full(1, PRIVATE_SLOT, np.uint8), {"conv1.weight": torch.zeros(3)}):
        _, out = call(function, slot)
        assert "keeps no top-k residual" in out["refused"]
    _, out = call(function, {}, plan={**dataclasses.asdict(TrainPlan()), "quantize_bits": 8,
                                      "wire_seed": 1})
    assert "does not also quantize" in out["refused"]


class Server:
    """What the keeper reads of syft's server: an id and a temp directory."""

    def __init__(self, path):
        self.id, self.path = uuid.uuid4().hex, path

    def get_temp_dir(self, name):
        return self.path / name


def test_the_server_hands_the_residual_in_and_keeps_it_durably_never_for_the_mock_run(tmp_path):
    server = Server(tmp_path)
    code = types.SimpleNamespace(service_func_name=FUNCTION_NAME, id="code-1")
    context = types.SimpleNamespace(server=server, credentials="scientist-key")
    seen = []

    def syft_executes(code_item, kwargs, context, answer):
        seen.append({k: v.clone() for k, v in kwargs["residual"].items()})  # as handed in
        kwargs["residual"]["w"] = torch.full((2,), float(len(seen)))  # what the function leaves
        return types.SimpleNamespace(errored=False, result=answer)

    def run(slot, answer):
        return residual_keeper.run_keeping_residual(
            lambda c, k, x: syft_executes(c, k, x, answer), code,
            {"residual": np.full(1, slot, np.uint8)}, context)

    run(PRIVATE_SLOT, {"sparse": {}})
    stored = call_guard.state_for(server).residual("code-1", "scientist-key")
    assert torch.equal(residual_keeper.decode(stored)["w"], torch.full((2,), 1.0))
    run(MOCK_SLOT, {"sparse": {}})  # syft's run on the mocks: a fresh {}, not stored
    assert seen[0] == {} and seen[1] == {}
    run(PRIVATE_SLOT, {"refused": "a bound"})  # a refusal leaves the residual as it was
    assert torch.equal(seen[2]["w"], torch.full((2,), 1.0))  # handed in: the stored one
    reopened = DatasiteState(call_guard.state_for(server).path.parent)  # after a restart
    assert torch.equal(residual_keeper.decode(reopened.residual("code-1", "scientist-key"))["w"],
                       torch.full((2,), 1.0))
    assert reopened.residual("code-1", "another-scientist") is None
    other = types.SimpleNamespace(service_func_name="fedlearn_round", id="code-2")
    untouched = {"residual": "left alone"}
    residual_keeper.run_keeping_residual(lambda c, k, x: k, other, untouched, context)
    assert untouched == {"residual": "left alone"}
