"""A model step travels as JSON, is validated on arrival, and what a member releases of it
passes its small-cell rules; the hub takes only a well-formed part."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from accord.analysis.glm import local_part
from accord.hub.aggregation import accept_result
from accord.privacy.disclosure import SmallCellProfile
from accord.privacy.models import model_refusal
from accord.query import QueryValidationError, query_from_json
from accord.query.scenarios import treatment_response

AS_OF = date(2025, 12, 31)


def test_a_step_round_trips_through_json_and_moves_its_coefficients() -> None:
    step = treatment_response(AS_OF)
    assert query_from_json(step.to_json()) == step
    moved = step.with_beta([0.5, -1, 0, 2, 0.25])
    assert moved.beta == (0.5, -1.0, 0.0, 2.0, 0.25)
    assert query_from_json(moved.to_json()) == moved


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"beta": [0.0, 0.0]}, "beta: expected 5 coefficients"),
        ({"family": "gamma"}, "family: expected one of gaussian, binomial, poisson"),
        ({"beta": [0, 0, "x", 0, 0]}, "beta[2]: expected a finite number"),
        ({"outcome": {"type": "height"}}, "outcome"),
        ({"covariates": [{"type": "age"}] * 21}, "covariates: at most 20 allowed"),
    ],
)
def test_a_bad_step_names_every_problem(change: dict[str, Any], message: str) -> None:
    document = {**treatment_response(AS_OF).to_json(), **change}
    with pytest.raises(QueryValidationError) as caught:
        query_from_json(document)
    assert message in str(caught.value)


def design(n: int, rare: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    flag = np.zeros(n)
    flag[:rare] = 1
    x = np.column_stack([np.ones(n), rng.normal(60, 10, n), flag])
    y = (rng.random(n) < 0.4).astype(float)
    return x, y


def test_a_rare_binary_covariate_or_too_few_persons_is_refused() -> None:
    profile = SmallCellProfile()
    assert model_refusal(profile, *design(200, rare=50), "binomial") is None
    reason = model_refusal(profile, *design(200, rare=4), "binomial")
    assert reason is not None
    assert "fewer than 10 persons" in reason
    few = model_refusal(profile, *design(12, rare=0), "gaussian")
    assert few is not None
    assert "degrees of freedom" in few
    empty = np.empty((0, 3))
    assert model_refusal(profile, empty, np.empty(0), "binomial") is None


def result(part: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "analysis": "glm_step",
        "part": part,
        "profile": SmallCellProfile().to_json(),
        **extra,
    }


def test_the_hub_takes_a_well_formed_part_only() -> None:
    x, y = design(200, rare=50)
    part = local_part(x, y, np.zeros(3), "binomial").to_json()
    model = {"type": "glm_step", "beta": [0.0, 0.0, 0.0]}
    assert accept_result(model, result(part))["part"] == part
    with pytest.raises(ValueError, match="exactly the fields"):
        accept_result(model, result(part, rows=[[1, 2]]))
    with pytest.raises(ValueError, match="fewer persons"):
        accept_result(model, result({**part, "n": 5}))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        accept_result(model, result({**part, "score": [1.0]}))
    with pytest.raises(ValueError, match="the model has 2"):
        accept_result({**model, "beta": [0.0, 0.0]}, result(part))
