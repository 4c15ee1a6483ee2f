"""The one base class of the errors a user can fix; the CLI prints them as one line (exit 2).

Anything else is a bug or an environment failure and keeps its traceback.
"""
from __future__ import annotations


class FedlearnError(Exception):
    """Base of every error caused by what the user asked for (bad input, a refused action)."""
