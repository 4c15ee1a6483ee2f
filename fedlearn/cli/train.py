"""Command line: ``fedlearn train`` (also ``python -m fedlearn train``).

The CLI only parses flags into the config dataclasses and calls
:func:`fedlearn.experiment.run_experiment`. Any bad value ends with one line on
stderr naming the flag and what is allowed, and exit code 2 (:mod:`.errors`).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from fedlearn.cli.datasite import add_datasite_parser
from fedlearn.cli.errors import Parser, add_debug_flag, interrupted, report
from fedlearn.cli.flags import add_config_flags, config_from_flags, given_fields
from fedlearn.cli.pysyft_train import add_pysyft_train_flags
from fedlearn.config import ConfigError, ExperimentConfig
from fedlearn.errors import FedlearnError

EPILOG = """examples:
  fedlearn train                                   # Bob and Alice, FedAvg, 5 rounds
  fedlearn train --rounds 10 --target-accuracy 0.99 --out runs/bob-alice
  fedlearn train --workers w1 w2 w3 w4 --partition shards --shards-per-worker 2
  fedlearn train --algorithm model_hopping --rounds 3   # the PySyft 0.2 tutorial's scheme
  fedlearn train --out runs/bob-alice --resume     # continue a stopped run (its flags kept)
  fedlearn train --out runs/bob-alice --resume --rounds 20   # ...to more rounds
  fedlearn train --config runs/bob-alice/config.json --seed 1 --out runs/seed1  # a rerun
  fedlearn train --backend pysyft                  # Bob and Alice as PySyft Datasites
  fedlearn train --backend pysyft --datasite bob=http://10.0.0.2:8080 \\
                 --datasite alice=http://10.0.0.3:8080   # owners on other machines

MNIST is downloaded by torchvision on first use. Offline, point --data-dir (or the
FEDLEARN_DATA environment variable) at a directory with the four MNIST IDX files.

A mistake in the command (a bad value, a refused option) is one line and exit code 2;
a run stopped by its workers (a failed round) exit code 1; Ctrl-C exit code 130, with
the last finished round saved. --debug adds the traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fedlearn", description="Federated learning on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train", help="train a model with federated learning",
        description="Train the tutorial CNN (or another model) on MNIST split between data\n"
                    "owners ('workers'). Each round the server sends the global weights to the\n"
                    "workers, they train on their own data, and the server averages what comes\n"
                    "back (FedAvg). Writes history.json, model.pt and learning_curve.png.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(train)
    run = train.add_argument_group("output and progress")
    run.add_argument("--out", default="runs/latest", metavar="DIR",
                     help="output directory (default: runs/latest)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run whose checkpoint is in --out, with the "
                          "configuration it was started with; flags given may change only "
                          "--rounds, --target-accuracy, --device, --data-dir and how the "
                          "clients run")
    run.add_argument("--config", default=None, metavar="FILE",
                     help="start a new run from a run's config.json (or its directory); "
                          "flags given override its values")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--personalize-steps", type=int, default=0, metavar="STEPS",
                     help="after training, every worker fine-tunes for STEPS batches; writes "
                          "personalization.json (needs --holdout)")
    add_pysyft_train_flags(train)
    add_datasite_parser(sub)
    add_debug_flag(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The run's configuration; with ``--resume`` (or ``--config`` of a run), ``args.backend``
    and ``args.datasite`` become the run's own (:func:`~fedlearn.cli.resume.keep_backend`)."""
    from fedlearn.cli.resume import BACKENDS, keep_backend

    if args.resume:
        keep_backend(args)
    elif args.config:  # a rerun: where the run's clients ran, unless the flags say
        config_path = Path(args.config).expanduser()
        keep_backend(args, config_path if config_path.is_dir() else config_path.parent)
    if args.backend is None:
        args.backend = "inprocess"
    if args.backend not in BACKENDS:
        raise ConfigError("backend", f"unknown value {args.backend!r}; allowed: "
                          f"{', '.join(BACKENDS)}")
    if args.datasite and args.backend != "pysyft":
        raise ConfigError("datasite", "needs --backend pysyft")
    overrides = {}
    if args.datasite:
        from fedlearn.backends.pysyft.remote import parse_addresses

        overrides["partition.workers"] = tuple(a.name for a in parse_addresses(args.datasite))
    config_file = args.config
    if config_file and args.resume:
        raise ConfigError("config", "--resume takes the configuration from the run in --out; "
                          "leave out --config")
    if args.resume or config_file:
        from fedlearn.cli.resume import config_from_file, resumed_config

        given = given_fields(args, **overrides)
        if args.resume:
            return resumed_config(args.out, given)
        return config_from_file(config_file, given)
    return config_from_flags(args, **overrides)


def train(args) -> int:
    from fedlearn.cli.resume import record_backend
    from fedlearn.data import load_mnist
    from fedlearn.experiment import prepare_output_dir, run_experiment

    config = config_from_args(args)
    # fail before anyone is asked; then keep where the clients run, for --resume
    record_backend(prepare_output_dir(args.out, resume=args.resume), args)
    workers, cleanup = None, lambda: None
    if args.backend == "pysyft":
        from fedlearn.backends.pysyft.console import set_verbose

        set_verbose(args.verbose)
        from fedlearn.cli.pysyft_train import pysyft_workers

        # Datasites on other machines hold the training data: the test set is all we load
        workers, cleanup = pysyft_workers(args, config, load_mnist(
            config.data, seed=config.seed, train=not args.datasite))
    try:
        result = run_experiment(config, args.out, resume=args.resume,
                                progress=not args.no_progress, workers=workers,
                                personalize_steps=args.personalize_steps)
    finally:
        cleanup()
    last = result.history[-1] if result.history else None
    if last is not None:
        print(f"round {last['round']}: test accuracy {last['test_accuracy']:.4f}, "
              f"test loss {last['test_loss']:.4f}")
    print(f"wrote {result.out_dir}/history.json, model.pt, learning_curve.png")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad flag: argparse printed its one line (2)
        return exc.code if isinstance(exc.code, int) else 0
    args.exec_allowed = argv is None  # a real command line: `serve` may re-exec itself
    try:
        if args.command == "datasite":
            from fedlearn.cli.datasite import datasite_main

            return datasite_main(args)
        if args.exec_allowed:  # `kill PID` ends a run as Ctrl-C does: Ray's processes go too
            signal.signal(signal.SIGTERM, _interrupt)
        return train(args)
    except FedlearnError as exc:  # what the user can fix: one line; anything else: traceback
        return report(exc, parser, args)
    except KeyboardInterrupt:  # the checkpoint of the last finished round is on disk
        return interrupted(args)


if __name__ == "__main__":
    sys.exit(main())
