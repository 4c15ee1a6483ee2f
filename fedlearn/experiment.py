"""One call from a config to a finished run with its files on disk.

``run_experiment`` loads MNIST (or takes your own tensors, ``data=``), gives each worker
its shard, runs the federation loop with a checkpoint after every round, and writes
``history.json``, ``model.pt`` (a state dict), ``learning_curve.png``, ``config.json`` and
``data.sha256`` (the digest a resumed run's data must match). The CLI is a thin layer over
it; practitioners call it from Python.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fedlearn.config import ConfigError, ExperimentConfig
from fedlearn.data import load_mnist
from fedlearn.data.mnist import MnistTensors, check_tensors, digest, subset
from fedlearn.files import atomic_write
from fedlearn.models import check_data_fits
from fedlearn.plots import learning_curve, save_figure
from fedlearn.server.federation import FederationResult, resolve_device, run_federation
from fedlearn.server.warm_start import split_proxy, warm_start_weights
from fedlearn.workers import make_virtual_workers
from fedlearn.workers.base import Worker
from fedlearn.workers.personalization import personalize_workers, summarize

CHECKPOINT = "checkpoint.pt"
DATA_DIGEST = "data.sha256"


@dataclass
class ExperimentResult(FederationResult):
    out_dir: Path


def prepare_output_dir(out_dir: str | Path, *, resume: bool) -> Path:
    """Create ``out_dir`` and make sure a run may write there without losing anything."""
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ConfigError("out", f"cannot write to {out} ({exc.strerror or exc}); "
                          "choose a directory you can write to") from exc
    has_run = (out / CHECKPOINT).exists()
    if has_run and not resume:
        raise ConfigError("out", f"{out} already holds a run ({CHECKPOINT}); pass --resume "
                          "(resume=True) to continue it, or choose another output directory")
    if resume and not has_run:
        raise ConfigError("resume", f"no {CHECKPOINT} in {out} to resume from")
    if resume:  # a run killed while writing its checkpoint leaves the half-written copy
        for stale in out.glob(f".{CHECKPOINT}.*.tmp"):
            stale.unlink(missing_ok=True)
    return out


def keep_same_data(out: Path, data: MnistTensors, *, resume: bool) -> None:
    """Keep the digest of the run's data in ``out``: a resumed run must train and test on the
    data it started with (the configuration's fingerprint cannot see ``data=``)."""
    path, now = out / DATA_DIGEST, digest(data)
    if resume and path.is_file() and path.read_text().strip() != now:
        raise ConfigError("data", f"the run in {out} trained on other data (its {DATA_DIGEST} "
                          "differs): resume it with the data it started with, or start a new "
                          "run in another directory")
    atomic_write(path, lambda f: f.write(f"{now}\n".encode()))


def write_outputs(out: Path, config: ExperimentConfig, result: FederationResult) -> None:
    atomic_write(out / "history.json",
                  lambda f: f.write(json.dumps(result.history, indent=1).encode()))
    atomic_write(out / "config.json",
                  lambda f: f.write(json.dumps(config.to_dict(), indent=1).encode()))
    atomic_write(out / "model.pt", lambda f: torch.save(result.weights, f))
    fig = learning_curve({config.federation.algorithm: result.history})
    save_figure(fig, out / "learning_curve.png")


def run_experiment(config: ExperimentConfig, out_dir: str | Path, *, resume: bool = False,
                   progress: bool = False, workers: Sequence[Worker] | None = None,
                   personalize_steps: int = 0,
                   data: MnistTensors | tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor] | None = None) -> ExperimentResult:
    """Run ``config`` and write its outputs to ``out_dir``.

    ``data``: your own data set instead of MNIST, as (train_x, train_y, test_x, test_y)
    or :class:`fedlearn.data.MnistTensors` — float inputs already normalised
    (:func:`fedlearn.data.normalise`), integer class labels; ``config.data.train_size``
    and ``test_size`` still take seeded subsets. ``config.federation.model`` must fit
    its inputs (a ready-made name for 28x28 images, or your own ``nn.Module`` class).

    ``workers`` defaults to in-process workers holding ``config.partition``'s
    shards; pass others (e.g. PySyft Datasites) and only the test set is used here.
    ``personalize_steps`` > 0: afterwards every worker fine-tunes the final model on
    its own data and ``personalization.json`` gets each one's held-out accuracy
    before and after (needs ``partition.holdout`` > 0).
    """
    if isinstance(personalize_steps, bool) or not isinstance(personalize_steps, int) \
            or personalize_steps < 0:
        raise ConfigError("personalize_steps", f"must be an integer >= 0 (got "
                          f"{personalize_steps!r})")
    if personalize_steps and config.partition.holdout <= 0:
        raise ConfigError("partition.holdout", "personalization measures accuracy on each worker's "
                          "held-out share: set holdout > 0 (e.g. 0.2)")
    if data is not None and config.data.data_dir is not None:
        raise ConfigError("data.data_dir", "names an MNIST folder, but data= gives the data: "
                          "leave data_dir unset")
    own = None if data is None else subset(check_tensors(data), config.data, config.seed,
                                           "data=")
    if own is not None:  # before anything is written
        if workers is None:
            check_data_fits(config.federation.model, own.train_x, own.train_y)
        check_data_fits(config.federation.model, own.test_x, own.test_y, part="test")
    out = prepare_output_dir(out_dir, resume=resume)
    device = resolve_device(config.federation.device)
    fed, warm = config.federation, config.warm_start
    # workers of one's own (Datasites, say) hold the training data: the server needs only the
    # test set, unless it pre-trains on a proxy share of the training set (warm start)
    data = own if own is not None else load_mnist(
        config.data, seed=config.seed, train=workers is None or bool(warm.size))
    keep_same_data(out, data, resume=resume)
    weights = None
    if warm.size:  # the proxy set is split off before the clients get theirs
        proxy, rest = split_proxy(len(data.train_y), warm.size, config.seed)
        if not resume:
            weights, _ = warm_start_weights(fed.model, data.train_x[proxy], data.train_y[proxy],
                                            config.plan, epochs=warm.epochs,
                                            seed=config.seed, device=device)
        data = dataclasses.replace(data, train_x=data.train_x[rest], train_y=data.train_y[rest])
    if workers is None and config.dp_sgd is not None:
        from fedlearn.data.partition import partition
        from fedlearn.workers.dp_sgd import DPSGDWorker

        parts = partition(data.train_y.numpy(), config.partition, config.seed)
        workers = [DPSGDWorker(name, data.train_x[torch.as_tensor(p)],
                               data.train_y[torch.as_tensor(p)], model=config.federation.model,
                               dp=config.dp_sgd, device=device)
                   for name, p in zip(config.partition.workers, parts)]
    elif workers is None:
        workers, _ = make_virtual_workers(data.train_x, data.train_y, config, device=device,
                                          progress=progress and sys.stderr.isatty())
    elif [w.name for w in workers] != list(config.partition.workers):
        raise ConfigError("partition.workers", f"the workers {[w.name for w in workers]} are "
                          f"not the configured {list(config.partition.workers)}")
    result = run_federation(workers, config, data.test_x, data.test_y,
                            checkpoint=out / CHECKPOINT, resume=resume, progress=progress,
                            weights=weights)
    write_outputs(out, config, result)
    if personalize_steps:
        rows = personalize_workers(workers, [w.name for w in workers], result.weights,
                                   config.plan, steps=personalize_steps, seed=config.seed)
        atomic_write(out / "personalization.json", lambda f: f.write(json.dumps(
            {"summary": summarize(rows), "workers": rows}, indent=1).encode()))
    return ExperimentResult(result.weights, result.history, result.reached_target, out)
