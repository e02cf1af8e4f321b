"""Hypothesis strategies for valid queries, over any concept ids or a small pool."""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

from accord.query import (
    Age,
    AgeBetween,
    Cohort,
    ConceptSet,
    CountPersons,
    Criterion,
    GlmStep,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    Indicator,
    Not,
    SexIs,
    Variable,
)
from accord.query.kinds import MAX_CONCEPT_ID
from accord.query.model import FAMILIES

ANY_CONCEPT = st.integers(min_value=1, max_value=MAX_CONCEPT_ID)
ANY_NUMBER = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)
ANY_DATE = st.dates()


@st.composite
def concept_sets(draw: st.DrawFn, ids: st.SearchStrategy[int]) -> ConceptSet:
    included = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    excluded = draw(st.lists(ids.filter(lambda i: i not in included), max_size=3, unique=True))
    return ConceptSet(tuple(included), draw(st.booleans()), tuple(excluded))


@st.composite
def ordered_pair(
    draw: st.DrawFn, values: st.SearchStrategy[float | None]
) -> tuple[float | None, float | None]:
    low, high = draw(values), draw(values)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return low, high


ANY_AGE = st.integers(0, 150)


@st.composite
def age_ranges(draw: st.DrawFn, ages: st.SearchStrategy[int] = ANY_AGE) -> AgeBetween:
    low, high = sorted(draw(st.lists(ages, min_size=2, max_size=2)))
    return AgeBetween(low, high)


def criteria(
    ids: st.SearchStrategy[int],
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
) -> st.SearchStrategy[Criterion]:
    sets = concept_sets(ids)
    bounds = ordered_pair(st.none() | numbers)
    # Mostly the plain "ever had one", sometimes a count or a window.
    counts = st.sampled_from((1, 1, 1, 2, 3))
    windows = st.sampled_from((None, None, 1, 30, 400))
    leaves: st.SearchStrategy[Criterion] = st.one_of(
        age_ranges(ages),
        st.lists(ids, min_size=1, max_size=3, unique=True).map(lambda c: SexIs(tuple(c))),
        st.builds(HasCondition, sets, counts, windows),
        st.builds(HasDrugExposure, sets, counts, windows),
        st.tuples(sets, bounds, counts, windows).map(
            lambda t: HasMeasurement(t[0], *t[1], t[2], t[3])
        ),
    )
    return st.recursive(leaves, lambda inner: inner.map(Not), max_leaves=3)


def queries(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
) -> st.SearchStrategy[CountPersons]:
    return cohorts(ids, numbers, dates, ages=ages).map(CountPersons)


def cohorts(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
) -> st.SearchStrategy[Cohort]:
    chosen = st.lists(criteria(ids, numbers, ages=ages), max_size=4).map(tuple)
    return st.builds(Cohort, chosen, dates)


def variables(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
) -> st.SearchStrategy[Variable]:
    return st.one_of(st.just(Age()), criteria(ids, numbers, ages=ages).map(Indicator))


@st.composite
def glm_steps(
    draw: st.DrawFn,
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
) -> GlmStep:
    """A model's step at its start (every coefficient 0), with up to four covariates."""
    covariates = tuple(draw(st.lists(variables(ids, numbers, ages=ages), max_size=4)))
    return GlmStep(
        draw(cohorts(ids, numbers, dates, ages=ages)),
        draw(variables(ids, numbers, ages=ages)),
        covariates,
        draw(st.sampled_from(FAMILIES)),
        (0.0,) * (len(covariates) + 1),
    )
