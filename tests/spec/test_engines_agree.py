"""Generative check: on random CDMs, DuckDB, PostgreSQL and the plain-Python reference
give the same cohort counts and the same model designs.

Each example draws a CDM of a few dozen persons whose conditions, drug exposures and
measurements come from a small concept pool with a small hierarchy (a random forest,
its ``concept_ancestor`` rows the full transitive closure as Athena ships it, sometimes
with the self-rows), and event dates taken from the same handful of days the queries'
``as_of`` dates come from, so records on, before and after ``as_of`` all occur. The
queries nest ``Not``, use descendants and exclusions, and measurement bounds drawn from
the values the rows hold, so every inclusive bound is hit.

Each test uses one PostgreSQL schema and one DuckDB database for all its examples; every
example replaces the rows the previous one loaded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord.query import Age, CountPersons, GlmStep, Indicator, Variable
from accord.query.run import run_design
from cdm_testing import (
    DuckDBTestEngine,
    PostgresTestEngine,
    Row,
    Tables,
    TestEngine,
    ancestor,
    condition,
    drug,
    measurement,
    person,
)
from query_strategies import glm_steps, queries
from reference_engine import _meets, reference_count

CONCEPTS = tuple(range(1, 8))
POOL = st.sampled_from(CONCEPTS)
# Values the rows hold and bounds the queries use: the same few, so bounds are met exactly.
VALUES = (90, 139.5, 140, 180.25)
BOUNDS = st.sampled_from(VALUES)
# Event dates and as_of dates from the same days: on, just before and just after.
DAYS = (
    date(2023, 6, 30),
    date(2024, 12, 31),
    date(2025, 1, 1),
    date(2025, 12, 31),
    date(2026, 1, 1),
)
AS_OF = st.sampled_from(DAYS)
EVENT_DATES = st.one_of(
    st.sampled_from(DAYS), st.dates(min_value=date(2022, 1, 1), max_value=date(2027, 12, 31))
)
# Age bounds from a few ages, and birth years putting persons at, just under and just over
# each of them on the as_of dates, so inclusive age bounds are hit.
AGES = (0, 18, 45, 75, 100)
AGE_BOUNDS = st.sampled_from(AGES)
BIRTH_YEARS = st.sampled_from(
    sorted({day.year - age + step for day in DAYS for age in AGES for step in (-1, 0, 1)})
)
T = TypeVar("T")
MOST_PERSONS = 40
MOST_EVENTS = 80

COMMON = settings(
    deadline=None,
    # The engines are emptied and refilled for every example, so sharing them is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def hierarchies(draw: st.DrawFn) -> list[Row]:
    """A random forest over the pool as ``concept_ancestor`` rows: every ancestor with
    every descendant at its distance, and, half the time, each concept's self-row."""
    parent: dict[int, int] = {}
    for concept in CONCEPTS[1:]:
        chosen = draw(st.none() | st.sampled_from(CONCEPTS[: concept - 1]))
        if chosen is not None:
            parent[concept] = chosen
    rows = []
    for concept in CONCEPTS:
        levels, above = 1, parent.get(concept)
        while above is not None:
            rows.append(ancestor(above, concept, levels))
            levels, above = levels + 1, parent.get(above)
    if draw(st.booleans()):
        rows += [ancestor(c, c, 0) for c in CONCEPTS]
    return rows


