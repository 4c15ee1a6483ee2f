"""``--resume`` without retyping the flags, a refused change to the run's trajectory,
``--config`` reruns, and Ctrl-C on the real command (exit 130, then resume)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fedlearn.cli import main
from fedlearn.cli.resume import keep_backend
from fedlearn.cli.train import build_parser
from fedlearn.config import ConfigError

SMALL = ["--train-size", "1000", "--test-size", "200", "--model", "mlp2nn", "--no-progress"]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def weights(out):
    return torch.load(out / "model.pt", weights_only=True)


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_takes_the_runs_own_configuration(mnist_dir, tmp_path, capsys):
    """Started with many flags, resumed with none but --rounds: the weights of a run that
    never stopped. A flag that changes the trajectory is refused by its name; the ones that
    do not (rounds, device, data directory) are taken."""
    flags = [*SMALL, "--lr", "0.05", "--workers", "a", "b", "c", "--seed", "3",
             "--data-dir", mnist_dir]
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert cli(capsys, "train", *flags, "--rounds", "2", "--out", reference)[0] == 0
    assert cli(capsys, "train", *flags, "--rounds", "1", "--out", out)[0] == 0
    for refused, flag in ((["--lr", "0.1"], "--lr"), (["--workers", "a", "b"], "--workers"),
                          (["--noise-multiplier", "1"], "--noise-multiplier"),
                          (["--availability"], "--availability")):
        code, lines = cli(capsys, "train", "--out", out, "--resume", "--rounds", "2", *refused)
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith(f"fedlearn: error: argument {flag}: the run in {out} was "
                                   "started with"), lines
        assert "another configuration" in lines[0] and "--config" in lines[0]
    code, lines = cli(capsys, "train", "--out", out, "--resume", "--rounds", "2", "--device",
                      "cpu", "--lr", "0.05", "--data-dir", mnist_dir)  # same lr: not a change
    assert code == 0, lines
    assert same(weights(out), weights(reference))
    saved = json.loads((out / "config.json").read_text())
    assert saved["plan"]["lr"] == 0.05 and saved["partition"]["workers"] == ["a", "b", "c"]
    # where the clients ran is kept beside the checkpoint and not moved on resume
    assert json.loads((out / "backend.json").read_text()) == {"backend": "inprocess",
                                                               "datasite": []}
    code, lines = cli(capsys, "train", "--out", out, "--resume", "--backend", "pysyft")
    assert code == 2 and lines == [f"fedlearn: error: argument --backend: the run in {out} "
                                   "trained with --backend inprocess; resuming it with "
                                   "--backend pysyft would train on other data. Leave the flag "
                                   "out to keep it"], lines
    assert saved["federation"]["rounds"] == 2 and saved["seed"] == 3


def test_resume_keeps_the_backend_and_datasites_the_run_trained_with(tmp_path):
    """A run on Datasites never continues on this machine's copy of the data: --resume takes
    --backend and --datasite from backend.json; a flag that would move the run is refused."""
    def resumed(stored, *flags):
        (tmp_path / "backend.json").write_text(json.dumps(stored))
        args = build_parser().parse_args(["train", "--out", str(tmp_path), "--resume", *flags])
        keep_backend(args)
        return args.backend, args.datasite

    remote = {"backend": "pysyft", "datasite": ["bob=http://10.0.0.2:8080"]}
    assert resumed(remote) == ("pysyft", ["bob=http://10.0.0.2:8080"])
    assert resumed(remote, "--datasite", "bob=http://10.0.0.9:8080") == (  # the owner moved
        "pysyft", ["bob=http://10.0.0.9:8080"])
    assert resumed({"backend": "pysyft", "datasite": []}) == ("pysyft", [])
    for stored, flags, path in ((remote, ["--backend", "inprocess"], "backend"),
                                ({"backend": "pysyft", "datasite": []},
                                 ["--datasite", "bob=http://10.0.0.2:8080"], "datasite"),
                                ({"backend": "ray"}, [], "out")):
        with pytest.raises(ConfigError) as err:
            resumed(stored, *flags)
        assert err.value.path == path, err.value
    # --config DIR (a rerun) takes them too, but may move to another backend
    (tmp_path / "backend.json").write_text(json.dumps(remote))
    for flags, kept in (([], ("pysyft", ["bob=http://10.0.0.2:8080"])),
                        (["--backend", "inprocess"], ("inprocess", []))):
        args = build_parser().parse_args(["train", "--config", str(tmp_path / "config.json"),
                                          "--out", str(tmp_path / "new"), *flags])
        keep_backend(args, tmp_path)
        assert (args.backend, args.datasite) == kept
    # and the command line does so: --config of a Datasite run reruns it on Datasites
    from fedlearn.cli.train import config_from_args
    from fedlearn.config import ExperimentConfig

    (tmp_path / "config.json").write_text(json.dumps(ExperimentConfig().to_dict()))
    args = build_parser().parse_args(["train", "--config", str(tmp_path), "--out",
                                      str(tmp_path / "new")])
    config_from_args(args)
    assert (args.backend, args.datasite) == ("pysyft", ["bob=http://10.0.0.2:8080"])
    (tmp_path / "backend.json").unlink()  # a run started from Python: the flags as given
    args = build_parser().parse_args(["train", "--out", str(tmp_path), "--resume"])
    keep_backend(args)
    assert args.backend is None and args.datasite == []


@pytest.mark.slow
def test_config_reruns_a_run_and_flags_override_it(mnist_dir, tmp_path, capsys):
    first, again, other = tmp_path / "first", tmp_path / "again", tmp_path / "other"
    assert cli(capsys, "train", *SMALL, "--rounds", "1", "--lr", "0.05", "--data-dir",
               mnist_dir, "--out", first)[0] == 0
    assert cli(capsys, "train", "--config", first / "config.json", "--out", again)[0] == 0
    assert same(weights(again), weights(first))
    assert cli(capsys, "train", "--config", first, "--seed", "1", "--out", other)[0] == 0
    assert json.loads((other / "config.json").read_text())["seed"] == 1
    assert not same(weights(other), weights(first))
    for argv, flag in ((["--config", tmp_path / "none.json"], "--config"),
                       (["--config", first, "--resume", "--out", first], "--config")):
        code, lines = cli(capsys, "train", *argv)
        assert code == 2 and len(lines) == 1 and flag in lines[0], lines


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_run_resumes_to_the_same_weights(mnist_dir, tmp_path,
                                                                   capsys):
    """The real command, interrupted by SIGINT once its first round is saved."""
    args = [*SMALL, "--rounds", "6", "--data-dir", mnist_dir]
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert cli(capsys, "train", *args, "--out", reference)[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "fedlearn", "train", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").exists() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == (f"fedlearn: interrupted; the last finished round is saved: rerun "
                           f"with fedlearn train --out {out} --resume to continue"), err
    assert not (out / "model.pt").exists()  # it really stopped before the end
    assert cli(capsys, "train", "--out", out, "--resume")[0] == 0  # no flag retyped
    assert same(weights(out), weights(reference))
