"""Command line: ``fedlearn train`` (also ``python -m fedlearn train``).

The CLI only parses flags into the config dataclasses and calls
:func:`fedlearn.experiment.run_experiment`. Any bad value ends with one line on
stderr naming the flag and what is allowed, and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from fedlearn.cli.datasite import add_datasite_parser, add_pysyft_train_flags
from fedlearn.cli.scale import FLAGS as SCALE_FLAGS
from fedlearn.cli.scale import add_scale_flags, scale_settings
from fedlearn.config import (
    AGGREGATORS,
    ALGORITHMS,
    COMPRESSIONS,
    DEVICES,
    MODELS,
    ON_TOO_FEW,
    PARTITIONS,
    CompressionConfig,
    ConfigError,
    DataConfig,
    DPConfig,
    DPSGDConfig,
    ExperimentConfig,
    FederationConfig,
    PartitionConfig,
    TrainPlan,
)
from fedlearn.data import DataError
from fedlearn.errors import FedlearnError
from fedlearn.server.checkpoint import CheckpointError

# config field -> the flag a user typed
FLAGS = {"workers": "--workers", "partition": "--partition", "alpha": "--alpha",
         "shards_per_worker": "--shards-per-worker", "min_size": "--min-size",
         "epochs": "--local-epochs", "batch_size": "--batch-size", "lr": "--lr",
         "momentum": "--momentum", "weight_decay": "--weight-decay",
         "algorithm": "--algorithm", "model": "--model", "rounds": "--rounds",
         "fraction": "--fraction", "target_accuracy": "--target-accuracy", "device": "--device",
         "eval_batch_size": "--eval-batch-size", "seed": "--seed", "train_size": "--train-size",
         "aggregator": "--aggregator", "trim_fraction": "--trim-fraction",
         "krum_byzantine": "--krum-byzantine", "max_update_norm": "--max-update-norm",
         "min_updates": "--min-updates", "round_timeout": "--round-timeout",
         "on_too_few": "--on-too-few", "max_retries": "--max-retries",
         "clip_norm": "--clip-norm", "noise_multiplier": "--noise-multiplier",
         "target_epsilon": "--target-epsilon", "delta": "--delta", "compression": "--compression",
         "bits": "--bits", "topk_fraction": "--topk-fraction",
         "secure_aggregation": "--secure-aggregation", "dp": "--noise-multiplier",
         "dp_sgd_noise": "--dp-sgd-noise", "dp_sgd_clip": "--dp-sgd-clip",
         "test_size": "--test-size", "out_dir": "--out", "resume": "--resume",
         "datasite": "--datasite", "password": "--password-file",
         "approval_timeout": "--approval-timeout", "backend": "--backend", "name": "--name",
         "shard": "--shard", "port": "--port", "admin_email": "--admin-email",
         "admin_password": "--admin-password-file", "scientist": "--scientist",
         "scientist_password": "--scientist-password-file", "tls_cert": "--tls-cert",
         "tls_key": "--tls-key", "client_ca": "--client-ca", "ca_file": "--ca-file",
         "client_cert": "--client-cert", "client_key": "--client-key", **SCALE_FLAGS}

EPILOG = """examples:
  fedlearn train                                   # Bob and Alice, FedAvg, 5 rounds
  fedlearn train --rounds 10 --target-accuracy 0.99 --out runs/bob-alice
  fedlearn train --workers w1 w2 w3 w4 --partition shards --shards-per-worker 2
  fedlearn train --algorithm fedsgd --rounds 3     # the original tutorial's model hopping
  fedlearn train --out runs/bob-alice --resume     # continue a stopped run
  fedlearn train --backend pysyft                  # Bob and Alice as PySyft Datasites
  fedlearn train --backend pysyft --datasite bob=http://10.0.0.2:8080 \
                 --datasite alice=http://10.0.0.3:8080   # owners on other machines

