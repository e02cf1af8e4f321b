"""The vocabulary, rows and helpers the hand-worked cohort count cases share: each case
is data (the CDM rows, the query, the count worked out by hand), checked on every engine
and against the plain-Python reference engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from accord.query import (
    CountPersons,
    Criterion,
    cohort,
    count_persons,
    has_condition,
)
from accord.query.builders import (
    entry,
)
from accord.query.model import Entry
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from cdm_testing import (
    Tables,
    TestEngine,
    ancestor,
    observation_period,
    person,
)
from reference_engine import reference_count

AS_OF = date(2025, 12, 31)
LATER = date(2026, 3, 1)

# Made-up concept ids standing in for the vocabulary around the scenario's concepts.
HYPERTENSION_CHILD = 900_001  # e.g. a subtype of essential hypertension
HYPERTENSION_GRANDCHILD = 900_002
DIABETES = 900_010
BETA_BLOCKER_INGREDIENT = 900_020  # an ingredient under ATC C07
BETA_BLOCKER_TABLET = 900_021  # a clinical drug of that ingredient
ACE_INHIBITOR = 900_030
SYSTOLIC_BP = 900_040
MM_HG = 900_050  # a unit
KILOPASCAL = 900_051
COLONOSCOPY = 900_060  # a procedure
INPATIENT = 900_070  # kinds of visit
OUTPATIENT = 900_071
SMOKER = 900_080  # an observation
CIGARETTES_PER_DAY = 900_081
PER_DAY = 900_082  # a unit
HOSPITAL_DISCHARGE = 900_090  # an entry event

VOCABULARY = [
    ancestor(HYPERTENSION, HYPERTENSION_CHILD),
    ancestor(HYPERTENSION_CHILD, HYPERTENSION_GRANDCHILD),
    ancestor(HYPERTENSION, HYPERTENSION_GRANDCHILD, levels=2),
    ancestor(BETA_BLOCKERS, BETA_BLOCKER_INGREDIENT),
    ancestor(BETA_BLOCKER_INGREDIENT, BETA_BLOCKER_TABLET),
    ancestor(BETA_BLOCKERS, BETA_BLOCKER_TABLET, levels=2),
]


@dataclass(frozen=True)
class Case:
    tables: Tables
    query: CountPersons
    expected: int


def count(*criteria: Criterion, entering: Entry | None = None) -> CountPersons:
    return count_persons(cohort(*criteria, as_of=AS_OF, entry=entering))


def day(offset: int, of: date = AS_OF) -> date:
    """The day ``offset`` days from ``of`` (by default from as_of)."""
    return of + timedelta(days=offset)


def persons(*ids: int) -> list[dict[str, object]]:
    return [person(i, born=1970) for i in ids]


# Observed from long before every date in these cases to long after.
ALWAYS = date(2000, 1, 1), date(2040, 12, 31)
# An index date for cases with an entry: a discharge in the middle of the year.
DISCHARGED = date(2025, 6, 1)
DISCHARGE = entry(has_condition(HOSPITAL_DISCHARGE))


def observed(*ids: int) -> list[dict[str, object]]:
    """An observation period for each person, from long before to long after."""
    return [observation_period(i, *ALWAYS) for i in ids]


def after(offset: int) -> date:
    """The day ``offset`` days from the discharge (before it when negative)."""
    return day(offset, DISCHARGED)


def check_cases(cases: dict[str, Case]) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two tests every case table runs: on the engine, and on the reference."""
    parametrized = pytest.mark.parametrize("case", cases.values(), ids=cases.keys())

    @parametrized
    def test_engine_count(engine: TestEngine, case: Case) -> None:
        engine.load(case.tables)
        assert engine.count(case.query) == case.expected

    @parametrized
    def test_reference_engine_count(case: Case) -> None:
        assert reference_count(case.tables, case.query) == case.expected

    return test_engine_count, test_reference_engine_count
