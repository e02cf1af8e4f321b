"""The gate in a running consortium: a quarantined member is not counted until its steward
resubmits, the hub's quality table holds statuses and percentages only, and each verdict
is in the node's signed audit log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from accord import protocol
from accord.client import Client
from accord.ingest.engines import connect_for_writing
from accord.query.scenarios import trial_recruitment
from accord.trust.audit import verify_log
from accord.trust.envelope import seal
from accord.trust.keys import load_identity, load_public
from consortium import Running, node_hello, node_socket_url

ORPHAN = "conformance.foreign_key.condition_occurrence.person_id"


def accord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def member_db(running: Running, member: str) -> Path:
    entry = next(m for m in running.manifest.members if m.id == member)
    return running.layout.members / entry.db_file


def client(running: Running) -> Client:
    return Client(running.consortium.url, load_identity(running.layout.researcher_key))


def quality_table(running: Running, wanted: dict[str, str]) -> list[dict[str, Any]]:
    """The hub's table once every member in ``wanted`` shows the decision wanted."""
    deadline = time.monotonic() + 20
    with client(running) as researcher:
        while True:
            members = researcher.quality()
            decisions = {m["member"]: m["decision"] for m in members}
            if all(decisions.get(k) == v for k, v in wanted.items()):
                return members
            if time.monotonic() > deadline:
                pytest.fail(f"hub shows {decisions}, expected {wanted}")
            time.sleep(0.2)


def test_the_hub_shows_every_member_without_record_ids(running: Running) -> None:
    members = quality_table(running, dict.fromkeys(running.ids, "accepted"))
    assert [m["member"] for m in members] == sorted(running.ids)
    for member in members:
        assert set(member) == {
            "member",
            "kind",
            "submission_at",
            "decision",
            "kept",
            "counts",
            "checks",
            "received_at",
        }
        assert member["counts"]["fail"] == 0
        assert member["checks"], member["member"]
        for check in member["checks"]:
            assert set(check) == {"check_id", "severity", "status", "percentage"}
    assert '"examples"' not in json.dumps(members)


def test_a_quarantined_member_is_not_counted_until_resubmitted(running: Running) -> None:
    member = running.ids[1]
    path = member_db(running, member)
    with client(running) as researcher:
        before = researcher.run(trial_recruitment(running.as_of), timeout=60)
    counted = {m.member: m.count.value for m in before.members if m.count}
    assert counted[member]

    # Orphan rows reach the member's CDM behind the gate's back; the steward re-checks.
    # The node holds its database open between close tasks: wait until it lets go.
    with connect_for_writing(path) as connection:
        connection.execute(
            "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, "
            "condition_concept_id, condition_start_date, condition_type_concept_id) "
            "VALUES (900000001, 999999991, 0, DATE '2020-01-01', 32817), "
            "(900000002, 999999992, 0, DATE '2020-01-01', 32817)"
        )
    html = path.parent / "quality.html"
    checked = accord("quality", "run", "--db", str(path), "--html", str(html))
    assert checked.returncode == 0, checked.stderr
    assert "decision: quarantined" in checked.stdout
    assert "2 of" in checked.stdout
    assert "900000001" in checked.stdout  # the example ids, for the steward only
    assert "900000001" in html.read_text(encoding="utf-8")

    with client(running) as researcher:
        during = researcher.run(trial_recruitment(running.as_of), timeout=60)
    share = next(m for m in during.members if m.member == member)
    assert share.status == "refused"
    assert share.count is None
    assert share.reason is not None
    assert "quarantined by its quality gate" in share.reason
    others = sum(v for k, v in counted.items() if k != member and v is not None)
    assert during.total is not None
    assert during.total.value == others
    table = quality_table(running, {member: "quarantined"})
    shown = next(m for m in table if m["member"] == member)
    orphan = next(c for c in shown["checks"] if c["check_id"] == ORPHAN)
    assert orphan["status"] == "fail"
    assert "900000001" not in json.dumps(table)

    # The steward fixes the data and resubmits: counted again, as before.
    with connect_for_writing(path) as connection:
        connection.execute("DELETE FROM condition_occurrence WHERE condition_occurrence_id > 9e8")
    assert "decision: accepted" in accord("quality", "run", "--db", str(path)).stdout
    with client(running) as researcher:
        after = researcher.run(trial_recruitment(running.as_of), timeout=60)
    assert {m.member: m.count.value for m in after.members if m.count} == counted
    quality_table(running, {member: "accepted"})

    # Each verdict is in the member's signed audit log, without record ids.
    log = running.layout.nodes / member / "state" / "audit.db"
    key = load_public(running.layout.nodes / member / f"{member}.pub")
    assert verify_log(log, key.verify_key).ok
    with sqlite3.connect(log) as db:
        bodies = [
            json.loads(body)
            for (body,) in db.execute(
                "SELECT body FROM audit_entries WHERE kind = 'quality.submission' ORDER BY seq"
            )
        ]
    assert [b["decision"] for b in bodies] == ["accepted", "quarantined", "accepted"]
    assert bodies[1]["results"][ORPHAN]["status"] == "fail"
    assert "900000001" not in json.dumps(bodies)


def test_a_status_with_record_ids_is_refused_by_the_hub(running: Running) -> None:
    member = running.ids[0]
    running.consortium.stop_node(member)
    key = load_identity(running.layout.nodes / member / f"{member}.key")
    forged = {
        "format": "accord-quality-status/1",
        "submission_id": "ab" * 16,
        "at": "2026-03-15T10:04:00Z",
        "decision": "accepted",
        "kept": True,
        "counts": {"error": 0, "not_applicable": 0, "fail": 1, "pass": 0},
        "checks": [
            {
                "check_id": ORPHAN,
                "severity": "fatal",
                "status": "fail",
                "percentage": 1.0,
                "examples": [17, 18],
            }
        ],
    }
    try:
        with connect(node_socket_url(running)) as socket:
            socket.send(json.dumps(node_hello(running, member)))
            assert json.loads(socket.recv(timeout=10))["kind"] == protocol.NODE_WELCOME
            envelope = seal(
                forged,
                sender=member,
                recipient="hub",
                kind=protocol.QUALITY_STATUS,
                key=key.signing_key,
            )
            socket.send(json.dumps(envelope))
            while True:
                reply = json.loads(socket.recv(timeout=10))
                if reply.get("kind") != protocol.TASK_RUN:
                    break
        assert "quality status refused" in reply["error"]
        assert "checks[0]" in reply["error"]
    finally:
        running.consortium.start_node(member)
        running.consortium.wait_connected(running.ids, timeout=60)
    table = quality_table(running, {member: "accepted"})
    assert "ab" * 16 not in json.dumps(table)
