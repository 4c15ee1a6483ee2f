"""Local worker processes (--executor processes): the weights of the sequential executor run
with one torch thread, bit for bit (momentum, FedProx, the client side in the process); a
process killed mid-round is replaced and its client rerun; a client that hangs past the round
timeout fails as such; DP-SGD ledgers come back and checkpoints resume; no process outlives
the run (normal end, an exception, Ctrl-C); what cannot run in a process is refused. The tests
that start processes are in the slow tier; the refusals and the pure parts are not."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from fedlearn.config import (
    AvailabilityConfig,
    CompressionConfig,
    ConfigError,
    DPConfig,
    DPSGDConfig,
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    RobustnessConfig,
    TrainPlan,
)
from fedlearn.execution import make_executor
from fedlearn.execution.processes import ProcessExecutor, auto_reasons, process_refusals
from fedlearn.execution.processes.shared import AttachedWeights, SharedWeights
from fedlearn.models import build_model
from fedlearn.server.federation import run_federation
from fedlearn.workers import make_virtual_workers
from fedlearn.workers.base import DelegatingWorker
from fedlearn.workers.dp_sgd import DPSGDWorker
from fedlearn.workers.faults import FaultInjectingWorker

NAMES = tuple(f"c{i}" for i in range(6))
PLAN = TrainPlan(epochs=1, batch_size=10, lr=0.05, momentum=0.9, prox_mu=0.1)
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 10
    x = torch.randn(240, 1, 28, 28, generator=g) * 0.3
    x[torch.arange(240), 0, y, y] += 3.0
    return x, y


@pytest.fixture
def one_thread():
    """The sequential reference with the threads each worker process has."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def executor():
    """Two processes, started once for the module (each start imports torch)."""
    made = ProcessExecutor(processes=2)
    yield made
    made.close()


def config(rounds=3, executor="processes", **sections) -> ExperimentConfig:
    return ExperimentConfig(partition=sections.pop("partition", PartitionConfig(workers=NAMES)),
                            plan=sections.pop("plan", PLAN),
                            federation=FederationConfig(model="tutorial_cnn", rounds=rounds,
                                                        fraction=0.5),
                            execution=ExecutionConfig(executor=executor), seed=7, **sections)


def sequential(cfg: ExperimentConfig) -> ExperimentConfig:
    return dataclasses.replace(cfg, execution=ExecutionConfig(executor="sequential"))


def run(data, cfg, ws=None, **kw):
    return run_federation(ws or make_virtual_workers(*data, cfg)[0], cfg, data[0][:60],
                          data[1][:60], **kw)


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_round_weights_are_shared_not_copied():
    weights = {"w": torch.arange(6.0).view(2, 3), "b": torch.tensor([1], dtype=torch.int64),
               "h": torch.ones(3, dtype=torch.bfloat16)}
    shared, attached = SharedWeights(), AttachedWeights()
    try:
        name, layout = shared.write(weights)
        seen = attached.get(name, layout)
        assert all(torch.equal(seen[k], weights[k]) and seen[k].dtype == weights[k].dtype
                   for k in weights)
        shared.write({k: v + 1 for k, v in weights.items()})  # the next round, same block
        assert torch.equal(attached.get(name, layout)["w"], weights["w"] + 1)
        del seen  # views pin the block's buffer
    finally:
        attached.weights = {}
        if attached.block is not None:
            attached.block.close()
        shared.close()


