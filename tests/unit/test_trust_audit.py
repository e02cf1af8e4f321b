from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import AuditError
from accord.trust.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    entry_hash,
    verify_log,
)
from accord.trust.canonical import b64url_encode, canonical_json
from accord.trust.keys import generate_identity

HUB = generate_identity("hub")
VERIFY_KEY = HUB.public.verify_key


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def audit(log_path: Path) -> Iterator[AuditLog]:
    with AuditLog.open(log_path, HUB) as log:
        yield log


def fill(audit: AuditLog, count: int) -> list[AuditEntry]:
    return [audit.append("task.result", {"task_id": f"t{n}", "count": n}) for n in range(count)]


def tamper(path: Path, sql: str, *parameters: object) -> None:
    with sqlite3.connect(path) as db:
        db.execute(sql, parameters)
    db.close()


def test_empty_log_verifies(audit: AuditLog, log_path: Path) -> None:
    assert audit.head() is None
    assert verify_log(log_path, VERIFY_KEY).ok


def test_entries_chain_from_the_genesis_hash(audit: AuditLog, log_path: Path) -> None:
    first, second, third = fill(audit, 3)

    assert [e.seq for e in (first, second, third)] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.entry_hash
    assert third.prev_hash == second.entry_hash
    assert first.actor == "hub"
    assert first.ts.endswith("Z")
    assert list(audit.entries()) == [first, second, third]
    assert audit.head() == third
    assert verify_log(log_path, VERIFY_KEY) == verify_log(log_path, VERIFY_KEY)
    result = verify_log(log_path, VERIFY_KEY)
    assert (result.ok, result.entries, result.first_broken_seq, result.reason) == (
        True,
        3,
        None,
        None,
    )


def test_entry_hash_and_signature_follow_the_documented_rule(audit: AuditLog) -> None:
    entry = audit.append("hub.initialised", {"hub": "hub"})

    contents = canonical_json(
        {"seq": 1, "ts": entry.ts, "actor": "hub", "kind": "hub.initialised", "body": entry.body}
    )
    expected = hashlib.sha256(bytes.fromhex(GENESIS_HASH) + contents).hexdigest()
    assert entry.entry_hash == expected
    assert entry.sig == b64url_encode(HUB.signing_key.sign(bytes.fromhex(expected)))


def test_to_json_has_every_field(audit: AuditLog) -> None:
    entry = audit.append("node.connected", {"member": "st-marys"})

    assert entry.to_json() == {
        "seq": 1,
        "ts": entry.ts,
        "actor": "hub",
        "kind": "node.connected",
        "body": {"member": "st-marys"},
        "prev_hash": GENESIS_HASH,
        "entry_hash": entry.entry_hash,
        "sig": entry.sig,
    }


