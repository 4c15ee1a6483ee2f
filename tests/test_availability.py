"""Availability, over-selection, declines, drop-outs and stragglers: hand-checked bookkeeping."""
import math

import numpy as np
import pytest

from fedlearn.config import (
    AvailabilityConfig,
    CompressionConfig,
    ConfigError,
    ExperimentConfig,
    FederationConfig,
)
from fedlearn.server.availability import (
    ClientProfiles,
    client_profiles,
    plan_round,
    round_seconds,
    upload_nbytes,
)
from fedlearn.server.federation import FederatedServer
from fedlearn.workers import VirtualWorker


def flat_profiles(n, availability=1.0):
    return ClientProfiles(np.full(n, availability), np.full(n, 1e6), np.full(n, 2e5),
                          np.full(n, 100.0))


def test_round_seconds_by_hand():
    p = flat_profiles(1)
    # 2 MB down at 1 MB/s + 300 examples at 100/s + 0.4 MB up at 0.2 MB/s = 2 + 3 + 2
    assert round_seconds(p, 0, down_nbytes=2_000_000, up_nbytes=400_000, examples=300) == 7.0


def test_upload_sizes_follow_the_compression():
    assert upload_nbytes(4000, CompressionConfig()) == 4000
    assert upload_nbytes(4000, CompressionConfig(method="quantize", bits=8)) == 1000
    assert upload_nbytes(4000, CompressionConfig(method="topk", topk_fraction=0.01)) == 80


def test_over_selection_arithmetic_and_everyone_reports_without_losses():
    cfg = AvailabilityConfig(mean_availability=1.0, over_selection=1.3, decline_rate=0,
                             dropout_rate=0)
    plan = plan_round(flat_profiles(100), list(range(100)), 10, cfg, seed=0, round_=1,
                      attempt=0, seconds=lambda i: float(i))
    assert len(plan["available"]) == 100 and len(plan["selected"]) == math.ceil(10 * 1.3) == 13
    assert plan["reporting"] == sorted(plan["selected"])[:10]  # the 10 fastest (time = index)
    assert plan["late"] == sorted(plan["selected"])[10:]
    assert plan["declined"] == plan["dropped"] == plan["stragglers"] == []
    assert plan["simulated_seconds"] == sorted(plan["selected"])[9]  # closes at the 10th report


def test_declines_dropouts_and_stragglers_are_disjoint_and_complete():
    cfg = AvailabilityConfig(mean_availability=0.6, over_selection=1.5, decline_rate=0.2,
                             dropout_rate=0.2, deadline=50.0)
    profiles = client_profiles(200, cfg, seed=3)
    plan = plan_round(profiles, list(range(200)), 20, cfg, seed=3, round_=4, attempt=0,
                      seconds=lambda i: float(i % 100))
    groups = [plan[k] for k in ("declined", "dropped", "stragglers", "late", "reporting")]
    flat = [i for g in groups for i in g]
    assert sorted(flat) == sorted(plan["selected"]) and len(set(flat)) == len(flat)
    assert set(plan["selected"]) <= set(plan["available"])
    assert all(i % 100 > 50 for i in plan["stragglers"])
    assert len(plan["reporting"]) <= 20 and plan["simulated_seconds"] <= 50.0
    again = plan_round(profiles, list(range(200)), 20, cfg, seed=3, round_=4, attempt=0,
                       seconds=lambda i: float(i % 100))
    assert again == plan  # seeded
    retry = plan_round(profiles, list(range(200)), 20, cfg, seed=3, round_=4, attempt=1,
                       seconds=lambda i: float(i % 100))
    assert retry["selected"] != plan["selected"]  # a retried round draws afresh


def test_profiles_are_seeded_and_uploads_are_slower():
    cfg = AvailabilityConfig(upload_ratio=0.25)
    a, b = client_profiles(50, cfg, seed=1), client_profiles(50, cfg, seed=1)
    assert np.array_equal(a.down_bytes_per_s, b.down_bytes_per_s)
    assert np.allclose(a.up_bytes_per_s, 0.25 * a.down_bytes_per_s)
    assert 0.3 < a.availability.mean() < 0.7


@pytest.mark.parametrize("kwargs,argument", [({"over_selection": 0.9}, "over_selection"),
                                             ({"mean_availability": 0}, "mean_availability"),
                                             ({"decline_rate": 1.0}, "decline_rate"),
                                             ({"deadline": 0}, "deadline"),
                                             ({"upload_ratio": -1}, "upload_ratio")])
def test_bad_availability_settings(kwargs, argument):
    with pytest.raises(ConfigError) as err:
        AvailabilityConfig(**kwargs)
    assert err.value.path == f"availability.{argument}"


def test_history_records_who_was_available_selected_dropped_and_declined(synthetic):
    x, y = synthetic
    workers = [VirtualWorker(f"c{i}", x[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10],
                             model="mlp2nn") for i in range(20)]
    cfg = ExperimentConfig(federation=FederationConfig(model="mlp2nn", rounds=3, fraction=0.25,
                                                       device="cpu"),
                           availability=AvailabilityConfig(decline_rate=0.2, dropout_rate=0.2))
    server = FederatedServer(workers, cfg, x, y)
    for _ in range(3):
        record = server.step()
        counts = record.availability
        assert counts["goal"] == 5 and counts["selected"] <= math.ceil(5 * 1.3)
        assert counts["selected"] == len(record.selected) <= counts["available"] <= 20
        assert counts["completed"] == len(record.examples) <= 5
        assert counts["declined"] == len(record.declined_clients)
        assert counts["dropped"] == len(record.dropped_clients)
        lost = set(record.declined_clients) | set(record.dropped_clients) | \
            set(record.late_clients)
        assert not lost & set(record.examples)  # their updates never count
    server.retire(["c0", "c1"])
    assert not {"c0", "c1"} & set(server.step().selected)
