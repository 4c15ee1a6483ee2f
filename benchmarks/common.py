"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import json
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (every figure names the machine it was measured on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def write_results(path: str | None, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` (if given), creating its folder."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=1))


def interleave(runs: dict, rounds: int) -> list[dict]:
    """Step two FederatedServers in turn, round by round; compare their weights each round.

    ``runs`` maps two labels to servers, the reference first. Interleaving makes
    machine noise hit both alike. Each row has both train seconds and accuracies,
    their ratio (second / first) and the largest weight difference.
    """
    (ref, ref_server), (other, other_server) = runs.items()
    rows = []
    for r in range(1, rounds + 1):
        a, b = ref_server.step(), other_server.step()
        diff = max((other_server.weights[k] - ref_server.weights[k]).abs().max().item()
                   for k in ref_server.weights)
        row = {"round": r, f"{ref}_seconds": a["train_seconds"],
               f"{other}_seconds": b["train_seconds"], f"{ref}_accuracy": a["test_accuracy"],
               f"{other}_accuracy": b["test_accuracy"], "max_abs_weight_diff": diff,
               "ratio": b["train_seconds"] / a["train_seconds"]}
        rows.append(row)
        print(f"round {r}: {ref} {a['train_seconds']:.2f}s | {other} {b['train_seconds']:.2f}s"
              f" | ratio {row['ratio']:.3f} | accuracy {b['test_accuracy']:.4f} vs "
              f"{a['test_accuracy']:.4f} | max |w diff| {diff:.1e}", flush=True)
    return rows
