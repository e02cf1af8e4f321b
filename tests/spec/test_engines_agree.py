"""Generative check: on random CDMs, DuckDB, PostgreSQL and the plain-Python reference
give the same cohort counts, model designs, stratified counts and survival rows.

Each example draws a CDM of a few dozen persons whose conditions, drug exposures,
procedures, visits, measurements and observations come from a small concept pool with a
small hierarchy (a random forest, its ``concept_ancestor`` rows the full transitive
closure as Athena ships it, sometimes with the self-rows), with event dates and
observation periods taken from the same handful of days the queries' ``as_of`` dates come
from, so records on, before and after ``as_of`` all occur. The queries' windows and
observed spans are the distances between those days, so entry and window edges are met
exactly; measurement bounds and units come from the values and units the rows hold, so
every inclusive bound is hit.

Each test uses one PostgreSQL schema and one DuckDB database for all its examples; every
example replaces the rows the previous one loaded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord.query.model import (
    Analysis,
    GlmStep,
    KaplanMeier,
    MeasurementValue,
)
from accord.query.run import run_design, run_rows
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
    observation,
    observation_period,
    person,
    procedure,
    visit,
)
from query_strategies import count_bys, event_criteria, queries
from reference_engine import (
    Value,
    reference_count,
    reference_count_by,
    reference_survival,
    reference_values,
)

CONCEPTS = tuple(range(1, 8))
POOL = st.sampled_from(CONCEPTS)
UNITS = (11, 12)
# Values the rows hold and bounds the queries use: the same few, so bounds are met exactly.
VALUES = (90, 139.5, 140, 180.25)
BOUNDS = st.sampled_from(VALUES)
# Event dates, observation periods and as_of dates from the same days: on, just before
# and just after.
DAYS = (
    date(2023, 6, 30),
    date(2024, 12, 31),
    date(2025, 1, 1),
    date(2025, 12, 31),
    date(2026, 1, 1),
)
AS_OF = st.sampled_from(DAYS[::-1])
EVENT_DATES = st.one_of(
    st.sampled_from(DAYS), st.dates(min_value=date(2021, 1, 1), max_value=date(2026, 12, 31))
)
# Observation periods start and end on those days too, or long before or after them.
EARLY, LATE = date(2000, 1, 1), date(2030, 12, 31)
PERIOD_DATES = st.one_of(st.sampled_from((EARLY, LATE)), EVENT_DATES)
# The distances between those days: windows and observed spans that end exactly on one.
DISTANCES = sorted({abs((a - b).days) for a in DAYS for b in DAYS})
# Observed spans are mostly none, so that persons enter often enough.
SPANS = st.one_of(st.just(0), st.sampled_from(DISTANCES))
OFFSETS = st.sampled_from(sorted({sign * d for d in DISTANCES for sign in (-1, 1)}))
# Age bounds from a few ages, and birth years putting persons at, just under and just over
# each of them on the as_of dates, so inclusive age bounds are hit.
AGES = (0, 18, 45, 75, 100)
AGE_BOUNDS = st.sampled_from(AGES)
BIRTH_YEARS = st.sampled_from(
    sorted({day.year - age + step for day in DAYS for age in AGES for step in (-1, 0, 1)})
)
DRAWN = {
    "ids": POOL,
    "numbers": BOUNDS,
    "dates": AS_OF,
    "ages": AGE_BOUNDS,
    "units": st.sampled_from(UNITS),
    "days": OFFSETS,
    "spans": SPANS,
}
T = TypeVar("T")
MOST_PERSONS = 10
MOST_EVENTS = 30

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
def periods(draw: st.DrawFn, person_id: int) -> list[Row]:
    """Mostly one observation period, often from long before to long after the ``as_of``
    days; sometimes none, or two that do not overlap."""
    count = draw(st.sampled_from((1, 1, 1, 0, 2)))
    if count == 1:
        start = draw(st.sampled_from((EARLY, EARLY, None))) or draw(EVENT_DATES)
        end = draw(st.sampled_from((LATE, LATE, None))) or draw(EVENT_DATES)
        days = sorted((start, end))
    else:
        days = sorted(
            draw(st.lists(PERIOD_DATES, min_size=2 * count, max_size=2 * count, unique=True))
        )
    return [
        observation_period(person_id, start, end)
        for start, end in zip(days[::2], days[1::2], strict=True)
    ]


@st.composite
def cdms(draw: st.DrawFn) -> Tables:
    # Enough persons for a cohort to be some of them (tests/spec/test_cohort_counts.py
    # has the empty CDM).
    count = draw(st.integers(MOST_PERSONS // 3, MOST_PERSONS))
    # One id past the last person: records of a person the CDM does not have.
    owners = st.integers(1, count + 1)
    events = st.tuples(owners, POOL, EVENT_DATES)
    valued = st.tuples(events, st.none() | BOUNDS, st.none() | st.sampled_from(UNITS))

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
        "procedure_occurrence": [procedure(p, c, on=d) for p, c, d in some(events)],
        "visit_occurrence": [visit(p, c, on=d) for p, c, d in some(events)],
        "measurement": [measurement(p, c, v, on=d, unit=u) for (p, c, d), v, u in some(valued)],
        "observation": [observation(p, c, v, on=d, unit=u) for (p, c, d), v, u in some(valued)],
        "observation_period": [row for i in range(1, count + 2) for row in draw(periods(i))],
        "concept_ancestor": draw(hierarchies()),
    }


class OneInsertDuckDBTestEngine(DuckDBTestEngine):
    """Loads each table's rows with one INSERT: DuckDB runs an ``executemany`` row by
    row, which for these CDMs took most of an example's time."""

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        columns = list(rows[0])
        row = f"({', '.join([self.placeholder] * len(columns))})"
        self.connection.execute(
            f"INSERT INTO {self.qualified(table)} ({', '.join(columns)}) "
            f"VALUES {', '.join([row] * len(rows))}",
            [r[c] for r in rows for c in columns],
        )


