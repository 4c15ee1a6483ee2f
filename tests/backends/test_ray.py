"""The Ray executor on a real multi-node cluster on this machine (a head and two one-CPU
worker nodes, bounded object stores): the same weights as in-process training with the same
threads, bit for bit; checkpoints that cross between the two; actors and nodes that die;
clients that hang or run out of memory; clear refusals. The CLI tests start a local runtime
the way a user does and check that no Ray process outlives the run, even after Ctrl-C."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from fedlearn.config import (  # noqa: E402
    CompressionConfig,
    ConfigError,
    DPConfig,
    DPSGDConfig,
    ExecutionConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    RobustnessConfig,
    ServerOptimizerConfig,
    TrainPlan,
)
from fedlearn.execution.ray import RayExecutor  # noqa: E402
from fedlearn.execution.ray.actor import ClientActor  # noqa: E402
from fedlearn.server.federation import run_federation  # noqa: E402
from fedlearn.workers import make_virtual_workers  # noqa: E402
from fedlearn.workers.base import DelegatingWorker  # noqa: E402
from fedlearn.workers.dp_sgd import DPSGDWorker  # noqa: E402
from fedlearn.workers.faults import FaultInjectingWorker  # noqa: E402

# the wrappers below are defined here, not in an installed module: send them by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

NAMES = tuple(f"c{i}" for i in range(6))
MB = 2 ** 20


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    c = Cluster(initialize_head=True, connect=True,
                head_node_args={"num_cpus": 0, "object_store_memory": 80 * MB,
                                "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=80 * MB)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 10
    x = torch.randn(240, 1, 28, 28, generator=g) * 0.3
    x[torch.arange(240), 0, y, y] += 3.0
    return x, y


@pytest.fixture
def one_thread():
    """In-process reference runs with the threads a one-CPU Ray client has."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(rounds=2, executor="ray", **sections) -> ExperimentConfig:
    return ExperimentConfig(partition=PartitionConfig(workers=NAMES),
                            plan=sections.pop("plan", TrainPlan(epochs=1, batch_size=10,
                                                                lr=0.05)),
                            federation=FederationConfig(model="tutorial_cnn", rounds=rounds,
                                                        fraction=0.5),
                            execution=ExecutionConfig(executor=executor), seed=7, **sections)


def workers(data, cfg):
    return make_virtual_workers(*data, cfg)[0]


def run(data, cfg, executor=None, ws=None, **kw):
    return run_federation(ws or workers(data, cfg), cfg, data[0][:60], data[1][:60],
                          executor=executor, **kw)


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


VARIANTS = {
    "fedavg": {},
    "fedprox": {"plan": TrainPlan(epochs=1, batch_size=10, lr=0.05, prox_mu=0.1)},
    "channels_last": {"plan": TrainPlan(epochs=1, batch_size=10, lr=0.05, channels_last=True)},
    "fedadam": {"server": ServerOptimizerConfig(optimizer="adam")},
    "median": {"robustness": RobustnessConfig(aggregator="median")},
    "dp_fedavg": {"dp": DPConfig(clip_norm=0.5, noise_multiplier=0.3)},
    "topk": {"compression": CompressionConfig(method="topk", topk_fraction=0.1)},
}


def test_same_weights_as_in_process_for_every_strategy(cluster, data, one_thread):
    ws = workers(data, config())
    executor = RayExecutor(ExecutionConfig(executor="ray"), ws, per_round=3)
    fetched = 0
    try:
        assert executor.actor_count == 2  # one per one-CPU node
        for name, sections in VARIANTS.items():
            cfg = config(**sections)
            reference = run(data, dataclasses.replace(
                cfg, execution=ExecutionConfig(executor="sequential")))
            on_ray = run(data, cfg, executor=executor, ws=ws)
            assert same_weights(reference.weights, on_ray.weights), name
            assert [h["test_accuracy"] for h in reference.history] == \
                [h["test_accuracy"] for h in on_ray.history], name
            assert on_ray.history[-1]["compute"]["clients"] == "ray"
            assert on_ray.history[-1]["compute"]["threads_per_client"] == 1
            assert on_ray.history[-1]["compute"]["trained_together"] == 0
            fetched += sum(h["compute"].get("shards_fetched", 0) for h in on_ray.history)
        # each client's data reaches each actor at most once in the run, never per round
        # (per round it would be 7 variants x 2 rounds x 3 clients = 42)
        assert 0 < fetched <= len(NAMES) * executor.actor_count
    finally:
        executor.close()
    assert ray.is_initialized()  # a cluster this run joined is left running


