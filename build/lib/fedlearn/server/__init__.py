"""The server's side of a run: select → train → aggregate → evaluate, round after round.

- :mod:`.federation` — :class:`FederatedServer` (one round = ``step()``) and ``run_federation``.
- :mod:`.strategies` — a round's maths and state (configure the clients, aggregate their
  replies), with the client's side — clip, compress, mask — run where each client runs.
- :mod:`.rounds` — the pieces the strategies share: seeds, the aggregation rule, model hopping.
- :mod:`.secure_rounds` — secure aggregation's four stages, driven from here, relayed only.
- :mod:`.optimizers` — how the average is applied: FedAvg, FedAvgM, FedAdam.
- :mod:`.availability` — devices that come and go, bandwidth and deadlines (simulated).
- :mod:`.warm_start` — pre-training on a server-held proxy set.
- :mod:`.checkpoint` — atomic checkpoints, loaded with ``weights_only=True``.
- :mod:`.record` — what each round's record says.
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
