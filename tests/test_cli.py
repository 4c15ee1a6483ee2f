"""The CLI end to end: the entry point in real subprocesses, as a user would run it, and the
many bad inputs in-process through ``main(argv)`` (same messages and exit codes, no start-up)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from fedlearn.cli import build_parser, main


def fedlearn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fedlearn", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def cli(capsys, *args):
    """``fedlearn ARGS`` in this process: (exit code, the non-blank lines of stderr)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


SMALL = ["--train-size", "2000", "--test-size", "500", "--model", "mlp2nn", "--no-progress"]


@pytest.mark.slow
def test_train_end_to_end_then_resume(mnist_dir, tmp_path):
    out = tmp_path / "run"
    r = fedlearn("train", *SMALL, "--rounds", "2", "--data-dir", mnist_dir, "--out", str(out))
    assert r.returncode == 0, r.stderr
    history = json.loads((out / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2]
    assert history[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert set(history[0]["train_loss"]) == {"bob", "alice"}
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["fc1.weight"].shape == (200, 784)
    r = fedlearn("train", *SMALL, "--rounds", "3", "--data-dir", mnist_dir, "--out", str(out),
                 "--resume")
    assert r.returncode == 0, r.stderr
    assert [h["round"] for h in json.loads((out / "history.json").read_text())] == [1, 2, 3]


BAD = [
    (["--lr", "abc"], "--lr"),  # argparse's own message, on one line
    (["--rounds", "-1"], "--rounds"),
    (["--rounds", "1.5"], "--rounds"),
    (["--rounds", "0"], "--rounds"),
    (["--lr", "0"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--batch-size", "0"], "--batch-size"),
    (["--partition", "random"], "--partition"),
    (["--model", "resnet"], "--model"),
    (["--algorithm", "fedmagic"], "--algorithm"),
    (["--partition", "dirichlet", "--alpha", "0"], "--alpha"),
    (["--workers", "bob", "bob"], "--workers"),
    (["--workers", "bob", ""], "--workers"),
    (["--workers", *[f"w{i}" for i in range(60)], "--train-size", "100"], "--workers"),
    (["--target-accuracy", "99"], "--target-accuracy"),
    (["--out", "/proc/forbidden"], "--out"),
    (["--resume"], "--resume"),
    (["--target-epsilon", "0"], "--target-epsilon"),
    (["--noise-multiplier", "-1"], "--noise-multiplier"),
    (["--noise-multiplier", "1", "--delta", "1.5"], "--delta"),
    (["--noise-multiplier", "1", "--clip-norm", "0"], "--clip-norm"),
    (["--noise-multiplier", "1", "--target-epsilon", "2"], "--noise-multiplier"),
    (["--compression", "topk", "--topk-fraction", "0"], "--topk-fraction"),
    (["--compression", "quantize", "--bits", "3"], "--bits"),
    (["--compression", "gzip"], "--compression"),
    (["--secure-aggregation", "--workers", "bob"], "--secure-aggregation"),
    (["--aggregator", "median", "--secure-aggregation"], "--secure-aggregation"),
    (["--round-timeout", "-3"], "--round-timeout"),
    (["--min-updates", "3"], "--min-updates"),
    (["--dp-sgd-noise", "-1"], "--dp-sgd-noise"),
    (["--prox-mu", "-0.1"], "--prox-mu"),
    (["--server-optimizer", "sgdm"], "--server-optimizer"),
    (["--availability", "--over-selection", "0.5"], "--over-selection"),
    (["--availability", "--deadline", "0"], "--deadline"),
    (["--holdout", "1"], "--holdout"),
    (["--warm-start-size", "-1"], "--warm-start-size"),
    (["--backend", "tcp"], "--backend"),
    (["--datasite", "bob=http://h:1"], "--datasite"),
    (["--backend", "pysyft", "--datasite", "bob"], "--datasite"),
]


@pytest.mark.parametrize("args,flag", BAD)
def test_bad_input_is_one_clear_line_and_exit_2(mnist_dir, tmp_path, capsys, args, flag):
    code, lines = cli(capsys, "train", "--data-dir", mnist_dir, "--out", tmp_path / "o", *args)
    assert code == 2
    assert not any("Traceback" in line for line in lines)
    assert len(lines) == 1 and flag in lines[0], lines
    assert lines[0].startswith("fedlearn: error: ")


@pytest.mark.slow  # a subprocess of a few seconds: the full tier
def test_the_entry_point_prints_one_line_and_exits_2(tmp_path):
    """The real command: a bad flag value and a refused value, each one line, exit 2."""
    for bad in (["--lr", "abc"], ["--rounds", "0"]):
        r = fedlearn("train", "--out", str(tmp_path / "o"), *bad)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
        assert r.stderr.startswith(f"fedlearn: error: argument {bad[0]}: "), r.stderr


def test_existing_run_is_never_overwritten_and_other_config_refused(mnist_dir, tmp_path,
                                                                    capsys):
    out = tmp_path / "run"
    assert cli(capsys, "train", *SMALL, "--rounds", "1", "--data-dir", mnist_dir,
               "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = cli(capsys, "train", *SMALL, "--rounds", "1", "--data-dir", mnist_dir, "--out", out)
    other = cli(capsys, "train", *SMALL, "--rounds", "2", "--lr", "0.5", "--data-dir",
                mnist_dir, "--out", out, "--resume")
    for code, lines in (again, other):
        assert code == 2 and len(lines) == 1 and "Traceback" not in lines[0]
    assert "--resume" in again[1][0] and "another configuration" in other[1][0]
    assert other[1][0].startswith("fedlearn: error: argument --lr: ")  # the flag refused
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_missing_data_explains_the_fix(tmp_path, capsys):
    code, lines = cli(capsys, "train", "--data-dir", tmp_path / "nothing", "--out",
                      tmp_path / "o")
    assert code == 2 and len(lines) == 1 and "FEDLEARN_DATA" in lines[0]


def test_debug_shows_the_traceback_of_a_user_error_too(tmp_path, capsys):
    for argv in (["--debug", "train"], ["train", "--debug"]):
        code, lines = cli(capsys, *argv, "--rounds", "0", "--out", tmp_path / "o")
        assert code == 2 and lines[0].startswith("Traceback")
        assert lines[-1] == "fedlearn: error: argument --rounds: must be an integer >= 1 (got 0)"
    assert not build_parser().parse_args(["train"]).debug


def test_only_user_errors_are_one_line_anything_else_keeps_its_traceback(tmp_path, capsys,
                                                                         monkeypatch):
    import fedlearn.experiment
    from fedlearn.server.federation import RoundFailedError

    def fails(exc):
        def run_experiment(*args, **kwargs):
            raise exc
        monkeypatch.setattr(fedlearn.experiment, "run_experiment", run_experiment)

    out = tmp_path / "o"
    for bug in (ValueError("a bug"), KeyError("k"), PermissionError("p"), RuntimeError("r")):
        fails(bug)
        with pytest.raises(type(bug)):  # -> Python's own traceback, exit 1
            main(["train", "--out", str(out)])
    fails(RoundFailedError("round 2: fewer than min_updates=2 valid updates"))
    code, lines = cli(capsys, "train", "--out", out)
    assert code == 1 and len(lines) == 1  # a run stopped by its workers; the hint kept
    assert lines[0].startswith("fedlearn: error: round 2: fewer than min_updates=2")
    assert f"Rerun with --out {out} --resume once the workers are fixed" in lines[0]
    fails(KeyboardInterrupt())
    code, lines = cli(capsys, "train", "--out", out)
    assert code == 130 and lines == ["fedlearn: interrupted before the first round finished; "
                                     "nothing to resume"]


@pytest.mark.slow
def test_a_dead_datasite_url_is_one_line_and_exit_2(capsys, monkeypatch):
    pytest.importorskip("syft")
    monkeypatch.setenv("FEDLEARN_ADMIN_PASSWORD", "owner-password-1")
    code, lines = cli(capsys, "datasite", "requests", "--url", "http://127.0.0.1:9")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("fedlearn: error: cannot reach a Datasite at http://127.0.0.1:9")
    assert "fedlearn datasite serve" in lines[0]  # what to check
    # a malformed URL names this command's own flag (train's --datasite is not one of them)
    code, lines = cli(capsys, "datasite", "requests", "--url", "notaurl")
    assert code == 2 and lines == ["fedlearn: error: argument --url: a Datasite URL looks like "
                                   "http(s)://HOST:PORT (got 'notaurl')"], lines
    code, lines = cli(capsys, "datasite", "requests", "--url", "http://h:99999")
    assert code == 2 and "argument --url" in lines[0] and "99999" in lines[0], lines


def test_help_is_for_newcomers(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for words in ("--workers", "bob alice", "FedAvg", "--resume", "FEDLEARN_DATA", "examples:"):
        assert words in text


def test_console_script_is_installed():
    import shutil
    exe = shutil.which("fedlearn") or os.path.join(os.path.dirname(sys.executable), "fedlearn")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout


@pytest.mark.slow
def test_train_at_scale_with_devices_that_come_and_go(mnist_dir, tmp_path, capsys):
    out = tmp_path / "scale"
    clients = [f"client{i:02d}" for i in range(40)]
    code, lines = cli(capsys, "train", *SMALL, "--workers", *clients, "--partition", "dirichlet",
                      "--alpha", "0.3", "--fraction", "0.25", "--availability", "--deadline", "5",
                      "--compression", "quantize", "--prox-mu", "0.01", "--server-optimizer",
                      "adam", "--server-lr", "0.01", "--warm-start-size", "300", "--holdout",
                      "0.2", "--personalize-steps", "5", "--initial-share", "0.5",
                      "--growth-per-round", "0.25", "--rounds", "2", "--data-dir", mnist_dir,
                      "--out", out)
    assert code == 0, lines
    history = json.loads((out / "history.json").read_text())
    for record in history:
        counts = record["availability"]
        assert counts["goal"] == 10 and counts["selected"] <= 13
        assert counts["completed"] == len(record["examples"])
    examples = [sum(h["examples"].values()) / max(1, len(h["examples"])) for h in history]
    assert examples[1] > examples[0]  # new data arrived between rounds
    personal = json.loads((out / "personalization.json").read_text())
    assert personal["summary"]["clients"] == 40 and len(personal["workers"]) == 40
    code, lines = cli(capsys, "train", *SMALL, "--personalize-steps", "5", "--data-dir",
                      mnist_dir, "--out", str(tmp_path / "bad"))
    assert code == 2 and len(lines) == 1 and "--holdout" in lines[0]


def test_flags_are_generated_from_the_config_fields_with_their_defaults():
    """No flag given: exactly the dataclasses' defaults (each default is written once)."""
    import dataclasses

    from fedlearn.cli.train import config_from_args
    from fedlearn.config import SECTIONS, ExperimentConfig

    parser = build_parser()
    assert config_from_args(parser.parse_args(["train"])) == ExperimentConfig()
    text = parser._subparsers._group_actions[0].choices["train"].format_help()
    for name, section in SECTIONS.items():
        assert section.TITLE in text
        for f in dataclasses.fields(section):
            if f.metadata["cli"]:
                flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
                if f.default is True:  # a switch that is on by default: its flag turns it off
                    flag = "--no-" + flag[2:]
                assert flag in text, f"{name}.{f.name} has no flag"


SET = [
    (["--local-epochs", "3"], "plan.epochs", 3),
    (["--workers", "a", "b", "c"], "partition.workers", ("a", "b", "c")),
    (["--partition", "shards"], "partition.scheme", "shards"),
    (["--aggregator", "krum", "--krum-byzantine", "0"], "robustness.krum_byzantine", 0),
    (["--server-optimizer", "adam"], "server.optimizer", "adam"),
    (["--server-lr", "0.5"], "server.lr", 0.5),
    (["--warm-start-size", "100"], "warm_start.size", 100),
    (["--noise-multiplier", "1.5"], "dp.noise_multiplier", 1.5),
    (["--dp-sgd-clip", "2"], "dp_sgd.max_grad_norm", 2.0),
    (["--no-error-feedback"], "compression.error_feedback", False),
    (["--availability"], "availability.deadline", None),
    (["--deadline", "4"], "availability.deadline", 4.0),
    (["--secure-aggregation"], "secure_aggregation", True),
    (["--seed", "7"], "seed", 7),
]


@pytest.mark.parametrize("argv,path,value", SET)
def test_each_flag_sets_its_field(argv, path, value):
    from fedlearn.cli.train import config_from_args

    config = config_from_args(build_parser().parse_args(["train", *argv]))
    obj = config
    for part in path.split("."):
        obj = getattr(obj, part)
    assert obj == value


def test_an_optional_section_is_off_until_one_of_its_flags_is_given():
    from fedlearn.cli.train import config_from_args

    plain = config_from_args(build_parser().parse_args(["train"]))
    assert plain.dp is None and plain.dp_sgd is None and plain.availability is None
    from fedlearn.config import ConfigError

    with pytest.raises(ConfigError) as err:  # --clip-norm alone is not silently ignored
        config_from_args(build_parser().parse_args(["train", "--clip-norm", "2"]))
    assert err.value.path == "dp.noise_multiplier"


@pytest.mark.parametrize("path,flag", [
    ("federation.rounds", "--rounds"), ("plan.epochs", "--local-epochs"),
    ("partition.scheme", "--partition"), ("dp.delta", "--delta"),
    ("dp_sgd.delta", "--dp-sgd-delta"), ("server.lr", "--server-lr"),
    ("compression.method", "--compression"), ("compression.error_feedback",
                                              "--no-error-feedback"),
    ("warm_start.size", "--warm-start-size"), ("seed", "--seed"), ("out", "--out"),
    ("password", "--password-file"), ("admin_password", "--admin-password-file"),
])
def test_a_config_error_names_the_flag_the_user_typed(path, flag):
    from fedlearn.cli.flags import flag_for

    assert flag_for(build_parser(), path) == flag


def test_executor_flags_say_one_thing_and_the_old_name_is_refused_with_the_new():
    from fedlearn.cli.flags import flag_for
    from fedlearn.cli.train import config_from_args
    from fedlearn.config import ConfigError, ExecutionConfig

    parser = build_parser()
    config = config_from_args(parser.parse_args([
        "train", "--executor", "ray", "--ray-actor-clients", "together", "--ray-client-cpus",
        "2", "--ray-actor-cache-mb", "64", "--ray-actors", "3"]))
    assert config.execution == ExecutionConfig(executor="ray", ray_actor_clients="together",
                                               ray_client_cpus=2.0, ray_actor_cache_mb=64,
                                               ray_actors=3)
    assert config_from_args(parser.parse_args(["train", "--executor", "sequential"])
                            ).execution.executor == "sequential"
    for argv, path in ((["--executor", "one_after_the_other"], "execution.executor"),
                       (["--executor", "ray", "--ray-actor-clients", "one_after_the_other"],
                        "execution.ray_actor_clients")):
        with pytest.raises(ConfigError, match="use 'sequential'") as err:
            config_from_args(parser.parse_args(["train", *argv]))
        assert err.value.path == path and flag_for(parser, path) == argv[-2]
    with pytest.raises(ConfigError, match="execution.executor.*use 'sequential'"):
        ExecutionConfig(executor="one_after_the_other")  # from Python too
    with pytest.raises(ConfigError, match="ray_actor_cache_mb.*is for executor 'ray'"):
        ExecutionConfig(ray_actor_cache_mb=64)
    with pytest.raises(SystemExit):  # the flag it replaced is gone
        parser.parse_args(["train", "--actor-path", "together"])
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "--ray-actor-cache-mb" in help_text and "(default: 1024)" in help_text


def test_each_owner_may_give_the_scientist_a_password_of_their_own(tmp_path, monkeypatch):
    from fedlearn.cli.pysyft_train import scientist_passwords
    from fedlearn.config import ConfigError

    for name in ("bob", "alice", "all"):
        (tmp_path / f"{name}.txt").write_text(f"{name}-password-123\n")
    bob, alice, every = (str(tmp_path / f"{n}.txt") for n in ("bob", "alice", "all"))
    names = ["bob", "alice"]
    assert scientist_passwords([f"bob={bob}", f"alice={alice}"], names) == \
        {"bob": "bob-password-123", "alice": "alice-password-123"}
    assert scientist_passwords([every], names) == dict.fromkeys(names, "all-password-123")
    monkeypatch.setenv("FEDLEARN_SCIENTIST_PASSWORD", "from-the-environment")
    assert scientist_passwords([], names) == dict.fromkeys(names, "from-the-environment")
    with pytest.raises(ConfigError, match="password_file.*no password file for alice"):
        scientist_passwords([f"bob={bob}"], names)
    with pytest.raises(ConfigError, match="password_file.*each is NAME=FILE for one of the "
                                          "Datasites bob, alice"):
        scientist_passwords([f"bob={bob}", f"carol={alice}"], names)
    with pytest.raises(ConfigError, match="password_file.*two password files for bob"):
        scientist_passwords([f"bob={bob}", f"bob={alice}"], names)


def test_an_error_without_a_flag_is_not_called_an_argument(capsys):
    from fedlearn.cli.errors import report
    from fedlearn.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(["train", "--out", "runs/x"])
    assert report(ConfigError("data", "the run trained on other data"), parser, args) == 2
    assert capsys.readouterr().err == "fedlearn: error: data: the run trained on other data\n"
    report(ConfigError("plan.lr", "must be > 0"), parser, args)
    assert capsys.readouterr().err == "fedlearn: error: argument --lr: must be > 0\n"
