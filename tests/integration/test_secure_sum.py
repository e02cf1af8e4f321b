"""Totals only: a task disclosed as a secure sum gives the consortium's total, equal to the
sum of the members' raw figures, while the hub sees masked vectors and no member's own
figure; a member that refuses or goes away is dropped and the round repeated without it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from accord.client import Client, TaskResult
from accord.errors import HubError
from accord.hub.aggregation import strictest
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.query import Cohort, GlmStep
from accord.query.builders import (
    age,
    age_between,
    cohort,
    distinct_persons,
    glm,
    has_condition,
    indicator,
)
from accord.query.scenarios import trial_recruitment
from accord.trust.audit import verify_log
from accord.trust.keys import load_identity, load_public
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from consortium import Running, start_consortium

SECURE = "secure_sum"
SECURE_RESULT_FIELDS = {"analysis", "secure", "round", "profile"}

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


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Four members: the second releases under a stricter profile, the fourth refuses
    every secure sum."""
    for running in start_consortium(tmp_path_factory.mktemp("secure"), persons=400, members=4):
        reconfigure(running, running.ids[1], disclosure={"threshold": 11, "rounding": 10})
        reconfigure(running, running.ids[3], fault_injection={"refuse_secure": True})
        yield running


def reconfigure(running: Running, member: str, **changes: Any) -> None:
    """Restart a member's node with ``changes`` to its config."""
    path = running.layout.node_config(member)
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))

    def connections() -> int:
        with sqlite3.connect(running.layout.hub / "audit.db") as db:
            row = db.execute(
                "SELECT count(*) FROM audit_entries WHERE kind = 'node.connected' AND body LIKE ?",
                (f'%"{member}"%',),
            ).fetchone()
        return int(row[0])

    before = connections()
    running.consortium.stop_node(member)
    running.consortium.start_node(member)
    # The hub may still list the old connection for a moment: wait for the new one.
    wait_for(lambda: connections() > before)
    running.consortium.wait_connected(running.ids)


def client_of(running: Running) -> Client:
    return Client(running.consortium.url, load_identity(running.layout.researcher_key))


def direct_count(running: Running, member: str) -> int:
    entry = next(m for m in running.manifest.members if m.id == member)
    with duckdb.connect(str(running.layout.members / entry.db_file), read_only=True) as con:
        row = con.execute(DIRECT_SQL, [running.as_of.year, HYPERTENSION, BETA_BLOCKERS]).fetchone()
    assert row is not None
    return int(row[0])


