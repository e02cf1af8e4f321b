"""What a model's design means, written once and checked on every engine: one row per
person of the cohort, the outcome then the covariates, worked out by hand."""

from __future__ import annotations

from datetime import date

import numpy as np

from accord.query import age, cohort, glm, has_condition, has_drug, has_measurement, indicator
from accord.query import sex_is as sex
from accord.query.run import run_design
from cdm_testing import FEMALE, TestEngine, condition, drug, measurement, person

AS_OF = date(2025, 12, 31)
LATER = date(2026, 6, 1)
DIABETES, METFORMIN, HBA1C, HYPERTENSION = 900_010, 900_020, 900_040, 900_050

MODEL = glm(
    cohort(has_condition(DIABETES), as_of=AS_OF),
    outcome=indicator(has_measurement(HBA1C, max_value=7.0)),
    covariates=[indicator(has_drug(METFORMIN)), age(), indicator(sex(FEMALE))],
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