MNIST is downloaded by torchvision on first use. Offline, point --data-dir (or the
FEDLEARN_DATA environment variable) at a directory with the four MNIST IDX files."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedlearn", description="Federated learning on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train", help="train a model with federated learning",
        description="Train the tutorial CNN (or another model) on MNIST split between data\n"
                    "owners ('workers'). Each round the server sends the global weights to the\n"
                    "workers, they train on their own data, and the server averages what comes\n"
                    "back (FedAvg). Writes history.json, model.pt and learning_curve.png.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    who = train.add_argument_group("who holds the data")
    who.add_argument("--workers", nargs="+", default=["bob", "alice"], metavar="NAME",
                     help="names of the data owners (default: bob alice)")
    who.add_argument("--partition", default="iid", metavar="{" + ",".join(PARTITIONS) + "}",
                     help="how MNIST is split: iid; shards = label-sorted shards (McMahan 2017); "
                          "dirichlet = label shares ~ Dirichlet(alpha); unbalanced sizes "
                          "(default: iid)")
    who.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration; smaller "
                     "= more skewed (default: 0.5)")
    who.add_argument("--shards-per-worker", type=int, default=2,
                     help="label-sorted shards each worker gets (default: 2)")
    who.add_argument("--min-size", type=int, default=10, help="fewest samples a worker may "
                     "hold (default: 10)")
    local = train.add_argument_group("local training at each worker")
    local.add_argument("--local-epochs", type=int, default=1, help="E: passes over local data "
                       "per round (default: 1)")
    local.add_argument("--batch-size", type=int, default=64, help="B (default: 64)")
    local.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default: 0.01)")
    local.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    local.add_argument("--weight-decay", type=float, default=0.0, help="(default: 0)")
    server = train.add_argument_group("the server")
    server.add_argument("--algorithm", default="fedavg", metavar="{" + ",".join(ALGORITHMS) + "}",
                        help="fedavg, or fedsgd = one model hops between the workers' batches "
                             "(the original PySyft tutorial) (default: fedavg)")
    server.add_argument("--model", default="tutorial_cnn", metavar="{" + ",".join(MODELS) + "}",
                        help="(default: tutorial_cnn)")
    server.add_argument("--rounds", type=int, default=5, help="federated rounds (default: 5)")
    server.add_argument("--fraction", type=float, default=1.0, help="C: fraction of workers "
                        "asked each round (default: 1.0)")
    server.add_argument("--target-accuracy", type=float, default=None, metavar="ACC",
                        help="stop once test accuracy reaches ACC, e.g. 0.99")
    server.add_argument("--device", default="auto", metavar="{" + ",".join(DEVICES) + "}",
                        help="auto uses CUDA when present (default: auto)")
    server.add_argument("--eval-batch-size", type=int, default=1000, help=argparse.SUPPRESS)
    faults = train.add_argument_group("when workers fail or misbehave")
    faults.add_argument("--aggregator", default="fedavg",
                        metavar="{" + ",".join(AGGREGATORS) + "}",
                        help="how updates are combined: fedavg (weighted mean), or the robust "
                             "median, trimmed_mean, krum (default: fedavg)")
    faults.add_argument("--trim-fraction", type=float, default=0.2,
                        help="trimmed_mean: share cut from each end (default: 0.2)")
    faults.add_argument("--krum-byzantine", type=int, default=1,
                        help="krum: how many hostile workers to tolerate (default: 1)")
    faults.add_argument("--max-update-norm", type=float, default=None, metavar="NORM",
                        help="reject updates whose L2 norm is larger")
    faults.add_argument("--min-updates", type=int, default=1,
                        help="valid updates a round needs to count (default: 1)")
    faults.add_argument("--round-timeout", type=float, default=None, metavar="SECONDS",
                        help="give up on a worker that has not replied after this long")
    faults.add_argument("--on-too-few", default="retry",
                        metavar="{" + ",".join(ON_TOO_FEW) + "}",
                        help="a round with too few updates is retried with a fresh sample, "
                             "skipped, or stops the run (default: retry)")
    faults.add_argument("--max-retries", type=int, default=2, help="(default: 2)")
    private = train.add_argument_group("privacy and communication")
    private.add_argument("--noise-multiplier", type=float, default=None, metavar="Z",
                         help="turn on DP-FedAvg: clip updates to --clip-norm, server adds "
                              "N(0, (Z*C/m)^2) to the average")
    private.add_argument("--target-epsilon", type=float, default=None, metavar="EPS",
                         help="turn on DP-FedAvg with the noise that spends EPS over the run")
    private.add_argument("--clip-norm", type=float, default=1.0, metavar="C",
                         help="L2 bound on each update under DP (default: 1.0)")
    private.add_argument("--delta", type=float, default=1e-5, help="DP delta (default: 1e-5)")
    private.add_argument("--dp-sgd-noise", type=float, default=None, metavar="Z",
                         help="sample-level DP: every worker trains with DP-SGD (Opacus), "
                              "noise multiplier Z, one accountant per worker for the run")
    private.add_argument("--dp-sgd-clip", type=float, default=1.0, metavar="C",
                         help="DP-SGD per-sample gradient bound (default: 1.0)")
    private.add_argument("--compression", default="none",
                         metavar="{" + ",".join(COMPRESSIONS) + "}",
                         help="encode uploads: quantize (stochastic, --bits) or topk "
                              "(--topk-fraction, with error feedback) (default: none)")
    private.add_argument("--bits", type=int, default=8, help="quantization bits: 1, 2, 4, 8")
    private.add_argument("--topk-fraction", type=float, default=0.01,
                         help="share of coordinates top-k sends (default: 0.01)")
    private.add_argument("--no-error-feedback", action="store_true",
                         help="top-k without the residual kept across rounds")
    private.add_argument("--secure-aggregation", action="store_true",
                         help="pairwise masking: the server learns only the sum")
    run = train.add_argument_group("data, output and reproducibility")
    run.add_argument("--seed", type=int, default=0, help="seed for every random choice "
                     "(default: 0)")
    run.add_argument("--data-dir", default=None, metavar="DIR",
                     help="local MNIST directory (default: $FEDLEARN_DATA, else download)")
    run.add_argument("--train-size", type=int, default=None, metavar="N",
                     help="use a random N of the 60,000 training images (default: all)")
    run.add_argument("--test-size", type=int, default=None, metavar="N",
                     help="use a random N of the 10,000 test images (default: all)")
    run.add_argument("--out", default="runs/latest", metavar="DIR",
                     help="output directory (default: runs/latest)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run whose checkpoint is in --out")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_scale_flags(train)
    add_pysyft_train_flags(train)
    add_datasite_parser(sub)
    return parser


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    if args.backend not in ("inprocess", "pysyft"):
        raise ConfigError("backend", f"unknown value {args.backend!r}; allowed: inprocess, pysyft")
    if args.datasite and args.backend != "pysyft":
        raise ConfigError("datasite", "needs --backend pysyft")
    if args.datasite:
        from fedlearn.backends.pysyft.remote import parse_addresses

        args.workers = [a.name for a in parse_addresses(args.datasite)]
    if args.personalize_steps < 0:
        raise ConfigError("personalize_steps", f"must be >= 0 (got {args.personalize_steps})")
    scale = scale_settings(args)
    return ExperimentConfig(
        data=DataConfig(data_dir=args.data_dir, train_size=args.train_size,
                        test_size=args.test_size),
        partition=PartitionConfig(workers=tuple(args.workers), scheme=args.partition,
                                  alpha=args.alpha, shards_per_worker=args.shards_per_worker,
                                  min_size=args.min_size, **scale["partition"]),
        plan=TrainPlan(epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay,
                       **scale["plan"]),
        federation=FederationConfig(algorithm=args.algorithm, model=args.model,
                                    rounds=args.rounds, fraction=args.fraction,
                                    target_accuracy=args.target_accuracy, device=args.device,
                                    eval_batch_size=args.eval_batch_size,
                                    aggregator=args.aggregator, trim_fraction=args.trim_fraction,
                                    krum_byzantine=args.krum_byzantine,
                                    max_update_norm=args.max_update_norm,
                                    min_updates=args.min_updates,
                                    round_timeout=args.round_timeout,
                                    on_too_few=args.on_too_few, max_retries=args.max_retries,
                                    **scale["federation"]),
        dp=(DPConfig(clip_norm=args.clip_norm, noise_multiplier=args.noise_multiplier,
                     target_epsilon=args.target_epsilon, delta=args.delta)
            if args.noise_multiplier is not None or args.target_epsilon is not None else None),
        dp_sgd=(DPSGDConfig(noise_multiplier=args.dp_sgd_noise, max_grad_norm=args.dp_sgd_clip,
                            delta=args.delta) if args.dp_sgd_noise is not None else None),
        compression=CompressionConfig(method=args.compression, bits=args.bits,
                                      topk_fraction=args.topk_fraction,
                                      error_feedback=not args.no_error_feedback),
        secure_aggregation=args.secure_aggregation, **scale["experiment"],
        seed=args.seed)


