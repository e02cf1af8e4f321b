"""Generative check: DuckDB, PostgreSQL and the Python reference agree on random queries,
counts and stratified counts, over tiny CDMs with every table a query reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlglot
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord.query import compile_query
from accord.query.model import CountBy, CountPersons
from accord.query.run import run_rows
from cdm_testing import (
    FEMALE,
    MALE,
    DuckDBTestEngine,
    PostgresTestEngine,
    Tables,
    ancestor,
    condition,
    drug,
    measurement,
    observation,
    observation_period,
    person,
    procedure,
    visit,
)
from query_strategies import count_bys
from reference_engine import reference_count, reference_count_by

# A small vocabulary, so random queries and random rows meet often.
POOL = st.integers(min_value=1, max_value=8)
UNITS = st.sampled_from([8, 9])
VALUES = st.sampled_from([None, 0, 90, 139.5, 140, 180.25, 200])
DATES = st.dates(min_value=date(2019, 1, 1), max_value=date(2026, 12, 31))
DAYS = st.sampled_from([-400, -30, -1, 0, 1, 30, 400])
SPANS = st.sampled_from([0, 0, 1, 30, 400])


@st.composite
def small_cdms(draw: st.DrawFn) -> Tables:
    person_ids = range(1, draw(st.integers(0, 8)) + 1)
    owners = st.sampled_from(person_ids or [0])
    events = st.tuples(owners, POOL, DATES)
    valued = st.tuples(events, VALUES, st.none() | UNITS)
    most = 10 if person_ids else 0

    def some(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(strategy, max_size=most))

    pairs = [(a, d) for a in range(1, 9) for d in range(1, 9) if a < d]
    return {
        "person": [
            person(i, born=draw(st.integers(1930, 2030)), sex=draw(st.sampled_from([MALE, FEMALE])))
            for i in person_ids
        ],
        "condition_occurrence": [condition(p, c, on=d) for p, c, d in some(events)],
        "drug_exposure": [drug(p, c, on=d) for p, c, d in some(events)],
        "procedure_occurrence": [procedure(p, c, on=d) for p, c, d in some(events)],
        "visit_occurrence": [visit(p, c, on=d) for p, c, d in some(events)],
        "measurement": [measurement(p, c, v, on=d, unit=u) for (p, c, d), v, u in some(valued)],
        "observation": [observation(p, c, v, on=d, unit=u) for (p, c, d), v, u in some(valued)],
        "observation_period": [
            observation_period(p, *sorted((a, b)))
            for p, a, b in some(st.tuples(owners, DATES, DATES))
        ],
        "concept_ancestor": [
            ancestor(a, d)
            for a, d in draw(st.lists(st.sampled_from(pairs), unique=True, max_size=8))
        ],
    }


@pytest.fixture
def duckdb_engine() -> Iterator[DuckDBTestEngine]:
    engine = DuckDBTestEngine.create()
    yield engine
    engine.close()


@pytest.fixture
def postgres_engine(postgres_dsn: str, postgres_schema: str) -> Iterator[PostgresTestEngine]:
    engine = PostgresTestEngine.create(postgres_dsn, postgres_schema)
    yield engine
    engine.close()


@pytest.mark.postgres
@settings(
    max_examples=30,
    deadline=None,
    # The engines are emptied and refilled for every example, so sharing them is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cdm=small_cdms(),
    query=count_bys(
        ids=POOL,
        numbers=st.sampled_from([0, 100, 139.5, 140, 180.25]),
        dates=DATES,
        units=UNITS,
        days=DAYS,
        spans=SPANS,
    ),
)
def test_engines_agree(
    duckdb_engine: DuckDBTestEngine,
    postgres_engine: PostgresTestEngine,
    cdm: Tables,
    query: CountBy,
) -> None:
    """The cohort's count, and its count by one to three variables (stratum by stratum,
    unknown values a stratum of their own)."""
    count = CountPersons(query.cohort)
    for dialect in ("duckdb", "postgres"):
        for analysis in (count, query):
            sqlglot.parse_one(compile_query(analysis, dialect), read=dialect)
    expected = reference_count(cdm, count)
    by = reference_count_by(cdm, query)
    assert by.total() == expected
    strata = Counter(_strata([(*stratum, n) for stratum, n in by.items()]))
    event("count is zero" if expected == 0 else "count is positive")
    event("with an entry" if query.cohort.entry else "without an entry")
    found = {}
    for engine in (duckdb_engine, postgres_engine):
        engine.load(cdm)
        rows = run_rows(engine.connection, query, engine.dialect, schema=engine.schema)
        found[engine.dialect] = (engine.count(count), Counter(_strata(rows)))
    assert found == {"duckdb": (expected, strata), "postgres": (expected, strata)}


def _strata(rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Each person's stratum, from rows of strata and counts; numbers rounded to nine
    places, as a mean worked out in another order may differ in its last bits."""
    for *stratum, n in rows:
        key = tuple(None if v is None else round(float(v), 9) for v in stratum)
        yield from [key] * n
