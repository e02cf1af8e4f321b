"""A hash-chained, signed audit log in one SQLite file.

Each entry's hash covers its own contents and the previous entry's hash, and is signed by
the writer's identity, so editing, deleting or reordering entries anywhere breaks the
chain at that entry and :func:`verify_log` names it::

    with AuditLog.open(Path("audit.db"), hub_identity) as audit:
        audit.append("task.dispatched", {"task_id": "t1", "members": ["st-marys"]})
    assert verify_log(Path("audit.db"), hub_identity.public.verify_key).ok

What the file alone cannot show is that its newest entries were cut off; compare
:meth:`AuditLog.head` with a copy kept elsewhere. The RFC 9162 ledger, whose checkpoints
members cosign, replaces this log and closes that gap.

Entry bodies must not carry PHI or anything else identifying a patient: pass identifiers
(task, member, principal), digests, reasons and counts that have already passed
disclosure control. The log is kept for years and shown to auditors.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accord.errors import AuditError
from accord.trust.canonical import b64url_decode, b64url_encode, canonical_json
from accord.trust.keys import Identity

GENESIS_HASH = "0" * 64
KIND_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
_PAGE = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entries (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    sig TEXT NOT NULL
)
"""
_COLUMNS = "seq, ts, actor, kind, body, prev_hash, entry_hash, sig"


@dataclass(frozen=True)
class AuditEntry:
    """One link of the chain, as stored."""

    seq: int
    ts: str
    actor: str
    kind: str
    body: dict[str, Any]
    prev_hash: str
    entry_hash: str
    sig: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "kind": self.kind,
            "body": self.body,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
            "sig": self.sig,
        }


@dataclass(frozen=True)
class AuditVerification:
    """What :func:`verify_log` found.

    ``entries`` counts the entries that verified: all of them when ``ok``, otherwise those
    before ``first_broken_seq``.
    """

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None


def entry_hash(prev_hash: str, seq: int, ts: str, actor: str, kind: str, body: Any) -> str:
    """sha256(previous hash bytes || canonical JSON of the entry's contents), as hex."""
    contents = canonical_json({"seq": seq, "ts": ts, "actor": actor, "kind": kind, "body": body})
    return hashlib.sha256(bytes.fromhex(prev_hash) + contents).hexdigest()


