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
import threading
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


class _ThreadRouted:
    """``sys.stdout``/``sys.stderr`` while any :func:`quiet_syft` block runs: a thread inside a
    block writes to its own buffer, any other thread to the real stream. Stage calls to
    several Datasites run in threads at once, and ``contextlib.redirect_stdout`` is one
    process-wide swap that the first thread to leave would undo for all."""

    def __init__(self, real):
        self.real = real

    def write(self, text: str) -> int:
        buffer = getattr(_here, "buffer", None)
        return (buffer if buffer is not None else self.real).write(text)

    def flush(self) -> None:
        if getattr(_here, "buffer", None) is None:
            self.real.flush()

    def __getattr__(self, name: str):  # encoding, isatty, fileno, ...: the real stream's
        return getattr(self.real, name)


_here = threading.local()  # .buffer: the StringIO of the block this thread is in
_lock = threading.Lock()
_active = 0  # blocks open in all threads; the streams are swapped while there are any
_saved: tuple = ()


def _enter() -> None:
    global _active, _saved
    with _lock:
        if _active == 0:
            for stream in (sys.stdout, sys.stderr):  # what was printed before stays there
                stream.flush()
            publisher = _display_publisher()
            _saved = (sys.stdout, sys.stderr, logging.root.manager.disable, publisher,
                      publisher and publisher.publish)
            sys.stdout, sys.stderr = _ThreadRouted(sys.stdout), _ThreadRouted(sys.stderr)
            if publisher is not None:
                publisher.publish = _routed_publish(publisher.publish)
            logging.disable(logging.CRITICAL)  # syft's loggers hold the real stderr
        _active += 1


def _leave() -> None:
    global _active
    with _lock:
        _active -= 1
        if _active == 0:
            sys.stdout, sys.stderr, level, publisher, publish = _saved
            logging.disable(level)
            if publisher is not None:
                publisher.publish = publish


@contextlib.contextmanager
def quiet_syft() -> Iterator[Chatter]:
    """Run PySyft calls without their console output (kept in the returned :class:`Chatter`).

    Safe in several threads at once: each block keeps what its own thread printed. Not for
    code that forks a server process: the child would inherit the buffer.
    """
    if _verbose:
        yield Chatter(None)
        return
    buffer = io.StringIO()
    outer = getattr(_here, "buffer", None)  # a block inside a block: the inner one keeps it
    _enter()
    _here.buffer = buffer
    try:
        yield Chatter(buffer)
    finally:
        _here.buffer = outer
        _leave()


def _display_publisher():
    """In Jupyter, syft also calls IPython's ``display()`` (success banners, HTML tables)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "display_pub", None)


def _routed_publish(original):
    def publish(data, *args, **kwargs):  # inside a block: its buffer gets the plain text
        buffer = getattr(_here, "buffer", None)
        if buffer is None:
            return original(data, *args, **kwargs)
        buffer.write(f"{data.get('text/plain', '')}\n")
    return publish


def one_line(error: BaseException | str) -> str:
    """An error as one line for a person: its first non-empty line, PySyft's prefixes cut."""
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    for prefix in ("PySyft: ", "SyftError: ", "SyftException: "):
        first = first.removeprefix(prefix)
    return first
