"""fedlearn/backends/pysyft/round_by_hand.py: the lines the tutorial shows are cut from the very
source the owners approve, and one call's inputs are what the approved function accepts."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn as nn

from fedlearn.backends.pysyft.round_by_hand import core_excerpts, core_lines, fit_inputs, is_fresh
from fedlearn.backends.pysyft.training_code import (
    load_training_function,
    nonce_proof,
    source_digest,
    training_function_source,
)
from fedlearn.config import MODELS, TrainPlan
from fedlearn.models import build_model


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def shown_chunks(shown: str) -> list[str]:
    """What core_lines shows, without its comment lines: one chunk per excerpt."""
    chunks: list[list[str]] = []
    for line in shown.splitlines():
        if line.startswith("# lines "):
            chunks.append([])
        else:
            chunks[-1].append(line)
    return ["\n".join(c) for c in chunks]


@pytest.mark.parametrize("model", [*MODELS, TinyMLP], ids=lambda m: getattr(m, "__name__", m))
def test_every_line_shown_is_in_the_approved_source_where_it_says(model):
    source = training_function_source(model)
    excerpts = core_excerpts(source)
    lines = source.splitlines()
    for e in excerpts:
        assert e.text == "\n".join(lines[e.first - 1:e.last]) and e.text in source
    call_site, loop, returned = (e.first for e in excerpts)  # in reading order
    assert loop < call_site < returned  # the inlined loop comes first in the source
    shown = core_lines(source)
    assert all(chunk in source for chunk in shown_chunks(shown))
    # the lines that train and compute the change, and no more than a screenful
    for needed in ("for b in range(start, stop):", "loss.backward()", "optimizer.step()",
                   "model.load_state_dict(weights)", "train_epochs(model, make_optimizer",
                   "delta = {k: v.detach() - weights[k]", 'return {"proof": proof, "delta": delta'):
        assert needed in shown, needed
    assert 15 <= sum(e.last - e.first + 1 for e in excerpts) <= 30


def test_the_lines_come_from_the_string_given_not_from_a_fresh_copy():
    source = training_function_source("tutorial_cnn")
    tampered = source.replace("v.detach() - weights[k]", "v.detach()")
    assert "delta = {k: v.detach() for k" in core_lines(tampered)
    assert all(chunk in tampered for chunk in shown_chunks(core_lines(tampered)))
    assert not all(chunk in source for chunk in shown_chunks(core_lines(tampered)))


def test_the_request_carries_the_lines_shown():
    """The source PySyft reads from the imported function (what the request sends and the
    review hashes) contains the lines shown, and its digest is the generated source's."""
    function = load_training_function("tutorial_cnn")
    sent = inspect.getsource(function)
    assert source_digest(sent) == source_digest(training_function_source("tutorial_cnn"))
    assert all(chunk in sent for chunk in shown_chunks(core_lines(sent)))


@pytest.mark.parametrize("broken", ["not python (", "x = 1\n", "def f():\n    return 1\n"])
def test_a_source_that_is_not_the_training_function_is_refused(broken):
    with pytest.raises(ValueError, match="not fedlearn's generated training function"):
        core_excerpts(broken)


def test_without_the_change_line_there_is_nothing_to_show():
    source = training_function_source("mlp2nn")
    line = "    delta = {k: v.detach() - weights[k] for k, v in model.state_dict().items()}\n"
    assert line in source
    with pytest.raises(ValueError):
        core_excerpts(source.replace(line, ""))


def test_fit_inputs_are_what_the_approved_function_accepts_and_its_result_is_fresh():
    plan = TrainPlan(epochs=1, batch_size=8, lr=0.05, momentum=0.9)
    inputs = fit_inputs(plan, seed=7)
    again = fit_inputs(plan, seed=7)
    assert inputs["nonce"] != again["nonce"] and len(inputs["nonce"]) == 32
    assert int(inputs["nonce"], 16) >= 0 and inputs["nonce"] == inputs["nonce"].lower()
    assert inputs["mode"] == "fit" and inputs["seed"] == 7 and inputs["plan"]["lr"] == 0.05
    namespace: dict = {}
    exec(training_function_source("mlp2nn"), namespace)  # as PySyft does on the Datasite
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 16)
    weights = dict(build_model("mlp2nn", seed=0).state_dict())
    result = namespace["fedlearn_round"](images, labels, weights, **inputs)
    assert "refused" not in result and result["num_examples"] == 16
    assert is_fresh(result, inputs)
    assert not is_fresh(result, again)  # another call's result
    assert not is_fresh({"proof": nonce_proof(again["nonce"])}, inputs)
    assert not is_fresh(None, inputs)  # type: ignore[arg-type]
