"""The one base class of the errors a user can fix; the CLI prints them as one line (exit 2).

Anything else is a bug or an environment failure and keeps its traceback.
"""
from __future__ import annotations


class FedlearnError(Exception):
    """Base of every error caused by what the user asked for (bad input, a refused action)."""

    #: the CLI's exit status: 2, the command cannot run as given (fix it and rerun); 1, the
    #: run was stopped by something outside the command (a round without enough valid
    #: updates, a hostile Datasite, a served Datasite's process dying)
    exit_code = 2
