"""The house rules, checked: ruff (style, imports, unused names) and mypy (types) on the package.

Their settings live in pyproject.toml; both tools are pinned in requirements.txt.
"""
import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def tool(name: str) -> str:
    found = shutil.which(name, path=str(REPO / ".venv" / "bin")) or shutil.which(name)
    if found is None:  # installed with the interpreter running the tests
        found = str(type(REPO)(sys.executable).parent / name)
    return found


def test_ruff_finds_nothing():
    run = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow  # a subprocess of a few seconds: the full tier
def test_mypy_finds_nothing():
    # the repository's own cache (git-ignored): warm, a check takes seconds, not a minute
    run = subprocess.run([tool("mypy"), "--cache-dir", str(REPO / ".mypy_cache")], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
