"""``fedlearn train --resume`` and ``--config``: a run's configuration read back from disk.

``--out DIR --resume`` continues the run in DIR with the configuration its checkpoint
holds, so no flag has to be typed again. A flag given on that command line may change
what does not shape the run's trajectory (rounds, the stop target, the device, where
the data lives, how the clients run: what :meth:`ExperimentConfig.fingerprint` leaves
out); a flag that would change anything else is refused, naming it.

Where the clients ran is the command line's, not the configuration's: ``backend.json``
in DIR keeps ``--backend`` and ``--datasite``, and ``--resume`` takes them from there, so a
run on Datasites never continues on this machine's copy of the data; ``--config DIR`` (a
rerun) takes them too, unless the flags say otherwise.

``--config FILE`` starts a new run from a run's ``config.json`` (or from a run's
directory); every flag given overrides its field.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedlearn.cli.flags import with_fields
from fedlearn.config import ConfigError, ExperimentConfig
from fedlearn.experiment import CHECKPOINT
from fedlearn.files import atomic_write

CONFIG_FILE = "config.json"
BACKEND_FILE = "backend.json"
BACKENDS = ("inprocess", "pysyft")


def _read(path: Path, *, option: str) -> dict:
    """The configuration (as plain data) in a config.json or a checkpoint."""
    from fedlearn.server.checkpoint import load_checkpoint

    try:
        if path.suffix == ".pt":
            return json.loads(load_checkpoint(path)["config"])
        return json.loads(path.read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(option, f"cannot read a configuration from {path} ({exc})") from exc


def _rebuild(d: dict, source: Path, *, option: str) -> ExperimentConfig:
    try:
        return ExperimentConfig.from_dict(d)
    except ConfigError as exc:  # e.g. a model class given in Python, stored as its name
        raise ConfigError(option, f"{source} holds a configuration the command line cannot "
                          f"rebuild ({exc}); run it from Python with run_experiment") from exc


def _at(d: dict, path: str) -> Any:
    name, _, field = path.partition(".")
    value = d.get(name)
    return value.get(field) if field and isinstance(value, dict) else value


def resumed_config(out: str | Path, given: dict[str, Any]) -> ExperimentConfig:
    """The configuration of the run in ``out``, with the ``given`` fields that leave its
    trajectory alone; a given field that would change it is refused by its path."""
    out = Path(out).expanduser()
    checkpoint = out / CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigError("resume", f"no {CHECKPOINT} in {out} to resume from")
    stored = _rebuild(_read(checkpoint, option="resume"), checkpoint, option="resume")
    base = stored.to_dict()
    for path, value in given.items():
        try:
            same = with_fields(base, {path: value}).fingerprint() == stored.fingerprint()
        except ConfigError:
            same = False
        if not same:
            raise ConfigError(path, f"the run in {out} was started with {_at(base, path)!r}; "
                              f"resuming it with another configuration ({value!r}) would not "
                              "continue that run. Leave the flag out to keep it, or start a new "
                              f"run from its configuration: --config {out} --out NEW_DIR")
    return with_fields(base, given)


def config_from_file(path: str | Path, given: dict[str, Any]) -> ExperimentConfig:
    """A new run's configuration: a run's ``config.json`` (or the one in a run's directory,
    else its checkpoint's), with every ``given`` field set."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CONFIG_FILE if (path / CONFIG_FILE).is_file() else path / CHECKPOINT
    if not path.is_file():
        raise ConfigError("config", f"no such file: {path}")
    d = _read(path, option="config")
    _rebuild(d, path, option="config")  # the file alone must be a configuration
    return with_fields(d, given)


def record_backend(out: Path, args) -> None:
    """Keep the run's ``--backend`` and ``--datasite`` (names and URLs, no secret) in ``out``."""
    kept = {"backend": args.backend, "datasite": list(args.datasite)}
    atomic_write(out / BACKEND_FILE, lambda f: f.write(json.dumps(kept, indent=1).encode()))


def keep_backend(args, run_dir: str | Path | None = None) -> None:
    """The backend and Datasites the run in ``run_dir`` trained with, for each flag left out.
    ``--resume`` (``run_dir`` None: ``--out``) also refuses a flag that would move the run
    to other data; a new run from ``--config`` may move, saying so with the flag."""
    resuming = run_dir is None
    path = Path(args.out if run_dir is None else run_dir).expanduser() / BACKEND_FILE
    if not path.is_file():  # a run started from Python, which chose its own workers
        return
    try:
        kept = json.loads(path.read_text())
        backend, datasites = kept["backend"], kept["datasite"]
        if backend not in BACKENDS or not isinstance(datasites, list):
            raise ValueError(f"backend {backend!r}, datasite {datasites!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("out" if resuming else "config", f"{path} is damaged ({exc}); it "
                          "says where the run's clients ran: restore it, or start a new "
                          "run") from exc
    if args.backend is None:
        args.backend = backend
    elif not resuming:
        return  # a new run on another backend: its Datasites are the flags'
    elif args.backend != backend:
        raise ConfigError("backend", f"the run in {args.out} trained with --backend {backend}; "
                          f"resuming it with --backend {args.backend} would train on other "
                          "data. Leave the flag out to keep it")
    if not args.datasite:
        args.datasite = list(datasites)
    elif not datasites and resuming:
        raise ConfigError("datasite", f"the run in {args.out} trained with Datasites launched "
                          "in this process; resuming it on other machines' Datasites would "
                          "train on other data. Leave the flag out to keep them")
