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

from fedlearn.backends.pysyft.loading import PYSYFT_DEFAULT_EMAIL
from fedlearn.backends.pysyft.supervision import DEFAULT_MAX_MEMORY_MB
from fedlearn.cli.owner_commands import review_command, serve_command
from fedlearn.cli.tls_flags import add_tls_client_flags
from fedlearn.config import PARTITIONS

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
            cmd.add_argument("--ids", action="store_true",
                             help="print only the requests' ids, one a line (for a script: "
                                  "approve $(fedlearn datasite requests --ids ...))")
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


def datasite_main(args) -> int:
    """Run the ``fedlearn datasite`` action the parsed flags name."""
    if args.datasite_command == "serve":
        return serve_command(args)
    return review_command(args)
