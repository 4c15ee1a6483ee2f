"""What PySyft prints, kept off the user's screen unless they ask (``--verbose``).

syft 0.9.5 talks a lot on stdout, stderr and its loggers: a CRITICAL line with the
signing key's hash at every launch, the path of its SQLite file, "Logged into ...",
coloured upload bars, advice to create a project, and, for an in-process Datasite, the
server's own traceback when it refuses a request. None of it is what a user of
fedlearn needs to read: fedlearn says what happened in its own words. Calls into syft
run inside :func:`quiet_syft`, which keeps the chatter in a buffer (for a one-line
explanation when something fails) unless :func:`set_verbose` turned it back on.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator

_verbose = False


def set_verbose(on: bool) -> None:
    """Show PySyft's own output again (``fedlearn ... --verbose``)."""
    global _verbose
    _verbose = bool(on)


class Chatter:
    """What PySyft printed inside one :func:`quiet_syft` block."""

    def __init__(self, buffer: io.StringIO | None):
        self._buffer = buffer

    @property
    def text(self) -> str:
        return self._buffer.getvalue() if self._buffer is not None else ""

    def syft_error(self) -> str | None:
        """The last ``SyftError: ...`` message PySyft printed, without the prefix."""
        lines = [line.partition("SyftError:")[2].strip() for line in self.text.splitlines()
                 if "SyftError:" in line]
        return lines[-1] if lines else None


@contextlib.contextmanager
def quiet_syft() -> Iterator[Chatter]:
    """Run PySyft calls without their console output (kept in the returned :class:`Chatter`).

    Not for code that forks a server process: the child would inherit the buffer.
    """
    if _verbose:
        yield Chatter(None)
        return
    buffer = io.StringIO()
    for stream in (sys.stdout, sys.stderr):  # what was printed before stays where it belongs
        stream.flush()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # syft's loggers hold the real stderr
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), \
                _notebook_display_to(buffer):
            yield Chatter(buffer)
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def _notebook_display_to(buffer: io.StringIO) -> Iterator[None]:
    """In Jupyter, syft also calls IPython's ``display()`` (success banners, HTML tables):
    those go to the buffer too, as their plain text."""
    try:
        from IPython import get_ipython
    except ImportError:
        yield
        return
    shell = get_ipython()
    publisher = getattr(shell, "display_pub", None)
    if publisher is None:
        yield
        return
    original = publisher.publish

    def publish(data, *args, **kwargs):
        buffer.write(f"{data.get('text/plain', '')}\n")

    publisher.publish = publish
    try:
        yield
    finally:
        publisher.publish = original


def one_line(error: BaseException | str) -> str:
    """An error as one line for a person: its first non-empty line, PySyft's prefixes cut."""
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    for prefix in ("PySyft: ", "SyftError: ", "SyftException: "):
        first = first.removeprefix(prefix)
    return first