def test_body_is_stored_as_it_will_be_read_back(audit: AuditLog) -> None:
    entry = audit.append("task.dispatched", {"members": ("a", "b")})

    assert entry.body == {"members": ["a", "b"]}
    assert next(audit.entries()) == entry


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("", {}, "kind"),
        ("Task Result", {}, "kind"),
        ("task.result", [1], "body"),
        ("task.result", {"x": float("nan")}, "canonical JSON"),
    ],
)
def test_append_refuses_bad_input(audit: AuditLog, kind: str, body: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        audit.append(kind, body)  # type: ignore[arg-type]
    assert audit.head() is None


def test_reopened_log_continues_the_chain(log_path: Path) -> None:
    with AuditLog.open(log_path, HUB) as audit:
        first = audit.append("hub.initialised", {"hub": "hub"})
    with AuditLog.open(log_path, HUB) as audit:
        second = audit.append("hub.started", {})

    assert (second.seq, second.prev_hash) == (2, first.entry_hash)
    assert verify_log(log_path, VERIFY_KEY).entries == 2


def test_refuses_to_append_with_another_key(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 1)

    with pytest.raises(AuditError, match="written with another key"):
        AuditLog.open(log_path, generate_identity("hub"))


def test_two_writers_on_one_file_do_not_fork_the_chain(log_path: Path) -> None:
    # Two connections stand in for two processes: SQLite locks per connection.
    with AuditLog.open(log_path, HUB) as one, AuditLog.open(log_path, HUB) as other:
        writers = [
            threading.Thread(target=fill, args=(log, 25)) for log in (one, other, one, other)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()

    result = verify_log(log_path, VERIFY_KEY)
    assert (result.ok, result.entries) == (True, 100)


def test_entries_are_read_in_pages(audit: AuditLog) -> None:
    fill(audit, 1203)

    assert [entry.seq for entry in audit.entries()] == list(range(1, 1204))


def test_missing_log_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="does not exist"):
        verify_log(tmp_path / "absent.db", VERIFY_KEY)


def test_file_that_is_not_an_audit_log_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, just text that is long enough to have a header\n" * 20)

    with pytest.raises(AuditError, match="not a readable audit log"):
        verify_log(path, VERIFY_KEY)


def test_verifying_with_another_key_fails_at_the_first_entry(
    audit: AuditLog, log_path: Path
) -> None:
    fill(audit, 3)

    result = verify_log(log_path, generate_identity("hub").public.verify_key)

    assert (result.ok, result.entries, result.first_broken_seq) == (False, 0, 1)
    assert result.reason == "entry 1: bad signature"


# -- tampering: each kind of edit is found, at the entry that was edited ----------------


def test_edited_body_is_named(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 20)
    tamper(log_path, "UPDATE audit_entries SET body = ? WHERE seq = 17", '{"count":0}')

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.ok, result.entries, result.first_broken_seq) == (False, 16, 17)
    assert result.reason == "entry 17: contents (ts, actor, kind or body) do not match its hash"


@pytest.mark.parametrize(
    ("column", "value"),
    [("kind", "task.refused"), ("actor", "st-marys"), ("ts", "2020-01-01T00:00:00.000000Z")],
)
def test_edited_header_field_is_named(
    audit: AuditLog, log_path: Path, column: str, value: str
) -> None:
    fill(audit, 10)
    tamper(log_path, f"UPDATE audit_entries SET {column} = ? WHERE seq = 4", value)

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.ok, result.first_broken_seq) == (False, 4)
    assert result.reason is not None
    assert "do not match its hash" in result.reason


def test_body_respelled_with_the_same_meaning_is_named(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 5)
    tamper(
        log_path, "UPDATE audit_entries SET body = ? WHERE seq = 2", '{"count": 1,"task_id":"t1"}'
    )

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (2, "entry 2: body is not in canonical form")


def test_body_that_is_not_json_is_named(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 3)
    tamper(log_path, "UPDATE audit_entries SET body = ? WHERE seq = 3", "{oops")

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (3, "entry 3: body is not valid JSON")


def test_deleted_middle_entry_is_named_as_a_gap(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 20)
    tamper(log_path, "DELETE FROM audit_entries WHERE seq = 16")

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.ok, result.entries, result.first_broken_seq) == (False, 15, 17)
    assert result.reason == "entry 17: sequence gap (expected 16)"


def test_deleted_first_entry_is_named(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 3)
    tamper(log_path, "DELETE FROM audit_entries WHERE seq = 1")

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (2, "entry 2: sequence gap (expected 1)")


def test_deleted_and_renumbered_entries_break_the_link(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 10)
    tamper(log_path, "DELETE FROM audit_entries WHERE seq = 5")
    tamper(log_path, "UPDATE audit_entries SET seq = seq - 1 WHERE seq > 5")

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (5, "entry 5: previous-hash link broken")


