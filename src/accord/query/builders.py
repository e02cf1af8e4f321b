"""A short way to write queries in Python that reads like the question.

Example:
    >>> from datetime import date
    >>> from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
    >>> q = count_persons(
    ...     cohort(age_between(45, 75), has_condition(HYPERTENSION), ~has_drug(BETA_BLOCKERS),
    ...            as_of=date(2025, 12, 31))
    ... )
    >>> not_on_beta_blockers = q.cohort.criteria[2]
    >>> type(not_on_beta_blockers).__name__, not_on_beta_blockers.criterion.concepts.ids
    ('Not', (21601664,))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, TypeAlias, TypeVar

from accord.query.model import (
    Age,
    AgeBetween,
    AgeGroup,
    AllOf,
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
    Sex,
    SexIs,
    Summary,
    Variable,
)

Concepts: TypeAlias = ConceptSet | int | Iterable[int]
Days: TypeAlias = tuple[int | None, int | None]


def concepts(*ids: int, descendants: bool = True, exclude: Iterable[int] = ()) -> ConceptSet:
    """A concept set: ``concepts(320128, exclude=[...])`` includes descendants by default."""
    return ConceptSet(tuple(ids), include_descendants=descendants, exclude=tuple(exclude))


def _concept_set(spec: Concepts) -> ConceptSet:
    if isinstance(spec, ConceptSet):
        return spec
    if isinstance(spec, int):
        return ConceptSet((spec,))
    return ConceptSet(tuple(spec))


def _window(within_days: int | None, days: Days | None) -> Days:
    """The day range of ``days=(from, to)``, or of the ``within_days`` days up to and
    including the index date; by default any day on or before it."""
    if within_days is not None and days is not None:
        raise TypeError("give within_days or days, not both")
    if within_days is not None:
        return -(within_days - 1), 0
    return days if days is not None else (None, 0)


E = TypeVar("E", bound=EventCriterion)


def _event(
    kind: type[E],
    spec: Concepts,
    at_least: int,
    at_most: int | None,
    within_days: int | None,
    days: Days | None,
    **values: Any,
) -> E:
    start, end = _window(within_days, days)
    return kind(
        _concept_set(spec),
        min_count=at_least,
        max_count=at_most,
        from_day=start,
        to_day=end,
        **values,
    )


def age_between(min_age: int, max_age: int) -> AgeBetween:
    return AgeBetween(min_age, max_age)


def sex_is(*concept_ids: int) -> SexIs:
    return SexIs(tuple(concept_ids))


def has_condition(
    spec: Concepts,
    *,
    at_least: int = 1,
    at_most: int | None = None,
    within_days: int | None = None,
    days: Days | None = None,
) -> HasCondition:
    """``at_least`` (and ``at_most``) conditions in the set, in the ``within_days`` days up
    to the index date, or from ``days[0]`` to ``days[1]`` relative to it."""
    return _event(HasCondition, spec, at_least, at_most, within_days, days)


def has_drug(
    spec: Concepts,
    *,
    at_least: int = 1,
    at_most: int | None = None,
    within_days: int | None = None,
    days: Days | None = None,
) -> HasDrugExposure:
    """Exposures to drugs in the set; counts and days as for :func:`has_condition`."""
    return _event(HasDrugExposure, spec, at_least, at_most, within_days, days)


def has_procedure(
    spec: Concepts,
    *,
    at_least: int = 1,
    at_most: int | None = None,
    within_days: int | None = None,
    days: Days | None = None,
) -> HasProcedure:
    """Procedures in the set; counts and days as for :func:`has_condition`."""
    return _event(HasProcedure, spec, at_least, at_most, within_days, days)


def has_visit(
    spec: Concepts,
    *,
    at_least: int = 1,
    at_most: int | None = None,
    within_days: int | None = None,
    days: Days | None = None,
) -> HasVisit:
    """Visits of a kind in the set; counts and days as for :func:`has_condition`."""
    return _event(HasVisit, spec, at_least, at_most, within_days, days)


def has_measurement(
    spec: Concepts,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    units: Iterable[int] = (),
    at_least: int = 1,
    at_most: int | None = None,
    within_days: int | None = None,
    days: Days | None = None,
) -> HasMeasurement:
    """Measurements in the set with values in bounds, recorded in one of ``units`` (any
    unit when empty); counts and days as for :func:`has_condition`."""
    return _event(
        HasMeasurement,
        spec,
        at_least,
        at_most,
        within_days,
        days,
        min_value=min_value,
        max_value=max_value,
        unit_concept_ids=tuple(units),
    )


def has_observation(
    spec: Concepts,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    units: Iterable[int] = (),
    at_least: int = 1,
    at_most: int | None = None,
    within_days: int | None = None,
    days: Days | None = None,
) -> HasObservation:
    """Observations in the set; values, units, counts and days as for measurements."""
    return _event(
        HasObservation,
        spec,
        at_least,
        at_most,
        within_days,
        days,
        min_value=min_value,
        max_value=max_value,
        unit_concept_ids=tuple(units),
    )


def in_observation(*, prior_days: int = 0, post_days: int = 0) -> InObservation:
    """Observed at the index date, with ``prior_days`` before it and ``post_days`` after."""
    return InObservation(prior_days, post_days)


def all_of(*criteria: Criterion) -> AllOf:
    return AllOf(tuple(criteria))


def any_of(*criteria: Criterion) -> AnyOf:
    return AnyOf(tuple(criteria))


def at_least_of(count: int, *criteria: Criterion) -> AtLeastOf:
    return AtLeastOf(count, tuple(criteria))


def entry(*events: EventCriterion, prior_days: int = 0, post_days: int = 0) -> Entry:
    """Enter at the first of ``events``, observed ``prior_days`` before and ``post_days``
    after it."""
    return Entry(tuple(events), prior_days, post_days)


def cohort(*criteria: Criterion, as_of: date, entry: Entry | None = None) -> Cohort:
    return Cohort(tuple(criteria), as_of=as_of, entry=entry)


def count_persons(of: Cohort) -> CountPersons:
    return CountPersons(of)


def count_by(of: Cohort, *by: Variable) -> CountBy:
    """Persons per stratum of one variable, or per cell of a crosstab of two or three."""
    return CountBy(of, tuple(by))


def histogram(of: Cohort, variable: Variable, edges: Sequence[float]) -> Histogram:
    return Histogram(of, variable, tuple(map(float, edges)))


def summary(of: Cohort, variable: Variable, edges: Sequence[float]) -> Summary:
    """n, mean, standard deviation, and quantiles good to a bin of ``edges``."""
    return Summary(of, variable, tuple(map(float, edges)))


def correlation(of: Cohort, *variables: Variable) -> Correlation:
    return Correlation(of, tuple(variables))


def kaplan_meier(
    of: Cohort, event: EventCriterion, *, horizon_days: int, step_days: int = 30
) -> KaplanMeier:
    """Survival from the index date to ``event``, on a grid of ``step_days`` days."""
    return KaplanMeier(of, event, horizon_days, step_days)


def distinct_persons(of: Cohort, *, precision: int = 14) -> DistinctPersons:
    return DistinctPersons(of, precision)


def age() -> Age:
    """Age in whole years at the index date, as a model variable."""
    return Age()


def age_group(width: int = 10) -> AgeGroup:
    """Age at the index date in groups of ``width`` years, as a stratum."""
    return AgeGroup(width)


def sex() -> Sex:
    """Recorded sex as its concept id, as a stratum."""
    return Sex()


def indicator(criterion: Criterion) -> Indicator:
    """1 for persons meeting ``criterion``, else 0, as a model variable."""
    return Indicator(criterion)


def measurement_value(
    spec: Concepts,
    *,
    units: Iterable[int] = (),
    summary: str = "latest",
    within_days: int | None = None,
    days: Days | None = None,
) -> MeasurementValue:
    """A person's measurements in the set as one number (``latest``, ``mean``, ``min``
    or ``max``), from the days given (by default any day up to the index date)."""
    start, end = _window(within_days, days)
    return MeasurementValue(_concept_set(spec), tuple(units), summary, start, end)


def glm(of: Cohort, *, outcome: Variable, covariates: Sequence[Variable], family: str) -> GlmStep:
    """A generalised linear model ``outcome ~ 1 + covariates`` over a cohort, at its start
    (every coefficient 0); the client moves ``beta`` from step to step."""
    return GlmStep(of, outcome, tuple(covariates), family, (0.0,) * (len(covariates) + 1))
