"""The researcher's side of every analysis, through a real hub and real nodes: the
client's frames, ``accord query`` with the query model's JSON or an ATLAS definition, and
the figures checked against SQL run directly on the members' files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

from accord.analysis.distinct import normalise_national_id
from accord.client import Client, TaskResult
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.query import compile_query
from accord.query.atlas import cohort_from_atlas, example_definition
from accord.query.builders import (
    age_between,
    age_group,
    cohort,
    count_by,
    count_persons,
    distinct_persons,
    has_condition,
    has_drug,
    sex,
)
from accord.query.model import Analysis
from accord.query.scenarios import time_to_treatment
from accord.trust.keys import load_identity
from accord.vocab.concepts import HYPERTENSION
from consortium import Running


def run(running: Running, analysis: Analysis) -> TaskResult:
    with Client(running.consortium.url, load_identity(running.layout.researcher_key)) as client:
        result = client.run(analysis, timeout=60)
    assert result.done
    assert all(m.status == "done" for m in result.members), [m.reason for m in result.members]
    return result


def member_rows(running: Running, member: str, sql: str) -> list[tuple[object, ...]]:
    entry = next(m for m in running.manifest.members if m.id == member)
    with duckdb.connect(str(running.layout.members / entry.db_file), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_crosstab_releases_each_members_cells_after_disclosure(running: Running) -> None:
    query = count_by(cohort(age_between(18, 90), as_of=running.as_of), sex(), age_group(20))
    result = run(running, query)
    frame = result.frame()
    assert list(frame.columns) == [
        "member",
        "sex",
        "age_group 20",
        "count",
        "display",
        "suppressed",
    ]
    profile = SmallCellProfile()
    for member in running.ids:
        # The same strata worked out by hand: age at as_of in groups of 20.
        truth = member_rows(
            running,
            member,
            "SELECT gender_concept_id,"
            f" floor(({running.as_of.year} - year_of_birth) / 20)::INT * 20, count(*) FROM person"
            f" WHERE {running.as_of.year} - year_of_birth BETWEEN 18 AND 90 GROUP BY ALL",
        )
        released = frame[frame["member"] == member]
        got = {
            (int(r["sex"]), int(r["age_group 20"])): None if pd.isna(r["count"]) else r["count"]
            for _, r in released.iterrows()
        }
        expected = {
            (int(str(s)), int(str(a))): apply_count(profile, int(str(n))).value for s, a, n in truth
        }
        assert got == expected
    combined = frame[frame["member"] == "consortium"]
    assert combined["count"].sum() == frame[frame["member"] != "consortium"]["count"].sum()
    assert isinstance(result.to_polars(), pl.DataFrame)


def test_survival_from_an_entry_event_counts_every_entering_person(running: Running) -> None:
    # Yearly points: the test consortium's members are small.
    query = replace(time_to_treatment(running.as_of), step_days=360)
    result = run(running, query)
    curve = result.frame()
    assert list(curve.columns) == [
        "time",
        "at_risk",
        "events",
        "censored",
        "survival",
        "ci_low",
        "ci_high",
    ]
    entered = 0
    for member in running.ids:
        sql = compile_query(query, "duckdb")
        entered += len(member_rows(running, member, sql))
    assert curve["at_risk"].iloc[0] == entered
    assert curve["survival"].is_monotonic_decreasing
    assert (curve["ci_low"] <= curve["survival"]).all()


def test_distinct_patients_count_a_patient_at_two_members_once(running: Running) -> None:
    result = run(running, distinct_persons(cohort(as_of=running.as_of)))
    ids: set[str] = set()
    naive = 0
    for member in running.ids:
        rows = member_rows(running, member, "SELECT person_source_value FROM person")
        naive += len(rows)
        ids |= {normalise_national_id(str(r[0])) for r in rows}
    estimate = result.summary["distinct"]
    assert abs(estimate["value"] - len(ids)) <= 3 * estimate["relative_standard_error"] * len(ids)
    assert len(ids) < naive, "the synthetic members share some patients"
    assert estimate["high"] < naive


def accord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_accord_query_imports_and_counts_an_atlas_definition(
    running: Running, tmp_path: Path
) -> None:
    definition = tmp_path / "cohort.atlas.json"
    definition.write_text(example_definition(), encoding="utf-8")
    out = tmp_path / "result.csv"
    done = accord(
        "query",
        str(definition),
        "--hub",
        running.consortium.url,
        "--key",
        str(running.layout.researcher_key),
        "--as-of",
        running.as_of.isoformat(),
        "--csv",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    query = cohort_from_atlas(example_definition(), as_of=running.as_of).count_persons()
    profile = SmallCellProfile()
    released = []
    for member in running.ids:
        (n,) = member_rows(running, member, compile_query(query, "duckdb"))[0]
        released.append(apply_count(profile, int(str(n))).value or 0)
    table = pd.read_csv(out)
    assert table.set_index("member").loc["consortium", "count"] == sum(released)
    assert sorted(table["member"]) == sorted([*running.ids, "consortium"])


def test_accord_query_names_every_problem_of_a_bad_query(running: Running, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "type": "histogram",
                "cohort": {"type": "cohort", "criteria": [], "as_of": "2025-02-30"},
                "variable": {"type": "age", "colour": "red"},
                "edges": [10, 5],
            }
        ),
        encoding="utf-8",
    )
    done = accord(
        "query",
        str(bad),
        "--hub",
        running.consortium.url,
        "--key",
        str(running.layout.researcher_key),
    )
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "cohort.as_of: expected a date as YYYY-MM-DD" in message
    assert "variable.colour: unknown field" in message
    assert "edges[1]: 5.0 is not greater than the edge before it" in message


def test_a_concept_no_member_knows_is_named_with_its_path(running: Running) -> None:
    unknown = count_persons(
        cohort(has_condition(HYPERTENSION), has_drug(2_100_000_001), as_of=running.as_of)
    )
    with Client(running.consortium.url, load_identity(running.layout.researcher_key)) as client:
        result = client.run(unknown, timeout=60)
    assert {m.status for m in result.members} == {"refused"}
    for member in result.members:
        assert member.reason is not None
        assert (
            "cohort.criteria[1].concepts.ids[0]: concept 2100000001 is not in this member's"
            " vocabulary" in member.reason
        )