def _fail(message: str) -> int:
    print(f"fedlearn: error: {message}", file=sys.stderr)
    return 2


def train(args) -> int:
    from fedlearn.data import load_mnist
    from fedlearn.experiment import prepare_output_dir, run_experiment

    config = config_from_args(args)
    workers, cleanup = None, lambda: None
    if args.backend == "pysyft":
        from fedlearn.cli.datasite import pysyft_workers

        prepare_output_dir(args.out, resume=args.resume)  # fail before anyone is asked
        workers, cleanup = pysyft_workers(args, config, load_mnist(config.data, seed=config.seed))
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.exec_allowed = argv is None  # a real command line: `serve` may re-exec itself
    from fedlearn.backends.pysyft.loading import SyftUnavailableError
    from fedlearn.backends.pysyft.remote import ApprovalError
    from fedlearn.server.federation import RoundFailedError

    try:
        if args.command == "datasite":
            from fedlearn.cli.datasite import datasite_main

            return datasite_main(args)
        return train(args)
    except ConfigError as exc:
        return _fail(f"argument {FLAGS.get(exc.argument, exc.argument)}: {exc.detail}")
    except (FedlearnError, DataError, CheckpointError, ValueError, SyftUnavailableError,
            KeyError, PermissionError) as exc:
        return _fail(str(exc).strip("'\""))
    except (ApprovalError, ConnectionError) as exc:
        print(f"fedlearn: stopped: {exc}", file=sys.stderr)
        return 1
    except RoundFailedError as exc:
        print(f"fedlearn: stopped: {exc}\nRerun with --out {args.out} --resume once the workers "
              "are fixed.", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. PySyft refused an action
        print(f"fedlearn: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _fail(f"interrupted; the last finished round is saved: rerun with --out "
                     f"{args.out} --resume to continue")


if __name__ == "__main__":
    sys.exit(main())
