"""What a worker sends back, and what happens to it on the way to the average.

- :mod:`.update` — :class:`Update` (a weight change, an example count, metrics) and sizes.
- :mod:`.privacy` — clipping, Gaussian noise and the accountant (DP-FedAvg).
- :mod:`.compression` — stochastic quantization, top-k with error feedback.
- :mod:`.secagg` — pairwise masking secure aggregation.
- :mod:`.client_side` — what a client does to its update before it leaves (clip, compress,
  mask); the server's side is :mod:`fedlearn.aggregation.server_side`.
"""
from fedlearn.updates.update import (
    State,
    Update,
    add_change,
    cast_like,
    detached_cpu_state,
    is_counter,
    state_change,
    state_nbytes,
    trained,
)

__all__ = ["State", "Update", "add_change", "cast_like", "detached_cpu_state", "is_counter",
           "state_change", "state_nbytes", "trained"]
