"""Atomic writes: a reader sees the old file or the new one, and Ctrl-C never leaves half."""
import os
import signal

import pytest

from fedlearn.files import atomic_write, interrupts_deferred


def test_ctrl_c_during_a_write_lands_the_file_then_interrupts(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        _interrupted_write(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_write(tmp_path):
    target = tmp_path / "checkpoint.bin"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"new, ")
        os.kill(os.getpid(), signal.SIGINT)  # delivered here, mid-write, without the deferral
        f.write(b"and whole")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write, durable=True)
    assert target.read_bytes() == b"new, and whole"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.bin"]  # no temporary left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_failed_write_keeps_the_old_file_and_its_own_error(tmp_path):
    target = tmp_path / "history.json"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_a_program_handler_runs_once_after_the_block():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert calls == []
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_without_a_signal_nothing_is_raised(tmp_path):
    atomic_write(tmp_path / "a", lambda f: f.write(b"x"))
    assert (tmp_path / "a").read_bytes() == b"x"
