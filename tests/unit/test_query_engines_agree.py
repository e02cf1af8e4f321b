"""Generative check: DuckDB, PostgreSQL and the Python reference agree on random queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
import sqlglot
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord.query import CountPersons, compile_query
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
    person,
)
from query_strategies import queries
from reference_engine import reference_count

# A small vocabulary, so random queries and random rows meet often.
POOL = st.integers(min_value=1, max_value=8)
VALUES = st.sampled_from([None, 0, 90, 139.5, 140, 180.25, 200])
DATES = st.dates(min_value=date(2019, 1, 1), max_value=date(2026, 12, 31))


@st.composite
def small_cdms(draw: st.DrawFn) -> Tables:
    person_ids = range(1, draw(st.integers(0, 8)) + 1)
    events = st.tuples(st.sampled_from(person_ids or [0]), POOL, DATES)
    most = 10 if person_ids else 0
    pairs = [(a, d) for a in range(1, 9) for d in range(1, 9) if a < d]
    return {
        "person": [
            person(i, born=draw(st.integers(1930, 2000)), sex=draw(st.sampled_from([MALE, FEMALE])))
            for i in person_ids
        ],
        "condition_occurrence": [
            condition(p, c, on=d) for p, c, d in draw(st.lists(events, max_size=most))
        ],
        "drug_exposure": [drug(p, c, on=d) for p, c, d in draw(st.lists(events, max_size=most))],
        "measurement": [
            measurement(p, c, v, on=d)
            for (p, c, d), v in draw(st.lists(st.tuples(events, VALUES), max_size=most))
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
    query=queries(ids=POOL, numbers=st.sampled_from([0, 100, 139.5, 140, 180.25]), dates=DATES),
)
def test_engines_agree(
    duckdb_engine: DuckDBTestEngine,
    postgres_engine: PostgresTestEngine,
    cdm: Tables,
    query: CountPersons,
) -> None:
    for dialect in ("duckdb", "postgres"):
        sqlglot.parse_one(compile_query(query, dialect), read=dialect)
    expected = reference_count(cdm, query)
    event("count is zero" if expected == 0 else "count is positive")
    counts = {}
    for engine in (duckdb_engine, postgres_engine):
        engine.load(cdm)
        counts[engine.dialect] = engine.count(query)
    assert counts == {"duckdb": expected, "postgres": expected}