def test_clients_trained_together_inside_each_actor(cluster, data, one_thread):
    """--ray-actor-clients together (auto picks it where actors have GPUs): each actor trains its
    share of the round as one batched computation; updates as training alone, within float
    tolerance (as in-process together)."""
    cfg = config(plan=TrainPlan(epochs=1, batch_size=10, lr=0.05, momentum=0.5, prox_mu=0.1))
    reference = run(data, dataclasses.replace(
        cfg, execution=ExecutionConfig(executor="sequential")))
    together = run(data, dataclasses.replace(
        cfg, execution=ExecutionConfig(executor="ray", ray_actor_clients="together")))
    for k, v in reference.weights.items():
        assert torch.allclose(v, together.weights[k], atol=5e-5), k
    for h in together.history:  # every client of every round went through a batch
        assert h["compute"]["clients"] == "ray, together" and h["compute"]["actors"] == 2
        assert h["compute"]["trained_together"] == len(h["selected"])
    assert [h["selected"] for h in reference.history] == \
        [h["selected"] for h in together.history]


@pytest.mark.parametrize("sections", [
    {"dp": DPConfig(clip_norm=0.5, noise_multiplier=0.3),
     "compression": CompressionConfig(method="topk", topk_fraction=0.1)},
    {"secure_aggregation": True, "compression": CompressionConfig(method="quantize", bits=8)}],
    ids=["dp+topk", "secagg+quantize"])
def test_the_client_side_runs_on_the_actors_when_the_run_makes_its_executor(cluster, data,
                                                                          one_thread, sections):
    """run_federation wraps the workers in their client side (clip, compress, mask) before it
    makes the Ray executor, so those steps run on the actors; the weights are in-process ones
    (under secure aggregation the actors send masked vectors and the sum is still exact)."""
    cfg = config(**sections)
    reference = run(data, dataclasses.replace(
        cfg, execution=ExecutionConfig(executor="sequential")))
    on_ray = run(data, cfg)
    assert same_weights(reference.weights, on_ray.weights)
    assert on_ray.history[-1]["compute"]["clients"] == "ray"


def test_batchnorm_and_dropout_give_the_in_process_weights(cluster, data, one_thread):
    """A model with BatchNorm and Dropout (bn_cnn): on Ray the weights are the in-process
    ones bit for bit — dropout draws from the call's seed, not from a process's global
    generator — and BatchNorm's counter stays an exact int64 (tests/backends/test_pysyft.py
    checks the same model through Datasites)."""
    cfg = dataclasses.replace(config(), federation=FederationConfig(model="bn_cnn", rounds=2,
                                                                     fraction=0.5))
    reference = run(data, dataclasses.replace(
        cfg, execution=ExecutionConfig(executor="sequential")))
    on_ray = run(data, cfg)
    assert same_weights(reference.weights, on_ray.weights)
    counters = [k for k in on_ray.weights if k.endswith("num_batches_tracked")]
    assert counters and all(on_ray.weights[k].dtype == torch.int64 for k in counters)


