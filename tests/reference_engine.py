"""The oracle: queries evaluated in plain Python over the same rows the engines load.

Written straight from the model's docstrings, with no SQL, so an engine that agrees with
it agrees with the documented meaning rather than with another engine's mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from accord.query import (
    AgeBetween,
    ConceptSet,
    CountPersons,
    Criterion,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    Not,
    SexIs,
)
from cdm_testing import Row, Tables


def reference_count(tables: Tables, query: CountPersons) -> int:
    cohort = query.cohort
    persons = tables.get("person", ())
    chosen = {
        p["person_id"]
        for p in persons
        if all(_meets(tables, c, p, cohort.as_of) for c in cohort.criteria)
    }
    return len(chosen)


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


def _has(
    tables: Tables,
    table: str,
    concept: str,
    start: str,
    concepts: ConceptSet,
    person: Row,
    as_of: date,
    value_ok: Callable[[Row], bool] = lambda row: True,
    *,
    count: int = 1,
    days: int | None = None,
) -> bool:
    matches = _in_set(tables, concepts)
    found = sum(
        1
        for row in tables.get(table, ())
        if row["person_id"] == person["person_id"]
        and row[start] <= as_of
        and (days is None or (as_of - row[start]).days < days)
        and matches(row[concept])
        and value_ok(row)
    )
    return found >= count


def _within(low: float | None, high: float | None) -> Callable[[Row], bool]:
    def ok(row: Row) -> bool:
        value: Any = row["value_as_number"]
        if low is None and high is None:
            return True
        if value is None:
            return False
        return (low is None or value >= low) and (high is None or value <= high)

    return ok


def _meets(tables: Tables, criterion: Criterion, person: Row, as_of: date) -> bool:
    match criterion:
        case AgeBetween(min_age, max_age):
            age: int = as_of.year - person["year_of_birth"]
            return min_age <= age <= max_age
        case SexIs(concept_ids):
            return person["gender_concept_id"] in concept_ids
        case HasCondition(concepts, count, days):
            return _has(
                tables,
                "condition_occurrence",
                "condition_concept_id",
                "condition_start_date",
                concepts,
                person,
                as_of,
                count=count,
                days=days,
            )
        case HasDrugExposure(concepts, count, days):
            return _has(
                tables,
                "drug_exposure",
                "drug_concept_id",
                "drug_exposure_start_date",
                concepts,
                person,
                as_of,
                count=count,
                days=days,
            )
        case HasMeasurement(concepts, low, high, count, days):
            return _has(
                tables,
                "measurement",
                "measurement_concept_id",
                "measurement_date",
                concepts,
                person,
                as_of,
                _within(low, high),
                count=count,
                days=days,
            )
        case Not(inner):
            return not _meets(tables, inner, person, as_of)
    raise AssertionError(f"the reference engine does not know {type(criterion).__name__}")