def test_what_cannot_run_in_a_process_is_refused(data, monkeypatch):
    with pytest.raises(ConfigError, match="processes.*executor 'processes'"):
        ExecutionConfig(processes=2)
    with pytest.raises(ConfigError, match="model hopping"):
        ExperimentConfig(partition=PartitionConfig(workers=NAMES),
                         federation=FederationConfig(algorithm="model_hopping"),
                         execution=ExecutionConfig(executor="processes"))
    cfg = config()
    ws = make_virtual_workers(*data, cfg)[0]
    assert process_refusals(cfg, ws, torch.device("cpu")) == []
    assert "cuda" in process_refusals(cfg, ws, torch.device("cuda"))[0]
    unpicklable = DelegatingWorker(ws[0])
    unpicklable.hook = lambda: None  # type: ignore[attr-defined]
    assert "cannot be sent to a process" in process_refusals(cfg, [unpicklable],
                                                             torch.device("cpu"))[0]
    main_worker = type("MainWorker", (DelegatingWorker,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "MainWorker", main_worker, raising=False)
    assert "(__main__)" in process_refusals(cfg, [main_worker(ws[0])], torch.device("cpu"))[0]
    with pytest.raises(ConfigError, match="cannot be trained in worker processes.*sent"):
        make_executor(cfg, [unpicklable, *ws[1:]], build_model("tutorial_cnn"),
                      torch.device("cpu"))


def test_auto_stays_sequential_for_small_runs_and_one_client(data, monkeypatch):
    import fedlearn.execution.processes.cores as cores

    monkeypatch.setattr(cores, "physical_cores", lambda: 2)
    cfg = config(executor="auto")
    ws = make_virtual_workers(*data, cfg)[0]
    assert any("too small" in why for why in auto_reasons(cfg, ws, torch.device("cpu")))
    assert make_executor(cfg, ws, build_model("tutorial_cnn"), torch.device("cpu")).name \
        == "sequential"
    big = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=1000))
    assert auto_reasons(big, ws, torch.device("cpu")) == []
    one = dataclasses.replace(big, federation=dataclasses.replace(big.federation, fraction=0.1))
    assert "a round has one client" in auto_reasons(one, ws, torch.device("cpu"))
    monkeypatch.setattr(cores, "physical_cores", lambda: 1)
    assert "this CPU has one core" in auto_reasons(big, ws, torch.device("cpu"))


def test_auto_keeps_small_clients_sequential_in_bf16(data, monkeypatch):
    """benchmarks/processes.py: in bf16, 1,000 clients of 60 images ran slower in processes."""
    import fedlearn.execution.processes.cores as cores

    monkeypatch.setattr(cores, "physical_cores", lambda: 2)
    cfg = config(executor="auto")
    big = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=1000))
    ws = make_virtual_workers(*data, big)[0]
    mean = sum(w.num_examples for w in ws) / len(ws)
    bf16 = dataclasses.replace(big, plan=dataclasses.replace(big.plan, precision="bf16"))
    monkeypatch.setattr(cores, "AUTO_MIN_BF16_CLIENT_EXAMPLES", mean + 1)
    assert any("in bf16, clients of" in why for why in auto_reasons(bf16, ws, torch.device("cpu")))
    assert auto_reasons(big, ws, torch.device("cpu")) == []  # fp32: processes
    monkeypatch.setattr(cores, "AUTO_MIN_BF16_CLIENT_EXAMPLES", mean)
    assert auto_reasons(bf16, ws, torch.device("cpu")) == []


VARIANTS = {
    "momentum_fedprox": {},
    "dp_fedavg": {"dp": DPConfig(clip_norm=0.5, noise_multiplier=0.3)},
    "topk": {"compression": CompressionConfig(method="topk", topk_fraction=0.1)},
    "secure_aggregation": {"secure_aggregation": True},
    "median": {"robustness": RobustnessConfig(aggregator="median")},
    "availability": {"availability": AvailabilityConfig(mean_availability=0.8,
                                                        over_selection=1.5)},
    # data that grows each round (set_round in the process too) and a held-out share
    "growth": {"partition": PartitionConfig(workers=NAMES, holdout=0.2, initial_share=0.5,
                                            growth_per_round=0.25)},
}


@slow
def test_same_weights_as_sequential_with_one_thread(data, one_thread, executor):
    sent = 0
    for name, sections in VARIANTS.items():
        cfg = config(**sections)
        reference = run(data, sequential(cfg))
        result = run(data, cfg, executor=executor)
        assert same_weights(reference.weights, result.weights), name
        assert [h["test_accuracy"] for h in reference.history] == \
            [h["test_accuracy"] for h in result.history], name
        compute = result.history[-1]["compute"]
        assert compute["clients"] == "processes" and compute["processes"] == 2
        assert compute["threads_per_client"] == 1
        sent += sum(h["compute"].get("workers_sent", 0) for h in result.history)
    # each client's worker reaches each process at most once per run, never per round
    assert 0 < sent <= len(VARIANTS) * len(NAMES) * 2


