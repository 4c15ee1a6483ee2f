"""The Ray executor's pure parts, by hand examples and without a Ray cluster: which client goes
to which actor (schedule), what a fault means (faults), the actors' bounded shard cache (an LRU
by bytes, alone and inside an actor), and the version guard on Ray's private token-auth call.
The executor that puts them together runs on a real cluster in tests/backends/test_ray.py."""
from __future__ import annotations

import pytest
import torch

from fedlearn.config import ConfigError, ExecutionConfig, TrainPlan
from fedlearn.execution.ray.actor import ClientActor
from fedlearn.execution.ray.cache import ShardCache, shard_nbytes
from fedlearn.execution.ray.faults import (
    Decision,
    Fault,
    cause_line,
    decide,
    restart_after_start_failure,
    start_refusal,
    stranded,
)
from fedlearn.execution.ray.schedule import Call, again, chunks, pick, tasks_for
from fedlearn.execution.ray.wire import ActorCall, update_from_wire
from fedlearn.updates import Update


def test_a_round_is_cut_into_tasks_one_per_client_or_one_chunk_per_actor():
    alone = tasks_for(["a", "b", "c"], [11, 12, 13], actors=2, together=False)
    assert alone == [(Call(0, "a", 11),), (Call(1, "b", 12),), (Call(2, "c", 13),)]
    assert tasks_for(["a", "b", "c"], [11, 12, 13], actors=2, together=True) == [
        (Call(0, "a", 11), Call(1, "b", 12)), (Call(2, "c", 13),)]
    assert again(alone[1]) == (Call(1, "b", 12, attempt=1),)
    assert again(again(alone[1]))[0].attempt == 2
    assert chunks(5, 2) == [[0, 1, 2], [3, 4]] and chunks(2, 4) == [[0], [1]]


def test_a_free_actor_takes_its_own_client_then_nobodys_then_the_first():
    queue, names = ["t4", "t7", "t9"], ["a", "b", "c"]
    assert pick(queue, names, held={"c"}, held_anywhere={"a", "c"}) == 2
    assert pick(queue, names, held=set(), held_anywhere={"a", "c"}) == 1
    assert pick(queue, names, held=set(), held_anywhere={"a", "b", "c"}) == 0


def test_what_each_fault_means():
    died = Fault("actor_died", "the actor died unexpectedly")
    assert decide(died, deaths=1, reruns=2) == Decision(rerun=True, replace_actor=True)
    assert decide(died, deaths=2, reruns=2) == Decision(rerun=True, replace_actor=True)
    assert decide(died, deaths=3, reruns=2) == Decision(
        False, True, "its Ray actor died 3 times: the actor died unexpectedly")
    assert decide(died, deaths=1, reruns=0).rerun is False
    # rerunning what Ray killed for memory would only run out again
    assert decide(Fault("out_of_memory", "node n1: 95% used"), 1, 2) == Decision(
        False, True, "out of memory: Ray killed its actor (node n1: 95% used)")
    # a hung call is stopped only by killing its actor
    assert decide(Fault("timeout", "4 s"), 1, 2) == Decision(
        False, True, "WorkerTimeout: no reply within 4 s")
    # the client's call failed, not the actor: it keeps serving
    assert decide(Fault("error", "RaySystemError: shard lost"), 1, 2) == Decision(
        False, False, "RaySystemError: shard lost")
    assert decide(Fault("short_reply", "1 of 2 calls"), 1, 2) == Decision(
        False, False, "its Ray actor answered 1 of 2 calls")


def test_actors_that_fail_to_start_are_restarted_boundedly_then_refused():
    assert restart_after_start_failure(2, actors=2) and not restart_after_start_failure(3, 2)
    assert "failed to start (3 times)" in start_refusal(["x", "y", "ModuleNotFoundError: z"], 60)
    assert "every node" in start_refusal(["ModuleNotFoundError: z"], 60)
    assert "memory monitor" in start_refusal(["Task killed; OOM kill reason: 97%"], 60)
    assert "no Ray actor started within 60 s" in start_refusal([], 60)
    assert stranded(["E: no fedlearn"], starting=False, start_timeout=60) == \
        "no Ray actor alive to run it (actors failed to start: E: no fedlearn)"
    assert stranded(["E"], starting=True, start_timeout=60) == \
        "no Ray actor alive to run it (none started within 60 s)"
    assert cause_line(RuntimeError("header\n\x1b[31mtrace\n  ValueError: why  \n")) == \
        "ValueError: why"


