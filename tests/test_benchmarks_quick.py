"""The McMahan Table 2 benchmark's --quick mode: CI-sized, on real MNIST."""
import json
import os
import subprocess
import sys

import pytest
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


def test_mcmahan_stopped_setting_resumes_to_the_same_run(mnist_dir, tmp_path, monkeypatch):
    """A long Table 2 run stopped mid-way continues from its checkpoint, same numbers."""
    monkeypatch.setenv("FEDLEARN_DATA", mnist_dir)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import mcmahan_table2 as bench

    argv = ["--quick", "--device", "cpu", "--checkpoint-dir", str(tmp_path / "ck")]
    original = bench.FederatedServer.step

    def stop_after_round_2(server):
        if server.round == 2:
            raise KeyboardInterrupt
        return original(server)

    with monkeypatch.context() as m:
        m.setattr(bench.FederatedServer, "step", stop_after_round_2)
        with pytest.raises(KeyboardInterrupt):
            bench.main(argv)
    assert (tmp_path / "ck" / "fedavg-iid.pt").exists()
    assert not (tmp_path / "ck" / "fedsgd-iid.pt").exists()
    resumed = bench.main(argv)["settings"]
    uninterrupted = bench.main(["--quick", "--device", "cpu"])["settings"]
    for name in ("fedavg-iid", "fedsgd-iid"):
        assert resumed[name]["rounds_run"] == 3
        assert resumed[name]["accuracy"] == uninterrupted[name]["accuracy"]
