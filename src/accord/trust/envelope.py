"""Signed, replay-protected messages between hub, nodes and researchers.

An envelope is a JSON object::

    {
      "v": 1,                      # format version
      "kind": "task.run",          # what the payload is (see accord.protocol)
      "sender": "hub",             # principal name of the signer
      "recipient": "st-marys",     # principal name it is meant for
      "nonce": "<16 random bytes, base64url>",
      "ts": 1714560000.25,         # sender's clock, unix seconds
      "payload": {...},            # any JSON object
      "sig": "<Ed25519 signature, base64url>"
    }

``sig`` signs ``canonical_json`` of every other field, so none of them can be changed,
and the recipient, kind and timestamp cannot be swapped to replay a message elsewhere::

    envelope = seal({"task_id": "t1"}, sender="hub", recipient="st-marys",
                    kind="task.run", key=hub.signing_key)
    payload = open_envelope(envelope, keys=known_keys.get, recipient="st-marys",
                            guard=ReplayGuard(), kind="task.run")
"""

from __future__ import annotations

import heapq
import json
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from accord.errors import TrustError
from accord.trust.canonical import b64url_decode, b64url_encode, canonical_json
from accord.trust.keys import NAME_RULE, is_valid_name

ENVELOPE_VERSION = 1
NONCE_BYTES = 16
SIGNATURE_BYTES = 64
DEFAULT_WINDOW_SECONDS = 300.0

KIND_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")
FIELDS = ("v", "kind", "sender", "recipient", "nonce", "ts", "payload", "sig")


def seal(
    payload: Mapping[str, Any],
    *,
    sender: str,
    recipient: str,
    kind: str,
    key: Ed25519PrivateKey,
    now: float | None = None,
) -> dict[str, Any]:
    """Wrap ``payload`` in an envelope signed by ``sender``'s ``key``.

    The payload is normalised through JSON first, so the returned envelope is exactly what
    the recipient will decode and verify (tuples become lists, and so on). Raises
    ``ValueError`` for a payload JSON cannot carry or a malformed name or kind.
    """
    for field, name in (("sender", sender), ("recipient", recipient)):
        if not is_valid_name(name):
            raise ValueError(f"{field}: {name!r:.70} is not a principal name ({NAME_RULE})")
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise ValueError(f"kind: {kind!r:.70} is not a message kind (e.g. 'task.run')")
    if not isinstance(payload, Mapping):
        raise ValueError(f"payload: expected a JSON object, got {type(payload).__name__}")
    ts = time.time() if now is None else float(now)
    if not math.isfinite(ts):
        raise ValueError("now: expected a finite unix time")
    envelope: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "kind": kind,
        "sender": sender,
        "recipient": recipient,
        "nonce": b64url_encode(secrets.token_bytes(NONCE_BYTES)),
        "ts": ts,
        "payload": _normalised(payload),
    }
    envelope["sig"] = b64url_encode(key.sign(canonical_json(envelope)))
    return envelope