def hub_audit(running: Running, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(running.layout.hub / "audit.db") as db:
        rows = db.execute(
            "SELECT kind, body FROM audit_entries WHERE body LIKE ? ORDER BY seq",
            (f"%{task_id}%",),
        ).fetchall()
    return [(kind, json.loads(body)) for kind, body in rows]


def secure_of(result: TaskResult) -> dict[str, Any]:
    secure: dict[str, Any] = result.summary["secure"]
    return secure


def assert_no_member_figure(result: TaskResult, round_id: str) -> None:
    for member in result.members:
        if member.status == "done":
            assert member.result is not None
            assert set(member.result) == SECURE_RESULT_FIELDS
            assert member.result["secure"] is True
            assert member.result["round"] == round_id
        else:
            assert member.result is None
        assert member.count is None


def model(of: Cohort) -> GlmStep:
    return glm(
        of,
        outcome=indicator(has_condition(HYPERTENSION)),
        covariates=[age()],
        family="binomial",
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_secure_count_is_the_sum_of_the_raw_counts_under_the_strictest_profile(
    four: Running,
) -> None:
    members = four.ids[:3]
    with client_of(four) as client:
        result = client.run(trial_recruitment(four.as_of), members, timeout=60, disclosure=SECURE)
    assert result.done
    secure = secure_of(result)
    assert secure["status"] == "complete"
    assert secure["members"] == sorted(members)
    assert secure["dropped"] == []
    assert secure["rounds"] == 1
    raw = [direct_count(four, m) for m in members]
    profiles = [SmallCellProfile.from_json(m.result["profile"]) for m in result.members if m.result]
    profile = strictest(profiles)
    assert (profile.threshold, profile.rounding) == (11, 10)
    assert SmallCellProfile.from_json(secure["profile"]) == profile
    assert result.total == apply_count(profile, sum(raw))
    assert result.total is not None
    assert result.total.value is not None
    assert_no_member_figure(result, secure["round"])

    entries = hub_audit(four, result.task_id)
    kinds = [kind for kind, _ in entries]
    assert kinds.count("task.secure_round") == 1
    assert kinds.count("task.secure_contribution") == 3
    assert kinds.count("task.secure_total") == 1
    assert "task.result" not in kinds
    for kind, body in entries:
        if kind == "task.secure_contribution":
            assert set(body) == {"task_id", "round", "member"}
        if kind == "task.secure_total":
            assert body["members"] == sorted(members)
            assert body["display"] == result.total.display
    report = verify_log(
        four.layout.hub / "audit.db", load_public(four.layout.hub / "hub.pub").verify_key
    )
    assert report.ok, report.reason


def test_a_secure_glm_fit_equals_the_per_member_fit(four: Running) -> None:
    members = four.ids[:3]
    step = model(cohort(age_between(18, 100), as_of=four.as_of))
    with client_of(four) as client:
        per_member = client.fit_glm(step, members)
        secure = client.fit_glm(step, members, disclosure=SECURE)
    assert secure.n == per_member.n
    np.testing.assert_allclose(secure.coefficients, per_member.coefficients, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        secure.standard_errors, per_member.standard_errors, rtol=0, atol=1e-6
    )
    assert secure.deviance == pytest.approx(per_member.deviance, abs=1e-6)


def test_a_member_that_refuses_is_dropped_and_the_round_repeated(four: Running) -> None:
    refuser = four.ids[3]
    kept = four.ids[:3]
    with client_of(four) as client:
        result = client.run(trial_recruitment(four.as_of), timeout=60, disclosure=SECURE)
    secure = secure_of(result)
    assert secure["status"] == "complete"
    assert secure["rounds"] == 2
    assert secure["members"] == sorted(kept)
    assert [d["member"] for d in secure["dropped"]] == [refuser]
    assert "does not take part in secure sums" in secure["dropped"][0]["reason"]
    assert result.total is not None
    assert (
        result.total.value
        == apply_count(
            SmallCellProfile.from_json(secure["profile"]), sum(direct_count(four, m) for m in kept)
        ).value
    )
    assert_no_member_figure(result, secure["round"])
    rounds = [body for kind, body in hub_audit(four, result.task_id) if kind == "task.secure_round"]
    assert [sorted(r["members"]) for r in rounds] == [sorted(four.ids), sorted(kept)]
    assert rounds[0]["round"] != rounds[1]["round"]
    assert list(rounds[1]["dropped"]) == [refuser]


def test_too_few_members_left_ends_the_task_without_a_total(four: Running) -> None:
    chosen = [four.ids[0], four.ids[1], four.ids[3]]
    with client_of(four) as client:
        result = client.run(trial_recruitment(four.as_of), chosen, timeout=60, disclosure=SECURE)
    assert result.done
    secure = secure_of(result)
    assert secure["status"] == "failed"
    assert "needs at least 3" in secure["withheld"]
    assert result.total is None
    statuses = {m.member: m.status for m in result.members}
    assert statuses == {four.ids[0]: "cancelled", four.ids[1]: "cancelled", four.ids[3]: "refused"}
    assert all(m.result is None for m in result.members)
    kinds = [kind for kind, _ in hub_audit(four, result.task_id)]
    assert "task.secure_failed" in kinds
    assert "task.secure_total" not in kinds


@pytest.mark.parametrize(
    ("disclosure", "members", "analysis", "message"),
    [
        ("everything", None, "count", "disclosure: expected one of per_member, secure_sum"),
        (SECURE, None, "distinct", "distinct_persons cannot be computed by secure aggregation"),
        (SECURE, 2, "count", "needs at least 3 members, got 2: with two, each member learns"),
    ],
)
def test_the_hub_refuses_a_mode_it_cannot_honour(
    four: Running, disclosure: str, members: int | None, analysis: str, message: str
) -> None:
    of = cohort(has_condition(HYPERTENSION), as_of=four.as_of)
    chosen = four.ids[:members] if members else None
    query = trial_recruitment(four.as_of) if analysis == "count" else distinct_persons(of)
    with client_of(four) as client, pytest.raises(HubError, match="422") as caught:
        client.submit(query, chosen, disclosure=disclosure)
    assert message in caught.value.message


def test_accord_query_runs_a_secure_sum(four: Running, tmp_path: Path) -> None:
    query = tmp_path / "count.json"
    query.write_text(json.dumps(trial_recruitment(four.as_of).to_json()), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord",
            "query",
            str(query),
            "--hub",
            four.consortium.url,
            "--key",
            str(four.layout.researcher_key),
            "--members",
            ",".join(four.ids[:3]),
            "--disclosure",
            "secure-sum",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    profile = SmallCellProfile(threshold=11, rounding=10)
    total = apply_count(profile, sum(direct_count(four, m) for m in four.ids[:3]))
    assert "Secure sum" in done.stdout
    assert f"total {total.display}" in " ".join(done.stdout.replace("│", " ").split())
    assert "1 round; the hub saw masked vectors only" in done.stdout


def test_a_round_survives_a_hub_restart(four: Running) -> None:
    # The fourth member takes part again, slowly: the round is open when the hub stops,
    # and the restarted hub, holding no masked vectors, gets them again for that round.
    slow = four.ids[3]
    reconfigure(four, slow, fault_injection={"delay_before_execute": 4})
    with client_of(four) as client:
        task_id = client.submit(trial_recruitment(four.as_of), disclosure=SECURE)

        def delivered() -> int:
            kinds = [kind for kind, _ in hub_audit(four, task_id)]
            return kinds.count("task.secure_contribution")

        wait_for(lambda: delivered() == 3)
        four.consortium.restart_hub()
        four.consortium.wait_connected(four.ids, timeout=60)
        result = client.wait(task_id, timeout=60)
    secure = secure_of(result)
    assert secure["status"] == "complete"
    assert secure["rounds"] == 1
    assert secure["members"] == sorted(four.ids)
    assert secure["dropped"] == []
    assert result.total is not None
    assert delivered() == 3 + 4  # each member's vector for the one round, twice at most


def test_a_member_that_goes_away_is_dropped(four: Running) -> None:
    # Runs last: it reconfigures and finally stops the fourth member's node.
    victim = four.ids[3]
    reconfigure(four, victim, fault_injection={"delay_before_execute": 30})
    node_audit = four.layout.nodes / victim / "state" / "audit.db"

    def received(task_id: str) -> bool:
        with sqlite3.connect(node_audit) as db:
            found = db.execute(
                "SELECT 1 FROM audit_entries WHERE kind = 'task.received' AND body LIKE ?",
                (f"%{task_id}%",),
            ).fetchone()
        return found is not None

    with client_of(four) as client:
        task_id = client.submit(trial_recruitment(four.as_of), disclosure=SECURE)
        wait_for(lambda: received(task_id))
        four.consortium.kill_node(victim)  # mid-round, before it delivers
        left = client.wait(task_id, timeout=60)
        absent = client.run(trial_recruitment(four.as_of), timeout=60, disclosure=SECURE)
    for result, why in ((left, "disconnected before delivering"), (absent, "not connected")):
        secure = secure_of(result)
        assert secure["status"] == "complete"
        assert secure["members"] == sorted(four.ids[:3])
        assert [d["member"] for d in secure["dropped"]] == [victim]
        assert why in secure["dropped"][0]["reason"]
        assert result.total is not None
