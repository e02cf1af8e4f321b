"""Scenario 6: a federated logistic regression equals the pooled fit, and no member's rows
leave it; a member whose design would reveal a small group refuses the step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
import statsmodels.api as sm

from accord.client import Client
from accord.errors import HubError
from accord.query import Cohort, GlmStep
from accord.query.builders import age, age_between, cohort, glm, has_condition, indicator, sex_is
from accord.query.run import run_design
from accord.query.scenarios import TREATMENT_RESPONSE_COVARIATES, treatment_response
from accord.trust.keys import load_identity
from accord.vocab.concepts import FEMALE, HBA1C, HYPERTENSION, METFORMIN, TYPE_2_DIABETES
from consortium import Running, start_consortium

# The design written by hand, independently of the query compiler: one row per person
# with type 2 diabetes and an HbA1c result by the date; outcome HbA1c <= 7%.
DESIGN_SQL = """
WITH t2d AS (
  SELECT descendant_concept_id AS id FROM concept_ancestor WHERE ancestor_concept_id = $t2d
  UNION SELECT $t2d),
metformin AS (
  SELECT descendant_concept_id AS id FROM concept_ancestor WHERE ancestor_concept_id = $met
  UNION SELECT $met),
htn AS (
  SELECT descendant_concept_id AS id FROM concept_ancestor WHERE ancestor_concept_id = $htn
  UNION SELECT $htn),
a1c AS (
  SELECT person_id, value_as_number FROM measurement
  WHERE measurement_date <= $as_of AND (measurement_concept_id = $a1c
    OR measurement_concept_id IN (SELECT descendant_concept_id FROM concept_ancestor
                                  WHERE ancestor_concept_id = $a1c)))
SELECT
  CASE WHEN EXISTS (SELECT 1 FROM a1c WHERE a1c.person_id = p.person_id
                    AND a1c.value_as_number <= 7.0) THEN 1 ELSE 0 END,
  CASE WHEN EXISTS (SELECT 1 FROM drug_exposure d WHERE d.person_id = p.person_id
                    AND d.drug_exposure_start_date <= $as_of
                    AND d.drug_concept_id IN (SELECT id FROM metformin)) THEN 1 ELSE 0 END,
  year($as_of) - p.year_of_birth,
  CASE WHEN p.gender_concept_id = $female THEN 1 ELSE 0 END,
  CASE WHEN EXISTS (SELECT 1 FROM condition_occurrence c WHERE c.person_id = p.person_id
                    AND c.condition_start_date <= $as_of
                    AND c.condition_concept_id IN (SELECT id FROM htn)) THEN 1 ELSE 0 END
FROM person p
WHERE EXISTS (SELECT 1 FROM condition_occurrence c WHERE c.person_id = p.person_id
              AND c.condition_start_date <= $as_of
              AND c.condition_concept_id IN (SELECT id FROM t2d))
  AND EXISTS (SELECT 1 FROM a1c WHERE a1c.person_id = p.person_id)
"""


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    # Enough persons that every group of the model's binary variables passes the
    # members' small-cell rule.
    yield from start_consortium(tmp_path_factory.mktemp("glm"), persons=4000)


def pooled_design(running: Running) -> tuple[np.ndarray, np.ndarray]:
    rows: list[tuple[float, ...]] = []
    for member in running.manifest.members:
        path = node_database(running, member.id)
        with duckdb.connect(str(path), read_only=True) as con:
            rows += con.execute(
                DESIGN_SQL,
                {
                    "t2d": TYPE_2_DIABETES,
                    "met": METFORMIN,
                    "htn": HYPERTENSION,
                    "a1c": HBA1C,
                    "female": FEMALE,
                    "as_of": running.as_of,
                },
            ).fetchall()
    values = np.asarray(rows, dtype=np.float64)
    return sm.add_constant(values[:, 1:], prepend=True), values[:, 0]


def node_database(running: Running, member: str) -> Path:
    entry = next(m for m in running.manifest.members if m.id == member)
    return running.layout.members / entry.db_file


def test_the_federated_regression_equals_the_pooled_fit(large: Running) -> None:
    identity = load_identity(large.layout.researcher_key)
    with Client(large.consortium.url, identity) as client:
        fitted = client.fit_glm(
            treatment_response(large.as_of), names=["intercept", *TREATMENT_RESPONSE_COVARIATES]
        )
    design, outcome = pooled_design(large)
    pooled = sm.GLM(outcome, design, family=sm.families.Binomial()).fit(tol=1e-13)
    assert fitted.n == len(outcome)
    np.testing.assert_allclose(fitted.coefficients, pooled.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.standard_errors, pooled.bse, rtol=1e-8)
    assert fitted.deviance == pytest.approx(pooled.deviance, rel=1e-10)
    # The generator lowers HbA1c on metformin: the model finds the treatment response.
    metformin = fitted.table()[1]
    assert metformin.name == "metformin"
    assert metformin.estimate > 0
    assert metformin.p < 0.05


def test_a_step_over_too_few_persons_is_refused(large: Running) -> None:
    # Persons with type 2 diabetes aged 45 to 47: a handful at some member.
    narrow = cohort(has_condition(TYPE_2_DIABETES), age_between(45, 47), as_of=large.as_of)
    sizes = []
    for member in large.manifest.members:
        with duckdb.connect(str(node_database(large, member.id)), read_only=True) as con:
            sizes.append(run_design(con, glm_of(narrow), "duckdb")[0].shape[0])
    assert any(0 < n < 10 + 3 for n in sizes), sizes  # what this test relies on
    identity = load_identity(large.layout.researcher_key)
    with (
        Client(large.consortium.url, identity) as client,
        pytest.raises(HubError, match="the model step was refused") as caught,
    ):
        client.fit_glm(glm_of(narrow))
    assert "fewer than 10 residual degrees of freedom" in caught.value.message


def glm_of(of: Cohort) -> GlmStep:
    return glm(
        of,
        outcome=indicator(has_condition(HYPERTENSION)),
        covariates=[age(), indicator(sex_is(FEMALE))],
        family="binomial",
    )