def open_envelope(
    envelope: object,
    *,
    keys: Callable[[str], Ed25519PublicKey | None],
    recipient: str,
    guard: ReplayGuard,
    kind: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Check an envelope received from the network and return its payload.

    Checks run in this order and the first failure raises ``TrustError`` naming it:
    shape (fields, types, version), recipient, known signer (``keys(sender)``), signature,
    kind (if given), then freshness and replay through ``guard``. The nonce is recorded
    only once the signature holds, so forged envelopes cannot use up a real sender's
    nonces. Messages never echo the payload.
    """
    envelope, signed = _check_shape(envelope)
    sender: str = envelope["sender"]
    if envelope["recipient"] != recipient:
        raise TrustError(
            f"envelope addressed to {envelope['recipient']!r} was delivered to {recipient!r}"
        )
    verify_key = keys(sender)
    if verify_key is None:
        raise TrustError(f"unknown signer {sender!r}")
    try:
        verify_key.verify(b64url_decode(envelope["sig"]), signed)
    except InvalidSignature:
        raise TrustError(f"bad signature on envelope from {sender!r}") from None
    if kind is not None and envelope["kind"] != kind:
        raise TrustError(f"unexpected message kind {envelope['kind']!r} (expected {kind!r})")
    guard.check(envelope, now)
    payload: dict[str, Any] = envelope["payload"]
    return payload


def _check_shape(envelope: object) -> tuple[dict[str, Any], bytes]:
    """Validate fields and types; return the envelope and the bytes its signature covers."""

    def malformed(reason: str) -> TrustError:
        return TrustError(f"malformed envelope: {reason}")

    if not isinstance(envelope, dict):
        raise malformed(f"expected a JSON object, got {type(envelope).__name__}")
    for name in FIELDS:
        if name not in envelope:
            raise malformed(f"missing field {name!r}")
    unknown = sorted(str(name) for name in envelope if name not in FIELDS)
    if unknown:
        raise malformed(f"unexpected field {unknown[0]!r:.70}")
    version = envelope["v"]
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise malformed(f"field 'v': unsupported version {version!r:.20} (expected 1)")
    for name in ("sender", "recipient"):
        if not is_valid_name(envelope[name]):
            raise malformed(f"field {name!r}: not a principal name ({NAME_RULE})")
    if not isinstance(envelope["kind"], str) or not KIND_PATTERN.fullmatch(envelope["kind"]):
        raise malformed("field 'kind': not a message kind (e.g. 'task.run')")
    _check_b64(envelope, "nonce", NONCE_BYTES, malformed)
    _check_b64(envelope, "sig", SIGNATURE_BYTES, malformed)
    if not _is_finite_number(envelope["ts"]):
        raise malformed("field 'ts': expected a finite number of unix seconds")
    if not isinstance(envelope["payload"], dict):
        raise malformed("field 'payload': expected a JSON object")
    unsigned = {name: value for name, value in envelope.items() if name != "sig"}
    try:
        return envelope, canonical_json(unsigned)
    except ValueError:
        # For example NaN or a lone surrogate, which Python's JSON decoder lets through.
        raise malformed("content has no canonical JSON form") from None


def _check_b64(
    envelope: Mapping[str, Any],
    name: str,
    size: int,
    malformed: Callable[[str], TrustError],
) -> None:
    value = envelope[name]
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise malformed(f"field {name!r}: expected base64url text") from None
    if len(raw) != size:
        raise malformed(f"field {name!r}: expected {size} bytes, got {len(raw)}")


def _is_finite_number(value: object) -> TypeGuard[int | float]:
    # bool is an int subclass; a timestamp of True is a bug or an attack, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large to be a time at all
        return False


def _normalised(payload: Mapping[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(canonical_json(dict(payload)))
    return decoded


# -- freshness and replay --------------------------------------------------------------


class NonceStore(Protocol):
    """Where a :class:`ReplayGuard` remembers the nonces it has accepted."""

    def add_if_absent(self, sender: str, nonce: str, expires_at: float) -> bool:
        """Record ``(sender, nonce)``; False if it was already recorded (a replay)."""
        ...

    def purge(self, now: float) -> None:
        """Forget nonces whose ``expires_at`` is before ``now``."""
        ...


class InMemoryNonceStore:
    """Nonces in a dict; for tests and single-process tools that never restart mid-window."""

    def __init__(self) -> None:
        self._expiry: dict[tuple[str, str], float] = {}
        # Ordered by expiry, so purging touches only what is due.
        self._queue: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def add_if_absent(self, sender: str, nonce: str, expires_at: float) -> bool:
        with self._lock:
            if (sender, nonce) in self._expiry:
                return False
            self._expiry[(sender, nonce)] = expires_at
            heapq.heappush(self._queue, (expires_at, sender, nonce))
            return True

    def purge(self, now: float) -> None:
        with self._lock:
            while self._queue and self._queue[0][0] < now:
                _, sender, nonce = heapq.heappop(self._queue)
                del self._expiry[(sender, nonce)]

    def __len__(self) -> int:
        return len(self._expiry)


class SqliteNonceStore:
    """Nonces in a SQLite file, so a restarted hub still refuses replays.

    Each nonce is committed (and synced) before its envelope is acted on. Several
    processes may share the file: the primary key makes a nonce's first use win.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Autocommit: each statement is its own transaction, committed when it returns.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        # A nonce lost in a power cut could be replayed after the restart.
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen_nonces ("
            " sender TEXT NOT NULL, nonce TEXT NOT NULL, expires_at REAL NOT NULL,"
            " PRIMARY KEY (sender, nonce)) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS seen_nonces_expiry ON seen_nonces (expires_at)"
        )

    def add_if_absent(self, sender: str, nonce: str, expires_at: float) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen_nonces (sender, nonce, expires_at) VALUES (?, ?, ?)",
                (sender, nonce, expires_at),
            )
            return cursor.rowcount == 1

    def purge(self, now: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM seen_nonces WHERE expires_at < ?", (now,))

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM seen_nonces").fetchone()
            return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteNonceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ReplayGuard:
    """Refuses envelopes that are too old, too far ahead, or already seen.

    ``window`` is the clock skew tolerated either way. A nonce is remembered until its
    envelope's timestamp leaves the window; after that the timestamp check alone refuses
    a replay, so the store never holds more than about two windows of traffic.
    """

    def __init__(
        self, store: NonceStore | None = None, *, window: float = DEFAULT_WINDOW_SECONDS
    ) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window: expected a positive number of seconds, got {window!r}")
        self.store: NonceStore = store if store is not None else InMemoryNonceStore()
        self.window = float(window)

    def check(self, envelope: Mapping[str, Any], now: float | None = None) -> None:
        """Accept ``envelope``'s nonce once, if its timestamp is within the window of ``now``.

        Call only after the signature has been verified (``open_envelope`` does).
        """
        now = time.time() if now is None else now
        sender, nonce, ts = envelope.get("sender"), envelope.get("nonce"), envelope.get("ts")
        if not isinstance(sender, str) or not isinstance(nonce, str):
            raise TrustError("malformed envelope: sender and nonce must be text")
        if not _is_finite_number(ts):
            raise TrustError("malformed envelope: field 'ts' must be a finite number")
        skew = ts - now
        if skew < -self.window:
            raise TrustError(
                f"stale envelope from {sender!r}: sent {-skew:.0f} s ago "
                f"(at most {self.window:.0f} s of clock skew is accepted)"
            )
        if skew > self.window:
            raise TrustError(
                f"envelope from {sender!r} is dated {skew:.0f} s in the future "
                f"(at most {self.window:.0f} s of clock skew is accepted); check the clocks"
            )
        self.store.purge(now)
        if not self.store.add_if_absent(sender, nonce, ts + self.window):
            raise TrustError(f"replayed envelope from {sender!r}: nonce already used")
