"""The data owner's ``fedlearn datasite`` actions, from their parsed flags (:mod:`.datasite`).

``serve`` (:func:`serve_command`) runs this owner's Datasite until stopped;
``requests``, ``approve`` and ``deny`` (:func:`review_command`) log in to a running
one as its admin and review the data scientist's code requests.
"""
from __future__ import annotations

import json
import os
import sys

from fedlearn.cli.tls_flags import tls_client
from fedlearn.config import ConfigError, DataConfig


def serve_command(args) -> int:
    """``fedlearn datasite serve``: check every flag and both passwords, then serve."""
    from fedlearn.backends.pysyft.serve import (
        ADMIN_PASSWORD_ENV,
        SCIENTIST_PASSWORD_ENV,
        check_distinct,
        read_password,
    )

    if args.print_policy:
        from fedlearn.backends.pysyft.service_policy import policy_text

        print(policy_text())
        return 0
    if args.password_fd is not None:
        with os.fdopen(args.password_fd) as pipe:  # from the process that exec'd this one
            admin_password, scientist_password = json.load(pipe)
        return _serve(serve_config(args), admin_password, scientist_password)
    in_environment = ADMIN_PASSWORD_ENV in os.environ or SCIENTIST_PASSWORD_ENV in os.environ
    admin_password = _admin_password(args)
    config = serve_config(args)  # every flag checked before anything else happens
    scientist_password = (read_password("scientist_password", env=SCIENTIST_PASSWORD_ENV,
                                        file=args.scientist_password_file)
                          if args.scientist else None)
    check_distinct(admin_password, scientist_password)
    if in_environment and getattr(args, "exec_allowed", False):
        _exec_without_passwords(admin_password, scientist_password)
    return _serve(config, admin_password, scientist_password)


def review_command(args) -> int:
    """``fedlearn datasite requests|approve|deny``: log in to ``--url`` as its admin and act."""
    from fedlearn.backends.pysyft.connection import split_url, use_tls

    try:
        split_url(args.url)
    except ConfigError as exc:  # this command names its Datasite with --url
        raise ConfigError("url", exc.detail) from None
    admin_password = _admin_password(args)
    from fedlearn.backends.pysyft import Datasite

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
        if args.ids:
            if args.code:
                raise ConfigError("ids", "prints only the ids: leave out --code")
            print("\n".join(r["id"] for r in shown))
            return 0
        for r in shown:
            print(format_request(r, code=args.code))
        if not shown:
            print(f"{site.name}: no {'' if args.all else 'pending '}code requests")
    return 0


def _admin_password(args) -> str:
    from fedlearn.backends.pysyft.serve import ADMIN_PASSWORD_ENV, read_password

    return read_password("admin_password", env=ADMIN_PASSWORD_ENV,
                         file=args.admin_password_file)


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

