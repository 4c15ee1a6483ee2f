"""The ``fedlearn`` command: ``train`` (:mod:`.train`, with the flag groups of :mod:`.scale`)
and the data owner's ``datasite`` commands (:mod:`.datasite`, carried out by
:mod:`.owner_commands`); ``train --backend pysyft`` takes its flags and workers from
:mod:`.pysyft_train`."""
from fedlearn.cli.train import build_parser, config_from_args, main

__all__ = ["build_parser", "config_from_args", "main"]
