"""The worker processes: started with ``spawn``, replaced when one dies or hangs, all ended.

Each :class:`Slot` is one process, the parent's end of its pipe and what it holds (the clients
whose workers were sent to it). A process is killed only by the parent (it hung, or the run
ends); one that died is joined and replaced by a fresh one, which holds nothing yet. No
process outlives the pool: :meth:`ProcessPool.close` asks each to stop, then kills what is
left; they are daemonic (ended at interpreter exit) and each dies with its parent (Linux).
"""
from __future__ import annotations

import multiprocessing
import pickle
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait

from fedlearn.config import ConfigError
from fedlearn.execution.processes.child import serve


class Slot:
    """One worker process and the parent's view of it."""

    def __init__(self, context, threads: int):
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(child_end, threads), daemon=True,
                                       name="fedlearn-client-process")
        with _main_hidden():
            self.process.start()
        child_end.close()  # the child's copy is the only one left: its death closes the pipe
        self.ready = False
        self.held: set[str] = set()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, message) -> None:
        self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self):
        """The next message; EOFError or OSError where the process died."""
        return pickle.loads(self.conn.recv_bytes())

    def exit_line(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        how = (f"killed by signal {-code}" if code is not None and code < 0
               else f"exit code {code}" if code is not None else "no exit code")
        return f"process {self.pid}, {how}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()


@contextmanager
def _main_hidden() -> Iterator[None]:
    """While a process is spawned, the script being run is not named to it: spawn would run
    it again in the child as ``__mp_main__``, and a script without ``if __name__ ==
    '__main__'`` would start the whole run again there. Workers that need it are refused
    (:func:`.cores.process_refusals`). Spawning reads these names in ``start()`` only."""
    main = sys.modules["__main__"]
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    for key in saved:
        if key == "__spec__":
            main.__spec__ = None
        else:
            delattr(main, key)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


class ProcessPool:
    """``count`` processes of ``threads`` torch threads; :meth:`await_ready` before use."""

    def __init__(self, count: int, threads: int = 1, start_timeout: float = 120.0):
        self.context = multiprocessing.get_context("spawn")
        self.count, self.threads, self.start_timeout = count, threads, start_timeout
        self.slots: list[Slot] = []
        self.replaced = 0

    def top_up(self) -> None:
        while len(self.slots) < self.count:
            self.slots.append(Slot(self.context, self.threads))

    def ready(self, slot: Slot) -> bool:
        """Take ``slot``'s ready message (it has one waiting); False: it died starting."""
        try:
            kind, _ = slot.receive()
        except (EOFError, OSError):
            return False
        slot.ready = kind == "ready"
        return slot.ready

    def await_ready(self) -> None:
        """Every process up, or the run refused with why they are not."""
        self.top_up()
        deadline = time.monotonic() + self.start_timeout
        failures = 0
        while not all(slot.ready for slot in self.slots):
            starting = [slot for slot in self.slots if not slot.ready]
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConfigError("execution.processes", f"{len(starting)} worker process(es) "
                                  f"did not start within {self.start_timeout:g} s")
            found = wait([slot.conn for slot in starting], timeout=left)
            for slot in starting:
                if slot.conn in found and not self.ready(slot):
                    failures += 1
                    line = slot.exit_line()
                    self.replace(slot)
                    if failures > self.count:  # one that cannot import fedlearn never starts
                        raise ConfigError("execution.processes", f"worker processes fail as "
                                          f"they start ({failures} times): {line}")

    def replace(self, slot: Slot) -> Slot:
        """Kill ``slot``'s process (hung or dead: never left running); start another."""
        slot.kill()
        fresh = Slot(self.context, self.threads)
        self.slots[self.slots.index(slot)] = fresh
        self.replaced += 1
        return fresh

    def held_anywhere(self) -> set[str]:
        return set().union(*(slot.held for slot in self.slots))

    def close(self) -> None:
        """Ask each process to stop, then kill whatever has not within a second."""
        for slot in self.slots:
            try:  # a ready process has read all it was sent: the pipe has room for this
                if slot.ready:
                    slot.send(None)
            except (OSError, ValueError):  # gone already, or its pipe closed
                pass
        deadline = time.monotonic() + 1.0
        for slot in self.slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            slot.kill()
        self.slots = []