class KillsItsProcessOnce(DelegatingWorker):
    """kill -9 of its worker process in the middle of this client's round, once."""

    def __init__(self, inner, marker: str):
        super().__init__(inner)
        self.marker = marker

    def fit(self, weights, plan, *, seed, batches=None):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.fit(weights, plan, seed=seed, batches=batches)


@slow
def test_a_killed_process_is_replaced_and_its_client_rerun(data, one_thread, executor,
                                                           tmp_path):
    cfg = config(rounds=2)
    reference = run(data, sequential(cfg))
    chosen = reference.history[0]["selected"][0]
    ws = [KillsItsProcessOnce(w, str(tmp_path / "killed")) if w.name == chosen else w
          for w in make_virtual_workers(*data, cfg)[0]]
    result = run(data, cfg, ws=ws, executor=executor)
    assert int((tmp_path / "killed").read_text()) != os.getpid()  # killed there, not here
    assert same_weights(reference.weights, result.weights)
    notes = result.history[0]["compute"]
    assert notes["reruns"] == [chosen] and notes["processes_replaced"] == 1
    assert not result.history[0]["failed"]


class KillsItsProcessAlways(DelegatingWorker):
    def fit(self, weights, plan, *, seed, batches=None):
        os.kill(os.getpid(), signal.SIGKILL)


@slow
def test_reruns_are_bounded(data, executor):
    """A client that kills every process it runs on fails after two reruns, alone."""
    ws = make_virtual_workers(*data, config())[0]
    replies = executor.fit([(KillsItsProcessAlways(ws[0]), 1), (ws[1], 2)],
                           build_model("tutorial_cnn").state_dict(), PLAN, RobustnessConfig(), 1)
    assert replies[0].update is None
    assert replies[0].failed.startswith("its worker process died 3 times: process ")
    assert "killed by signal 9" in replies[0].failed
    assert replies[1].update is not None
    notes = executor.round_notes()
    assert notes["processes_replaced"] == 3 and notes["reruns"] == [ws[0].name] * 2


@slow
def test_a_client_that_hangs_fails_as_a_timeout_alone(data, executor):
    cfg = config(rounds=1)
    ws = make_virtual_workers(*data, cfg)[0]
    weights = build_model("tutorial_cnn").state_dict()
    # both processes warm first (a fresh one's first call also sets torch up)
    executor.fit([(ws[1], 1), (ws[2], 2)], weights, cfg.plan, RobustnessConfig(), 1)
    hangs = FaultInjectingWorker(ws[0], "hang", hang_seconds=120)
    t0 = time.monotonic()
    replies = executor.fit([(hangs, 1), (ws[1], 2)], weights, cfg.plan,
                           RobustnessConfig(round_timeout=8.0), 1)
    assert time.monotonic() - t0 < 60
    assert replies[0].update is None and "WorkerTimeout" in replies[0].failed
    assert replies[1].update is not None and replies[1].failed is None
    assert executor.round_notes()["processes_replaced"] == 1


def dp_sgd_workers(data, cfg):
    x, y = data
    return [DPSGDWorker(name, x[i * 40:(i + 1) * 40], y[i * 40:(i + 1) * 40],
                        model="tutorial_cnn", dp=cfg.dp_sgd) for i, name in enumerate(NAMES)]


@slow
def test_dp_sgd_ledgers_come_back_and_checkpoints_resume(data, one_thread, executor,
                                                         tmp_path):
    dp = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    cfg = config(dp_sgd=dp, plan=TrainPlan(epochs=1, batch_size=10, lr=0.05, momentum=0.0))
    reference = run(data, sequential(cfg), ws=dp_sgd_workers(data, cfg))
    two = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=2))
    checkpoint = tmp_path / "run.pt"
    run(data, two, ws=dp_sgd_workers(data, cfg), checkpoint=checkpoint, executor=executor)
    resumed = run(data, cfg, ws=dp_sgd_workers(data, cfg), checkpoint=checkpoint, resume=True,
                  executor=executor)
    assert same_weights(reference.weights, resumed.weights)
    # each client's own epsilon (its accountant, carried back from its process) agrees
    assert [h.get("worker_epsilon") for h in reference.history] == \
        [h.get("worker_epsilon") for h in resumed.history]
    assert reference.history[-1]["worker_epsilon"]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc: Linux)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it ended meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def worker_processes(pid: int) -> set[int]:
    """The spawned worker processes below ``pid`` (not Python's own resource tracker)."""
    out = set()
    for child in descendants(pid):
        try:
            line = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in line:
            out.add(child)
    return out


