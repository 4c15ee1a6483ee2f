"""Every door checks its input: start from a valid configuration, maybe break one field;
a broken one must fail with a ConfigError naming that field, a valid one must run a round."""
import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedlearn.config import (
    ConfigError,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    RobustnessConfig,
    TrainPlan,
)
from fedlearn.server.federation import RoundFailedError, run_federation
from fedlearn.workers import make_virtual_workers

G = torch.Generator().manual_seed(0)
X, Y = torch.randn(60, 1, 28, 28, generator=G), torch.arange(60) % 10
NAMES = ["bob", "alice", "carol", "dave", "erin"]
JUNK = [None, "1", math.nan, math.inf, -math.inf, True, [1]]

VALID = {
    "rounds": st.integers(1, 2), "lr": st.floats(0.001, 0.5), "batch_size": st.integers(4, 64),
    "epochs": st.integers(1, 2), "fraction": st.floats(0.2, 1.0),
    "momentum": st.floats(0, 0.95), "alpha": st.floats(0.05, 10), "min_updates": st.integers(1, 2),
    "round_timeout": st.one_of(st.none(), st.floats(5, 60)),
    "workers": st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True),
    "scheme": st.sampled_from(["iid", "shards", "dirichlet", "unbalanced"]),
    "aggregator": st.sampled_from(["mean", "median", "trimmed_mean", "krum"]),
    "algorithm": st.sampled_from(["fedavg", "model_hopping"]),
}
INVALID = {
    "rounds": [0, -1, 1.5, *JUNK], "lr": [0, -0.1, *JUNK], "batch_size": [0, -5, 2.5, *JUNK],
    "epochs": [0, 1.5, *JUNK], "fraction": [0, 1.01, -1, *JUNK], "momentum": [1, -0.1, *JUNK],
    "alpha": [0, -1, *JUNK], "min_updates": [0, -1, *JUNK], "round_timeout": [0, -1, "1", math.nan],
    "workers": [[], ["bob", "bob"], ["bob", ""], [" "]], "scheme": ["random", None, 1],
    "aggregator": ["fedavg", None], "algorithm": ["sgd", None],
}
SECTION = {"rounds": "federation", "fraction": "federation", "algorithm": "federation",
           "lr": "plan", "batch_size": "plan", "epochs": "plan", "momentum": "plan",
           "alpha": "partition", "workers": "partition", "scheme": "partition",
           "min_updates": "robustness", "round_timeout": "robustness", "aggregator": "robustness"}


# cross-field limits a valid draw of independent values may still hit: each refusal must
# name one of these, and most valid draws must really run
CROSS_FIELD = {"robustness.min_updates", "robustness.aggregator", "partition.workers",
               "partition.shards_per_worker", "partition.alpha", "partition.min_size"}


def test_valid_runs_and_broken_fails_naming_the_field():
    counts = {"valid ran": 0, "valid diverged": 0, "valid cross-field": 0, "broken refused": 0}

    def check(values, broken=None):
        try:
            config = ExperimentConfig(
                partition=PartitionConfig(workers=tuple(values["workers"]),
                                          scheme=values["scheme"], alpha=values["alpha"],
                                          min_size=2),
                plan=TrainPlan(epochs=values["epochs"], batch_size=values["batch_size"],
                               lr=values["lr"], momentum=values["momentum"]),
                federation=FederationConfig(rounds=values["rounds"], fraction=values["fraction"],
                                            model="mlp2nn", algorithm=values["algorithm"],
                                            device="cpu"),
                robustness=RobustnessConfig(aggregator=values["aggregator"],
                                            min_updates=values["min_updates"],
                                            round_timeout=values["round_timeout"]))
            workers, _ = make_virtual_workers(X, Y, config)
            result = run_federation(workers, config, X, Y)
        except ConfigError as exc:
            assert str(exc).startswith(f"{exc.path}: ") and len(str(exc)) > len(exc.path) + 10
            if broken is not None:
                assert exc.path == f"{SECTION[broken]}.{broken}"
                counts["broken refused"] += 1
            else:  # only a combination of valid values may be refused, never one value
                assert exc.path in CROSS_FIELD, f"valid {values} refused: {exc}"
                counts["valid cross-field"] += 1
            return
        except RoundFailedError as exc:  # e.g. lr 0.5, batch 4 diverges: a clear stop, no NaNs
            assert broken is None and "NaN" in str(exc)
            counts["valid diverged"] += 1
            return
        assert broken is None, f"invalid {broken}={values[broken]!r} was accepted"
        assert 1 <= len(result.history) <= values["rounds"]
        counts["valid ran"] += 1

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    @given(values=st.fixed_dictionaries(VALID), data=st.data())
    def valid_with_one_broken(values, data):
        check(dict(values))  # the valid draw runs (or is refused for a combination) ...
        broken = data.draw(st.sampled_from(sorted(INVALID)))  # ... and fails with one field bad
        check({**values, broken: data.draw(st.sampled_from(INVALID[broken]))}, broken)

    valid_with_one_broken()
    # the draws really exercised both doors (derandomized: the same draws every run)
    assert counts["valid ran"] >= 10, counts
    assert counts["broken refused"] == 50, counts