def test_a_free_actor_takes_a_client_whose_data_it_holds():
    from fedlearn.execution.ray.schedule import chunks, pick

    queue, names = [4, 7, 9], ["a", "b", "c"]
    assert pick(queue, names, held={"c"}, held_anywhere={"a", "c"}) == 2  # its own
    assert pick(queue, names, held=set(), held_anywhere={"a", "c"}) == 1  # nobody's yet
    assert pick(queue, names, held=set(), held_anywhere={"a", "b", "c"}) == 0  # else steal
    assert chunks(5, 2) == [[0, 1, 2], [3, 4]]
    assert chunks(2, 4) == [[0], [1]] and chunks(0, 2) == []


class NeverStarts(ClientActor):
    """An actor whose process cannot set up (as on a node without fedlearn)."""

    def __init__(self, threads: int, device: str = "cpu"):
        raise ModuleNotFoundError("No module named 'fedlearn'")


def test_actors_that_cannot_start_are_refused_with_their_error(cluster, data, monkeypatch):
    import fedlearn.execution.ray.executor as executor_module

    monkeypatch.setattr(executor_module, "ClientActor", NeverStarts)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"execution.executor.*failed to start \(\d+ times\)"
                                          r".*every node.*No module named 'fedlearn'"):
        RayExecutor(ExecutionConfig(executor="ray"), workers(data, config()), per_round=3,
                    start_timeout=600)
    # refused when the restarts ran out, not restarted without end nor after the whole wait
    # (a wide margin: under two test workers on two cores the failed starts take about 20 s)
    assert time.monotonic() - t0 < 200


def dp_sgd_workers(data, cfg):
    x, y = data
    return [DPSGDWorker(name, x[i * 40:(i + 1) * 40], y[i * 40:(i + 1) * 40],
                        model="tutorial_cnn", dp=cfg.dp_sgd) for i, name in enumerate(NAMES)]


def test_dp_sgd_ledgers_and_checkpoints_cross_between_ray_and_in_process(cluster, data,
                                                                         one_thread, tmp_path):
    dp = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    cfg = config(rounds=3, dp_sgd=dp, plan=TrainPlan(epochs=1, batch_size=10, lr=0.05,
                                                     momentum=0.0))
    inproc = dataclasses.replace(cfg, execution=ExecutionConfig(executor="sequential"))
    reference = run(data, inproc, ws=dp_sgd_workers(data, cfg))
    two = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, rounds=2))
    for first, then, where in ((two, inproc, "ray then in-process"),
                               (dataclasses.replace(two, execution=inproc.execution), cfg,
                                "in-process then ray")):
        checkpoint = tmp_path / f"{where}.pt"
        run(data, first, ws=dp_sgd_workers(data, cfg), checkpoint=checkpoint)
        resumed = run(data, then, ws=dp_sgd_workers(data, cfg), checkpoint=checkpoint,
                      resume=True)
        assert same_weights(reference.weights, resumed.weights), where
        # each client's own epsilon (its accountant, carried back from the actor) agrees
        assert [h.get("worker_epsilon") for h in reference.history] == \
            [h.get("worker_epsilon") for h in resumed.history], where
    assert reference.history[-1]["worker_epsilon"]


class KillsItsActorOnce(DelegatingWorker):
    """kill -9 of the actor's process in the middle of this client's training, once."""

    def __init__(self, inner, marker: str):
        super().__init__(inner)
        self.marker = marker

    def fit(self, weights, plan, *, seed, batches=None):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.fit(weights, plan, seed=seed, batches=batches)


def test_a_killed_actor_is_replaced_and_its_client_rerun(cluster, data, one_thread, tmp_path):
    cfg = config()
    reference = run(data, dataclasses.replace(
        cfg, execution=ExecutionConfig(executor="sequential")))
    ws = workers(data, cfg)
    chosen = reference.history[0]["selected"][0]
    ws = [KillsItsActorOnce(w, str(tmp_path / "killed")) if w.name == chosen else w
          for w in ws]
    result = run(data, cfg, ws=ws)
    assert (tmp_path / "killed").exists()
    assert same_weights(reference.weights, result.weights)
    notes = result.history[0]["compute"]
    assert notes["reruns"] == [chosen] and notes["actors_replaced"] == 1
    assert not result.history[0]["failed"]


