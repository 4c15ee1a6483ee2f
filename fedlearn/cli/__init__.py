"""The ``fedlearn`` command: ``train`` (:mod:`.train`, with the flag groups of :mod:`.scale`)
and the data owner's ``datasite`` commands (:mod:`.datasite`)."""
from fedlearn.cli.train import build_parser, config_from_args, main

__all__ = ["build_parser", "config_from_args", "main"]
