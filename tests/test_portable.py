"""fedlearn/portable.py: the code every request ships. Self-contained, pinned, and the only
fedlearn source a code request inlines besides the model class."""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from fedlearn import portable, topk_portable, training
from fedlearn.backends.pysyft import model_source, training_code
from fedlearn.backends.pysyft.dp_training_code import dp_training_function_source
from fedlearn.backends.pysyft.training_code import source_digest, training_function_source
from fedlearn.models import build_model

# Update deliberately, in the same commit as the change to fedlearn/portable.py: every owner
# who approved the old code will be asked to approve the new one.
# changed with quantize_tensor and quantize_change (8-bit updates quantized on the Datasite)
PORTABLE_SHA256 = "a7f31b731ae717a20259f0b76b1b4cf61ba8beddcbb29655416fd09a0e0613e9"
PLAN = SimpleNamespace(epochs=1, batch_size=16, lr=0.05, momentum=0.9, weight_decay=0.0,
                       prox_mu=0.0, precision="fp32", channels_last=False)


@pytest.mark.parametrize("module", [portable, topk_portable], ids=["portable", "topk_portable"])
def test_portable_imports_only_torch_math_and_the_standard_library(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module != "__future__", ast.dump(node)
            imported.add(node.module.partition(".")[0])
    assert imported and "fedlearn" not in imported
    assert all(name == "torch" or name in sys.stdlib_module_names for name in imported), imported
    # no module-level state: a docstring, imports and functions only
    kinds = {type(node).__name__ for node in tree.body[1:]}
    assert kinds <= {"Import", "ImportFrom", "FunctionDef"}, kinds


def test_portable_runs_standalone_and_is_what_training_runs():
    namespace: dict = {}
    exec(compile(Path(portable.__file__).read_text(), "portable-copy", "exec"), namespace)
    assert training.train_epochs is portable.train_epochs  # in-process runs the same code
    images = torch.randint(0, 256, (48, 28, 28), dtype=torch.uint8)
    labels = torch.arange(48) % 10
    x = namespace["normalise"](images, 255.0, (0.1307,), (0.3081,))
    assert torch.equal(x, portable.normalise(images, 255.0, (0.1307,), (0.3081,)))
    results = []
    for module in (namespace, vars(portable)):
        model = build_model("bn_cnn", seed=0)
        opt = module["make_optimizer"](model, PLAN)
        metrics = module["train_epochs"](model, opt, x, labels, PLAN, seed=3)
        results.append((model.state_dict(), metrics, module["evaluate"](model, x, labels)))
    (w1, m1, e1), (w2, m2, e2) = results
    assert m1 == m2 and e1 == e2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_the_shipped_source_is_pinned():
    shipped = model_source.portable_source()
    assert hashlib.sha256(shipped.encode()).hexdigest() == PORTABLE_SHA256, (
        "fedlearn/portable.py changed: every code request changes with it, and owners must "
        "approve again. If the change is deliberate, update PORTABLE_SHA256 in this test.")
    assert shipped in training_function_source("mlp2nn").replace("\n    ", "\n")


def _edited_portable(tmp_path, edit) -> types.ModuleType:
    path = tmp_path / "portable_edited.py"
    path.write_text(edit(Path(portable.__file__).read_text()))
    spec = importlib.util.spec_from_file_location("portable_edited", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_request_changes_with_portable_and_with_nothing_else(tmp_path, monkeypatch):
    before = {name: source_digest(training_function_source(name)) for name in ("bn_cnn",
                                                                             "mlp2nn")}
    dp_before = source_digest(dp_training_function_source("mlp2nn", 1.0, 1.0))
    # unrelated modules change: training.py's functions, MNIST's private helper
    from fedlearn.data import mnist

    monkeypatch.setattr(training, "train_epochs", lambda *a, **k: {"loss": 0.0})
    monkeypatch.setattr(training, "make_optimizer", lambda *a: None)
    monkeypatch.setattr(mnist, "_normalise", lambda images: images)
    monkeypatch.setattr(mnist, "MNIST_MEAN", 0.5)
    assert {n: source_digest(training_function_source(n)) for n in before} == before
    assert source_digest(dp_training_function_source("mlp2nn", 1.0, 1.0)) == dp_before
    # portable.py changes, even in one comment: the request changes
    edited = _edited_portable(tmp_path, lambda text: text.replace(
        "# normalised once, not per sample", "# normalised once"))
    monkeypatch.setattr(model_source, "portable", edited)
    after = {n: source_digest(training_function_source(n)) for n in before}
    assert all(after[n] != before[n] for n in before)
    assert source_digest(dp_training_function_source("mlp2nn", 1.0, 1.0)) != dp_before
    # and the owner's review no longer recognises the old request as fedlearn's
    monkeypatch.undo()
    old = training_function_source("mlp2nn")
    monkeypatch.setattr(model_source, "portable", edited)
    assert training_code.ready_made_in(old) is None


def test_a_model_class_may_not_take_a_name_portable_defines():
    class evaluate(nn.Module):  # noqa: N801 (the point is the name)
        def forward(self, x):
            return x

    with pytest.raises(Exception, match="reserved name evaluate"):
        training_function_source(evaluate)
