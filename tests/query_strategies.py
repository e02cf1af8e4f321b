"""Hypothesis strategies for valid queries, over any concept ids or a small pool.

Every strategy takes the values it draws from, so a test can pass a few that its rows
hold too (concepts, units, value bounds, days, ages) and bounds are then met exactly.
Trees are kept small: a few criteria, nested a level or two.
"""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

from accord.query.kinds import MAX_CONCEPT_ID, MAX_DAYS
from accord.query.model import (
    FAMILIES,
    SUMMARIES,
    Age,
    AgeBetween,
    AgeGroup,
    AllOf,
    Analysis,
    AnyOf,
    AtLeastOf,
    Cohort,
    ConceptSet,
    Correlation,
    CountBy,
    CountPersons,
    Criterion,
    DistinctPersons,
    Entry,
    EventCriterion,
    GlmStep,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    HasObservation,
    HasProcedure,
    HasVisit,
    Histogram,
    Indicator,
    InObservation,
    KaplanMeier,
    MeasurementValue,
    Not,
    Sex,
    SexIs,
    Summary,
    Variable,
)

ANY_CONCEPT = st.integers(min_value=1, max_value=MAX_CONCEPT_ID)
ANY_NUMBER = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)
ANY_DATE = st.dates()
ANY_AGE = st.integers(0, 150)
ANY_DAY = st.integers(-MAX_DAYS, MAX_DAYS)
ANY_DAYS = st.integers(0, MAX_DAYS)

PLAIN_EVENTS = (HasCondition, HasDrugExposure, HasProcedure, HasVisit)
VALUED_EVENTS = (HasMeasurement, HasObservation)


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


@st.composite
def age_ranges(draw: st.DrawFn, ages: st.SearchStrategy[int] = ANY_AGE) -> AgeBetween:
    low, high = sorted(draw(st.lists(ages, min_size=2, max_size=2)))
    return AgeBetween(low, high)


@st.composite
def counts(draw: st.DrawFn) -> dict[str, int | None]:
    """Mostly the plain "at least one"; sometimes more, at most some, exactly some, or
    none at all (``max_count=0``)."""
    low = draw(st.sampled_from((1, 1, 1, 0, 2, 3)))
    high = draw(st.sampled_from((None, None, None, 0, 1, 2)))
    if high is not None and low > high:
        low, high = high, low
    if low == 0 and high is None:
        low = 1
    return {"min_count": low, "max_count": high}


@st.composite
def windows(draw: st.DrawFn, days: st.SearchStrategy[int]) -> dict[str, int | None]:
    """Mostly the default (any day up to the index date); sometimes any window of the
    given days, before, around or after the index date, either side possibly open."""
    if draw(st.booleans()):
        return {"from_day": None, "to_day": 0}
    first, last = draw(st.none() | days), draw(st.none() | days)
    if first is not None and last is not None and first > last:
        first, last = last, first
    return {"from_day": first, "to_day": last}


def event_criteria(
    ids: st.SearchStrategy[int],
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    *,
    units: st.SearchStrategy[int] | None = None,
    days: st.SearchStrategy[int] = ANY_DAY,
    plain: bool = False,
) -> st.SearchStrategy[EventCriterion]:
    """Event criteria on every event table; with ``plain``, with no counts or days, as an
    entry's events must be (and as survival's event is read: from the day after entry)."""
    sets = concept_sets(ids)
    unit_lists = st.lists(units if units is not None else ids, max_size=2, unique=True).map(tuple)
    bounds = ordered_pair(st.none() | numbers)
    extras = st.just({}) if plain else st.builds(lambda c, w: {**c, **w}, counts(), windows(days))

    def plain_event(kind: type[EventCriterion]) -> st.SearchStrategy[EventCriterion]:
        return st.builds(lambda s, e: kind(s, **e), sets, extras)

    def valued_event(kind: type[EventCriterion]) -> st.SearchStrategy[EventCriterion]:
        return st.builds(
            lambda s, e, b, u: kind(s, **e, min_value=b[0], max_value=b[1], unit_concept_ids=u),
            sets,
            extras,
            bounds,
            unit_lists,
        )

    return st.one_of(
        *(plain_event(k) for k in PLAIN_EVENTS), *(valued_event(k) for k in VALUED_EVENTS)
    )


def criteria(
    ids: st.SearchStrategy[int],
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
    units: st.SearchStrategy[int] | None = None,
    days: st.SearchStrategy[int] = ANY_DAY,
    spans: st.SearchStrategy[int] = ANY_DAYS,
) -> st.SearchStrategy[Criterion]:
    """Any criterion: ages, sex, events, observation, and ``Not``, ``AllOf``, ``AnyOf``
    and ``AtLeastOf`` over them, a few leaves in all. ``spans`` are the days observed
    before or after the index date that ``InObservation`` asks for."""
    leaves: st.SearchStrategy[Criterion] = st.one_of(
        age_ranges(ages),
        st.lists(ids, min_size=1, max_size=3, unique=True).map(lambda c: SexIs(tuple(c))),
        event_criteria(ids, numbers, units=units, days=days),
        st.builds(InObservation, spans, spans),
        st.just(AllOf(())),
    )

    def combined(inner: st.SearchStrategy[Criterion]) -> st.SearchStrategy[Criterion]:
        some = st.lists(inner, min_size=1, max_size=3).map(tuple)
        return st.one_of(
            inner.map(Not),
            some.map(AllOf),
            some.map(AnyOf),
            some.flatmap(lambda cs: st.integers(1, len(cs)).map(lambda k: AtLeastOf(k, cs))),
        )

    return st.recursive(leaves, combined, max_leaves=4)


