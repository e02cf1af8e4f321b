"""The consortium's seed scenarios as queries, shared by the demo, the CLI and the tests."""

from __future__ import annotations

from datetime import date

from accord.query.builders import (
    age,
    age_between,
    cohort,
    count_persons,
    entry,
    glm,
    has_condition,
    has_drug,
    has_measurement,
    indicator,
    kaplan_meier,
    sex_is,
)
from accord.query.model import CountPersons, GlmStep, KaplanMeier
from accord.vocab.concepts import (
    BETA_BLOCKERS,
    BIGUANIDES,
    FEMALE,
    HBA1C,
    HYPERTENSION,
    METFORMIN,
    TYPE_2_DIABETES,
)

TREATMENT_RESPONSE_COVARIATES = ("metformin", "age", "female", "hypertension")


def trial_recruitment(as_of: date) -> CountPersons:
    """Scenario 1: persons aged 45–75 at ``as_of`` with hypertension, never on a beta blocker.

    Hypertension is the SNOMED concept with its descendants, which is where the CDM puts
    ICD-10 I10 and its ICD-9 equivalents; beta blockers are ATC C07 with every drug under it.
    """
    return count_persons(
        cohort(
            age_between(45, 75),
            has_condition(HYPERTENSION),
            ~has_drug(BETA_BLOCKERS),
            as_of=as_of,
        )
    )


def treatment_response(as_of: date) -> GlmStep:
    """Scenario 6: a logistic regression of treatment response in type 2 diabetes.

    Among persons with type 2 diabetes and an HbA1c result by ``as_of``: the odds of an
    HbA1c at or below 7% (glycaemic control) by exposure to metformin, adjusted for age,
    sex and hypertension. Coefficients come in the order of
    ``TREATMENT_RESPONSE_COVARIATES``, after the intercept.
    """
    return glm(
        cohort(has_condition(TYPE_2_DIABETES), has_measurement(HBA1C), as_of=as_of),
        outcome=indicator(has_measurement(HBA1C, max_value=7.0)),
        covariates=[
            indicator(has_drug(METFORMIN)),
            age(),
            indicator(sex_is(FEMALE)),
            indicator(has_condition(HYPERTENSION)),
        ],
        family="binomial",
    )


def time_to_treatment(as_of: date) -> KaplanMeier:
    """Survival from each person's first type 2 diabetes diagnosis (inside an observation
    period) to their first biguanide (metformin's class), over two years in quarters."""
    return kaplan_meier(
        cohort(as_of=as_of, entry=entry(has_condition(TYPE_2_DIABETES))),
        has_drug(BIGUANIDES),
        horizon_days=720,
        step_days=90,
    )
