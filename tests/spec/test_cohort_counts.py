"""What a cohort count means, written once and checked on every engine.

Each case is data: the CDM rows, the query, and the count worked out by hand. The same
cases also check the plain-Python reference engine, so engine and oracle are held to
the same hand-computed answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from accord.query import (
    CountPersons,
    Criterion,
    age_between,
    cohort,
    concepts,
    count_persons,
    has_condition,
    has_drug,
    has_measurement,
    sex_is,
)
from accord.query.scenarios import trial_recruitment
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from cdm_testing import (
    FEMALE,
    Tables,
    TestEngine,
    ancestor,
    condition,
    drug,
    measurement,
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


def count(*criteria: Criterion) -> CountPersons:
    return count_persons(cohort(*criteria, as_of=AS_OF))


CASES = {
    "age bounds are inclusive at 45 and 75, 44 and 76 are out": Case(
        {"person": [person(i, born=y) for i, y in enumerate((1950, 1980, 1981, 1949, 1965))]},
        count(age_between(45, 75)),
        expected=3,
    ),
    "a condition coded as a descendant concept counts": Case(
        {
            "person": [person(1, born=1970), person(2, born=1970)],
            "condition_occurrence": [
                condition(1, HYPERTENSION_GRANDCHILD),
                condition(2, DIABETES),
            ],
            "concept_ancestor": VOCABULARY,
        },
        count(has_condition(HYPERTENSION)),
        expected=1,
    ),
    "without descendants only the listed concept counts": Case(
        {
            "person": [person(1, born=1970), person(2, born=1970)],
            "condition_occurrence": [condition(1, HYPERTENSION_CHILD), condition(2, HYPERTENSION)],
            "concept_ancestor": VOCABULARY,
        },
        count(has_condition(concepts(HYPERTENSION, descendants=False))),
        expected=1,
    ),
    "an excluded concept and its descendants do not count": Case(
        {
            "person": [person(i, born=1970) for i in (1, 2, 3)],
            "condition_occurrence": [
                condition(1, HYPERTENSION_CHILD),
                condition(2, HYPERTENSION),
                condition(3, HYPERTENSION_GRANDCHILD),
            ],
            "concept_ancestor": VOCABULARY,
        },
        count(has_condition(concepts(HYPERTENSION, exclude=[HYPERTENSION_CHILD]))),
        expected=1,
    ),
    "a beta blocker found through its ATC class excludes the person": Case(
        {
            "person": [person(1, born=1970), person(2, born=1970)],
            "condition_occurrence": [condition(1, HYPERTENSION), condition(2, HYPERTENSION)],
            "drug_exposure": [drug(1, BETA_BLOCKER_TABLET), drug(2, ACE_INHIBITOR)],
            "concept_ancestor": VOCABULARY,
        },
        count(has_condition(HYPERTENSION), ~has_drug(BETA_BLOCKERS)),
        expected=1,
    ),
    "a person with two hypertension records is counted once": Case(
        {
            "person": [person(1, born=1970)],
            "condition_occurrence": [
                condition(1, HYPERTENSION, on=date(2019, 5, 1)),
                condition(1, HYPERTENSION, on=date(2021, 7, 9)),
                condition(1, HYPERTENSION_CHILD),
            ],
            "concept_ancestor": VOCABULARY,
        },
        count(has_condition(HYPERTENSION)),
        expected=1,
    ),
    "a person with no conditions has none of them": Case(
        {
            "person": [person(1, born=1970), person(2, born=1970)],
            "condition_occurrence": [condition(2, HYPERTENSION)],
        },
        count(~has_condition(HYPERTENSION)),
        expected=1,
    ),
    "records after as_of do not count, for or against": Case(
        {
            "person": [person(1, born=1970), person(2, born=1970)],
            "condition_occurrence": [
                condition(1, HYPERTENSION, on=LATER),
                condition(2, HYPERTENSION),
            ],
            "drug_exposure": [drug(2, BETA_BLOCKERS, on=LATER)],
        },
        count(has_condition(HYPERTENSION), ~has_drug(BETA_BLOCKERS)),
        expected=1,
    ),
    "a record on as_of itself counts": Case(
        {
            "person": [person(1, born=1970)],
            "condition_occurrence": [condition(1, DIABETES, on=AS_OF)],
        },
        count(has_condition(DIABETES)),
        expected=1,
    ),
    "sex is matched on the person's gender concept": Case(
        {"person": [person(1, born=1970), person(2, born=1970, sex=FEMALE)]},
        count(sex_is(FEMALE)),
        expected=1,
    ),
    "measurement bounds are inclusive and need a value": Case(
        {
            "person": [person(i, born=1970) for i in (1, 2, 3, 4)],
            "measurement": [
                measurement(1, SYSTOLIC_BP, 140),
                measurement(2, SYSTOLIC_BP, 139.5),
                measurement(3, SYSTOLIC_BP, None),
                measurement(4, SYSTOLIC_BP, 180.25),
            ],
        },
        count(has_measurement(SYSTOLIC_BP, min_value=140, max_value=180.25)),
        expected=2,
    ),
    "a measurement without bounds counts whatever its value": Case(
        {
            "person": [person(1, born=1970), person(2, born=1970)],
            "measurement": [measurement(1, SYSTOLIC_BP, None)],
        },
        count(has_measurement(SYSTOLIC_BP)),
        expected=1,
    ),
    "no criteria counts every person": Case(
        {"person": [person(i, born=1900 + i) for i in range(1, 8)]},
        count(),
        expected=7,
    ),
    "an empty CDM counts zero": Case({}, count(age_between(0, 150)), expected=0),
    "trial recruitment on a ten-person member": Case(
        {
            "person": [
                person(1, born=1960),  # 65, hypertension: eligible
                person(2, born=1950),  # 75, a hypertension subtype: eligible
                person(3, born=1980),  # 45, two hypertension records: eligible once
                person(4, born=1981),  # 44: too young
                person(5, born=1949),  # 76: too old
                person(6, born=1970),  # on a beta blocker
                person(7, born=1970),  # no conditions
                person(8, born=1965),  # diabetes only
                person(9, born=1955, sex=FEMALE),  # on an ACE inhibitor: eligible
                person(10, born=1962),  # diagnosed after as_of
                person(11, born=1958),  # beta blocker only after as_of: eligible
            ],
            "condition_occurrence": [
                condition(1, HYPERTENSION),
                condition(2, HYPERTENSION_CHILD),
                condition(3, HYPERTENSION),
                condition(3, HYPERTENSION, on=date(2024, 2, 2)),
                condition(4, HYPERTENSION),
                condition(5, HYPERTENSION),
                condition(6, HYPERTENSION),
                condition(8, DIABETES),
                condition(9, HYPERTENSION),
                condition(10, HYPERTENSION, on=LATER),
                condition(11, HYPERTENSION),
            ],
            "drug_exposure": [
                drug(6, BETA_BLOCKER_TABLET),
                drug(9, ACE_INHIBITOR),
                drug(11, BETA_BLOCKER_INGREDIENT, on=LATER),
            ],
            "concept_ancestor": VOCABULARY,
        },
        trial_recruitment(AS_OF),
        expected=5,
    ),
    "a window of 30 days counts its first day (2 December) and not the day before": Case(
        {
            "person": [person(i, born=1970) for i in range(1, 5)],
            "condition_occurrence": [
                condition(1, DIABETES, on=date(2025, 12, 2)),
                condition(2, DIABETES, on=date(2025, 12, 1)),
                condition(3, DIABETES, on=AS_OF),
                condition(4, DIABETES, on=LATER),
            ],
        },
        count(has_condition(DIABETES, within_days=30)),
        expected=2,
    ),
    "at least two records: one is not enough, and later ones do not count": Case(
        {
            "person": [person(i, born=1970) for i in range(1, 4)],
            "drug_exposure": [
                drug(1, ACE_INHIBITOR),
                drug(1, ACE_INHIBITOR, on=date(2021, 5, 1)),
                drug(2, ACE_INHIBITOR),
                drug(3, ACE_INHIBITOR),
                drug(3, ACE_INHIBITOR, on=LATER),
            ],
        },
        count(has_drug(ACE_INHIBITOR, at_least=2)),
        expected=1,
    ),
    "two measurements in range within a year, a third out of range is not counted": Case(
        {
            "person": [person(i, born=1970) for i in range(1, 3)],
            "measurement": [
                measurement(1, SYSTOLIC_BP, 150.0, on=date(2025, 3, 1)),
                measurement(1, SYSTOLIC_BP, 160.0, on=date(2025, 9, 1)),
                measurement(2, SYSTOLIC_BP, 150.0, on=date(2025, 3, 1)),
                measurement(2, SYSTOLIC_BP, 120.0, on=date(2025, 9, 1)),
                measurement(2, SYSTOLIC_BP, 170.0, on=date(2024, 3, 1)),
            ],
        },
        count(has_measurement(SYSTOLIC_BP, min_value=140, at_least=2, within_days=365)),
        expected=1,
    ),
    "not having two conditions includes persons with one": Case(
        {
            "person": [person(i, born=1970) for i in range(1, 4)],
            "condition_occurrence": [
                condition(1, DIABETES),
                condition(1, DIABETES, on=date(2021, 1, 1)),
                condition(2, DIABETES),
            ],
        },
        count(~has_condition(DIABETES, at_least=2)),
        expected=2,
    ),
}

cases = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


@cases
def test_engine_count(engine: TestEngine, case: Case) -> None:
    engine.load(case.tables)
    assert engine.count(case.query) == case.expected


@cases
def test_reference_engine_count(case: Case) -> None:
    assert reference_count(case.tables, case.query) == case.expected
