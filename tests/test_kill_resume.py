"""kill -9 a real training run at arbitrary moments — once in the middle of writing its
checkpoint — and --resume each time: the run must end bit-identical to one never stopped."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

# a real training subprocess killed and resumed: the slow tier
pytestmark = pytest.mark.slow

# McMahan's CNN: a checkpoint of several MB, so writing it takes long enough to be hit (its
# size is the model's; 600 images keep each round long enough to kill between checkpoints)
ARGS = ["--train-size", "600", "--test-size", "300", "--model", "mcmahan_cnn", "--rounds", "4",
        "--batch-size", "50", "--no-progress"]


def start(out, mnist_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "fedlearn", "train", *ARGS, "--data-dir",
                             mnist_dir, "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rounds_saved(out) -> int:
    """How many rounds the current checkpoint holds (0 before the first one)."""
    path = out / "checkpoint.pt"
    if not path.exists():
        return 0
    return len(json.loads(torch.load(path, weights_only=True)["history"]))


def writing(out) -> list:
    return [p for p in out.iterdir() if p.name.startswith(".checkpoint.pt.")] \
        if out.exists() else []


def kill(proc) -> bool:
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return True


def test_kill_9_then_resume_is_bit_identical(mnist_dir, tmp_path):
    reference = tmp_path / "reference"
    assert start(reference, mnist_dir).wait(timeout=600) == 0
    expected = torch.load(reference / "model.pt", weights_only=True)

    out = tmp_path / "killed"
    proc, landed = start(out, mnist_dir), []
    # 1. right after a checkpoint appears
    while rounds_saved(out) < 1 and proc.poll() is None:
        time.sleep(0.005)
    if kill(proc):
        landed.append(("after a checkpoint", rounds_saved(out)))
    # 2. in the middle of writing the next checkpoint (its temporary file is there)
    proc = start(out, mnist_dir, "--resume")
    while not writing(out) and proc.poll() is None:
        time.sleep(0.0005)
    if kill(proc):
        left = writing(out)
        landed.append(("during the write", len(left)))
    # 3. once a newer checkpoint than the last kill's exists
    before = rounds_saved(out)
    proc = start(out, mnist_dir, "--resume")
    while rounds_saved(out) <= before and proc.poll() is None:
        time.sleep(0.005)
    if kill(proc):
        landed.append(("after a newer checkpoint", rounds_saved(out)))
    proc = start(out, mnist_dir, "--resume")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    assert [what for what, _ in landed] == ["after a checkpoint", "during the write",
                                            "after a newer checkpoint"], landed
    assert landed[1][1] >= 1  # a half-written temporary file was really left behind...
    assert landed[2][1] > landed[0][1]
    got = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not writing(out)  # ...and the resumed run cleaned it up
