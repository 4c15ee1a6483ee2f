"""What a served Datasite remembers: approvals, call counts, privacy spent, and an audit log.

PySyft 0.9.5 keeps requests and approvals in its own store but enforces neither the
number of calls an approval allows (PySyft issue #9391) nor anything else fedlearn
promises the owner. :class:`DatasiteState` is fedlearn's own record, in one SQLite
file in the owner's state directory (``serve --state-dir``), written with
``synchronous=FULL`` so that a call counted is counted even if the server is killed
with ``kill -9`` a moment later:

- ``approvals``: for each request the owner approved, the digest of the code that
  was reviewed, the scientist, how many calls the owner allowed and how many ran;
- ``ledgers``: per scientist, the DP-SGD steps charged against the owner's budget;
- ``secagg``: per scientist, what this Datasite masked and revealed in secure aggregation
  (:class:`fedlearn.updates.secagg.SecAggLedger`): one masked input per round, one kind
  of share per peer and round, the same weights never masked with another set of owners;
- ``residuals``: per approved top-k code and scientist, what the owner has not sent yet
  (:mod:`.residual_keeper`): top-k's error feedback, kept here, never returned;
- ``audit``: an append-only log of every request, approval, refusal, execution and
  result fetch, each entry carrying the SHA-256 of the previous one (a hash chain,
  as in Schneier and Kelsey, "Secure audit logs to support computer forensics",
  1999). :meth:`DatasiteState.verify` walks the chain at every start; an edited,
  reordered or deleted entry breaks it, and the Datasite refuses to start.

A chain does not stop someone who can write the file from rewriting all of it; it
makes a quiet edit of one entry visible. The directory is 0700.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fedlearn.errors import FedlearnError
from fedlearn.updates.secagg import SecAggLedger

FILE = "fedlearn-state.sqlite"
_GENESIS = "0" * 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    request_id TEXT PRIMARY KEY, code_id TEXT NOT NULL, digest TEXT NOT NULL,
    scientist TEXT NOT NULL, max_calls INTEGER NOT NULL, calls INTEGER NOT NULL DEFAULT 0,
    approved_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ledgers (scientist TEXT PRIMARY KEY, history TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secagg (scientist TEXT PRIMARY KEY, ledger TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS residuals (
    code_id TEXT NOT NULL, scientist TEXT NOT NULL, tensors BLOB NOT NULL,
    PRIMARY KEY (code_id, scientist));
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL,
    previous TEXT NOT NULL, digest TEXT NOT NULL);
"""


class StateTampered(FedlearnError):
    """The audit log's hash chain is broken: an entry was edited, reordered or deleted."""


class CallsExhausted(FedlearnError):
    """An approved request has run every call the owner allowed."""

    @staticmethod
    def text(approval: Approval) -> str:
        return (f"the owner approved {approval.max_calls} calls of request "
                f"{approval.request_id} and all have run; submit a new request")


@dataclass(frozen=True)
class Approval:
    """One approved request, as fedlearn recorded it when the owner approved it."""

    request_id: str
    code_id: str
    digest: str
    scientist: str
    max_calls: int
    calls: int