@st.composite
def cdms(draw: st.DrawFn) -> Tables:
    # Enough persons for a cohort to be some of them (tests/spec/test_cohort_counts.py
    # has the empty CDM).
    count = draw(st.integers(MOST_PERSONS // 4, MOST_PERSONS))
    # One id past the last person: records of a person the CDM does not have.
    owners = st.integers(1, count + 1)
    events = st.tuples(owners, POOL, EVENT_DATES)

    def some(strategy: st.SearchStrategy[T]) -> list[T]:
        return draw(st.lists(strategy, min_size=count, max_size=MOST_EVENTS))

    return {
        "person": [
            # Sex is drawn from the pool too, so SexIs over the pool's ids selects.
            person(i, born=draw(BIRTH_YEARS), sex=draw(st.sampled_from(CONCEPTS[:3])))
            for i in range(1, count + 1)
        ],
        "condition_occurrence": [condition(p, c, on=d) for p, c, d in some(events)],
        "drug_exposure": [drug(p, c, on=d) for p, c, d in some(events)],
        "measurement": [
            measurement(p, c, v, on=d)
            for (p, c, d), v in some(st.tuples(events, st.none() | st.sampled_from(VALUES)))
        ],
        "concept_ancestor": draw(hierarchies()),
    }


@pytest.fixture
def duckdb_engine() -> Iterator[DuckDBTestEngine]:
    engine = DuckDBTestEngine.create()
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def postgres_engine(postgres_dsn: str, postgres_schema: str) -> Iterator[PostgresTestEngine]:
    engine = PostgresTestEngine.create(postgres_dsn, postgres_schema)
    try:
        yield engine
    finally:
        engine.close()


@pytest.mark.postgres
@settings(COMMON, max_examples=60)
@given(cdm=cdms(), query=queries(ids=POOL, numbers=BOUNDS, dates=AS_OF, ages=AGE_BOUNDS))
def test_counts_agree(
    duckdb_engine: DuckDBTestEngine,
    postgres_engine: PostgresTestEngine,
    cdm: Tables,
    query: CountPersons,
) -> None:
    expected = reference_count(cdm, query)
    event("count is zero" if expected == 0 else "count is positive")
    if 0 < expected < len(cdm["person"]):
        event("count is some, not all, of the persons")
    counts = {}
    for engine in (duckdb_engine, postgres_engine):
        engine.load(cdm)
        counts[engine.dialect] = engine.count(query)
    assert counts == {"duckdb": expected, "postgres": expected}


Design = Counter[tuple[float, ...]]


def design_rows(engine: TestEngine, query: GlmStep) -> Design:
    """The design as a multiset of rows: the outcome, then the covariates (no intercept)."""
    x, y = run_design(engine.connection, query, engine.dialect, schema=engine.schema)
    assert x.shape == (len(y), 1 + len(query.covariates))
    assert (x[:, 0] == 1.0).all()
    return Counter(
        (float(outcome), *map(float, row[1:]))
        for outcome, row in zip(y.tolist(), x.tolist(), strict=True)
    )


def reference_design(tables: Tables, query: GlmStep) -> Design:
    """The design worked out from the model's docstrings, person by person."""
    as_of = query.cohort.as_of

    def value(variable: Variable, row: Row) -> float:
        match variable:
            case Age():
                return float(as_of.year - row["year_of_birth"])
            case Indicator(criterion):
                return 1.0 if _meets(tables, criterion, row, as_of) else 0.0
        raise AssertionError(f"no reference for {type(variable).__name__}")

    members: Sequence[Row] = [
        p
        for p in tables.get("person", ())
        if all(_meets(tables, c, p, as_of) for c in query.cohort.criteria)
    ]
    return Counter(tuple(value(v, p) for v in (query.outcome, *query.covariates)) for p in members)


@pytest.mark.postgres
@settings(COMMON, max_examples=40)
@given(cdm=cdms(), query=glm_steps(ids=POOL, numbers=BOUNDS, dates=AS_OF, ages=AGE_BOUNDS))
def test_designs_agree(
    duckdb_engine: DuckDBTestEngine,
    postgres_engine: PostgresTestEngine,
    cdm: Tables,
    query: GlmStep,
) -> None:
    expected = reference_design(cdm, query)
    event("empty design" if not expected else "design has rows")
    indicators = [i for i, v in enumerate((query.outcome, *query.covariates)) if v != Age()]
    if any(row[i] == 1.0 for row in expected for i in indicators):
        event("some indicator is 1")
    designs = {}
    for engine in (duckdb_engine, postgres_engine):
        engine.load(cdm)
        designs[engine.dialect] = design_rows(engine, query)
        # One row per person of the cohort: as many as the cohort's count.
        assert engine.count(CountPersons(query.cohort)) == expected.total()
    assert designs == {"duckdb": expected, "postgres": expected}
