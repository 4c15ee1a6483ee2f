"""The package's layers, checked from every module's imports (function-level ones too).

    config, errors, files, portable, secagg_portable, topk_portable
      -> data, models, training, updates, aggregation
      -> workers -> execution -> server
      -> experiment, cli, backends.pysyft, plots (and the package's own ``__init__``)

A package may import its own layer or any lower one, never a higher one, and the packages'
import graph has no cycle. The checker is a pure function on a graph, so it is also shown to
fail on planted violations (a test that could not fail would check nothing).
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

LAYERS = [
    {"fedlearn.config", "fedlearn.errors", "fedlearn.files", "fedlearn.portable",
     "fedlearn.secagg_portable", "fedlearn.topk_portable"},
    {"fedlearn.data", "fedlearn.models", "fedlearn.training", "fedlearn.updates",
     "fedlearn.aggregation"},
    {"fedlearn.workers"},
    {"fedlearn.execution"},
    {"fedlearn.server"},
    {"fedlearn.experiment", "fedlearn.cli", "fedlearn.backends", "fedlearn.backends.pysyft",
     "fedlearn.plots", "fedlearn", "fedlearn.__main__"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """The layered unit a module belongs to: ``fedlearn.server.rounds`` -> ``fedlearn.server``
    (a backend is its own unit: ``fedlearn.backends.pysyft``)."""
    parts = module.split(".")
    depth = 3 if len(parts) > 2 and parts[1] == "backends" else 2
    return ".".join(parts[:depth])


def module_imports(path: Path, module: str, package: bool, exists) -> set[str]:
    """Every fedlearn module ``path`` imports, anywhere in it; ``from pkg import name`` counts
    as ``pkg.name`` where that is a module (``exists``), else as ``pkg``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                here = module.split(".") if package else module.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if exists(f"{base}.{alias.name}") else base)
    return {name for name in found if name == "fedlearn" or name.startswith("fedlearn.")}


def package_graph(root: Path) -> dict[str, set[str]]:
    """unit -> the other units its modules import."""
    modules = {}
    for path in sorted((root / "fedlearn").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    graph: dict[str, set[str]] = {}
    for module, (path, package) in modules.items():
        edges = graph.setdefault(unit_of(module), set())
        for imported in module_imports(path, module, package, modules.__contains__):
            if unit_of(imported) != unit_of(module):
                edges.add(unit_of(imported))
    return graph


def violations(graph: dict[str, set[str]], level: dict[str, int]) -> list[str]:
    """Upward imports, units in no layer, and cycles between units."""
    found = [f"{unit} is in no layer" for unit in sorted(graph) if unit not in level]
    found += [f"{a} (layer {level[a]}) imports {b} (layer {level[b]})"
              for a in sorted(graph) for b in sorted(graph[a])
              if a in level and b in level and level[b] > level[a]]
    state: dict[str, str] = {}

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = "open"
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == "open":
                found.append("cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
    return found


def test_no_upward_import_and_no_cycle():
    assert violations(package_graph(REPO), LEVEL) == []


def test_the_checker_catches_what_it_should():
    level = {"low": 0, "mid": 1, "high": 2}
    assert violations({"low": set(), "mid": {"low"}, "high": {"mid", "low"}}, level) == []
    assert violations({"low": {"high"}, "high": set()}, level) == [
        "low (layer 0) imports high (layer 2)"]
    assert violations({"mid": {"low"}, "low": {"mid"}}, {"low": 1, "mid": 1}) == [
        "cycle: low -> mid -> low"]
    assert violations({"stray": set()}, level) == ["stray is in no layer"]


def test_a_planted_violation_in_a_copy_is_caught(tmp_path):
    """A function-level import of the server from a worker module, in a copy of the package."""
    import shutil

    shutil.copytree(REPO / "fedlearn", tmp_path / "fedlearn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / "fedlearn" / "workers" / "planted.py"
    planted.write_text("def f():\n    from fedlearn.server import rounds\n    return rounds\n")
    relative = tmp_path / "fedlearn" / "execution" / "planted.py"
    relative.write_text("from ..experiment import run_experiment\n")
    found = violations(package_graph(tmp_path), LEVEL)
    assert "fedlearn.workers (layer 2) imports fedlearn.server (layer 4)" in found
    assert "fedlearn.execution (layer 3) imports fedlearn.experiment (layer 5)" in found
    assert any(v.startswith("cycle: ") and "fedlearn.workers" in v for v in found)