def _entry_digest(previous: str, seq: int, at: float, event: str, detail: str) -> str:
    text = json.dumps([previous, seq, repr(at), event, detail], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class DatasiteState:
    """fedlearn's record for one served Datasite, in ``directory`` (see module doc)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / FILE
        self._lock = threading.Lock()  # uvicorn may serve two calls at once
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable before the call runs
        self._db.executescript(_SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    # -- the audit log -------------------------------------------------------------
    def log(self, event: str, **detail) -> None:
        """Append one entry to the audit log (and make it durable)."""
        with self._lock:
            self._append(event, detail)

    def _append(self, event: str, detail: dict) -> None:
        row = self._db.execute("SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, previous = (row[0] + 1, row[1]) if row else (1, _GENESIS)
        at = time.time()
        text = json.dumps(detail, sort_keys=True, default=str)
        self._db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
                         (seq, at, event, text, previous,
                          _entry_digest(previous, seq, at, event, text)))

    def entries(self) -> list[dict]:
        rows = self._db.execute("SELECT seq, at, event, detail FROM audit ORDER BY seq")
        return [{"seq": s, "at": a, "event": e, **json.loads(d)} for s, a, e, d in rows]

    def verify(self) -> int:
        """Walk the hash chain; return the number of entries, or raise :class:`StateTampered`."""
        previous, expected_seq = _GENESIS, 1
        rows = self._db.execute("SELECT seq, at, event, detail, previous, digest FROM audit "
                                "ORDER BY seq")
        for seq, at, event, detail, stored_previous, digest in rows:
            if (seq != expected_seq or stored_previous != previous
                    or digest != _entry_digest(previous, seq, at, event, detail)):
                raise StateTampered(f"the audit log in {self.path} was altered at entry {seq}: "
                                    "start with --reset to begin a new log (the old file is "
                                    "evidence: keep a copy)")
            previous, expected_seq = digest, seq + 1
        return expected_seq - 1

    # -- approvals and call counts -------------------------------------------------
    def approve(self, *, request_id: str, code_id: str, digest: str, scientist: str,
                max_calls: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO approvals VALUES (?, ?, ?, ?, ?, 0, ?)",
                             (request_id, code_id, digest, scientist, max_calls, time.time()))
            self._append("approve", {"request": request_id, "code": code_id, "digest": digest,
                                     "scientist": scientist, "max_calls": max_calls})
            self._db.execute("COMMIT")

    def approval_for_code(self, code_id: str) -> Approval | None:
        row = self._db.execute("SELECT request_id, code_id, digest, scientist, max_calls, calls "
                               "FROM approvals WHERE code_id = ?", (code_id,)).fetchone()
        return Approval(*row) if row else None

    def take_call(self, code_id: str, **detail) -> Approval:
        """Count one call of the approved code, durably, before it runs; refuse past the limit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                approval = self.approval_for_code(code_id)
                if approval is None:
                    raise CallsExhausted(f"code {code_id} has no approval on record")
                if approval.calls >= approval.max_calls:
                    self._append("refuse", {"code": code_id, "why": "calls used up", **detail})
                    raise CallsExhausted(CallsExhausted.text(approval))
                self._db.execute("UPDATE approvals SET calls = calls + 1 WHERE code_id = ?",
                                 (code_id,))
                self._append("execute", {"code": code_id, "request": approval.request_id,
                                         "call": approval.calls + 1, **detail})
            finally:
                self._db.execute("COMMIT")
        return Approval(**{**approval.__dict__, "calls": approval.calls + 1})

    # -- privacy ledgers -------------------------------------------------------------
    def ledger(self, scientist: str) -> list:
        row = self._db.execute("SELECT history FROM ledgers WHERE scientist = ?",
                               (scientist,)).fetchone()
        return json.loads(row[0]) if row else []

    def charge(self, scientist: str, history: list, **detail) -> None:
        """Store a scientist's new accountant history (durably) and log the charge."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO ledgers VALUES (?, ?)",
                             (scientist, json.dumps(history)))
            self._append("charge", {"scientist": scientist, **detail})
            self._db.execute("COMMIT")

    # -- secure aggregation ----------------------------------------------------------
    def secagg_ledger(self, scientist: str) -> SecAggLedger:
        row = self._db.execute("SELECT ledger FROM secagg WHERE scientist = ?",
                               (scientist,)).fetchone()
        return SecAggLedger(json.loads(row[0]) if row else None)

    def record_secagg(self, scientist: str, apply, **detail) -> None:
        """``apply(ledger)`` (which raises :class:`~fedlearn.updates.secagg.SecAggRefused` to
        refuse) on the scientist's ledger, stored durably before the call runs."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ledger = self.secagg_ledger(scientist)
                apply(ledger)
                self._db.execute("INSERT OR REPLACE INTO secagg VALUES (?, ?)",
                                 (scientist, json.dumps(ledger.state(), sort_keys=True)))
                self._append("secagg", {"scientist": scientist, **detail})
            finally:
                self._db.execute("COMMIT")

    # -- top-k residuals -------------------------------------------------------------
    def residual(self, code_id: str, scientist: str) -> bytes | None:
        """The stored residual of one approved code for one scientist (torch.save bytes)."""
        row = self._db.execute("SELECT tensors FROM residuals WHERE code_id = ? AND "
                               "scientist = ?", (code_id, scientist)).fetchone()
        return bytes(row[0]) if row else None

    def keep_residual(self, code_id: str, scientist: str, tensors: bytes) -> None:
        """Store a call's new residual durably (before its result is handed out)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO residuals VALUES (?, ?, ?)",
                             (code_id, scientist, tensors))
