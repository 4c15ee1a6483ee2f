"""The public API is typed: a user's script type-checks against ``import fedlearn`` (PEP 561
``py.typed``, typed lazy exports, ``Literal`` choices), and a mistake in one is caught by mypy,
not in round 1."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

import fedlearn

GOOD = """
import torch
import fedlearn
from fedlearn.config import Aggregator

x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
rule: Aggregator = "median"
config = fedlearn.ExperimentConfig(
    federation=fedlearn.FederationConfig(model="mlp2nn", rounds=1, device="cpu"),
    robustness=fedlearn.RobustnessConfig(aggregator=rule))
workers, parts = fedlearn.make_virtual_workers(x, y, config)
result = fedlearn.run_federation(workers, config, x, y)
accuracy: float = result.history[-1]["test_accuracy"]
weights: dict[str, torch.Tensor] = result.weights
"""

BAD = """
import torch
import fedlearn

x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
config = fedlearn.ExperimentConfig(federation=fedlearn.FederationConfig(algorithm="fedsgd"))
workers, parts = fedlearn.make_virtual_workers(x, y, config.partition)
result = fedlearn.run_federation(workers, config, x, y)
result.no_such_field
fedlearn.FederationConfig(model="bn_cnnn")
fedlearn.run_experiment(config, "runs/x", data=[1, 2, 3])
fedlearn.run_experiment(config, "runs/x", workers=42)
"""


def mypy(tmp_path, source: str) -> subprocess.CompletedProcess:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(source))
    found = shutil.which("mypy", path=str(REPO / ".venv" / "bin")) or shutil.which("mypy")
    command = [found] if found else [sys.executable, "-m", "mypy"]
    # run from the user's own folder, which sees fedlearn only as the installed package (an
    # editable install through an import hook was invisible to mypy there); the repository's
    # warm cache keeps this to seconds
    return subprocess.run([*command, "--cache-dir", str(REPO / ".mypy_cache"), script.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a subprocess of a few seconds: the full tier
def test_a_users_script_type_checks(tmp_path):
    run = mypy(tmp_path, GOOD)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow  # a subprocess of a few seconds: the full tier
def test_mistakes_in_a_users_script_are_caught(tmp_path):
    run = mypy(tmp_path, BAD)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert 'Argument "algorithm"' in out and "Literal" in out  # a Literal choice
    assert "make_virtual_workers" in out and "PartitionConfig" in out  # the whole config
    assert "no_such_field" in out  # the result is a typed object, not Any
    assert 'Argument "model" to "FederationConfig"' in out  # a misspelt ready-made model
    assert 'Argument "data" to "run_experiment"' in out
    assert 'Argument "workers" to "run_experiment"' in out


def test_py_typed_and_every_lazy_export_typed():
    assert (REPO / "fedlearn" / "py.typed").is_file()
    tree = ast.parse((REPO / "fedlearn" / "__init__.py").read_text())
    typed = {alias.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names if alias.asname}
    assert typed == set(fedlearn.__all__)  # a new export without its type would be Any
    for name in fedlearn.__all__:
        assert getattr(fedlearn, name) is not None
