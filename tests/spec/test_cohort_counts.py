"""What a cohort count means, written once and checked on every engine: criteria read at
the cohort's ``as_of`` date (cases with an entry event are in test_entry_counts.py)."""

from __future__ import annotations

from datetime import date

from cohort_cases import (
    ACE_INHIBITOR,
    ALWAYS,
    AS_OF,
    BETA_BLOCKER_INGREDIENT,
    BETA_BLOCKER_TABLET,
    CIGARETTES_PER_DAY,
    COLONOSCOPY,
    DIABETES,
    HYPERTENSION_CHILD,
    HYPERTENSION_GRANDCHILD,
    INPATIENT,
    KILOPASCAL,
    LATER,
    MM_HG,
    OUTPATIENT,
    PER_DAY,
    SMOKER,
    SYSTOLIC_BP,
    VOCABULARY,
    Case,
    check_cases,
    count,
    day,
    persons,
)

from accord.query import (
    age_between,
    concepts,
    has_condition,
    has_drug,
    has_measurement,
    sex_is,
)
from accord.query.builders import (
    all_of,
    any_of,
    at_least_of,
    has_observation,
    has_procedure,
    has_visit,
    in_observation,
)
from accord.query.scenarios import trial_recruitment
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from cdm_testing import (
    FEMALE,
    condition,
    drug,
    measurement,
    observation,
    observation_period,
    person,
    procedure,
    visit,
)

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
    # Windows, relative to as_of when there is no entry
    "a window from day -30 to day -10 counts both edges and nothing outside them": Case(
        {
            "person": persons(1, 2, 3, 4, 5),
            "condition_occurrence": [
                condition(1, DIABETES, on=day(-31)),
                condition(2, DIABETES, on=day(-30)),
                condition(3, DIABETES, on=day(-10)),
                condition(4, DIABETES, on=day(-9)),
                condition(5, DIABETES, on=day(0)),
            ],
        },
        count(has_condition(DIABETES, days=(-30, -10))),
        expected=2,
    ),
    "a window open at its start counts every day up to its end": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [
                condition(1, DIABETES, on=day(-100)),
                condition(2, DIABETES, on=day(-99)),
                condition(3, DIABETES, on=date(1990, 1, 1)),
            ],
        },
        count(has_condition(DIABETES, days=(None, -100))),
        expected=2,
    ),
    "a window open at its end counts up to as_of and nothing after it": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [
                condition(1, DIABETES, on=day(-10)),
                condition(2, DIABETES, on=day(0)),
                condition(3, DIABETES, on=day(5)),
                condition(4, DIABETES, on=day(-11)),
            ],
        },
        count(has_condition(DIABETES, days=(-10, None))),
        expected=2,
    ),
    "without an entry a window after as_of finds nothing: later records never count": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [
                condition(1, DIABETES, on=day(1)),
                condition(2, DIABETES, on=day(30)),
                condition(3, DIABETES, on=day(0)),
            ],
        },
        count(has_condition(DIABETES, days=(1, 30))),
        expected=0,
    ),
    # Counts
    "at least two and at most two is exactly two, later records aside": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [
                condition(1, DIABETES),
                *[condition(2, DIABETES, on=date(2020, m, 1)) for m in (1, 2)],
                *[condition(3, DIABETES, on=date(2020, m, 1)) for m in (1, 2, 3)],
                condition(4, DIABETES),
                condition(4, DIABETES, on=LATER),
            ],
        },
        count(has_condition(DIABETES, at_least=2, at_most=2)),
        expected=1,
    ),
    "max_count 0 means no record in the window; records outside it do not matter": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [
                condition(2, DIABETES, on=day(-100)),
                condition(3, DIABETES, on=day(-400)),
                condition(4, DIABETES, on=day(10)),
            ],
        },
        count(has_condition(DIABETES, at_least=0, at_most=0, within_days=365)),
        expected=3,
    ),
    "at most one (from 0) takes persons with none or one": Case(
        {
            "person": persons(1, 2, 3),
            "drug_exposure": [
                drug(2, ACE_INHIBITOR),
                drug(3, ACE_INHIBITOR),
                drug(3, ACE_INHIBITOR, on=date(2021, 1, 1)),
            ],
        },
        count(has_drug(ACE_INHIBITOR, at_least=0, at_most=1)),
        expected=2,
    ),
    "records are counted, not days: two on one day are two": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(1, DIABETES),
                condition(1, DIABETES),
                condition(2, DIABETES),
            ],
        },
        count(has_condition(DIABETES, at_least=2)),
        expected=1,
    ),
    # Procedures, visits, observations and units
    "a procedure is looked for among procedures, not conditions": Case(
        {
            "person": persons(1, 2, 3),
            "procedure_occurrence": [
                procedure(1, COLONOSCOPY),
                procedure(3, COLONOSCOPY, on=LATER),
            ],
            "condition_occurrence": [condition(2, COLONOSCOPY)],
        },
        count(has_procedure(COLONOSCOPY)),
        expected=1,
    ),
    "two inpatient visits in the last year; the day before the year does not count": Case(
        {
            "person": persons(1, 2, 3),
            "visit_occurrence": [
                visit(1, INPATIENT, on=day(-364)),
                visit(1, INPATIENT, on=day(0)),
                visit(2, INPATIENT, on=day(-365)),
                visit(2, INPATIENT, on=day(-10)),
                visit(3, OUTPATIENT, on=day(-20)),
                visit(3, OUTPATIENT, on=day(-10)),
            ],
        },
        count(has_visit(INPATIENT, at_least=2, within_days=365)),
        expected=1,
    ),
    "observation bounds are inclusive and need a value, in one of the units given": Case(
        {
            "person": persons(1, 2, 3, 4, 5),
            "observation": [
                observation(1, CIGARETTES_PER_DAY, 10, unit=PER_DAY),
                observation(2, CIGARETTES_PER_DAY, 9.5, unit=PER_DAY),
                observation(3, CIGARETTES_PER_DAY, 20),
                observation(4, CIGARETTES_PER_DAY, None, unit=PER_DAY),
            ],
            "measurement": [measurement(5, CIGARETTES_PER_DAY, 20, unit=PER_DAY)],
        },
        count(has_observation(CIGARETTES_PER_DAY, min_value=10, units=[PER_DAY])),
        expected=1,
    ),
    "an observation without bounds counts whatever its value": Case(
        {"person": persons(1, 2), "observation": [observation(1, SMOKER)]},
        count(has_observation(SMOKER)),
        expected=1,
    ),
    "a measurement in any of the units given; one without a unit does not match": Case(
        {
            "person": persons(1, 2, 3, 4),
            "measurement": [
                measurement(1, SYSTOLIC_BP, 120, unit=MM_HG),
                measurement(2, SYSTOLIC_BP, 16, unit=KILOPASCAL),
                measurement(3, SYSTOLIC_BP, 120),
                measurement(4, SYSTOLIC_BP, 120, unit=PER_DAY),
            ],
        },
        count(has_measurement(SYSTOLIC_BP, units=[MM_HG, KILOPASCAL])),
        expected=2,
    ),
    "a measurement with no units asked for matches any unit or none": Case(
        {
            "person": persons(1, 2, 3),
            "measurement": [
                measurement(1, SYSTOLIC_BP, 120, unit=MM_HG),
                measurement(2, SYSTOLIC_BP, 120),
                measurement(3, SYSTOLIC_BP, 120, unit=PER_DAY),
            ],
        },
        count(has_measurement(SYSTOLIC_BP)),
        expected=3,
    ),
    # Observation periods
    "observed at as_of with 365 days before it: a period starting that day is enough": Case(
        {
            "person": persons(1, 2, 3, 4, 5),
            "observation_period": [
                observation_period(1, day(-365), day(10)),
                observation_period(2, day(-364), day(10)),
                observation_period(3, day(-1000), day(-1)),
                observation_period(5, day(-1000), day(-400)),
                observation_period(5, day(-100), day(100)),
            ],
        },
        count(in_observation(prior_days=365)),
        expected=1,
    ),
    "observed at least 30 days after as_of: a period ending that day is enough": Case(
        {
            "person": persons(1, 2, 3),
            "observation_period": [
                observation_period(1, *ALWAYS),
                observation_period(2, day(-10), day(30)),
                observation_period(3, day(-10), day(29)),
            ],
        },
        count(in_observation(post_days=30)),
        expected=2,
    ),
    "in observation: as_of lies in a period, its first and last days included": Case(
        {
            "person": persons(1, 2, 3, 4),
            "observation_period": [
                observation_period(1, day(0), day(0)),
                observation_period(2, day(-10), day(0)),
                observation_period(3, day(1), day(10)),
            ],
        },
        count(in_observation()),
        expected=2,
    ),
    # Combinations
    "any of: one is enough": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [condition(1, DIABETES), condition(3, DIABETES)],
            "drug_exposure": [drug(2, ACE_INHIBITOR), drug(3, ACE_INHIBITOR)],
        },
        count(any_of(has_condition(DIABETES), has_drug(ACE_INHIBITOR))),
        expected=3,
    ),
    "all of: every one is needed": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [condition(1, DIABETES), condition(3, DIABETES)],
            "drug_exposure": [drug(2, ACE_INHIBITOR), drug(3, ACE_INHIBITOR)],
        },
        count(all_of(has_condition(DIABETES), has_drug(ACE_INHIBITOR))),
        expected=1,
    ),
    "all of nothing is everyone": Case(
        {"person": persons(1, 2, 3)},
        count(all_of()),
        expected=3,
    ),
    "at least two of three": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [condition(i, DIABETES) for i in (2, 3, 4)],
            "drug_exposure": [drug(i, ACE_INHIBITOR) for i in (3, 4)],
            "procedure_occurrence": [procedure(4, COLONOSCOPY)],
        },
        count(
            at_least_of(
                2, has_condition(DIABETES), has_drug(ACE_INHIBITOR), has_procedure(COLONOSCOPY)
            )
        ),
        expected=2,
    ),
    "at least one of two negations: everyone but those with both": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [condition(1, DIABETES), condition(2, DIABETES)],
            "drug_exposure": [drug(1, ACE_INHIBITOR)],
        },
        count(at_least_of(1, ~has_condition(DIABETES), ~has_drug(ACE_INHIBITOR))),
        expected=2,
    ),
}

test_engine_count, test_reference_engine_count = check_cases(CASES)
