"""What a model's design means, written once and checked on every engine: one row per
person of the cohort whose every value is known, the outcome then the covariates, worked
out by hand."""

from __future__ import annotations

from datetime import date

import numpy as np

from accord.query import (
    age,
    cohort,
    glm,
    has_condition,
    has_drug,
    has_measurement,
    indicator,
    sex_is,
)
from accord.query.builders import age_group, entry, measurement_value, sex
from accord.query.run import run_design
from cdm_testing import (
    FEMALE,
    MALE,
    TestEngine,
    condition,
    drug,
    measurement,
    observation_period,
    person,
)

AS_OF = date(2025, 12, 31)
LATER = date(2026, 6, 1)
DIABETES, METFORMIN, HBA1C, HYPERTENSION = 900_010, 900_020, 900_040, 900_050

MODEL = glm(
    cohort(has_condition(DIABETES), as_of=AS_OF),
    outcome=indicator(has_measurement(HBA1C, max_value=7.0)),
    covariates=[indicator(has_drug(METFORMIN)), age(), indicator(sex_is(FEMALE))],
    family="binomial",
)


def test_each_person_of_the_cohort_is_one_row_of_outcome_and_covariates(
    engine: TestEngine,
) -> None:
    engine.load(
        {
            "person": [
                person(1, born=1960),
                person(2, born=1970, sex=FEMALE),
                person(3, born=1980),
                person(4, born=1990),  # no diabetes: not in the cohort
            ],
            "condition_occurrence": [
                condition(1, DIABETES),
                condition(2, DIABETES),
                condition(3, DIABETES),
                condition(4, HYPERTENSION),
            ],
            "drug_exposure": [drug(1, METFORMIN), drug(3, METFORMIN, on=LATER)],
            "measurement": [
                measurement(1, HBA1C, value=6.5),
                measurement(2, HBA1C, value=8.1),
                measurement(3, HBA1C, value=7.0),  # at the bound: controlled
            ],
        }
    )
    design, outcome = run_design(engine.connection, MODEL, engine.dialect, schema=engine.schema)
    rows = sorted(zip(outcome.tolist(), design.tolist(), strict=True), key=lambda r: r[1][2])
    # Sorted by age: persons 3, 2 and 1. Person 3's metformin comes after the date.
    assert rows == [
        (1.0, [1.0, 0.0, 45.0, 0.0]),
        (0.0, [1.0, 0.0, 55.0, 1.0]),
        (1.0, [1.0, 1.0, 65.0, 0.0]),
    ]
    assert design.dtype == np.float64


def test_an_empty_cohort_has_an_empty_design(engine: TestEngine) -> None:
    engine.load({"person": [person(1, born=1960)]})
    design, outcome = run_design(engine.connection, MODEL, engine.dialect, schema=engine.schema)
    assert design.shape == (0, 4)
    assert outcome.shape == (0,)


def test_a_person_with_an_unknown_value_is_left_out_of_the_design(engine: TestEngine) -> None:
    model = glm(
        cohort(has_condition(DIABETES), as_of=AS_OF),
        outcome=measurement_value(HBA1C, summary="mean"),
        covariates=[age_group(10), sex()],
        family="gaussian",
    )
    engine.load(
        {
            "person": [
                person(1, born=1960),
                person(2, born=1971, sex=FEMALE),
                person(3, born=1980),  # no HbA1c with a value: left out
            ],
            "condition_occurrence": [condition(i, DIABETES) for i in (1, 2, 3)],
            "measurement": [
                measurement(1, HBA1C, value=6.5),
                measurement(1, HBA1C, value=7.5, on=date(2021, 1, 1)),
                measurement(2, HBA1C, value=8.0),
                measurement(2, HBA1C, value=5.0, on=LATER),  # after as_of
                measurement(3, HBA1C, value=None),
            ],
        }
    )
    design, outcome = run_design(engine.connection, model, engine.dialect, schema=engine.schema)
    rows = sorted(zip(outcome.tolist(), design.tolist(), strict=True))
    assert rows == [(7.0, [1.0, 60.0, float(MALE)]), (8.0, [1.0, 50.0, float(FEMALE)])]


def test_with_an_entry_ages_and_indicators_are_read_at_each_index_date(
    engine: TestEngine,
) -> None:
    model = glm(
        cohort(
            as_of=AS_OF,
            entry=entry(has_condition(DIABETES)),
        ),
        outcome=indicator(has_drug(METFORMIN, days=(0, 90))),
        covariates=[age()],
        family="binomial",
    )
    engine.load(
        {
            "person": [person(1, born=1960), person(2, born=1960), person(3, born=1960)],
            "condition_occurrence": [
                condition(1, DIABETES, on=date(2010, 3, 1)),
                condition(1, DIABETES, on=date(2020, 3, 1)),
                condition(2, DIABETES, on=date(2020, 3, 1)),
            ],
            # Person 1's metformin follows the second diagnosis, not the first (the index).
            "drug_exposure": [
                drug(1, METFORMIN, on=date(2020, 4, 1)),
                drug(2, METFORMIN, on=date(2020, 4, 1)),
            ],
            "observation_period": [
                observation_period(i, date(2000, 1, 1), date(2030, 12, 31)) for i in (1, 2, 3)
            ],
        }
    )
    design, outcome = run_design(engine.connection, model, engine.dialect, schema=engine.schema)
    rows = sorted(zip(outcome.tolist(), design.tolist(), strict=True))
    assert rows == [(0.0, [1.0, 50.0]), (1.0, [1.0, 60.0])]
