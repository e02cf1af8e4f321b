"""The SQL compiler: dispatch coverage, expected SQL per dialect, and values only as literals."""

from __future__ import annotations

import dataclasses
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
from accord.query.nodes import node_types
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
EVERYONE_IN_SPARK_DATABASE = """\
SELECT
  COUNT(DISTINCT p.person_id) AS n
FROM `Member CDM`.person AS p"""

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
        dict.fromkeys(("duckdb", "postgres", "spark"), SEX_AND_LISTED_CONDITION),
    ),
    "everyone, in a named schema": (
        count_persons(cohort(as_of=AS_OF)),
        "Member CDM",
        {
            "duckdb": EVERYONE_IN_SCHEMA,
            "postgres": EVERYONE_IN_SCHEMA,
            "spark": EVERYONE_IN_SPARK_DATABASE,
        },
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
    days = day_offsets(query)
    allowed = {moved(query.cohort.as_of, d).isoformat() for d in days}
    for dialect in DIALECTS:
        sql = compile_query(query, dialect)  # type: ignore[arg-type]
        parsed = sqlglot.parse_one(sql, read=dialect)
        # The parsed SQL regenerates to itself: nothing is hiding in it. (One round
        # first, since a dialect may quote an interval's number when it writes it back.)
        again = parsed.sql(dialect=dialect, pretty=True)
        assert sqlglot.parse_one(again, read=dialect).sql(dialect=dialect, pretty=True) == again
        for literal in parsed.find_all(exp.Literal):
            if not literal.is_string:
                continue
            if isinstance(literal.parent, exp.Interval):
                # An interval's amount is one of the query's day numbers.
                assert int(literal.this.split()[0]) in days
            else:
                assert literal.this in allowed


def moved(day: date, days: int) -> date:
    """``day`` plus ``days``, held to the calendar's ends as the compiler holds it."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def day_offsets(node: object) -> set[int]:
    """Every number of days in a query relative to its index date (0 included): the only
    dates its SQL may name are as_of moved by these, the only interval amounts these."""
    found = {0}
    if isinstance(node, tuple):
        for item in node:
            found |= day_offsets(item)
        return found
    if not dataclasses.is_dataclass(node):
        return found
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.name in {"from_day", "to_day", "post_days"} and isinstance(value, int):
            found.add(value)
        elif f.name == "prior_days" and isinstance(value, int):
            found.add(-value)
        else:
            found |= day_offsets(value)
    return found


def test_run_count_turns_a_missing_cdm_into_a_data_error() -> None:
    with duckdb.connect(":memory:") as connection, pytest.raises(DataError) as raised:
        run_count(connection, trial_recruitment(AS_OF), "duckdb")
    assert "the count_persons query failed on the duckdb database" in str(raised.value)
    assert raised.value.hint is not None