class KillsItsActorAlways(DelegatingWorker):
    def fit(self, weights, plan, *, seed, batches=None):
        os.kill(os.getpid(), signal.SIGKILL)


def test_reruns_are_bounded_and_a_round_without_actors_ends(cluster, data, monkeypatch):
    """A client that kills every actor it runs on fails after two reruns, alone; when no
    actor can be started any more the round's clients fail at once instead of waiting."""
    from fedlearn.models import build_model

    ws = workers(data, config())
    ws[0], ws[1] = KillsItsActorAlways(ws[0]), KillsItsActorAlways(ws[1])
    weights, plan = build_model("tutorial_cnn").state_dict(), config().plan
    # a long start timeout: ending "at once" must not be the timeout running out
    executor = RayExecutor(ExecutionConfig(executor="ray"), ws, per_round=3, start_timeout=240)
    try:
        with pytest.raises(ValueError, match=r"\['c2'\] are not the workers"):
            executor.fit([(workers(data, config())[2], 2)], weights, plan, RobustnessConfig())
        replies = executor.fit([(ws[0], 1), (ws[2], 2), (ws[3], 3)], weights, plan,
                               RobustnessConfig())
        assert "its Ray actor died 3 times" in replies[0].failed
        assert all(r.update is not None for r in replies[1:])
        assert executor.round_notes()["reruns"] == [ws[0].name] * 2
        # from now on no actor can start (as when every node has gone); two clients kill
        # the two actors there are
        executor.pool.actor_class = ray.remote(NeverStarts).options(num_cpus=1, max_restarts=0)
        t0 = time.monotonic()
        replies = executor.fit([(ws[0], 1), (ws[1], 2), (ws[2], 3)], weights, plan,
                               RobustnessConfig())
        assert time.monotonic() - t0 < 120  # well before the 240 s start timeout
        assert all("no Ray actor alive to run it (actors failed to start: "
                   "ModuleNotFoundError" in r.failed for r in replies), replies
    finally:
        executor.close()


class RunsOutOfMemory(DelegatingWorker):
    def fit(self, weights, plan, *, seed, batches=None):
        torch.empty(2 ** 45, dtype=torch.uint8)  # 32 TiB: no allocator gives that
        return self.inner.fit(weights, plan, seed=seed, batches=batches)


def test_a_client_that_runs_out_of_memory_or_hangs_fails_alone(cluster, data, tmp_path):
    cfg = dataclasses.replace(config(rounds=2),
                              robustness=RobustnessConfig(round_timeout=4.0, min_updates=1))
    ws = workers(data, cfg)
    first = run(data, dataclasses.replace(cfg, execution=ExecutionConfig(
        executor="sequential")), ws=ws).history[0]["selected"]
    broken = {first[0]: RunsOutOfMemory, first[1]: lambda w: FaultInjectingWorker(
        w, "hang", calls={1}, hang_seconds=120)}
    ws = [broken[w.name](w) if w.name in broken else w for w in workers(data, cfg)]
    t0 = time.monotonic()
    result = run(data, cfg, ws=ws)
    assert time.monotonic() - t0 < 90  # the hung client's actor was killed, not waited for
    failed = result.history[0]["failed"]
    assert set(failed) == {first[0], first[1]}
    assert "out of memory" in failed[first[0]] and " MB" in failed[first[0]]
    assert "WorkerTimeout" in failed[first[1]]
    assert result.history[0]["compute"]["actors_replaced"] == 1  # the hung one's
    assert len(result.history) == 2 and not result.history[1]["failed"] or \
        set(result.history[1]["failed"]) <= {first[0]}