@slow
def test_no_process_outlives_a_run_that_ends_or_fails(data, monkeypatch):
    import fedlearn.execution.processes.cores as cores

    monkeypatch.setattr(cores, "AUTO_MIN_EXAMPLES", 0)  # auto chooses processes for this run
    monkeypatch.setattr(cores, "physical_cores", lambda: 2)
    before = worker_processes(os.getpid())
    compute = run(data, config(rounds=1, executor="auto")).history[-1]["compute"]
    assert compute["clients"] == "processes" and compute["chosen"].startswith("auto: 2 cores")
    assert worker_processes(os.getpid()) == before
    cfg = config(rounds=1)
    with pytest.raises(RuntimeError):  # a test set the model cannot take fails the round
        run_federation(make_virtual_workers(*data, cfg)[0], cfg, torch.zeros(4, 3, 5, 5),
                       data[1][:4])
    assert worker_processes(os.getpid()) == before


# a script without `if __name__ == "__main__"`: the processes must not run it again
SCRIPT = """
import torch
from fedlearn.config import *
from fedlearn.server.federation import run_federation
from fedlearn.workers import make_virtual_workers
from fedlearn.workers.faults import FaultInjectingWorker

y = torch.arange(60) % 10
x = torch.randn(60, 1, 28, 28)
cfg = ExperimentConfig(partition=PartitionConfig(workers=("a", "b")),
                       federation=FederationConfig(model="tutorial_cnn", rounds=1),
                       execution=ExecutionConfig(executor="processes"))
ws = [FaultInjectingWorker(w, "hang", hang_seconds=600)
      for w in make_virtual_workers(x, y, cfg)[0]]
run_federation(ws, cfg, x, y)
"""


@slow
def test_ctrl_c_leaves_no_worker_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline, seen = time.monotonic() + 120, set()
    while len(seen) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        seen = worker_processes(proc.pid)
        time.sleep(0.2)
    assert len(seen) == 2
    time.sleep(1.0)  # into the round: both processes hang in a client's call
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    alive = {pid for pid in seen if Path(f"/proc/{pid}").exists()}
    assert not alive, f"worker processes {alive} outlived the run"


def test_the_flags_and_their_refusal():
    from fedlearn.cli import build_parser
    from fedlearn.cli.flags import flag_for
    from fedlearn.cli.train import config_from_args

    parser = build_parser()
    config = config_from_args(parser.parse_args(["train", "--executor", "processes",
                                                 "--processes", "3"]))
    assert config.execution == ExecutionConfig(executor="processes", processes=3)
    with pytest.raises(ConfigError, match="is for executor 'processes'") as err:
        config_from_args(parser.parse_args(["train", "--processes", "3"]))
    assert flag_for(parser, err.value.path) == "--processes"
    with pytest.raises(ConfigError, match="integer >= 1"):
        ExecutionConfig(executor="processes", processes=0)


@slow
def test_a_whole_experiment_with_personalization(data, tmp_path):
    """run_experiment on processes: outputs, checkpoint, then each owner fine-tunes (here)."""
    import json

    from fedlearn.experiment import run_experiment

    x, y = data
    cfg = dataclasses.replace(config(rounds=2),
                              partition=PartitionConfig(workers=NAMES, holdout=0.25))
    run_experiment(cfg, tmp_path / "run", data=(x, y, x[:60], y[:60]), personalize_steps=2)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["compute"]["clients"] for h in history] == ["processes", "processes"]
    personal = json.loads((tmp_path / "run" / "personalization.json").read_text())
    assert [row["worker"] for row in personal["workers"]] == list(NAMES)
