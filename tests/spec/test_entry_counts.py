"""What a cohort count means when each person enters at their first entry event, written
once and checked on every engine: windows, ages and observation read at that index date."""

from __future__ import annotations

from datetime import date

from cohort_cases import (
    ACE_INHIBITOR,
    ALWAYS,
    COLONOSCOPY,
    DIABETES,
    DISCHARGE,
    DISCHARGED,
    HOSPITAL_DISCHARGE,
    LATER,
    SYSTOLIC_BP,
    Case,
    after,
    check_cases,
    count,
    day,
    observed,
    persons,
)

from accord.query import (
    age_between,
    has_condition,
    has_drug,
    has_measurement,
)
from accord.query.builders import (
    entry,
    has_procedure,
    in_observation,
)
from cdm_testing import (
    condition,
    drug,
    measurement,
    observation_period,
    person,
    procedure,
)

CASES = {
    # Entry: each person's index date is their first entry event
    "with an entry only persons with an entry event on or before as_of are counted": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [
                condition(1, HOSPITAL_DISCHARGE, on=DISCHARGED),
                condition(3, HOSPITAL_DISCHARGE, on=LATER),
            ],
            "observation_period": observed(1, 2, 3),
        },
        count(entering=DISCHARGE),
        expected=1,
    ),
    "the first entry event is the index date": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=on)
                for i in (1, 2)
                for on in (DISCHARGED, after(100))
            ],
            "drug_exposure": [
                drug(1, ACE_INHIBITOR, on=DISCHARGED),
                drug(2, ACE_INHIBITOR, on=after(100)),
            ],
            "observation_period": observed(1, 2),
        },
        count(has_drug(ACE_INHIBITOR, days=(0, 0)), entering=DISCHARGE),
        expected=1,
    ),
    "the index date is the first event of any of the entry's kinds": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2)
            ],
            "procedure_occurrence": [procedure(i, COLONOSCOPY, on=after(-10)) for i in (1, 2)],
            "drug_exposure": [
                drug(1, ACE_INHIBITOR, on=after(-10)),
                drug(2, ACE_INHIBITOR, on=DISCHARGED),
            ],
            "observation_period": observed(1, 2),
        },
        count(
            has_drug(ACE_INHIBITOR, days=(0, 0)),
            entering=entry(has_condition(HOSPITAL_DISCHARGE), has_procedure(COLONOSCOPY)),
        ),
        expected=1,
    ),
    "an entry event outside every observation period is passed over for a later one": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [
                condition(1, HOSPITAL_DISCHARGE, on=date(2024, 1, 1)),
                condition(1, HOSPITAL_DISCHARGE, on=DISCHARGED),
                condition(2, HOSPITAL_DISCHARGE, on=date(2024, 1, 1)),
                condition(3, HOSPITAL_DISCHARGE, on=DISCHARGED),
            ],
            "drug_exposure": [drug(i, ACE_INHIBITOR, on=DISCHARGED) for i in (1, 2, 3)],
            "observation_period": [
                observation_period(1, date(2025, 1, 1), ALWAYS[1]),
                observation_period(2, date(2025, 1, 1), ALWAYS[1]),
            ],
        },
        count(has_drug(ACE_INHIBITOR, days=(0, 0)), entering=DISCHARGE),
        expected=1,
    ),
    "an entry event after as_of is passed over, even in an observation period": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(1, HOSPITAL_DISCHARGE, on=LATER),
                condition(2, HOSPITAL_DISCHARGE, on=LATER),
                condition(2, HOSPITAL_DISCHARGE, on=DISCHARGED),
            ],
            "drug_exposure": [drug(2, ACE_INHIBITOR, on=DISCHARGED)],
            "observation_period": observed(1, 2),
        },
        count(has_drug(ACE_INHIBITOR, days=(0, 0)), entering=DISCHARGE),
        expected=1,
    ),
    "prior_days: a period starting 365 days before the entry event is enough, 364 not": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2)
            ],
            "observation_period": [
                observation_period(1, after(-365), ALWAYS[1]),
                observation_period(2, after(-364), ALWAYS[1]),
            ],
        },
        count(entering=entry(has_condition(HOSPITAL_DISCHARGE), prior_days=365)),
        expected=1,
    ),
    "post_days: a period ending 365 days after the entry event is enough, past as_of too": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2)
            ],
            "observation_period": [
                observation_period(1, ALWAYS[0], after(365)),
                observation_period(2, ALWAYS[0], after(364)),
            ],
        },
        count(entering=entry(has_condition(HOSPITAL_DISCHARGE), post_days=365)),
        expected=1,
    ),
    "entry on a measurement in range: none out of range or without a value": Case(
        {
            "person": persons(1, 2, 3),
            "measurement": [
                measurement(1, SYSTOLIC_BP, 150, on=DISCHARGED),
                measurement(2, SYSTOLIC_BP, 130, on=DISCHARGED),
                measurement(3, SYSTOLIC_BP, None, on=DISCHARGED),
            ],
            "observation_period": observed(1, 2, 3),
        },
        count(entering=entry(has_measurement(SYSTOLIC_BP, min_value=140))),
        expected=1,
    ),
    "age is taken at the index date, not at as_of": Case(
        {
            # 50 when discharged in 2010 (65 at as_of); 35 then (50 at as_of).
            "person": [person(1, born=1960), person(2, born=1975)],
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=date(2010, 6, 1)) for i in (1, 2)
            ],
            "observation_period": observed(1, 2),
        },
        count(age_between(45, 55), entering=DISCHARGE),
        expected=1,
    ),
    "a window before the index date counts from it: the month before the discharge": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2, 3)
            ],
            "drug_exposure": [
                drug(1, ACE_INHIBITOR, on=after(-30)),
                drug(2, ACE_INHIBITOR, on=after(0)),
                drug(3, ACE_INHIBITOR, on=after(-31)),
            ],
            "observation_period": observed(1, 2, 3),
        },
        count(has_drug(ACE_INHIBITOR, days=(-30, -1)), entering=DISCHARGE),
        expected=1,
    ),
    "a window after the index date, days 1 to 30: the index date itself is not in it": Case(
        {
            "person": persons(1, 2, 3, 4),
            "condition_occurrence": [
                *[condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2, 3, 4)],
                condition(1, DIABETES, on=after(1)),
                condition(2, DIABETES, on=after(0)),
                condition(3, DIABETES, on=after(30)),
                condition(4, DIABETES, on=after(31)),
            ],
            "observation_period": observed(1, 2, 3, 4),
        },
        count(has_condition(DIABETES, days=(1, 30)), entering=DISCHARGE),
        expected=2,
    ),
    "records after as_of never count, even inside a window after the index date": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                *[condition(i, HOSPITAL_DISCHARGE, on=day(-10)) for i in (1, 2)],
                condition(1, DIABETES, on=day(5)),
                condition(2, DIABETES, on=day(-5)),
            ],
            "observation_period": observed(1, 2),
        },
        count(has_condition(DIABETES, days=(1, 30)), entering=DISCHARGE),
        expected=1,
    ),
    "no diabetes in the year after entry (max_count 0); diabetes before it does not matter": Case(
        {
            "person": persons(1, 2, 3),
            "condition_occurrence": [
                *[condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2, 3)],
                condition(1, DIABETES, on=after(-10)),
                condition(2, DIABETES, on=after(10)),
            ],
            "observation_period": observed(1, 2, 3),
        },
        count(has_condition(DIABETES, at_least=0, at_most=0, days=(1, 365)), entering=DISCHARGE),
        expected=2,
    ),
    "observed 100 days after the index date, not after as_of": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [
                condition(i, HOSPITAL_DISCHARGE, on=DISCHARGED) for i in (1, 2)
            ],
            "observation_period": [
                observation_period(1, date(2025, 1, 1), after(100)),
                observation_period(2, date(2025, 1, 1), after(99)),
            ],
        },
        count(in_observation(post_days=100), entering=DISCHARGE),
        expected=1,
    ),
    "a person who never entered is not counted, whatever a negation says": Case(
        {
            "person": persons(1, 2),
            "condition_occurrence": [condition(2, HOSPITAL_DISCHARGE, on=DISCHARGED)],
            "observation_period": observed(1, 2),
        },
        count(~has_condition(DIABETES), entering=DISCHARGE),
        expected=1,
    ),
}

test_engine_count, test_reference_engine_count = check_cases(CASES)
