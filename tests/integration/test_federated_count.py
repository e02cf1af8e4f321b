"""A task goes out to every node and disclosed counts come back, equal to direct SQL."""

from __future__ import annotations

import sqlite3

import duckdb

from accord.client import Client
from accord.privacy.disclosure import apply_count
from accord.query.scenarios import trial_recruitment
from accord.trust.audit import verify_log
from accord.trust.keys import load_identity, load_public
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from consortium import Running

# Written by hand, independently of the query compiler, as the reference.
DIRECT_SQL = """
SELECT count(*) FROM person p
WHERE ? - p.year_of_birth BETWEEN 45 AND 75
  AND EXISTS (
    SELECT 1 FROM condition_occurrence c
    JOIN concept_ancestor a ON a.descendant_concept_id = c.condition_concept_id
    WHERE a.ancestor_concept_id = ? AND c.person_id = p.person_id)
  AND NOT EXISTS (
    SELECT 1 FROM drug_exposure d
    JOIN concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
    WHERE a.ancestor_concept_id = ? AND d.person_id = p.person_id)
"""


def direct_count(running: Running, member: str) -> int:
    entry = next(m for m in running.manifest.members if m.id == member)
    path = running.layout.members / entry.db_file
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(DIRECT_SQL, [running.as_of.year, HYPERTENSION, BETA_BLOCKERS]).fetchone()
    assert row is not None
    return int(row[0])


def test_each_member_count_equals_direct_sql_after_disclosure(running: Running) -> None:
    identity = load_identity(running.layout.researcher_key)
    with Client(running.consortium.url, identity) as client:
        result = client.run(trial_recruitment(running.as_of), timeout=60)
    assert result.done
    assert sorted(m.member for m in result.members) == sorted(running.ids)
    for member in result.members:
        raw = direct_count(running, member.member)
        truth = next(m.trial_recruitment for m in running.manifest.members if m.id == member.member)
        assert raw == truth, "the generator's ground truth and direct SQL disagree"
        assert raw > 0
        assert member.profile is not None
        assert member.count == apply_count(member.profile, raw)
    assert result.total is not None
    released = [m.count.value for m in result.members if m.count and m.count.value is not None]
    assert result.total.value == sum(released)


def test_hub_and_node_audit_logs_record_the_task_and_verify(running: Running) -> None:
    identity = load_identity(running.layout.researcher_key)
    with Client(running.consortium.url, identity) as client:
        task_id = client.run(trial_recruitment(running.as_of), timeout=60).task_id
    hub_log = running.layout.hub / "audit.db"
    report = verify_log(hub_log, load_public(running.layout.hub / "hub.pub").verify_key)
    assert report.ok, report.reason

    with sqlite3.connect(hub_log) as db:
        kinds = [
            k
            for (k,) in db.execute(
                "SELECT kind FROM audit_entries WHERE body LIKE ?", (f"%{task_id}%",)
            )
        ]
    assert kinds.count("task.dispatched") == 1
    assert kinds.count("task.result") == len(running.ids)
    for member in running.ids:
        node_dir = running.layout.nodes / member
        node_report = verify_log(
            node_dir / "state" / "audit.db", load_public(node_dir / f"{member}.pub").verify_key
        )
        assert node_report.ok, node_report.reason
