"""The McMahan Table 2 benchmark's --quick mode: CI-sized, on real MNIST."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

# the benchmark scripts at small size: the slow tier
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(mnist_dir, tmp_path_factory) -> dict:
    """The script's --quick run, as a user starts it (its JSON)."""
    out = tmp_path_factory.mktemp("quick") / "quick.json"
    r = subprocess.run([sys.executable, "mcmahan_table2.py", "--quick", "--device", "cpu",
                        "--json", str(out)], cwd=REPO / "benchmarks", capture_output=True,
                       text=True, env={**os.environ, "FEDLEARN_DATA": mnist_dir})
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_mcmahan_quick_fedavg_beats_fedsgd_per_round(quick_run):
    result = quick_run
    fedavg, fedsgd = result["settings"]["fedavg-iid"], result["settings"]["fedsgd-iid"]
    assert result["clients"] == 100 and result["images_per_client"] == 60
    assert fedavg["rounds_run"] == fedsgd["rounds_run"] == 3
    assert (fedavg["epochs"], fedavg["batch_size"]) == (5, 10)
    assert (fedsgd["epochs"], fedsgd["batch_size"]) == (1, 60)  # B = infinity: the whole shard
    # 5 epochs of B=10 steps per round vs one full-batch step: far ahead after 3 rounds
    assert fedavg["accuracy"][-1] > fedsgd["accuracy"][-1] + 0.2


def test_mcmahan_stopped_setting_resumes_to_the_same_run(mnist_dir, tmp_path, monkeypatch,
                                                         quick_run):
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
    uninterrupted = quick_run["settings"]  # the same run, never stopped
    for name in ("fedavg-iid", "fedsgd-iid"):
        assert resumed[name]["rounds_run"] == 3
        assert resumed[name]["accuracy"] == uninterrupted[name]["accuracy"]


def test_hardware_speed_benchmark_times_every_variant_in_one_run(mnist_dir, tmp_path):
    out = tmp_path / "hw.json"
    r = subprocess.run([sys.executable, "hardware_speed.py", "--models", "mcmahan_cnn",
                        "--clients", "10", "--clients-per-round", "2", "--epochs", "1",
                        "--reps", "2", "--train-size", "1000", "--test-size", "200",
                        "--json", str(out)],
                       cwd=REPO / "benchmarks", capture_output=True, text=True,
                       env={**os.environ, "FEDLEARN_DATA": mnist_dir})
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["models"]["mcmahan_cnn"]
    expected = {"fp32", "channels-last", "together, fp32"} | (
        {"bf16", "bf16 + channels-last", "together, bf16"}
        if json.loads(out.read_text())["native_bf16"] else set())
    assert set(rows) == expected
    assert all(len(row["seconds"]) == 2 and row["min_seconds"] <= row["median_seconds"]
               <= row["max_seconds"] for row in rows.values())
    assert rows["fp32"]["ratio_to_fp32"] == 1.0
