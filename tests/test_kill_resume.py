"""kill -9 a real training run at arbitrary moments; --resume must end bit-identical."""
import os
import signal
import subprocess
import sys
import time

import torch

ARGS = ["--train-size", "1200", "--test-size", "300", "--model", "mlp2nn", "--rounds", "4",
        "--batch-size", "32", "--no-progress"]


def start(out, mnist_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "fedlearn", "train", *ARGS, "--data-dir",
                             mnist_dir, "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_is_bit_identical(mnist_dir, tmp_path):
    reference = tmp_path / "reference"
    assert start(reference, mnist_dir).wait(timeout=300) == 0
    expected = torch.load(reference / "model.pt", weights_only=True)

    out = tmp_path / "killed"
    proc = start(out, mnist_dir)
    kills = 0
    # kill right after the first checkpoint appears, then again a moment into each resume
    for delay in (0.0, 0.3, 0.05):
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        proc = start(out, mnist_dir, "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills >= 1
    got = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
