"""The same small CDM with the same defects gives the same results on DuckDB and
PostgreSQL, and a broken check inside a PostgreSQL transaction leaves it usable."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from accord.cdm import create_cdm
from accord.quality import Check, default_catalogue, run_checks

ROWS = [
    "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
    "ethnicity_concept_id) VALUES (1, 8507, 1990, 0, 0), (2, 8532, 2999, 0, 0), (3, 0, 1700, 0, 0)",
    "INSERT INTO observation_period VALUES (1, 1, DATE '2020-01-01', DATE '2019-01-01', 0)",
    "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
    " condition_start_date, condition_type_concept_id, condition_source_value) VALUES"
    " (1, 1, 201826, DATE '2021-03-01', 32817, 'E11'), (2, 99, 0, DATE '2021-03-01', 32817, 'X'),"
    " (3, 2, 555, DATE '2021-03-01', 32817, NULL)",
    "INSERT INTO concept (concept_id, concept_name, domain_id, vocabulary_id, concept_class_id,"
    " standard_concept, concept_code, valid_start_date, valid_end_date) VALUES"
    " (8507, 'MALE', 'Gender', 'Gender', 'Gender', 'S', 'M', DATE '1970-01-01', DATE '2099-12-31'),"
    " (201826, 'Type 2 diabetes', 'Condition', 'SNOMED', 'Clinical Finding', NULL, '44054006',"
    " DATE '1970-01-01', DATE '2099-12-31')",
]
CHECKS = [c for c in default_catalogue() if c.table in ("person", "condition_occurrence")]
BROKEN = Check("range", "person", "no_such_field", "convention", 0.0, bounds=(1, 2))


def outcomes(connection: Any, dialect: Any, schema: str | None) -> dict[str, tuple[Any, ...]]:
    results = run_checks(connection, dialect, schema=schema, checks=[*CHECKS, BROKEN])
    return {r.check_id: (r.status, r.violating, r.total, r.sentence) for r in results}


@pytest.fixture
def duckdb_outcomes() -> dict[str, tuple[Any, ...]]:
    with duckdb.connect() as connection:
        create_cdm(connection, "duckdb")
        for statement in ROWS:
            connection.execute(statement)
        return outcomes(connection, "duckdb", None)


def test_duckdb_finds_the_planted_defects(duckdb_outcomes: dict[str, tuple[Any, ...]]) -> None:
    assert duckdb_outcomes["plausibility.range.person.year_of_birth"][:2] == ("fail", 2)
    assert duckdb_outcomes["conformance.foreign_key.condition_occurrence.person_id"][:2] == (
        "fail",
        1,
    )
    assert duckdb_outcomes["conformance.concept.condition_occurrence.condition_concept_id"][:2] == (
        "fail",
        1,
    )
    standard = "conformance.standard_concept.condition_occurrence.condition_concept_id"
    assert duckdb_outcomes[standard][:2] == ("fail", 1)
    assert duckdb_outcomes["completeness.observation_period.person.person_id"][:2] == ("fail", 2)
    assert duckdb_outcomes[BROKEN.id][0] == "error"


def test_postgres_agrees_with_duckdb(
    postgres_dsn: str, postgres_schema: str, duckdb_outcomes: dict[str, tuple[Any, ...]]
) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn) as connection:  # not autocommit: one transaction
        create_cdm(connection, "postgres", schema=postgres_schema, foreign_keys=False)
        connection.execute(f"SET search_path TO {postgres_schema}")
        for statement in ROWS:
            connection.execute(statement)
        found = outcomes(connection, "postgres", postgres_schema)
        # The failed statement was rolled back to its savepoint; the transaction lives on.
        assert connection.execute("SELECT count(*) FROM person").fetchone() == (3,)
    assert {k: v[:3] for k, v in found.items()} == {k: v[:3] for k, v in duckdb_outcomes.items()}
    assert {k: v[3] for k, v in found.items() if k != BROKEN.id} == {
        k: v[3] for k, v in duckdb_outcomes.items() if k != BROKEN.id
    }
