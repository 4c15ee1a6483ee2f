"""How the ``fedlearn`` command ends: one line for what the user can fix, a traceback for
everything else.

- A :class:`~fedlearn.errors.FedlearnError` prints ``fedlearn: error: ...`` (one line) and
  exits with its ``exit_code``: 2 when the command cannot run as given, 1 when something
  outside it stopped the run. ``--debug`` prints its traceback first.
- A bad flag value (``--lr abc``) is argparse's own message on one line, exit 2: no usage dump.
- Ctrl-C (or SIGTERM) exits 130 with one line saying how to resume.
- Any other exception is a bug or an environment failure: it propagates with its traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from fedlearn.cli.flags import flag_for
from fedlearn.config import ConfigError
from fedlearn.errors import FedlearnError

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (its subcommands' parsers are too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fedlearn: error: {message}\n")


def add_debug_flag(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """``--debug`` on the command and on every subcommand: ``fedlearn --debug train`` and
    ``fedlearn train --debug`` alike (a subcommand's copy never resets the command's)."""
    parser.add_argument("--debug", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="on an error, also print its traceback")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_debug_flag(sub, top=False)


def report(exc: FedlearnError, parser: argparse.ArgumentParser, args) -> int:
    """Print ``exc`` as one line (after its traceback with ``--debug``); its exit code."""
    from fedlearn.server.federation import RoundFailedError

    if getattr(args, "debug", False):
        traceback.print_exception(exc)
    if isinstance(exc, ConfigError):
        flag = flag_for(_command_parser(parser, args), exc.path)
        message = f"{'argument ' if flag.startswith('-') else ''}{flag}: {exc.detail}"
    else:
        message = str(exc)
    if isinstance(exc, RoundFailedError):
        message += (f" Rerun with --out {args.out} --resume once the workers are fixed.")
    print(f"fedlearn: error: {message}", file=sys.stderr)
    return exc.exit_code


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the (sub)command that ran: an error names only a flag it has."""
    for dest in ("command", "datasite_command"):
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, dest, None)
        if not subparsers or name not in subparsers[0].choices:
            break
        parser = subparsers[0].choices[name]
    return parser


def interrupted(args) -> int:
    """Ctrl-C: say what was kept and how to continue; exit 130."""
    from fedlearn.experiment import CHECKPOINT

    out = getattr(args, "out", None)
    if args.command != "train" or out is None:
        print("fedlearn: interrupted", file=sys.stderr)
    elif (Path(out).expanduser() / CHECKPOINT).is_file():
        print(f"fedlearn: interrupted; the last finished round is saved: rerun with "
              f"fedlearn train --out {out} --resume to continue", file=sys.stderr)
    else:
        print("fedlearn: interrupted before the first round finished; nothing to resume",
              file=sys.stderr)
    return INTERRUPTED
