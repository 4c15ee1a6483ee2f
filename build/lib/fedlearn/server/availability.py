"""Which devices can take part in a round, and which of them report in time.

After Bonawitz et al. 2019, "Towards Federated Learning at Scale: System
Design": a device is eligible only while idle, charging and on an unmetered
network; the server over-selects (e.g. 130% of the reporting goal) because some
selected devices decline or drop out mid-round, and closes the round when the
goal is reached or the deadline passes. Late reports are discarded.

Every client gets a seeded profile: how often it is eligible, its download and
(slower) upload bandwidth, and how fast it trains. Bytes and examples turn into
simulated seconds, so stragglers follow from the network, and compression shows
its value. All functions are pure; one round's draw depends only on the seed,
the round and the attempt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlearn.config import AvailabilityConfig, CompressionConfig, ConfigError


@dataclass(frozen=True)
class ClientProfiles:
    """Per-client arrays, index i for client i."""

    availability: np.ndarray  # probability of being eligible in a round
    down_bytes_per_s: np.ndarray
    up_bytes_per_s: np.ndarray
    examples_per_s: np.ndarray


def client_profiles(num_clients: int, config: AvailabilityConfig, seed: int) -> ClientProfiles:
    """Seeded device profiles: Beta-distributed eligibility, log-normal bandwidth and speed."""
    rng = np.random.default_rng([seed, 0xA7A11])
    mean, concentration = config.mean_availability, 4.0
    availability = rng.beta(mean * concentration, (1 - mean) * concentration, num_clients) \
        if mean < 1 else np.ones(num_clients)
    down = config.download_mbps * 1e6 / 8 * rng.lognormal(0, config.bandwidth_spread, num_clients)
    up = down * config.upload_ratio
    speed = config.examples_per_second * rng.lognormal(0, config.bandwidth_spread / 2, num_clients)
    return ClientProfiles(availability, down, up, speed)


def upload_nbytes(model_nbytes: int, compression: CompressionConfig) -> int:
    """The upload size a compressed float32 update will have (index + value for top-k)."""
    if compression.method == "quantize":
        return math.ceil(model_nbytes * compression.bits / 32)
    if compression.method == "topk":
        return math.ceil(model_nbytes * compression.topk_fraction * 2)
    return model_nbytes


def round_seconds(profiles: ClientProfiles, client: int, *, down_nbytes: int, up_nbytes: int,
                  examples: int) -> float:
    """Simulated time for one client: download, train, upload."""
    return (down_nbytes / profiles.down_bytes_per_s[client]
            + examples / profiles.examples_per_s[client]
            + up_nbytes / profiles.up_bytes_per_s[client])


def plan_round(profiles: ClientProfiles, pool: list[int], goal: int, config: AvailabilityConfig,
               *, seed: int, round_: int, attempt: int, seconds) -> dict:
    """Who is eligible, selected, declines, drops out, straggles, and who reports.

    ``pool`` holds the indices still in training (personalized clients leave it);
    ``seconds(i)`` is client i's simulated round time. Returns index lists under
    available, selected, declined, dropped, stragglers, late and reporting (the
    first ``goal`` to finish before the deadline), and the round's simulated seconds.
    """
    if goal < 1:
        raise ConfigError("federation.fraction",
                          f"the reporting goal must be at least 1 (got {goal})")
    rng = np.random.default_rng([seed, round_, attempt, 0xA7A12])
    ids = np.asarray(sorted(pool), dtype=np.int64)
    eligible = ids[rng.random(len(ids)) < profiles.availability[ids]]
    want = min(len(eligible), math.ceil(goal * config.over_selection))
    selected = np.sort(rng.choice(eligible, size=want, replace=False)) if want else eligible[:0]
    declines = rng.random(len(selected)) < config.decline_rate
    drops = rng.random(len(selected)) < config.dropout_rate
    declined = selected[declines].tolist()
    dropped = selected[~declines & drops].tolist()
    finishing = selected[~declines & ~drops]
    times = {int(i): float(seconds(int(i))) for i in finishing}
    deadline = config.deadline if config.deadline is not None else math.inf
    on_time = sorted((t, i) for i, t in times.items() if t <= deadline)
    reporting = sorted(i for _, i in on_time[:goal])
    closed_at = on_time[goal - 1][0] if len(on_time) >= goal else \
        (deadline if deadline < math.inf else max(times.values(), default=0.0))
    return {"available": eligible.tolist(), "selected": selected.tolist(), "declined": declined,
            "dropped": dropped, "stragglers": sorted(i for i, t in times.items() if t > deadline),
            "late": sorted(i for _, i in on_time[goal:]), "reporting": reporting,
            "simulated_seconds": closed_at}
