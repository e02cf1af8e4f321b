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
from typing import TypeAlias

from accord.query.model import (
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
    SexIs,
    Variable,
)

Concepts: TypeAlias = ConceptSet | int | Iterable[int]


def concepts(*ids: int, descendants: bool = True, exclude: Iterable[int] = ()) -> ConceptSet:
    """A concept set: ``concepts(320128, exclude=[...])`` includes descendants by default."""
    return ConceptSet(tuple(ids), include_descendants=descendants, exclude=tuple(exclude))


def _concept_set(spec: Concepts) -> ConceptSet:
    if isinstance(spec, ConceptSet):
        return spec
    if isinstance(spec, int):
        return ConceptSet((spec,))
    return ConceptSet(tuple(spec))


def age_between(min_age: int, max_age: int) -> AgeBetween:
    return AgeBetween(min_age, max_age)


def sex_is(*concept_ids: int) -> SexIs:
    return SexIs(tuple(concept_ids))


def has_condition(
    spec: Concepts, *, at_least: int = 1, within_days: int | None = None
) -> HasCondition:
    """``at_least`` conditions in the set, in the ``within_days`` days up to the date."""
    return HasCondition(_concept_set(spec), min_count=at_least, within_days=within_days)


def has_drug(
    spec: Concepts, *, at_least: int = 1, within_days: int | None = None
) -> HasDrugExposure:
    """``at_least`` exposures to drugs in the set, in the ``within_days`` days up to it."""
    return HasDrugExposure(_concept_set(spec), min_count=at_least, within_days=within_days)


def has_measurement(
    spec: Concepts,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    at_least: int = 1,
    within_days: int | None = None,
) -> HasMeasurement:
    return HasMeasurement(
        _concept_set(spec),
        min_value=min_value,
        max_value=max_value,
        min_count=at_least,
        within_days=within_days,
    )


def cohort(*criteria: Criterion, as_of: date) -> Cohort:
    return Cohort(tuple(criteria), as_of=as_of)


def count_persons(of: Cohort) -> CountPersons:
    return CountPersons(of)


def age() -> Age:
    """Age in whole years at the cohort's date, as a model variable."""
    return Age()


def indicator(criterion: Criterion) -> Indicator:
    """1 for persons meeting ``criterion``, else 0, as a model variable."""
    return Indicator(criterion)


def glm(of: Cohort, *, outcome: Variable, covariates: Sequence[Variable], family: str) -> GlmStep:
    """A generalised linear model ``outcome ~ 1 + covariates`` over a cohort, at its start
    (every coefficient 0); the client moves ``beta`` from step to step."""
    return GlmStep(of, outcome, tuple(covariates), family, (0.0,) * (len(covariates) + 1))