def entries(
    ids: st.SearchStrategy[int],
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    *,
    units: st.SearchStrategy[int] | None = None,
    spans: st.SearchStrategy[int] = ANY_DAYS,
) -> st.SearchStrategy[Entry]:
    events = st.lists(event_criteria(ids, numbers, units=units, plain=True), min_size=1, max_size=2)
    return st.builds(Entry, events.map(tuple), spans, spans)


def cohorts(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
    units: st.SearchStrategy[int] | None = None,
    days: st.SearchStrategy[int] = ANY_DAY,
    spans: st.SearchStrategy[int] = ANY_DAYS,
    entry: bool | None = None,
) -> st.SearchStrategy[Cohort]:
    """Cohorts of up to two criteria; with an entry when ``entry`` is true, without
    one when it is false, either when it is ``None``."""
    chosen = st.lists(
        criteria(ids, numbers, ages=ages, units=units, days=days, spans=spans), max_size=2
    ).map(tuple)
    some_entry = entries(ids, numbers, units=units, spans=spans)
    entry_or_none = {True: some_entry, False: st.none(), None: st.none() | some_entry}[entry]
    return st.builds(Cohort, chosen, dates, entry_or_none)


def variables(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    *,
    ages: st.SearchStrategy[int] = ANY_AGE,
    units: st.SearchStrategy[int] | None = None,
    days: st.SearchStrategy[int] = ANY_DAY,
    spans: st.SearchStrategy[int] = ANY_DAYS,
) -> st.SearchStrategy[Variable]:
    """Every kind of variable: ages and age groups, sex, indicators and measurements'
    values."""
    unit_lists = st.lists(units if units is not None else ids, max_size=2, unique=True).map(tuple)
    values = st.builds(
        lambda s, u, summary, w: MeasurementValue(s, u, summary, **w),
        concept_sets(ids),
        unit_lists,
        st.sampled_from(SUMMARIES),
        windows(days),
    )
    return st.one_of(
        st.sampled_from((Age(), Sex(), AgeGroup(1), AgeGroup(5), AgeGroup(10), AgeGroup(25))),
        criteria(ids, numbers, ages=ages, units=units, days=days, spans=spans).map(Indicator),
        values,
    )


def queries(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    *,
    entry: bool | None = None,
    **more: st.SearchStrategy[int],
) -> st.SearchStrategy[CountPersons]:
    """Counts of a cohort; ``entry`` and ``more`` (``ages``, ``units``, ``days`` and
    ``spans``) are passed on to :func:`cohorts`."""
    return cohorts(ids, numbers, dates, entry=entry, **more).map(CountPersons)


@st.composite
def glm_steps(
    draw: st.DrawFn,
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    **more: st.SearchStrategy[int],
) -> GlmStep:
    """A model's step at its start (every coefficient 0), with up to four covariates."""
    covariates = tuple(draw(st.lists(variables(ids, numbers, **more), max_size=4)))
    return GlmStep(
        draw(cohorts(ids, numbers, dates, **more)),
        draw(variables(ids, numbers, **more)),
        covariates,
        draw(st.sampled_from(FAMILIES)),
        (0.0,) * (len(covariates) + 1),
    )


@st.composite
def count_bys(
    draw: st.DrawFn,
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    *,
    entry: bool | None = None,
    **more: st.SearchStrategy[int],
) -> CountBy:
    """A count by one to three variables."""
    by = draw(st.lists(variables(ids, numbers, **more), min_size=1, max_size=3))
    return CountBy(draw(cohorts(ids, numbers, dates, entry=entry, **more)), tuple(by))


@st.composite
def kaplan_meiers(
    draw: st.DrawFn,
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
    **more: st.SearchStrategy[int],
) -> KaplanMeier:
    """Survival from a cohort's entry to a plain event, on a grid of up to 200 steps."""
    cohort = draw(cohorts(ids, numbers, dates, entry=True, **more))
    event = draw(event_criteria(ids, numbers, units=more.get("units"), plain=True))
    step = draw(st.integers(1, 400))
    horizon = draw(st.integers(step, min(step * 200, MAX_DAYS)))
    return KaplanMeier(cohort, event, horizon, step)


def analyses(
    ids: st.SearchStrategy[int] = ANY_CONCEPT,
    numbers: st.SearchStrategy[float] = ANY_NUMBER,
    dates: st.SearchStrategy[date] = ANY_DATE,
) -> st.SearchStrategy[Analysis]:
    """Every kind of analysis."""
    some_cohorts = cohorts(ids, numbers, dates)
    some_variables = variables(ids, numbers)
    edges = st.lists(
        st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=6, unique=True
    ).map(lambda e: tuple(sorted(e)))
    return st.one_of(
        queries(ids, numbers, dates),
        glm_steps(ids, numbers, dates),
        count_bys(ids, numbers, dates),
        st.builds(Histogram, some_cohorts, some_variables, edges),
        st.builds(Summary, some_cohorts, some_variables, edges),
        st.builds(
            Correlation, some_cohorts, st.lists(some_variables, min_size=2, max_size=4).map(tuple)
        ),
        kaplan_meiers(ids, numbers, dates),
        st.builds(DistinctPersons, some_cohorts, st.integers(4, 16)),
    )
