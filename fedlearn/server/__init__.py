"""The server's side of a run: select → train → aggregate → evaluate, round after round.

- :mod:`.federation` — :class:`FederatedServer` (one round = ``step()``) and ``run_federation``.
- :mod:`.rounds` — one round of FedAvg or the tutorial's federated SGD, with timeouts.
- :mod:`.pipeline` — clip → compress → mask → aggregate → noise, for one round.
- :mod:`.optimizers` — how the average is applied: FedAvg, FedAvgM, FedAdam.
- :mod:`.availability` — devices that come and go, bandwidth and deadlines (simulated).
- :mod:`.warm_start` — pre-training on a server-held proxy set.
- :mod:`.checkpoint` — atomic checkpoints, loaded with ``weights_only=True``.
"""
from fedlearn.server.checkpoint import CheckpointError
from fedlearn.server.federation import (
                                        FederatedServer,
                                        FederationResult,
                                        RoundFailedError,
                                        run_federation,
)

__all__ = ["CheckpointError", "FederatedServer", "FederationResult", "RoundFailedError",
           "run_federation"]
