"""Command line for PySyft Datasites: the owner's ``fedlearn datasite ...`` commands and
the data scientist's ``fedlearn train --backend pysyft``.

Owner, on their own machine::

    export FEDLEARN_ADMIN_PASSWORD=...        # never PySyft's default 'changethis'
    export FEDLEARN_SCIENTIST_PASSWORD=...    # the account given to the data scientist
    fedlearn datasite serve --name bob --shard 0/2 --scientist ds@lab.example
    fedlearn datasite requests --url http://127.0.0.1:8080 --code
    fedlearn datasite approve REQUEST_ID --url http://127.0.0.1:8080

``approve`` refuses a request whose inputs, requester or source are not what
fedlearn submits (``requests --code`` shows why); ``--force`` overrides it. Serve
over TLS with ``--tls-cert FILE --tls-key FILE`` (and ``--client-ca FILE`` to
require client certificates); clients then pass ``--ca-file`` (and
``--client-cert``/``--client-key``).

Data scientist::

    export FEDLEARN_SCIENTIST_PASSWORD=...
    fedlearn train --backend pysyft --email ds@lab.example \\
        --datasite bob=http://10.0.0.2:8080 --datasite alice=http://10.0.0.3:8080
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fedlearn.backends.pysyft.loading import PYSYFT_DEFAULT_EMAIL
from fedlearn.backends.pysyft.supervision import DEFAULT_MAX_MEMORY_MB
from fedlearn.config import PARTITIONS, ConfigError, DataConfig, PartitionConfig

ADMIN_EMAIL = PYSYFT_DEFAULT_EMAIL


def add_datasite_parser(sub) -> None:
    site = sub.add_parser("datasite", help="run and review a data owner's PySyft Datasite",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = site.add_subparsers(dest="datasite_command", required=True, metavar="ACTION")
    serve = cmds.add_parser("serve", help="serve this owner's MNIST shard as a Datasite")
    serve.add_argument("--name", default=None, help="the owner's name, e.g. bob (required)")
    serve.add_argument("--print-policy", action="store_true",
                       help="print which service paths each role may call, and exit")
    serve.add_argument("--shard", default="0/2", metavar="I/N",
                       help="hold part I of the training set split in N (default: 0/2)")
    serve.add_argument("--partition", default="iid", metavar="{" + ",".join(PARTITIONS) + "}",
                       help="how the N parts are cut (default: iid)")
    serve.add_argument("--data-dir", default=None, metavar="DIR",
                       help="local MNIST directory (default: $FEDLEARN_DATA, else download)")
    serve.add_argument("--train-size", type=int, default=None, metavar="N",
                       help="split a random N of the 60,000 images (default: all)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="(default: 8080)")
    serve.add_argument("--scientist", default=None, metavar="EMAIL",
                       help="register this data-scientist account (password from "
                            "$FEDLEARN_SCIENTIST_PASSWORD or --scientist-password-file)")
    serve.add_argument("--scientist-password-file", default=None, metavar="FILE")
    serve.add_argument("--tls-cert", default=None, metavar="FILE",
                       help="serve HTTPS with this certificate (PEM); needs --tls-key")
    serve.add_argument("--tls-key", default=None, metavar="FILE",
                       help="the certificate's private key (PEM)")
    serve.add_argument("--client-ca", default=None, metavar="FILE",
                       help="require client certificates signed by this CA")
    serve.add_argument("--state-dir", default=None, metavar="DIR",
                       help="keep the Datasite (users, dataset, requests, approvals, call "
                            "counts, audit log) in DIR (made 0700) and reopen it on restart "
                            "(default: a temporary directory, deleted at the end)")
    serve.add_argument("--reset", action="store_true",
                       help="with --state-dir: delete what DIR keeps and start afresh")
    serve.add_argument("--allow-signup", action="store_true",
                       help="let anyone create a data-scientist account (POST /register; "
                            "closed by default, whatever ENABLE_SIGNUP says)")
    serve.add_argument("--allow-password-reset", action="store_true",
                       help="open PySyft's password-reset routes (closed by default)")
    serve.add_argument("--max-memory-mb", type=int, default=DEFAULT_MAX_MEMORY_MB, metavar="MB",
                       help="memory the server process may allocate; a request past it fails "
                            f"alone (default: {DEFAULT_MAX_MEMORY_MB})")
    serve.add_argument("--verbose", action="store_true",
                       help="also show PySyft's and uvicorn's own output (hidden by default)")
    serve.add_argument("--allow-root", action="store_true",
                       help="serve even as root (refused by default: approved code runs with "
                            "the server's rights)")
    serve.add_argument("--max-lr", type=float, default=None, metavar="LR",
                       help="refuse training calls whose learning rate is above LR")
    serve.add_argument("--max-batch-size", type=int, default=None, metavar="B",
                       help="refuse training calls whose batch is larger than B")
    serve.add_argument("--dp-epsilon", type=float, default=None, metavar="E",
                       help="give each data scientist a privacy budget of E (with --dp-delta; "
                            "needs --state-dir): only DP-SGD training runs, no evaluation, and "
                            "the call that would exceed the budget is refused")
    serve.add_argument("--dp-delta", type=float, default=None, metavar="D",
                       help="the budget's delta, below 1/N for N images (e.g. 1e-5)")
    serve.add_argument("--password-fd", type=int, default=None, help=argparse.SUPPRESS)
    for name, helptext in (("requests", "list code requests (pending unless --all)"),
                           ("approve", "approve a code request by its id"),
                           ("deny", "deny a code request by its id")):
        cmd = cmds.add_parser(name, help=helptext)
        if name != "requests":
            cmd.add_argument("request_id", metavar="ID")
        cmd.add_argument("--url", default="http://127.0.0.1:8080",
                         help="the Datasite (default: http://127.0.0.1:8080)")
        if name == "requests":
            cmd.add_argument("--all", action="store_true", help="also approved and denied ones")
            cmd.add_argument("--code", action="store_true",
                             help="print the policies, the checks and the submitted source")
        if name == "approve":
            cmd.add_argument("--force", action="store_true",
                             help="approve even if fedlearn's checks fail (prints a warning)")
            cmd.add_argument("--max-calls", type=int, default=None, metavar="N",
                             help="allow at most N calls (default: as many as the scientist "
                                  "asked for; the Datasite counts them and refuses the next)")
        if name == "deny":
            cmd.add_argument("--reason", required=True, help="told to the data scientist")
    for cmd in (serve, *[cmds.choices[n] for n in ("requests", "approve", "deny")]):
        cmd.add_argument("--admin-email", default=ADMIN_EMAIL, help=f"(default: {ADMIN_EMAIL})")
        cmd.add_argument("--admin-password-file", default=None, metavar="FILE",
                         help="default: $FEDLEARN_ADMIN_PASSWORD")
        add_tls_client_flags(cmd)


def add_tls_client_flags(cmd) -> None:
    cmd.add_argument("--ca-file", default=None, metavar="FILE",
                     help="for https:// Datasites: the CA certificate that signed them "
                          "(serve: default --tls-cert, right for a self-signed one)")
    cmd.add_argument("--client-cert", default=None, metavar="FILE",
                     help="this side's client certificate, where the Datasite requires one")
    cmd.add_argument("--client-key", default=None, metavar="FILE",
                     help="the client certificate's private key")


def tls_client(args, *, default_ca: str | None = None):
    """The TLS client settings from the flags, or None for plain HTTP."""
    from fedlearn.backends.pysyft.connection import TLSClientConfig

    ca = args.ca_file or default_ca
    if ca is None:
        if args.client_cert or args.client_key:
            raise ConfigError("ca_file", "--client-cert needs --ca-file (an https:// Datasite)")
        return None
    return TLSClientConfig(ca, args.client_cert, args.client_key)


def add_pysyft_train_flags(train) -> None:
    group = train.add_argument_group("PySyft Datasites (--backend pysyft)")
    group.add_argument("--backend", default="inprocess", metavar="{inprocess,pysyft}",
                       help="inprocess (default) or pysyft: Bob and Alice as Datasites, launched "
                            "here, or on other machines with --datasite")
    group.add_argument("--datasite", action="append", default=[], metavar="NAME=URL",
                       help="a running Datasite, e.g. bob=http://10.0.0.2:8080; repeat per owner "
                            "(the names replace --workers)")
    group.add_argument("--email", default="scientist@fedlearn.example",
                       help="the data scientist's account on the Datasites")
    group.add_argument("--password-file", default=None, metavar="FILE",
                       help="the scientist's password (default: $FEDLEARN_SCIENTIST_PASSWORD)")
    group.add_argument("--approval-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="how long to wait for the owners to approve (default: 600)")
    group.add_argument("--verbose", action="store_true",
                       help="also show PySyft's own output (hidden by default)")
    add_tls_client_flags(group)


def datasite_main(args) -> int:
    from fedlearn.backends.pysyft.serve import (
        ADMIN_PASSWORD_ENV,
        SCIENTIST_PASSWORD_ENV,
        check_distinct,
        read_password,
    )

    if args.datasite_command == "serve" and args.print_policy:
        from fedlearn.backends.pysyft.service_policy import policy_text

        print(policy_text())
        return 0
    if args.datasite_command == "serve" and args.password_fd is not None:
        with os.fdopen(args.password_fd) as pipe:  # from the process that exec'd this one
            admin_password, scientist_password = json.load(pipe)
        return _serve(serve_config(args), admin_password, scientist_password)
    in_environment = ADMIN_PASSWORD_ENV in os.environ or SCIENTIST_PASSWORD_ENV in os.environ
    admin_password = read_password("admin_password", env=ADMIN_PASSWORD_ENV,
                                   file=args.admin_password_file)
    if args.datasite_command == "serve":
        config = serve_config(args)  # every flag checked before anything else happens
        scientist_password = (read_password("scientist_password", env=SCIENTIST_PASSWORD_ENV,
                                            file=args.scientist_password_file)
                              if args.scientist else None)
        check_distinct(admin_password, scientist_password)
        if in_environment and getattr(args, "exec_allowed", False):
            _exec_without_passwords(admin_password, scientist_password)
        return _serve(config, admin_password, scientist_password)
    from fedlearn.backends.pysyft import Datasite
    from fedlearn.backends.pysyft.connection import use_tls

    use_tls(tls_client(args))
    site = Datasite.connect(args.url, email=args.admin_email, password=admin_password)
    if args.datasite_command == "approve":
        if args.max_calls is not None and args.max_calls < 1:
            raise ConfigError("max_calls", f"must be at least 1 (got {args.max_calls})")
        site.approve(args.request_id, force=args.force, max_calls=args.max_calls)
        print(f"{site.name}: approved {args.request_id}")
    elif args.datasite_command == "deny":
        site.deny(args.request_id, args.reason)
        print(f"{site.name}: denied {args.request_id}")
    else:
        shown = site.requests(include_decided=args.all)
        for r in shown:
            print(format_request(r, code=args.code))
        if not shown:
            print(f"{site.name}: no {'' if args.all else 'pending '}code requests")
    return 0


def _exec_without_passwords(admin_password: str, scientist_password: str | None) -> None:
    """Start this command afresh with the password variables gone from its environment.

    Removing a variable from ``os.environ`` does not erase it from the block the
    process started with (``/proc/PID/environ``), which the server's child and
    any code it runs could read; a new process image gets a clean block. The
    passwords travel through a pipe.
    """
    read, write = os.pipe()
    os.write(write, json.dumps([admin_password, scientist_password]).encode())
    os.close(write)
    os.set_inheritable(read, True)
    argv = [sys.executable, "-m", "fedlearn", *sys.argv[1:], "--password-fd", str(read)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, dict(os.environ))


def serve_config(args):
    """The ``serve`` flags as a validated :class:`~fedlearn.backends.pysyft.serve.ServeConfig`."""
    from fedlearn.backends.pysyft.owner_limits import OwnerLimits
    from fedlearn.backends.pysyft.serve import ServeConfig, parse_shard

    if args.name is None:
        raise ConfigError("name", "is required: the owner's name, e.g. --name bob")
    return ServeConfig(
        name=args.name, shard=parse_shard(args.shard), scheme=args.partition,
        data=DataConfig(data_dir=args.data_dir, train_size=args.train_size), seed=args.seed,
        host=args.host, port=args.port, admin_email=args.admin_email,
        scientist_email=args.scientist, tls_cert=args.tls_cert, tls_key=args.tls_key,
        client_ca=args.client_ca, tls_client=tls_client(args, default_ca=args.tls_cert),
        state_dir=args.state_dir, reset=args.reset, allow_signup=args.allow_signup,
        allow_password_reset=args.allow_password_reset, max_memory_mb=args.max_memory_mb,
        verbose=args.verbose, allow_root=args.allow_root,
        limits=OwnerLimits(max_lr=args.max_lr, max_batch_size=args.max_batch_size,
                           dp_epsilon=args.dp_epsilon, dp_delta=args.dp_delta))


def _serve(config, admin_password: str, scientist_password: str | None) -> int:
    from fedlearn.backends.pysyft.serve import serve

    serve(config, admin_password=admin_password, scientist_password=scientist_password)
    return 0


def format_request(r: dict, *, code: bool) -> str:
    """One request for the owner: a summary line; with ``code``, what it binds and runs."""
    who = f"{r['requester'] or '(no account: a guest)'} ({r['role'] or 'no role'})"
    verdict = ("checks passed" if not r["problems"] else
               f"{len(r['problems'])} problem(s): approve refuses it")
    if r.get("approved_calls") is not None:
        calls = f"calls: {r.get('calls', 0)} of {r['approved_calls']} approved"
    else:
        calls = f"calls asked for: {r.get('max_calls')}"
    lines = [f"{r['id']}  {r['status']:<8}  {r['function']}  by {who}  at {r['time']}  "
             f"[{verdict}]  {calls}"]
    if not r["code"]:
        lines += [f"  PROBLEM: {p}" for p in r["problems"]]
        return "\n".join(lines)
    if code:
        lines.append("  inputs:")
        lines += [f"    {name:<8} <- {what}" for name, what in r["inputs"].items()]
        lines.append(f"  output policy: {r['output_policy']}")
        same = (f"equals fedlearn's generated function for {r['matches']}" if r["matches"]
                else "does NOT equal fedlearn's generated function")
        lines.append(f"  source SHA-256: {r['sha256']} ({same}), run {r.get('run')}")
        if r.get("normalisation"):
            lines.append(f"  normalises your data as: {r['normalisation']}")
        lines += [f"  PROBLEM: {p}" for p in r["problems"]]
        if r.get("terms"):
            lines.append(f"  {r['terms']}")
        lines += ["  source:", r["code"]]
    return "\n".join(lines)


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


def pysyft_workers(args, config, data):
    """Workers for ``train --backend pysyft``, and a function that cleans up after them."""
    from fedlearn.backends.pysyft.connection import use_tls
    from fedlearn.backends.pysyft.remote import connect_datasites, parse_addresses, run_id_for
    from fedlearn.backends.pysyft.serve import SCIENTIST_PASSWORD_ENV, read_password
    from fedlearn.backends.pysyft.training_code import check_plan

    fed = config.federation
    check_plan(config.plan)
    names = list(config.partition.workers)
    config.check_workers(len(names), remote=names)  # refused before anyone is asked
    max_calls = fed.rounds * (config.robustness.max_retries + 1) + 10
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
            dp=config.dp_sgd)
        print(f"Datasites up in this process: {', '.join(w.name for w in workers)}; each owner "
              "reviewed and approved the code request", file=sys.stderr, flush=True)
        return workers, lambda: [site.land() for site in sites]
    addresses = parse_addresses(args.datasite)
    refuse_what_datasites_cannot_honour(config)
    password = read_password("password", env=SCIENTIST_PASSWORD_ENV, file=args.password_file)

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
                                run=run, plan=config.plan, dp=config.dp_sgd, on_wait=waiting)
    print(f"logged in to {', '.join(f'{a.name} ({a.url})' for a in addresses)} as a data "
          "scientist; every owner approved the code request", file=sys.stderr, flush=True)
    return workers, lambda: None
