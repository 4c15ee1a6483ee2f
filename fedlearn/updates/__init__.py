"""What a worker sends back, and what happens to it on the way to the average.

- :mod:`.update` — :class:`Update` (a weight change, an example count, metrics) and sizes.
- :mod:`.privacy` — clipping, Gaussian noise and the accountant (DP-FedAvg).
- :mod:`.compression` — stochastic quantization, top-k with error feedback.
- :mod:`.secagg` — pairwise masking secure aggregation.

They are put together with the aggregation rules, in order, by the server's
:mod:`fedlearn.server.pipeline` (this package sits below :mod:`fedlearn.aggregation`).
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
