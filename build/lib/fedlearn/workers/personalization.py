"""Personalization after federated training.

The seed of this tutorial: "on-device models can be tweaked for the user".
Each chosen client fine-tunes a copy of the global model on its own data for a
few steps (the simplest form, "FedAvg + local fine-tuning"; Wang et al. 2019,
"Federated Evaluation of On-device Personalization") and reports accuracy on a
held-out share of its own data before and after. The personalized weights stay
on the client; the global model is not changed; personalized clients leave the
training pool.
"""
from __future__ import annotations

from fedlearn.config import TrainPlan
from fedlearn.training import derive_seed


def personalize_workers(workers, names, weights, plan: TrainPlan, *, steps: int,
                        seed: int) -> list[dict]:
    """Each named worker fine-tunes a copy of ``weights`` locally; one row per worker."""
    if steps < 1:
        raise ValueError(f"personalize: steps must be >= 1 (got {steps})")
    by_name = {w.name: (i, w) for i, w in enumerate(workers)}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise ValueError(f"personalize: unknown workers {unknown}")
    rows = []
    for name in names:
        i, worker = by_name[name]
        rows.append(worker.personalize(weights, plan, steps=steps,
                                       seed=derive_seed(seed, 0, 20_000 + i)))
    return rows


def personalize_clients(server, names, plan: TrainPlan, *, steps: int = 20) -> list[dict]:
    """Fine-tune on each named client of a running federation; they leave the training pool."""
    rows = personalize_workers(server.workers, names, server.weights, plan, steps=steps,
                               seed=server.config.seed)
    server.retire(names)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Mean accuracy before/after, and how many clients gained."""
    if not rows:
        return {"clients": 0}
    before = sum(r["before"] for r in rows) / len(rows)
    after = sum(r["after"] for r in rows) / len(rows)
    return {"clients": len(rows), "mean_before": before, "mean_after": after,
            "improved": sum(r["after"] > r["before"] for r in rows)}
