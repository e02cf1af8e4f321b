"""The SQL compiler: dispatch coverage, expected SQL per dialect, and values only as literals."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest
import sqlglot
from hypothesis import given, settings
from sqlglot import exp

from accord.errors import DataError, QueryError
from accord.query import (
    CountPersons,
    age_between,
    cohort,
    compile_query,
    concepts,
    count_persons,
    has_condition,
    sex_is,
)
from accord.query.compiler import BaseCompiler
from accord.query.engines import ENGINES
from accord.query.model import node_types
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from query_strategies import queries

AS_OF = date(2025, 12, 31)
DIALECTS = sorted(ENGINES)

SEX_AND_LISTED_CONDITION = """\
SELECT
  COUNT(DISTINCT p.person_id) AS n
FROM person AS p
WHERE
  p.gender_concept_id IN (8532)
  AND EXISTS(
    SELECT
      1
    FROM condition_occurrence AS co1
    WHERE
      co1.person_id = p.person_id
      AND co1.condition_start_date <= CAST('2025-12-31' AS DATE)
      AND co1.condition_concept_id IN (320128)
  )"""

EVERYONE_IN_SCHEMA = """\
SELECT
  COUNT(DISTINCT p.person_id) AS n
FROM "Member CDM".person AS p"""

# One case, many dialects, the expected SQL for each.
EXPECTED = {
    "sex and a listed condition": (
        count_persons(
            cohort(
                sex_is(8532),
                has_condition(concepts(320128, descendants=False)),
                as_of=AS_OF,
            )
        ),
        None,
        {"duckdb": SEX_AND_LISTED_CONDITION, "postgres": SEX_AND_LISTED_CONDITION},
    ),
    "everyone, in a named schema": (
        count_persons(cohort(as_of=AS_OF)),
        "Member CDM",
        {"duckdb": EVERYONE_IN_SCHEMA, "postgres": EVERYONE_IN_SCHEMA},
    ),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", EXPECTED.values(), ids=EXPECTED.keys())
def test_expected_sql(case: tuple[CountPersons, str | None, dict[str, str]], dialect: str) -> None:
    query, schema, expected = case
    assert compile_query(query, dialect, schema=schema) == expected[dialect]  # type: ignore[arg-type]


def test_every_node_type_has_a_compiler_method() -> None:
    assert set(BaseCompiler.CRITERIA) == set(node_types("criterion"))
    assert set(BaseCompiler.ANALYSES) == set(node_types("analysis"))


def test_age_bounds_become_birth_years() -> None:
    sql = compile_query(count_persons(cohort(age_between(45, 75), as_of=AS_OF)), "duckdb")
    assert "p.year_of_birth BETWEEN 1950 AND 1980" in sql


def test_unknown_dialect_is_a_query_error() -> None:
    with pytest.raises(QueryError, match="unknown SQL dialect 'oracle'; expected one of"):
        compile_query(trial_recruitment(AS_OF), "oracle")  # type: ignore[arg-type]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_hostile_schema_name_stays_one_identifier(dialect: str) -> None:
    hostile = 'cdm"; DROP TABLE person; --'
    sql = compile_query(trial_recruitment(AS_OF), dialect, schema=hostile)  # type: ignore[arg-type]
    (statement,) = sqlglot.parse(sql, read=dialect)
    assert statement is not None
    assert {t.db for t in statement.find_all(exp.Table)} == {hostile}


@settings(max_examples=50)
@given(queries())
def test_query_values_reach_sql_only_as_number_and_date_literals(query: CountPersons) -> None:
    for dialect in DIALECTS:
        sql = compile_query(query, dialect)  # type: ignore[arg-type]
        parsed = sqlglot.parse_one(sql, read=dialect)
        # Regenerating the parsed SQL gives the same text: nothing is hiding in it.
        assert parsed.sql(dialect=dialect, pretty=True) == sql
        strings = {lit.this for lit in parsed.find_all(exp.Literal) if lit.is_string}
        assert strings <= allowed_dates(query)


def allowed_dates(query: CountPersons) -> set[str]:
    """The cohort's date and the first day of each window counted back from it."""
    as_of = query.cohort.as_of
    found = {as_of.isoformat()}
    pending = list(query.cohort.criteria)
    while pending:
        criterion = pending.pop()
        inner = getattr(criterion, "criterion", None)
        if inner is not None:
            pending.append(inner)
        days = getattr(criterion, "within_days", None)
        if days is not None:
            found.add((as_of - timedelta(days=days - 1)).isoformat())
    return found


def test_run_count_turns_a_missing_cdm_into_a_data_error() -> None:
    with duckdb.connect(":memory:") as connection, pytest.raises(DataError) as raised:
        run_count(connection, trial_recruitment(AS_OF), "duckdb")
    assert "the count query failed on the duckdb database" in str(raised.value)
    assert raised.value.hint is not None
