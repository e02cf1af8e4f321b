"""The oracle: queries evaluated in plain Python over the same rows the engines load.

Written straight from the model's docstrings, with no SQL, so an engine that agrees with
it agrees with the documented meaning rather than with another engine's mistakes. Each
person is taken one at a time: their index date first, then each criterion and variable
read against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from statistics import fmean
from typing import Any

from accord.query.model import (
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
    ValuedEventCriterion,
    Variable,
)
from cdm_testing import Row, Tables

Value = float | int | None


@dataclass(frozen=True)
class EventTable:
    """Where an event criterion's records are: the table, its concept and start date."""

    name: str
    concept: str
    start: str


EVENT_TABLES: dict[type[EventCriterion], EventTable] = {
    HasCondition: EventTable(
        "condition_occurrence", "condition_concept_id", "condition_start_date"
    ),
    HasDrugExposure: EventTable("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    HasProcedure: EventTable("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    HasVisit: EventTable("visit_occurrence", "visit_concept_id", "visit_start_date"),
    HasMeasurement: EventTable("measurement", "measurement_concept_id", "measurement_date"),
    HasObservation: EventTable("observation", "observation_concept_id", "observation_date"),
}


@dataclass(frozen=True)
class Member:
    """A person of a cohort and the day everything about them is read at."""

    person: Row
    index: date


# Analyses


def reference_count(tables: Tables, query: CountPersons) -> int:
    """The number of distinct persons in the cohort."""
    return len(members(tables, query.cohort))


def reference_values(
    tables: Tables, cohort: Cohort, variables: Sequence[Variable]
) -> Counter[tuple[Value, ...]]:
    """Each person's values of ``variables``, as a multiset of tuples (``None`` for
    unknown): the rows a model, a histogram, a summary or a correlation reads."""
    return Counter(
        tuple(value(tables, cohort.as_of, v, m) for v in variables) for m in members(tables, cohort)
    )


def reference_count_by(tables: Tables, query: CountBy) -> Counter[tuple[Value, ...]]:
    """The number of persons in each stratum (unknown values form a stratum of their
    own); strata with nobody in them are not listed."""
    return reference_values(tables, query.cohort, query.by)


def reference_survival(
    tables: Tables, query: KaplanMeier
) -> Counter[tuple[date, date | None, date | None]]:
    """Each person's index date, first event from the day after it (on or before
    ``as_of``), and the end of the observation period holding the index date. The event's
    concepts, values and units choose its records; the follow-up is every day after the
    index date, whatever days the event itself names."""
    cohort = query.cohort
    event = query.event
    assert isinstance(event, EventCriterion)
    rows = []
    for m in members(tables, cohort):
        later = [
            day
            for day in _event_days(tables, event, m.person, cohort.as_of)
            if (day - m.index).days >= 1
        ]
        ends = [
            p["observation_period_end_date"]
            for p in _periods(tables, m.person)
            if p["observation_period_start_date"] <= m.index <= p["observation_period_end_date"]
        ]
        rows.append((m.index, min(later, default=None), max(ends, default=None)))
    return Counter(rows)


def reference_national_ids(tables: Tables, query: DistinctPersons) -> Counter[str | None]:
    """Each person's national id (``person_source_value``), as a multiset."""
    return Counter(m.person.get("person_source_value") for m in members(tables, query.cohort))


def reference_rows(tables: Tables, query: Analysis) -> Counter[tuple[Any, ...]]:
    """The rows an analysis reads, as a multiset: ``n`` for a count, strata and ``n`` for
    a stratified count, each person's values, survival dates or national id otherwise."""
    cohort = query.cohort
    match query:
        case CountPersons():
            return Counter([(reference_count(tables, query),)])
        case CountBy():
            return Counter({(*s, n): 1 for s, n in reference_count_by(tables, query).items()})
        case GlmStep():
            return reference_values(tables, cohort, (query.outcome, *query.covariates))
        case Histogram() | Summary():
            return reference_values(tables, cohort, (query.variable,))
        case Correlation():
            return reference_values(tables, cohort, query.variables)
        case KaplanMeier():
            return Counter(reference_survival(tables, query))
        case DistinctPersons():
            return Counter({(i,): n for i, n in reference_national_ids(tables, query).items()})
    raise AssertionError(f"the reference engine does not know {type(query).__name__}")


# The cohort


def members(tables: Tables, cohort: Cohort) -> list[Member]:
    """The persons who entered the cohort and meet every one of its criteria."""
    found = []
    for person in tables.get("person", ()):
        index = index_date(tables, cohort, person)
        if index is None:
            continue
        if all(meets(tables, cohort.as_of, c, person, index) for c in cohort.criteria):
            found.append(Member(person, index))
    return found


def index_date(tables: Tables, cohort: Cohort, person: Row) -> date | None:
    """``as_of`` without an entry; with one, the person's first entry event on or before
    ``as_of`` lying in an observation period with ``prior_days`` observed before it and
    ``post_days`` after it (``None`` when there is no such event)."""
    entry = cohort.entry
    if entry is None:
        return cohort.as_of
    days = [
        day
        for event in entry.events
        for day in _event_days(tables, _event(event), person, cohort.as_of)
        if _observed(tables, person, day, entry.prior_days, entry.post_days)
    ]
    return min(days, default=None)


# Criteria


def meets(tables: Tables, as_of: date, criterion: Criterion, person: Row, index: date) -> bool:
    """Whether ``person``, whose index date is ``index``, meets ``criterion``."""

    def met(inner: Criterion) -> bool:
        return meets(tables, as_of, inner, person, index)

    match criterion:
        case AgeBetween():
            return criterion.min_age <= _age(person, index) <= criterion.max_age
        case SexIs():
            return person["gender_concept_id"] in criterion.concept_ids
        case EventCriterion():
            days = [
                day
                for day in _event_days(tables, criterion, person, as_of)
                if _in_days((day - index).days, criterion.from_day, criterion.to_day)
            ]
            most = criterion.max_count
            return criterion.min_count <= len(days) and (most is None or len(days) <= most)
        case InObservation():
            return _observed(tables, person, index, criterion.prior_days, criterion.post_days)
        case Not():
            return not met(criterion.criterion)
        case AllOf():
            return all(map(met, criterion.criteria))
        case AnyOf():
            return any(map(met, criterion.criteria))
        case AtLeastOf():
            return sum(map(met, criterion.criteria)) >= criterion.count
    raise AssertionError(f"the reference engine does not know {type(criterion).__name__}")


def _event(criterion: Criterion) -> EventCriterion:
    assert isinstance(criterion, EventCriterion)
    return criterion


def _event_days(
    tables: Tables, criterion: EventCriterion, person: Row, as_of: date
) -> Iterator[date]:
    """The start days of the person's records in the criterion's concept set (and value
    bounds and units), one per record, never after ``as_of``."""
    table = EVENT_TABLES[type(criterion)]
    in_set = _in_set(tables, criterion.concepts)
    for row in tables.get(table.name, ()):
        if (
            row["person_id"] == person["person_id"]
            and row[table.start] <= as_of
            and in_set(row[table.concept])
            and _valued_ok(criterion, row)
        ):
            yield row[table.start]


def _valued_ok(criterion: EventCriterion, row: Row) -> bool:
    """The record's value lies within the bounds (a bound needs a value) and its unit is
    one of those asked for (any unit when none are)."""
    if not isinstance(criterion, ValuedEventCriterion):
        return True
    low, high = criterion.min_value, criterion.max_value
    if low is not None or high is not None:
        value = row.get("value_as_number")
        if value is None:
            return False
        if (low is not None and value < low) or (high is not None and value > high):
            return False
    units = criterion.unit_concept_ids
    return not units or row.get("unit_concept_id") in units


def _in_days(offset: int, from_day: int | None, to_day: int | None) -> bool:
    """``offset`` days from the index date lies in the inclusive, possibly open range."""
    return (from_day is None or from_day <= offset) and (to_day is None or offset <= to_day)


def _periods(tables: Tables, person: Row) -> list[Row]:
    return [
        r for r in tables.get("observation_period", ()) if r["person_id"] == person["person_id"]
    ]


def _observed(tables: Tables, person: Row, day: date, prior_days: int, post_days: int) -> bool:
    """``day`` lies in one of the person's observation periods, which started at least
    ``prior_days`` before it and ends at least ``post_days`` after it."""
    return any(
        (day - p["observation_period_start_date"]).days >= prior_days
        and (p["observation_period_end_date"] - day).days >= post_days
        for p in _periods(tables, person)
    )


def _expand(tables: Tables, ids: tuple[int, ...], descendants: bool) -> set[int]:
    found = set(ids)
    if descendants:
        found |= {
            r["descendant_concept_id"]
            for r in tables.get("concept_ancestor", ())
            if r["ancestor_concept_id"] in ids
        }
    return found


def _in_set(tables: Tables, concepts: ConceptSet) -> Callable[[int], bool]:
    included = _expand(tables, concepts.ids, concepts.include_descendants)
    excluded = _expand(tables, concepts.exclude, concepts.include_descendants)
    return lambda concept: concept in included and concept not in excluded


# Variables


def value(tables: Tables, as_of: date, variable: Variable, m: Member) -> Value:
    """One person's value of ``variable`` at their index date."""
    match variable:
        case Age():
            return _age(m.person, m.index)
        case AgeGroup():
            return _age(m.person, m.index) // variable.width * variable.width
        case Sex():
            return int(m.person["gender_concept_id"])
        case Indicator():
            return int(meets(tables, as_of, variable.criterion, m.person, m.index))
        case MeasurementValue():
            return _measurement_value(tables, as_of, variable, m)
    raise AssertionError(f"the reference engine does not know {type(variable).__name__}")


def _age(person: Row, index: date) -> int:
    born: int = person["year_of_birth"]
    return index.year - born


def _measurement_value(
    tables: Tables, as_of: date, variable: MeasurementValue, m: Member
) -> float | None:
    """The summary of the person's measurements in the set and units, with a value, in the
    days asked for; ``latest`` is the largest value on the latest such day."""
    in_set = _in_set(tables, variable.concepts)
    units = variable.unit_concept_ids
    found: list[tuple[date, float]] = [
        (row["measurement_date"], row["value_as_number"])
        for row in tables.get("measurement", ())
        if row["person_id"] == m.person["person_id"]
        and row["measurement_date"] <= as_of
        and in_set(row["measurement_concept_id"])
        and row["value_as_number"] is not None
        and (not units or row.get("unit_concept_id") in units)
        and _in_days((row["measurement_date"] - m.index).days, variable.from_day, variable.to_day)
    ]
    if not found:
        return None
    if variable.summary == "latest":
        last = max(day for day, _ in found)
        return float(max(v for day, v in found if day == last))
    values = [v for _, v in found]
    summaries: dict[str, Callable[[list[float]], float]] = {"mean": fmean, "min": min, "max": max}
    return float(summaries[variable.summary](values))
