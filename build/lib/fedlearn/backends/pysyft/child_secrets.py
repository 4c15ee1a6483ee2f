"""Passwords leave no trace in the server child, the process that runs approved code.

``serve``'s HTTP server is a *fork* (syft's ``multiprocessing.Process``): it starts as
a copy of everything ``serve`` held at that moment, the admin and scientist
passwords included — in the frames of ``serve_command``, ``serve`` and
``Datasite.serve`` still on the stack, in ``Server.__init__``'s defaults, in the
arguments of the functions that forked. Code the owner approves runs in that child
and could read them there (reproduced: ``tests/security/test_secrets.py``).

:func:`forget_in_server_child` registers the passwords before the fork. In a forked
child, as soon as syft's server has created (or found) its root account — the last
use of the admin password — :func:`wipe` overwrites with NUL bytes, in place, every
``str``, ``bytes`` and ``bytearray`` holding one of them that can be reached from a
frame of any thread, a module, any object the garbage collector tracks (and the
untracked tuples and dicts those hold), ``os.environ``, and the process's initial
environment block (``/proc/self/environ``). Strings are immutable to Python code, so
the overwrite writes into the child's own copy of each object through ``ctypes``
(CPython's compact string and bytes layouts, checked on a probe string before any
real one is touched); the parent's copies, in pages shared copy-on-write, are not
affected. Memory already freed is not scanned.
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys
from types import FrameType

_passwords: list[str] = []
_hooked = False
_WORD = ctypes.sizeof(ctypes.c_ssize_t)
_HASH = 3 * _WORD  # ob_refcnt, ob_type, then length (str) or ob_size (bytes), then the hash
_STATE = _HASH + _WORD  # str: the bit field holding kind, compact and ascii
_ASCII_DATA = sys.getsizeof("") - 1  # compact ASCII: characters right after PyASCIIObject
_COMPACT_DATA = sys.getsizeof("\xe9") - 2  # other compact strings: after PyCompactUnicodeObject
_BYTES_DATA = sys.getsizeof(b"") - 1


def forget_in_server_child(*passwords: str | None) -> None:
    """Make every process forked from now on wipe ``passwords`` once its server has a root."""
    global _hooked
    for password in passwords:
        if password and password not in _passwords:
            _passwords.append(password)
    if not _hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_arm)
        _hooked = True


def _arm() -> None:
    """In a fresh fork: wipe right after syft's server creates or finds its root account."""
    server = sys.modules.get("syft.server.server")
    if not _passwords or server is None:
        return
    original = server.create_root_admin_if_not_exists

    def create_root_then_forget(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            setattr(server, "create_root_admin_if_not_exists", original)
            args, kwargs = (), {}
            wipe()

    # Server.__init__ finds it among its module's globals at call time
    setattr(server, "create_root_admin_if_not_exists", create_root_then_forget)


def _overwrite(obj) -> None:
    """Fill ``obj``'s characters or bytes with NULs in place and forget its cached hash."""
    if type(obj) is bytearray:
        obj[:] = bytes(len(obj))
        return
    address = id(obj)
    if type(obj) is bytes:
        ctypes.memset(address + _BYTES_DATA, 0, len(obj))
    else:
        state = ctypes.c_uint.from_address(address + _STATE).value
        kind, compact, ascii = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
        if not compact:  # legacy strings (deprecated C APIs only): not laid out as assumed
            return
        ctypes.memset(address + (_ASCII_DATA if ascii else _COMPACT_DATA), 0, len(obj) * kind)
        if not ascii:  # a cached UTF-8 copy: its length, then a pointer, after PyASCIIObject
            utf8 = ctypes.c_void_p.from_address(address + _ASCII_DATA + _WORD).value
            if utf8:
                size = ctypes.c_ssize_t.from_address(address + _ASCII_DATA).value
                ctypes.memset(utf8, 0, size)
    ctypes.c_ssize_t.from_address(address + _HASH).value = -1


def _layout_ok() -> bool:
    """Overwrite two fresh probe strings and a bytes object; True if they read back as NULs."""
    probes = ["".join(["probe-", str(os.getpid())]), "".join(["pr\xe9be-\u20ac", "x"]),
              "".join(["probe", "!"]).encode()]
    for probe in probes:
        _overwrite(probe)
    return all(set(p) <= {"\0", 0} for p in probes)


def _holding(needles) -> list:
    """Every reachable str/bytes/bytearray containing one of ``needles`` (see module doc)."""
    texts, raw = [n for n in needles if type(n) is str], [n.encode() for n in needles]
    found, seen, skip = {}, set(), {id(n) for n in texts + raw}
    roots: list = list(gc.get_objects())
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            roots += [frame.f_locals, frame.f_globals]
            frame = frame.f_back
    roots.append(getattr(os.environ, "_data", {}))
    while roots:
        for ref in gc.get_referents(roots.pop()):
            kind = type(ref)
            if kind is str:
                hit = any(n in ref for n in texts)
            elif kind is bytes or kind is bytearray:
                hit = any(n in ref for n in raw)
            else:
                if kind in (dict, tuple, list) and not gc.is_tracked(ref) \
                        and id(ref) not in seen:
                    seen.add(id(ref))
                    roots.append(ref)  # untracked: gc.get_objects() did not list it
                continue
            if hit and id(ref) not in skip:
                found[id(ref)] = ref
    return list(found.values()) + raw


def _wipe_environ_block(needles) -> None:
    """Overwrite the passwords in the environment block the process started with."""
    try:
        fields = open("/proc/self/stat").read().rpartition(")")[2].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            for needle in needles:
                at = block.find(needle)
                while at >= 0:
                    mem.seek(start + at)
                    mem.write(bytes(len(needle)))
                    at = block.find(needle, at + 1)
    except (OSError, ValueError, IndexError):  # not Linux, or /proc closed: nothing to wipe
        pass


def wipe() -> int:
    """Overwrite every reachable copy of the registered passwords; return how many."""
    if not _passwords or sys.implementation.name != "cpython" or not _layout_ok():
        return 0
    for name in [k for k, v in os.environ.items() if any(p in v for p in _passwords)]:
        del os.environ[name]
    _wipe_environ_block([p.encode() for p in _passwords])
    gc.collect()
    holders = _holding(list(_passwords))
    for obj in holders:
        _overwrite(obj)
    for password in _passwords:
        _overwrite(password)
    _passwords.clear()
    return len(holders)
