"""``fedlearn train`` flags for federations at scale: devices that come and go, data that
grows, FedProx and server optimizers, warm start and personalization.

Kept apart from :mod:`fedlearn.cli` so each parser module stays one concern; like
it, this only turns flags into the config dataclasses.
"""
from __future__ import annotations

from fedlearn.config import SERVER_OPTIMIZERS, AvailabilityConfig

FLAGS = {"prox_mu": "--prox-mu", "server_optimizer": "--server-optimizer",
         "server_lr": "--server-lr", "server_momentum": "--server-momentum",
         "mean_availability": "--mean-availability", "over_selection": "--over-selection",
         "decline_rate": "--decline-rate", "dropout_rate": "--dropout-rate",
         "deadline": "--deadline", "download_mbps": "--download-mbps",
         "upload_ratio": "--upload-ratio", "holdout": "--holdout",
         "initial_share": "--initial-share", "growth_per_round": "--growth-per-round",
         "warm_start_size": "--warm-start-size", "warm_start_epochs": "--warm-start-epochs",
         "personalize_steps": "--personalize-steps"}


def add_scale_flags(train) -> None:
    opt = train.add_argument_group("non-IID data: FedProx and server optimizers")
    opt.add_argument("--prox-mu", type=float, default=0.0, metavar="MU",
                     help="FedProx proximal term (default: 0 = FedAvg)")
    opt.add_argument("--server-optimizer", default="fedavg",
                     metavar="{" + ",".join(SERVER_OPTIMIZERS) + "}",
                     help="how the server applies the average: fedavg, momentum (FedAvgM), "
                          "adam (FedAdam) (default: fedavg)")
    opt.add_argument("--server-lr", type=float, default=None,
                     help="(default: 1.0 for fedavg and momentum, 0.01 for adam)")
    opt.add_argument("--server-momentum", type=float, default=0.9,
                     help="FedAvgM beta / FedAdam beta1 (default: 0.9)")
    dev = train.add_argument_group("devices that come and go (simulated)")
    dev.add_argument("--availability", action="store_true",
                     help="simulate eligibility, over-selection, declines, drop-outs and "
                          "network speed; --fraction sets the reporting goal")
    dev.add_argument("--mean-availability", type=float, default=0.5, help="(default: 0.5)")
    dev.add_argument("--over-selection", type=float, default=1.3, help="(default: 1.3)")
    dev.add_argument("--decline-rate", type=float, default=0.05, help="(default: 0.05)")
    dev.add_argument("--dropout-rate", type=float, default=0.05, help="(default: 0.05)")
    dev.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                     help="simulated round deadline; later reports are discarded")
    dev.add_argument("--download-mbps", type=float, default=20.0, help="median (default: 20)")
    dev.add_argument("--upload-ratio", type=float, default=0.2,
                     help="upload bandwidth / download bandwidth (default: 0.2)")
    data = train.add_argument_group("local data that changes; warm start; personalization")
    data.add_argument("--initial-share", type=float, default=1.0,
                      help="share of its data a worker holds at round 1 (default: 1)")
    data.add_argument("--growth-per-round", type=float, default=0.0,
                      help="share of its data that arrives each round (default: 0)")
    data.add_argument("--warm-start-size", type=int, default=0, metavar="N",
                      help="the server first trains on N proxy images no worker holds")
    data.add_argument("--warm-start-epochs", type=int, default=1, help="(default: 1)")
    data.add_argument("--holdout", type=float, default=0.0,
                      help="share of each worker's data kept aside to measure personalization")
    data.add_argument("--personalize-steps", type=int, default=0, metavar="STEPS",
                      help="after training, every worker fine-tunes for STEPS batches; "
                           "writes personalization.json (needs --holdout)")


def scale_settings(args) -> dict:
    """Keyword arguments for the config dataclasses, by dataclass."""
    availability = (AvailabilityConfig(
        mean_availability=args.mean_availability, over_selection=args.over_selection,
        decline_rate=args.decline_rate, dropout_rate=args.dropout_rate, deadline=args.deadline,
        download_mbps=args.download_mbps, upload_ratio=args.upload_ratio)
        if args.availability else None)
    return {"plan": {"prox_mu": args.prox_mu},
            "federation": {"server_optimizer": args.server_optimizer,
                           "server_lr": args.server_lr, "server_momentum": args.server_momentum,
                           "warm_start_size": args.warm_start_size,
                           "warm_start_epochs": args.warm_start_epochs},
            "partition": {"holdout": args.holdout, "initial_share": args.initial_share,
                          "growth_per_round": args.growth_per_round},
            "experiment": {"availability": availability}}
