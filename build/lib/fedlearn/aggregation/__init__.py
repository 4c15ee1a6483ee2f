"""How the server combines updates: pure functions on tensors.

- :mod:`.mean` — the example-weighted mean of FedAvg (McMahan et al. 2017), deltas.
- :mod:`.robust` — coordinate median, trimmed mean (Yin et al. 2018), Krum
  (Blanchard et al. 2017), and the checks every update passes first.
"""
from collections.abc import Callable, Sequence

from fedlearn.aggregation.mean import apply_delta, fedavg, state_delta, weighted_average
from fedlearn.aggregation.robust import (
    coordinate_median,
    krum_select,
    trimmed_mean,
    update_norm,
    validate_update,
    validate_upload,
)
from fedlearn.config import RobustnessConfig
from fedlearn.updates.update import State

Rule = Callable[[Sequence[State], Sequence[int], RobustnessConfig], State]

# The registry of aggregation rules, by the name ``robustness.aggregator`` takes (its Literal,
# fedlearn.config.Aggregator, lists the same names; tests/test_registries.py keeps them equal).
# Each takes the updates, their example counts and the section; only the mean uses the counts.
AGGREGATION_RULES: dict[str, Rule] = {
    "mean": lambda deltas, examples, robust: fedavg(deltas, examples),
    "median": lambda deltas, examples, robust: coordinate_median(deltas),
    "trimmed_mean": lambda deltas, examples, robust: trimmed_mean(deltas, robust.trim_fraction),
    "krum": lambda deltas, examples, robust: dict(deltas[krum_select(deltas,
                                                                     robust.krum_byzantine)]),
}

__all__ = ["AGGREGATION_RULES", "apply_delta", "coordinate_median", "fedavg", "krum_select",
           "state_delta", "trimmed_mean", "update_norm", "validate_update", "validate_upload",
           "weighted_average"]