class AuditLog:
    """Appends signed entries to the chain in a SQLite file.

    Safe to share between threads; several processes may append to the same file, since
    each append reads the head and writes the next entry in one write transaction.
    Bodies must hold identifiers and disclosed counts only, never PHI.
    """

    def __init__(self, path: Path, identity: Identity, connection: sqlite3.Connection) -> None:
        """Use :meth:`open`."""
        self.path = path
        self.identity = identity
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, identity: Identity) -> AuditLog:
        """Open (creating if needed) the log at ``path``, appending as ``identity``.

        Refuses a log whose newest entry was signed by another key: appending would leave
        a chain that no single key verifies.
        """
        try:
            # isolation_level=None: transactions are begun explicitly, never implicitly.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise AuditError(f"cannot open audit log {path}: {error}") from None
        log = cls(path, identity, db)
        head = log.head()
        if head is not None and not _signature_ok(identity.public.verify_key, head):
            db.close()
            raise AuditError(
                f"audit log {path} was written with another key than {identity.name!r}'s",
                hint="open it with the identity that wrote it",
            )
        return log

    def append(self, kind: str, body: Mapping[str, Any]) -> AuditEntry:
        """Add an entry; ``body`` holds identifiers and disclosed counts only, never PHI.

        >>> audit.append("node.connected", {"member": "st-marys"})  # doctest: +SKIP
        AuditEntry(seq=2, ..., kind='node.connected', body={'member': 'st-marys'}, ...)
        """
        if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
            raise ValueError(f"kind: {kind!r:.70} is not an audit event kind (e.g. 'task.run')")
        if not isinstance(body, Mapping):
            raise ValueError(f"body: expected a mapping, got {type(body).__name__}")
        body_json = canonical_json(dict(body))
        # Stored and hashed in its decoded form, exactly as a verifier will read it back.
        stored_body: dict[str, Any] = json.loads(body_json)
        with self._lock:
            # IMMEDIATE takes the write lock before reading the head, so two writers
            # cannot both extend the same head and fork the chain.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
                ts = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
                actor = self.identity.name
                digest = entry_hash(prev_hash, seq, ts, actor, kind, stored_body)
                sig = b64url_encode(self.identity.signing_key.sign(bytes.fromhex(digest)))
                self._db.execute(
                    f"INSERT INTO audit_entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, ts, actor, kind, body_json.decode("utf-8"), prev_hash, digest, sig),
                )
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (a failed COMMIT); keep the first error.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return AuditEntry(seq, ts, actor, kind, stored_body, prev_hash, digest, sig)

    def entries(self) -> Iterator[AuditEntry]:
        """Every entry, oldest first, read a page at a time."""
        after = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM audit_entries WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, _PAGE),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            after = rows[-1][0]

    def head(self) -> AuditEntry | None:
        """The newest entry, or None for an empty log."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM audit_entries ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return _entry(row) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def verify_log(path: Path, verify_key: Ed25519PublicKey) -> AuditVerification:
    """Check every entry of the log at ``path`` against ``verify_key``; stop at the first break.

    For each entry in sequence order: its ``seq`` follows the previous one, its
    ``prev_hash`` is the previous entry's hash, its contents hash to its ``entry_hash``,
    and ``sig`` is ``verify_key``'s signature of that hash. Raises ``AuditError`` only if
    the file is missing or is not an audit log; a broken chain is a result, not an error.
    """
    if not path.is_file():
        raise AuditError(f"audit log {path} does not exist", hint="check the path")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise AuditError(f"cannot open audit log {path}: {error}") from None
    try:
        # One read transaction: a consistent snapshot even while a writer appends.
        db.execute("BEGIN")
        db.row_factory = sqlite3.Row
        rows = db.execute(f"SELECT {_COLUMNS} FROM audit_entries ORDER BY seq")
        expected_seq, prev_hash, verified = 1, GENESIS_HASH, 0
        for row in rows:
            seq = row["seq"]
            problem = _check_row(tuple(row), expected_seq, prev_hash, verify_key)
            if problem is not None:
                return AuditVerification(
                    ok=False,
                    entries=verified,
                    first_broken_seq=seq,
                    reason=f"entry {seq}: {problem}",
                )
            expected_seq, prev_hash, verified = seq + 1, row["entry_hash"], verified + 1
        return AuditVerification(ok=True, entries=verified)
    except sqlite3.DatabaseError as error:
        raise AuditError(f"{path} is not a readable audit log: {error}") from None
    finally:
        db.close()


def _check_row(
    row: tuple[Any, ...], expected_seq: int, prev_hash: str, verify_key: Ed25519PublicKey
) -> str | None:
    seq, ts, actor, kind, body_text, row_prev_hash, row_hash, sig = row
    if seq != expected_seq:
        return f"sequence gap (expected {expected_seq})"
    if row_prev_hash != prev_hash:
        return "previous-hash link broken"
    if not all(isinstance(value, str) for value in (ts, actor, kind, body_text, row_hash, sig)):
        return "malformed entry (a column is not text)"
    if not _HASH_PATTERN.fullmatch(row_hash):
        return "malformed entry hash"
    try:
        body = json.loads(body_text)
        canonical = canonical_json(body).decode("utf-8")
    except ValueError:
        return "body is not valid JSON"
    if canonical != body_text:
        # Same meaning, different bytes: still an edit, and one the hash would not catch.
        return "body is not in canonical form"
    if entry_hash(prev_hash, seq, ts, actor, kind, body) != row_hash:
        return "contents (ts, actor, kind or body) do not match its hash"
    if not _signature_ok(verify_key, _entry(row)):
        return "bad signature"
    return None


def _signature_ok(verify_key: Ed25519PublicKey, entry: AuditEntry) -> bool:
    try:
        verify_key.verify(b64url_decode(entry.sig), bytes.fromhex(entry.entry_hash))
    except (InvalidSignature, ValueError):
        return False
    return True


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, ts, actor, kind, body, prev_hash, digest, sig = row
    return AuditEntry(seq, ts, actor, kind, json.loads(body), prev_hash, digest, sig)