def test_reordered_entries_are_named(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 10)
    # Swap entries 6 and 7, each keeping its own contents, hash and signature.
    tamper(log_path, "UPDATE audit_entries SET seq = -1 WHERE seq = 6")
    tamper(log_path, "UPDATE audit_entries SET seq = 6 WHERE seq = 7")
    tamper(log_path, "UPDATE audit_entries SET seq = 7 WHERE seq = -1")

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.ok, result.entries, result.first_broken_seq) == (False, 5, 6)
    assert result.reason == "entry 6: previous-hash link broken"


def test_rehashed_edit_without_the_key_is_named_by_its_signature(
    audit: AuditLog, log_path: Path
) -> None:
    entries = fill(audit, 10)
    target = entries[6]
    forged_body = {"task_id": "t6", "count": 0}
    forged_hash = entry_hash(
        target.prev_hash, target.seq, target.ts, target.actor, target.kind, forged_body
    )
    tamper(
        log_path,
        "UPDATE audit_entries SET body = ?, entry_hash = ? WHERE seq = ?",
        canonical_json(forged_body).decode(),
        forged_hash,
        target.seq,
    )

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (7, "entry 7: bad signature")


def test_rehashed_edit_signed_by_another_key_is_named(audit: AuditLog, log_path: Path) -> None:
    entries = fill(audit, 5)
    target = entries[2]
    forged_body = {"task_id": "t2", "count": 99}
    forged_hash = entry_hash(
        target.prev_hash, target.seq, target.ts, target.actor, target.kind, forged_body
    )
    forged_sig = b64url_encode(
        generate_identity("hub").signing_key.sign(bytes.fromhex(forged_hash))
    )
    tamper(
        log_path,
        "UPDATE audit_entries SET body = ?, entry_hash = ?, sig = ? WHERE seq = 3",
        canonical_json(forged_body).decode(),
        forged_hash,
        forged_sig,
    )

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (3, "entry 3: bad signature")


def test_garbage_hash_is_named(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 3)
    tamper(log_path, "UPDATE audit_entries SET entry_hash = 'zz' WHERE seq = 3")

    result = verify_log(log_path, VERIFY_KEY)

    assert (result.first_broken_seq, result.reason) == (3, "entry 3: malformed entry hash")


@contextmanager
def fresh_log(count: int) -> Iterator[Path]:
    # Hypothesis runs many examples per test, so each gets its own directory, not tmp_path.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "audit.db"
        with AuditLog.open(path, HUB) as audit:
            fill(audit, count)
        yield path


@given(st.integers(2, 12), st.data())
@settings(max_examples=25, deadline=None)
def test_any_edited_body_is_named_exactly(count: int, data: st.DataObject) -> None:
    with fresh_log(count) as path:
        seq = data.draw(st.integers(1, count), label="seq")
        tamper(path, "UPDATE audit_entries SET body = ? WHERE seq = ?", '{"edited":true}', seq)

        result = verify_log(path, VERIFY_KEY)

        assert (result.ok, result.entries, result.first_broken_seq) == (False, seq - 1, seq)


@given(st.integers(3, 12), st.data())
@settings(max_examples=25, deadline=None)
def test_any_deleted_entry_is_named(count: int, data: st.DataObject) -> None:
    with fresh_log(count) as path:
        seq = data.draw(st.integers(1, count - 1), label="seq")
        tamper(path, "DELETE FROM audit_entries WHERE seq = ?", seq)

        result = verify_log(path, VERIFY_KEY)

        assert result.first_broken_seq == seq + 1
        assert result.reason == f"entry {seq + 1}: sequence gap (expected {seq})"


def test_truncated_tail_is_not_detectable_from_the_file_alone(
    audit: AuditLog, log_path: Path
) -> None:
    # Documented limit: the head has to be compared with a copy kept elsewhere.
    entries = fill(audit, 5)
    tamper(log_path, "DELETE FROM audit_entries WHERE seq = 5")

    assert verify_log(log_path, VERIFY_KEY).ok
    assert audit.head() != entries[-1]