def test_refusals_are_clear(cluster, data):
    ws = workers(data, config())
    with pytest.raises(ConfigError, match=r"execution.ray_client_cpus.*largest node.*has 1"):
        RayExecutor(ExecutionConfig(executor="ray", ray_client_cpus=4), ws, per_round=3)
    with pytest.raises(ConfigError, match=r"execution.executor.*model hopping"):
        ExperimentConfig(federation=FederationConfig(algorithm="model_hopping"),
                         execution=ExecutionConfig(executor="ray"))
    with pytest.raises(ConfigError, match=r"execution.ray_address.*is for executor 'ray'"):
        ExecutionConfig(ray_address="10.0.0.1:6379")
    with pytest.raises(ConfigError, match=r"execution.executor.*Datasites"):
        config().check_workers(6, remote=["bob"])
    with pytest.raises(ConfigError, match=r"execution.ray_object_store_mb.*sizes a local Ray"):
        RayExecutor(ExecutionConfig(executor="ray", ray_address="auto", ray_object_store_mb=100),
                    ws, per_round=3)
    from fedlearn.execution import make_executor
    from fedlearn.models import build_model

    with pytest.raises(ConfigError, match=r"execution.ray_client_gpus.*no GPU"):
        make_executor(config(), ws, build_model("tutorial_cnn"), torch.device("cuda"))
    with pytest.raises(ConfigError, match=r"execution.ray_actors.*5 actors.*hold 2; ask for "
                                          r"at most 2"):
        RayExecutor(ExecutionConfig(executor="ray", ray_actors=5), ws, per_round=3)
    with pytest.raises(ConfigError, match=r"execution.ray_actor_clients.*is for executor 'ray'"):
        ExecutionConfig(ray_actor_clients="together")
    nhwc = config(plan=TrainPlan(epochs=1, batch_size=10, lr=0.05, channels_last=True))
    nhwc = dataclasses.replace(nhwc, execution=ExecutionConfig(executor="ray",
                                                               ray_actor_clients="together"))
    with pytest.raises(ConfigError, match=r"execution.ray_actor_clients.*cannot be trained together"
                                          r".*channels-last"):
        make_executor(nhwc, ws, build_model("tutorial_cnn"), torch.device("cpu"))


class SlowAndSignals(DelegatingWorker):
    def __init__(self, inner, marker: str):
        super().__init__(inner)
        self.marker = marker

    def fit(self, weights, plan, *, seed, batches=None):
        Path(self.marker).touch()
        time.sleep(1.5)
        return self.inner.fit(weights, plan, seed=seed, batches=batches)


def test_a_node_removed_mid_round_loses_no_client(cluster, data, one_thread, tmp_path):
    cfg = dataclasses.replace(config(), execution=ExecutionConfig(executor="ray", ray_actors=3))
    reference = run(data, dataclasses.replace(
        cfg, execution=ExecutionConfig(executor="sequential")))
    extra = cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    cluster.wait_for_nodes()
    marker = tmp_path / "started"
    ws = [SlowAndSignals(w, str(marker)) for w in workers(data, cfg)]

    def remove_when_training():
        while not marker.exists():
            time.sleep(0.05)
        cluster.remove_node(extra)

    remover = threading.Thread(target=remove_when_training, daemon=True)
    remover.start()
    result = run(data, cfg, ws=ws)
    remover.join(30)
    assert same_weights(reference.weights, result.weights)
    assert result.history[0]["compute"].get("actors_replaced", 0) >= 1
    assert not any(h["failed"] for h in result.history)


def ray_processes(marker: str) -> list[int]:
    """Processes whose environment carries ``marker``: the CLI run and all it started."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def gone(marker: str, within: float = 20.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := ray_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


CLI = ["--train-size", "1200", "--test-size", "200", "--model", "mlp2nn", "--no-progress",
       "--executor", "ray", "--ray-object-store-mb", "100"]


def fedlearn_env(marker):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "FEDLEARN_RAY_TEST": marker, "PYTHONWARNINGS": "ignore"}


def test_ctrl_c_leaves_no_ray_process(mnist_dir, tmp_path):
    """The CLI on a local runtime, as a user starts it; interrupted after its first round (a
    run that ends or fails leaves through the same door: the server's ``with`` block)."""
    marker = uuid.uuid4().hex
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fedlearn", "train", *CLI, "--rounds", "500",
                             "--data-dir", mnist_dir, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=fedlearn_env(marker))
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert len(ray_processes(marker)) > 2  # the driver, Ray's own processes, its actors
    history = json.loads(torch.load(out / "checkpoint.pt", weights_only=True)["history"])
    assert history[0]["compute"]["clients"] == "ray"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    assert not gone(marker), "Ray processes outlived the run"


