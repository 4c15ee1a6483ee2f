"""The guide's "Bob and Alice on separate machines" walkthrough, run exactly as written.

Its ``<!-- walkthrough: STEP -->`` blocks (docs/guide/datasites.md) are handed to bash as they
stand, in one fresh folder, in the order a person would type them in four terminals: Bob's and
Alice's (their certificates, passwords and Datasites, which keep serving), the data
scientist's (which waits for the owners), then the owners' review. The only thing the test
provides is what the page says the reader has: ``~/mnist``, a folder with MNIST's files (HOME
is a temporary folder holding a link to it), and ``fedlearn`` on the PATH. As root (CI), every
block runs as an ordinary user (uid 1000 in a user namespace of its own), as the page's
reader would: ``serve`` refuses root. A block that fails, or a scientist who does not finish
two rounds, fails the test.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_docs import DOCS, code_blocks
from test_pysyft import needs_syft  # skips without syft (a skip fails in CI)

pytestmark = [pytest.mark.slow, pytest.mark.pysyft, needs_syft]

PAGE = DOCS / "guide" / "datasites.md"
STEPS = ("bob", "alice", "scientist", "review")
# as root: an ordinary user in a user namespace (it still reaches the venv under /root, which
# an unprivileged account such as nobody could not)
AS_A_USER = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]


def steps() -> dict[str, str]:
    found = {b.walkthrough: b.code for b in code_blocks(PAGE) if b.walkthrough}
    assert tuple(found) == STEPS, f"{PAGE.name} has walkthrough steps {list(found)}"
    return found


class Terminal:
    """One bash running a block in the walkthrough's folder, its output kept."""

    def __init__(self, name: str, code: str, folder: Path, env: dict):
        self.name, self.log = name, folder.parent / f"{name}.log"
        prefix = AS_A_USER if os.geteuid() == 0 else []  # serve refuses to run as root
        self._out = self.log.open("w")
        self.process = subprocess.Popen([*prefix, "bash", "-euo", "pipefail", "-c", code],
                                        cwd=folder, env=env, stdout=self._out,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before "
                                     f"{text!r}:\n{self.output[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} after {timeout} s:\n"
                                     f"{self.output[-3000:]}")
            time.sleep(0.5)

    def finish(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"{self.name} still running after {timeout} s:\n"
                                 f"{self.output[-3000:]}") from None

    def stop(self, sig=signal.SIGINT) -> int | None:
        """Ctrl-C, as the reader would press it in that terminal."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._out.close()
        return self.process.returncode


@pytest.fixture
def reader_home(tmp_path, mnist_dir):
    """A HOME with ~/mnist, an empty folder to work in, fedlearn on the PATH."""
    home = tmp_path / "home"
    folder = home / "walkthrough"
    folder.mkdir(parents=True)
    (home / "mnist").symlink_to(Path(mnist_dir).resolve())
    (home / "tmp").mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(home / "tmp"),
           "LANG": "C.UTF-8", "NO_PROXY": "*", "PYTHONWARNINGS": "ignore"}
    # the suite's torch threads (tests/conftest.py: one per xdist worker), not the page's
    env.update({k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
                if k in os.environ})
    return folder, env


def test_the_separate_machines_walkthrough_runs_as_written(reader_home):
    assert shutil.which("openssl"), "the walkthrough makes its certificates with openssl"
    folder, env = reader_home
    blocks = steps()
    bob = Terminal("bob", blocks["bob"], folder, env)
    alice = Terminal("alice", blocks["alice"], folder, env)
    terminals = [bob, alice]
    try:
        bob.wait_for("bob: serving 3000 private MNIST images at https://127.0.0.1:8081", 240)
        alice.wait_for("alice: serving 3000 private MNIST images at https://127.0.0.1:8082",
                       240)
        scientist = Terminal("scientist", blocks["scientist"], folder, env)
        terminals.append(scientist)
        scientist.wait_for("waiting for alice to approve code request", 240)
        review = Terminal("review", blocks["review"], folder, env)
        terminals.append(review)
        assert review.finish(120) == 0, review.output
        assert review.output.count("def fedlearn_round") == 2  # each owner read the source
        assert "bob: approved" in review.output and "alice: approved" in review.output
        assert scientist.finish(600) == 0, scientist.output[-3000:]
        history = json.loads((folder / "runs" / "network" / "history.json").read_text())
        assert [r["round"] for r in history] == [1, 2]
        assert history[-1]["test_accuracy"] > 0.5
        assert sorted(history[-1]["examples"]) == ["alice", "bob"]
        for secret in ("bob-admin.txt", "bob-scientist.txt", "bob.key"):
            assert (folder / secret).stat().st_mode & 0o077 == 0, f"{secret} is readable by others"
    finally:
        codes = {t.name: t.stop() for t in reversed(terminals)}
    # Ctrl-C stops each Datasite cleanly
    assert codes["bob"] in (0, 130) and codes["alice"] in (0, 130), codes
