"""The TLS client flags shared by everyone who connects to a Datasite by URL.

The owner's ``fedlearn datasite serve/requests/approve/deny`` (:mod:`.datasite`) and
the data scientist's ``fedlearn train --backend pysyft`` (:mod:`.pysyft_train`) take
the same three flags and turn them into the same settings here.
"""
from __future__ import annotations

from fedlearn.config import ConfigError


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
