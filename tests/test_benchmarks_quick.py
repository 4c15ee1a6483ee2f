"""The McMahan Table 2 benchmark's --quick mode: CI-sized, on real MNIST."""
import json
import os
import subprocess
import sys

from conftest import REPO


def test_mcmahan_quick_fedavg_beats_fedsgd_per_round(mnist_dir, tmp_path):
    out = tmp_path / "quick.json"
    r = subprocess.run([sys.executable, "mcmahan_table2.py", "--quick", "--device", "cpu",
                        "--json", str(out)], cwd=REPO / "benchmarks", capture_output=True,
                       text=True, env={**os.environ, "FEDLEARN_DATA": mnist_dir})
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    fedavg, fedsgd = result["settings"]["fedavg-iid"], result["settings"]["fedsgd-iid"]
    assert result["clients"] == 100 and result["images_per_client"] == 60
    assert fedavg["rounds_run"] == fedsgd["rounds_run"] == 3
    assert (fedavg["epochs"], fedavg["batch_size"]) == (5, 10)
    assert (fedsgd["epochs"], fedsgd["batch_size"]) == (1, 60)  # B = infinity: the whole shard
    # 5 epochs of B=10 steps per round vs one full-batch step: far ahead after 3 rounds
    assert fedavg["accuracy"][-1] > fedsgd["accuracy"][-1] + 0.2