def test_an_unreachable_address_is_refused_quickly(tmp_path, mnist_dir, capsys):
    from fedlearn.cli import main

    with socket_port() as port:  # a port nothing listens on
        t0 = time.monotonic()
        code = main(["train", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                     "--data-dir", mnist_dir, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--ray-address" in err and "cannot reach a Ray cluster" in err, err
    assert time.monotonic() - t0 < 30


class socket_port:
    def __enter__(self):
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False


def ray_actor_processes(marker: str) -> list[int]:
    """Actor processes (Ray titles them ``ray::ClientActor``) of the cluster marked ``marker``."""
    pids = []
    for pid in ray_processes(marker):
        try:
            if b"ray::ClientActor" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_the_cli_joins_a_running_cluster_and_leaves_it_running(mnist_dir, tmp_path):
    """As on a cluster: `ray start --head`, then `fedlearn train --ray-address HOST:PORT`. The
    run trains on the cluster's actors, removes them when it ends, and the cluster stays up.
    The head runs with Ray's token authentication (as it does wherever a token exists, e.g.
    after any local `ray.init`), and the run joins it with the token it finds."""
    head_marker, run_marker = uuid.uuid4().hex, uuid.uuid4().hex
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(__import__("secrets").token_hex(32))

    def env(marker):
        return {**{k: v for k, v in fedlearn_env(marker).items()
                   if not k.startswith("RAY_AUTH")}, "HOME": str(home)}
    with socket_port() as port:
        pass
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head",
                             "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env(head_marker))
    try:
        out = tmp_path / "run"
        deadline = time.monotonic() + 60
        while True:  # the head is up when its GCS port answers
            assert head.poll() is None, head.communicate()
            try:
                __import__("socket").create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        done = subprocess.run([sys.executable, "-m", "fedlearn", "train", *CLI[:-2],
                               "--rounds", "1", "--ray-address", f"127.0.0.1:{port}",
                               "--data-dir", mnist_dir, "--out", str(out)],
                              capture_output=True, text=True, env=env(run_marker),
                              timeout=240)
        assert done.returncode == 0, done.stderr
        history = json.loads((out / "history.json").read_text())
        assert history[0]["compute"]["clients"] == "ray" and history[0]["compute"]["actors"] == 2
        assert head.poll() is None  # the cluster keeps running
        assert not gone(run_marker), "the run's driver outlived it"
        deadline = time.monotonic() + 20
        while ray_actor_processes(head_marker) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not ray_actor_processes(head_marker), "the run's actors outlived it"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        head.wait(60)
    assert not gone(head_marker, within=30), "the test's Ray head left processes"


def test_actors_killed_by_rays_memory_monitor_are_reported_as_such(mnist_dir, tmp_path):
    """A node whose memory is above Ray's threshold: its memory monitor kills the actors; the
    run is refused saying so, not sent looking for a missing install."""
    marker = uuid.uuid4().hex
    env = {**fedlearn_env(marker), "RAY_memory_usage_threshold": "0.01",
           "RAY_memory_monitor_refresh_ms": "100"}
    done = subprocess.run([sys.executable, "-m", "fedlearn", "train", *CLI, "--rounds", "1",
                           "--data-dir", mnist_dir, "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "Ray's memory monitor killed them" in done.stderr, done.stderr
    assert "exceeded threshold" in done.stderr and "Traceback" not in done.stderr
    assert not gone(marker), "Ray processes outlived the run"