def test_the_shard_cache_keeps_the_most_recent_that_fit():
    cache = ShardCache(max_bytes=100)
    assert cache.put("a", "A", 40) == [] and cache.put("b", "B", 40) == []
    assert cache.get("a") == "A"  # a is now the most recent
    assert cache.put("c", "C", 40) == ["b"]  # b, least recently used, goes
    assert cache.keys() == ["a", "c"] and cache.nbytes == 80
    assert cache.put("d", "D", 90) == ["a", "c"]  # as many as it takes, oldest first
    assert cache.keys() == ["d"] and cache.get("b") is None
    assert cache.put("huge", "H", 101) == [] and "huge" not in cache  # above the whole bound
    assert cache.put("d", "D2", 10) == [] and cache.nbytes == 10 and cache.get("d") == "D2"
    assert cache.put("e", "E", 50) == [] and cache.resize(55) == ["d"] and cache.keys() == ["e"]
    assert ShardCache(0).put("a", "A", 1) == [] and len(ShardCache(0)) == 0
    with pytest.raises(ValueError):
        ShardCache(-1)


def test_a_shard_is_measured_by_the_tensors_it_holds():
    x = torch.zeros(10, 4)  # 160 bytes
    holder = type("W", (), {})()
    holder.x, holder.view, holder.y, holder.meta = x, x[:5], torch.zeros(3, dtype=torch.int64), \
        {"rows": [x]}
    assert shard_nbytes(holder) == 160 + 24  # the view and the dict's x share x's storage


class Client:
    """A stand-in worker: what an actor calls on one."""

    def __init__(self, name: str):
        self.name, self.rounds, self.state = name, [], None

    def fit(self, weights, plan, *, seed, batches=None):
        return Update(self.name, {"w": torch.full((1,), float(seed))}, 1, {})

    def state_dict(self):
        return {"calls": len(self.rounds)}

    def load_state_dict(self, state):
        self.state = state

    def set_round(self, round_):
        self.rounds.append(round_)


class LocalActor(ClientActor):
    """The actor, its shards fetched from a dict instead of Ray's object store."""

    def _fetch(self, shard):
        self.fetches.append(shard[0])
        return Client(shard[0])


def test_an_actor_keeps_its_shards_within_its_bound():
    before = torch.get_num_threads()
    try:
        actor = LocalActor(before)
        actor.fetches = []

        def fit(*names):
            calls = [ActorCall(n, [n], 40, {"calls": 0}, seed) for seed, n in enumerate(names)]
            return actor.fit(calls, 1, {}, TrainPlan(), cache_bytes=100)

        assert (fit("a").fetched, fit("b").fetched, fit("a").fetched) == (1, 1, 0)
        answer = fit("c")  # evicts b, the least recently used
        assert answer.fetched == 1 and answer.held == ("a", "c")
        answer = fit("b", "a")  # b again (evicting a), then a again (evicting c)
        assert answer.fetched == 2 and answer.held == ("b", "a")
        assert actor.fetches == ["a", "b", "c", "b", "a"]
        reply = answer.replies[1]
        assert reply.ok and update_from_wire(reply.payload).delta["w"].item() == 1.0
        assert reply.state == {"calls": 1}  # the refetched client was told its round
        answer = actor.fit([ActorCall("a", ["a"], 40, None, 0)], 2, {}, TrainPlan(),
                           cache_bytes=40)  # a smaller bound: what no longer fits goes
        assert answer.fetched == 0 and answer.held == ("a",)
    finally:
        torch.set_num_threads(before)


def test_ray_token_auth_is_guarded_by_the_ray_version(tmp_path, monkeypatch):
    from fedlearn.execution.ray import runtime

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    runtime._token_auth_as_for_auto("2.61.0")  # no token at hand: nothing to choose
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 64)
    with pytest.raises(ConfigError, match=r"execution.ray_address.*Ray 2\.61\.0.*only on Ray "
                                          r"2\.60\.0.*RAY_AUTH_MODE=token"):
        runtime._token_auth_as_for_auto("2.61.0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user chose: join as Ray would
    runtime._token_auth_as_for_auto("2.61.0")
    monkeypatch.delenv("RAY_AUTH_MODE")
    # through connect, with the installed Ray claiming another version: refused before joining
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray driver is already connected in this process")
    monkeypatch.setattr(ray, "__version__", "3.0.0")
    with pytest.raises(ConfigError, match=r"Ray 3\.0\.0"):
        runtime.connect(ExecutionConfig(executor="ray", ray_address="auto"))
    assert not ray.is_initialized()
