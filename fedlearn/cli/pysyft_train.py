"""The data scientist's side of PySyft: ``fedlearn train --backend pysyft``.

Its flags (:func:`add_pysyft_train_flags`) and the workers a run trains with
(:func:`pysyft_workers`): Bob and Alice launched in this process, as in the
tutorial, or Datasites that owners serve on their own machines (``--datasite``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from fedlearn.cli.tls_flags import add_tls_client_flags, tls_client
from fedlearn.config import ConfigError, DataConfig, PartitionConfig


def add_pysyft_train_flags(train) -> None:
    group = train.add_argument_group("PySyft Datasites (--backend pysyft)")
    group.add_argument("--backend", default=None, metavar="{inprocess,pysyft}",
                       help="inprocess (default) or pysyft: Bob and Alice as Datasites, launched "
                            "here, or on other machines with --datasite (--resume keeps the "
                            "run's own)")
    group.add_argument("--datasite", action="append", default=[], metavar="NAME=URL",
                       help="a running Datasite, e.g. bob=http://10.0.0.2:8080; repeat per owner "
                            "(the names replace --workers)")
    group.add_argument("--email", default="scientist@fedlearn.example",
                       help="the data scientist's account on the Datasites")
    group.add_argument("--password-file", action="append", default=[], metavar="[NAME=]FILE",
                       help="the scientist's password on every Datasite, or NAME=FILE the one "
                            "owner NAME gave (repeat per owner; default: "
                            "$FEDLEARN_SCIENTIST_PASSWORD)")
    group.add_argument("--approval-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="how long to wait for the owners to approve (default: 600)")
    group.add_argument("--verbose", action="store_true",
                       help="also show PySyft's own output (hidden by default)")
    add_tls_client_flags(group)


def refuse_what_datasites_cannot_honour(config) -> None:
    """Each owner serves the data they hold: options that choose or cut the training data
    cannot be honoured by Datasites on other machines, so they are refused, not ignored."""
    default_data, default_partition = DataConfig(), PartitionConfig()
    if config.data.train_size != default_data.train_size:
        raise ConfigError("data.train_size", "each Datasite trains on the shard its owner "
                          "serves; choose the size when serving (serve --train-size)")
    # holdout, initial_share and growth_per_round: refused for remote workers by check_workers
    for name in ("scheme", "alpha", "shards_per_worker", "min_size"):
        if getattr(config.partition, name) != getattr(default_partition, name):
            raise ConfigError(f"partition.{name}", "each owner holds their own data on their "
                              "Datasite: the split is chosen when serving (serve --shard, "
                              "--partition), not by the data scientist")


def scientist_passwords(files: list[str], names: list[str]) -> dict[str, str]:
    """Each Datasite's password for the scientist: one ``FILE`` for all, or ``NAME=FILE`` per
    owner (independent owners each choose their own), else $FEDLEARN_SCIENTIST_PASSWORD."""
    from fedlearn.backends.pysyft.serve import SCIENTIST_PASSWORD_ENV, read_password

    def read(file):
        return read_password("password", env=SCIENTIST_PASSWORD_ENV, file=file)

    if not files:
        password = read(None)
        return dict.fromkeys(names, password)
    named = {}
    for entry in files:
        name, sep, file = entry.partition("=")
        if not sep or name not in names:
            if len(files) == 1:  # one file for every Datasite
                return dict.fromkeys(names, read(entry))
            raise ConfigError("password_file", f"{entry!r}: with several --password-file, "
                              f"each is NAME=FILE for one of the Datasites {', '.join(names)}")
        if name in named:
            raise ConfigError("password_file", f"two password files for {name}")
        named[name] = read(file)
    if missing := [n for n in names if n not in named]:
        raise ConfigError("password_file", f"no password file for {', '.join(missing)} "
                          "(give NAME=FILE for every Datasite, or one FILE for all)")
    return named


def pysyft_workers(args, config, data):
    """Workers for ``train --backend pysyft``, and a function that cleans up after them."""
    from fedlearn.backends.pysyft.connection import use_tls
    from fedlearn.backends.pysyft.remote import connect_datasites, parse_addresses, run_id_for
    from fedlearn.backends.pysyft.training_code import check_plan

    fed = config.federation
    check_plan(config.plan)
    names = list(config.partition.workers)
    secure = config.secure_aggregation  # the owners' side runs in their approved code
    quantize = config.compression.method == "quantize" and not secure and config.dp_sgd is None
    # top-k: the top-k function, whose residual the owner's Datasite keeps between rounds
    topk = config.compression.topk_fraction if config.compression.method == "topk" else None
    config.check_workers(len(names), remote=names, masking=names if secure else (),
                         compressing=names if quantize or topk is not None else ())
    # a securely aggregated round is four calls: keys, shares, the masked fit, unmasking
    max_calls = fed.rounds * (config.robustness.max_retries + 1) * (4 if secure else 1) + 10
    if not args.datasite:  # the tutorial's setting: Bob and Alice launched in this process
        for flag in ("ca_file", "client_cert", "client_key"):
            if getattr(args, flag):
                raise ConfigError(flag, "is for Datasites on other machines (--datasite); "
                                  "Datasites launched here need no TLS")
        from fedlearn.backends.pysyft import launch_syft_workers
        from fedlearn.data import to_uint8
        from fedlearn.data.partition import partition

        parts = partition(data.train_y.numpy(), config.partition, config.seed)
        sites, workers = launch_syft_workers(
            to_uint8(data.train_x).numpy(), data.train_y.numpy(), parts,
            config.partition.workers, model=fed.model, max_calls=max_calls, seed=config.seed,
            dp=config.dp_sgd, secure=secure, topk=topk)
        print(f"Datasites up in this process: {', '.join(w.name for w in workers)}; each owner "
              "reviewed and approved the code request", file=sys.stderr, flush=True)
        return workers, lambda: [site.land() for site in sites]
    addresses = parse_addresses(args.datasite)
    refuse_what_datasites_cannot_honour(config)
    password = scientist_passwords(args.password_file, [a.name for a in addresses])

    def waiting(name, request_id):
        print(f"waiting for {name} to approve code request {request_id} (on {name}'s machine: "
              f"fedlearn datasite requests --code; fedlearn datasite approve {request_id})",
              file=sys.stderr, flush=True)

    if args.approval_timeout <= 0:
        raise ConfigError("approval_timeout", f"must be > 0 seconds (got {args.approval_timeout})")
    tls = tls_client(args)
    if tls is None and any(a.url.startswith("https://") for a in addresses):
        raise ConfigError("ca_file", "https:// Datasites need --ca-file (the CA that signed "
                          "their certificates)")
    use_tls(tls)
    run = run_id_for(Path(args.out), resume=args.resume)
    workers = connect_datasites(addresses, email=args.email, password=password, model=fed.model,
                                max_calls=max_calls, approval_timeout=args.approval_timeout,
                                run=run, plan=config.plan, dp=config.dp_sgd, on_wait=waiting,
                                secure=secure, topk=topk)
    print(f"logged in to {', '.join(f'{a.name} ({a.url})' for a in addresses)} as a data "
          "scientist; every owner approved the code request", file=sys.stderr, flush=True)
    return workers, lambda: None
