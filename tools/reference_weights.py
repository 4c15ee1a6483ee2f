"""Hash the final weights of 14 small runs, to show a refactor changed no number.

    python tools/reference_weights.py MNIST_DIR before.json   # on the old commit (a worktree)
    python tools/reference_weights.py MNIST_DIR after.json    # on the new one
    diff before.json after.json                               # empty: bit-identical

One torch thread: results are bit-identical only at equal thread counts. The hashes
depend on the machine's arithmetic, so compare two runs on the same machine.
"""
import hashlib
import json
import sys
import tempfile

import torch

from fedlearn.config import (
    SECTIONS,
    CompressionConfig,
    DataConfig,
    DPConfig,
    DPSGDConfig,
    ExperimentConfig,
)
from fedlearn.experiment import run_experiment

FOUR, FIVE = ("a", "b", "c", "d"), ("a", "b", "c", "d", "e")
RUNS = {
    "fedavg": {},
    "fedsgd": {"federation": {"algorithm": "model_hopping", "rounds": 1}},
    "median4": {"partition": {"workers": FOUR}, "robustness": {"aggregator": "median"}},
    "dp": {"dp": DPConfig(clip_norm=1.0, noise_multiplier=0.5)},
    "quant": {"compression": CompressionConfig(method="quantize", bits=4)},
    "topk": {"compression": CompressionConfig(method="topk", topk_fraction=0.05)},
    "secagg": {"secure_aggregation": True},
    "momentum": {"server": {"optimizer": "momentum", "lr": 1.0}},
    "adam": {"server": {"optimizer": "adam", "lr": 0.01}},
    "prox_shards": {"plan": {"prox_mu": 0.01}, "federation": {"fraction": 0.5},
                    "partition": {"scheme": "shards", "workers": FOUR}},
    "dpsgd": {"dp_sgd": DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)},
    "mcmahan": {"federation": {"model": "mcmahan_cnn"}, "plan": {"batch_size": 10}},
    "warm": {"warm_start": {"size": 200}},
    "robust_krum": {"partition": {"workers": FIVE}, "robustness": {"aggregator": "krum"}},
}


def weights_hash(weights) -> str:
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(weights[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main(mnist_dir: str, out_path: str) -> None:
    torch.set_num_threads(1)
    data = DataConfig(data_dir=mnist_dir, train_size=1200, test_size=300)
    out = {}
    for name, changes in RUNS.items():
        sections = {"federation": {"rounds": 2, "device": "cpu"}, "plan": {"batch_size": 32}}
        for section, change in changes.items():
            if isinstance(change, dict):
                sections[section] = {**sections.get(section, {}), **change}
        config = ExperimentConfig(
            data=data, **{k: SECTIONS[k](**v) for k, v in sections.items()},
            **{k: v for k, v in changes.items() if not isinstance(v, dict)})
        result = run_experiment(config, tempfile.mkdtemp(), progress=False)
        out[name] = [weights_hash(result.weights), result.history[-1]["test_accuracy"]]
        print(name, out[name], flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
