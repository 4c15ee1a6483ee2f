"""How the server combines updates: pure functions on tensors.

- :mod:`.mean` — the example-weighted mean of FedAvg (McMahan et al. 2017), deltas.
- :mod:`.robust` — coordinate median, trimmed mean (Yin et al. 2018), Krum
  (Blanchard et al. 2017), and the checks every update passes first.
"""
from fedlearn.aggregation.mean import apply_delta, fedavg, state_delta, weighted_average
from fedlearn.aggregation.robust import (
                                         coordinate_median,
                                         krum_select,
                                         trimmed_mean,
                                         update_norm,
                                         validate_update,
)

__all__ = ["apply_delta", "coordinate_median", "fedavg", "krum_select", "state_delta",
           "trimmed_mean", "update_norm", "validate_update", "weighted_average"]