@pytest.fixture
def duckdb_engine() -> Iterator[DuckDBTestEngine]:
    engine = OneInsertDuckDBTestEngine.create()
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


def rows_of(engine: TestEngine, query: Analysis) -> list[tuple[Any, ...]]:
    return run_rows(engine.connection, query, engine.dialect, schema=engine.schema)


def same(value: Any) -> Value:
    """A value as the reference gives it: a mean worked out in another order may differ
    in its last bits, so numbers are compared to nine decimal places."""
    return None if value is None else round(float(value), 9)


def values_of(rows: Sequence[tuple[Any, ...]]) -> Counter[tuple[Value, ...]]:
    return Counter(tuple(same(v) for v in row) for row in rows)


def strata_of(rows: Sequence[tuple[Any, ...]]) -> Counter[tuple[Value, ...]]:
    """A stratified count's rows (the strata, then ``n``) as counts per stratum."""
    counted: Counter[tuple[Value, ...]] = Counter()
    for *strata, n in rows:
        counted[tuple(same(s) for s in strata)] += n
    return counted


# Each test runs for cohorts without an entry (index date as_of) and with one.
ENTRY = pytest.mark.parametrize("entry", [False, True], ids=["as_of", "entry"])


@pytest.mark.postgres
@ENTRY
@settings(COMMON, max_examples=25)
@given(data=st.data())
def test_counts_agree(
    duckdb_engine: DuckDBTestEngine,
    postgres_engine: PostgresTestEngine,
    entry: bool,
    data: st.DataObject,
) -> None:
    cdm = data.draw(cdms(), label="cdm")
    query = data.draw(queries(**DRAWN, entry=entry), label="query")
    expected = reference_count(cdm, query)
    event("count is zero" if expected == 0 else "count is positive")
    if 0 < expected < len(cdm["person"]):
        event("count is some, not all, of the persons")
    counts = {}
    for engine in (duckdb_engine, postgres_engine):
        engine.load(cdm)
        counts[engine.dialect] = engine.count(query)
    assert counts == {"duckdb": expected, "postgres": expected}


@pytest.mark.postgres
@ENTRY
@settings(COMMON, max_examples=20)
@given(data=st.data())
def test_values_agree(
    duckdb_engine: DuckDBTestEngine,
    postgres_engine: PostgresTestEngine,
    entry: bool,
    data: st.DataObject,
) -> None:
    """Each person of the cohort is one row of their values (one to three variables),
    unknown ones included, in a model's design as in a stratified count; the design keeps
    the rows with every value known. With an entry, each person's survival row is their
    index date, first event after it and the end of their observation period."""
    cdm = data.draw(cdms(), label="cdm")
    by = data.draw(count_bys(**DRAWN, entry=entry), label="count_by")
    cohort, variables = by.cohort, by.by
    engines = (duckdb_engine, postgres_engine)
    for engine in engines:
        engine.load(cdm)
    expected = values_of(list(reference_values(cdm, cohort, variables).elements()))
    event("nobody in the cohort" if not expected else "somebody in the cohort")
    if any(None in row for row in expected):
        event("some value is unknown")
    if any(isinstance(v, MeasurementValue) for v in variables) and any(
        s is not None for row in expected for s in row
    ):
        event("some measurement value is known")

    model = GlmStep(cohort, variables[0], variables[1:], "gaussian", (0.0,) * len(variables))
    assert {e.dialect: values_of(rows_of(e, model)) for e in engines} == {
        "duckdb": expected,
        "postgres": expected,
    }
    complete = Counter({row: n for row, n in expected.items() if None not in row})
    for engine in engines:
        x, y = run_design(engine.connection, model, engine.dialect, schema=engine.schema)
        assert (x[:, 0] == 1.0).all()
        design = [(outcome, *row[1:]) for outcome, row in zip(y.tolist(), x.tolist(), strict=True)]
        assert values_of(design) == complete

    strata = strata_of([(*s, n) for s, n in reference_count_by(cdm, by).items()])
    for engine in engines:
        rows = rows_of(engine, by)
        # One row per stratum, none of them empty.
        assert len({tuple(row[:-1]) for row in rows}) == len(rows)
        assert all(row[-1] > 0 for row in rows)
        assert (engine.dialect, strata_of(rows)) == (engine.dialect, strata)

    if cohort.entry is not None:
        events = event_criteria(POOL, BOUNDS, units=DRAWN["units"], plain=True)
        # Often a recurrence of the entry event, so that events after entry are common.
        followed_to = data.draw(st.sampled_from(cohort.entry.events) | events, label="event")
        survival = KaplanMeier(cohort, followed_to, horizon_days=720)
        followed = reference_survival(cdm, survival)
        if any(e is not None for _, e, _ in followed):
            event("some event after entry")
        assert {e.dialect: Counter(rows_of(e, survival)) for e in engines} == {
            "duckdb": followed,
            "postgres": followed,
        }
