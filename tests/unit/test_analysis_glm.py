"""Federated GLMs (accord.analysis.glm) against statsmodels on the pooled rows.

Precision: coefficients, standard errors, deviance, null deviance, Pearson chi2 and
p-values are compared *relatively* (rtol) to statsmodels. Against statsmodels' default
fit the bar is rtol 1e-6: its standard errors come from the weights one iteration before
its final coefficients (its IRLS stops on an absolute 1e-8 deviance change), which moves
them by up to a few 1e-7. Against statsmodels run to tol=1e-13 the bar is rtol 1e-9.
"""

from __future__ import annotations

import itertools
import json
import warnings
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.analysis.glm import (
    ConvergenceError,
    Family,
    GlmFit,
    GlmPart,
    SeparationError,
    SingularInformationError,
    combine,
    fit,
    fit_partitioned,
    local_part,
    newton_step,
)
from accord.errors import QueryError

FAMILIES: tuple[Family, ...] = ("gaussian", "binomial", "poisson")
SM_FAMILY: dict[str, Any] = {
    "gaussian": sm.families.Gaussian(),
    "binomial": sm.families.Binomial(),
    "poisson": sm.families.Poisson(),
}
SIZES = (37, 90, 151, 222)  # members of different sizes, 500 rows in all
TRUE_BETA = {
    "gaussian": np.array([1.5, 0.8, -0.6, 0.3, 2.0]),
    "binomial": np.array([-0.4, 0.9, -0.5, 0.35]),
    "poisson": np.array([0.6, 0.3, -0.25]),
}


def _members(family: Family, seed: int, sizes: tuple[int, ...] = SIZES) -> list[tuple[Any, Any]]:
    """One (X, y) per member: an intercept plus continuous and binary covariates."""
    rng = np.random.default_rng(seed)
    beta = TRUE_BETA[family]
    blocks = []
    for size in sizes:
        columns = [np.ones(size), rng.normal(size=size), rng.binomial(1, 0.4, size)]
        columns += [rng.normal(2.0, 3.0, size=size)][: len(beta) - 3]
        columns += [rng.uniform(-1, 1, size=size)][: len(beta) - 4]
        X = np.column_stack(columns)
        eta = X @ beta
        if family == "gaussian":
            y = eta + rng.normal(scale=1.3, size=size)
        elif family == "binomial":
            y = (rng.random(size) < 1 / (1 + np.exp(-eta))).astype(float)
        else:
            y = rng.poisson(np.exp(eta)).astype(float)
        blocks.append((X, y))
    return blocks


def _pooled(blocks: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    return np.vstack([X for X, _ in blocks]), np.concatenate([y for _, y in blocks])


def _statsmodels(family: Family, blocks: list[tuple[Any, Any]], **kwargs: Any) -> Any:
    X, y = _pooled(blocks)
    return sm.GLM(y, X, family=SM_FAMILY[family]).fit(**kwargs)


# --- equality with statsmodels -------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [1, 2])
def test_federated_fit_equals_statsmodels_on_pooled_rows(family: Family, seed: int) -> None:
    blocks = _members(family, seed)
    result = fit_partitioned(blocks, family)
    ref = _statsmodels(family, blocks)

    assert result.n == ref.nobs == sum(SIZES)
    assert result.df_resid == ref.df_resid
    np.testing.assert_allclose(result.coefficients, ref.params, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.standard_errors, ref.bse, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.deviance, ref.deviance, rtol=1e-6, atol=0)
    assert result.null_deviance is not None
    np.testing.assert_allclose(result.null_deviance, ref.null_deviance, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.pearson_chi2, ref.pearson_chi2, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.dispersion, ref.scale, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.z, ref.tvalues, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.p_values, ref.pvalues, rtol=1e-5, atol=1e-12)
    ci = ref.conf_int(alpha=0.05)
    np.testing.assert_allclose(result.ci_low, ci[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.ci_high, ci[:, 1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.covariance, ref.cov_params(), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_federated_fit_is_the_exact_maximum(family: Family) -> None:
    # statsmodels pushed to convergence: what is left is rounding, not method.
    blocks = _members(family, 3)
    result = fit_partitioned(blocks, family)
    ref = _statsmodels(family, blocks, tol=1e-13)
    np.testing.assert_allclose(result.coefficients, ref.params, rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.standard_errors, ref.bse, rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.deviance, ref.deviance, rtol=1e-9, atol=0)
    # At the maximum the pooled score is zero.
    final = combine([local_part(X, y, result.coefficients, family) for X, y in blocks])
    assert np.max(np.abs(final.score)) < 1e-8


def test_gaussian_takes_one_newton_step_and_three_rounds() -> None:
    # Round 1 at zero (totals), round 2 at the intercept-only start, round 3 at the answer.
    result = fit_partitioned(_members("gaussian", 4), "gaussian")
    assert (result.iterations, result.rounds) == (1, 3)


def test_design_without_intercept_starts_at_zero_and_still_matches() -> None:
    blocks = [(X[:, 1:], y) for X, y in _members("poisson", 5)]
    result = fit_partitioned(blocks, "poisson")
    ref = _statsmodels("poisson", blocks)
    assert result.null_deviance is None
    np.testing.assert_allclose(result.coefficients, ref.params, rtol=1e-6, atol=0)
    np.testing.assert_allclose(result.standard_errors, ref.bse, rtol=1e-6, atol=0)


def test_large_poisson_counts_do_not_overflow() -> None:
    # Without an intercept the start is zero and a full Newton step overshoots into
    # exp() overflow; step-halving brings it back.
    rng = np.random.default_rng(6)
    x = rng.normal(size=300)
    X = np.column_stack([x + 5.0])
    y = rng.poisson(np.exp(7 + 0.5 * x)).astype(float)
    with np.errstate(over="raise"):
        result = fit_partitioned([(X[:100], y[:100]), (X[100:], y[100:])], "poisson")
    ref = _statsmodels("poisson", [(X, y)])
    np.testing.assert_allclose(result.coefficients, ref.params, rtol=1e-6, atol=0)


# --- splitting the rows does not change the answer -----------------------------------

_SPLIT_DATA = {family: _pooled(_members(family, 7, (60, 60, 80))) for family in FAMILIES}
_SPLIT_FITS = {family: fit_partitioned([_SPLIT_DATA[family]], family) for family in FAMILIES}


@settings(max_examples=40, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(0, 200), max_size=5),
)
def test_any_split_into_members_gives_the_same_fit(
    family: Family, seed: int, cuts: list[int]
) -> None:
    X, y = _SPLIT_DATA[family]
    order = np.random.default_rng(seed).permutation(len(y))
    # 1..6 members, in any order, some possibly with no rows at all.
    bounds = [0, *sorted(cuts), len(y)]
    blocks = [(X[order[a:b]], y[order[a:b]]) for a, b in itertools.pairwise(bounds)]
    split = fit_partitioned(blocks, family)
    whole = _SPLIT_FITS[family]
    np.testing.assert_allclose(split.coefficients, whole.coefficients, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(split.standard_errors, whole.standard_errors, rtol=1e-9)
    np.testing.assert_allclose(split.deviance, whole.deviance, rtol=1e-9)
    assert split.n == whole.n


# --- parts ---------------------------------------------------------------------------


def test_parts_are_sums_and_travel_as_json() -> None:
    (X1, y1), (X2, y2) = _members("binomial", 8, (30, 50))
    beta = np.array([0.1, -0.2, 0.3, 0.05])
    whole = local_part(np.vstack([X1, X2]), np.concatenate([y1, y2]), beta, "binomial")
    parts = [local_part(X1, y1, beta, "binomial"), local_part(X2, y2, beta, "binomial")]
    travelled = [GlmPart.from_json(json.loads(json.dumps(p.to_json()))) for p in parts]
    summed = combine(travelled)
    assert summed.n == whole.n == 80
    np.testing.assert_allclose(summed.score, whole.score, rtol=1e-12)
    np.testing.assert_allclose(summed.information, whole.information, rtol=1e-12)
    np.testing.assert_allclose(summed.deviance, whole.deviance, rtol=1e-12)
    with pytest.raises(ValueError, match="read-only"):
        summed.score[0] = 1.0


def test_part_at_zero_matches_the_textbook_formulas() -> None:
    X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    y = np.array([0.0, 1.0, 1.0])
    part = local_part(X, y, np.zeros(2), "binomial")
    np.testing.assert_allclose(part.score, X.T @ (y - 0.5))
    np.testing.assert_allclose(part.information, 0.25 * X.T @ X)
    np.testing.assert_allclose(part.deviance, 2 * 3 * np.log(2))


def test_empty_member_contributes_nothing() -> None:
    part = local_part(np.zeros((0, 3)), np.zeros(0), np.zeros(3), "poisson")
    assert part.n == 0
    assert not part.score.any()
    assert not part.information.any()


def test_combine_refuses_mismatched_parts() -> None:
    X, y = _members("gaussian", 9, (20,))[0]
    gaussian = local_part(X, y, np.zeros(5), "gaussian")
    with pytest.raises(QueryError, match="family"):
        combine([gaussian, local_part(X, (y > 1).astype(float), np.zeros(5), "binomial")])
    with pytest.raises(QueryError, match="coefficients"):
        combine([gaussian, local_part(X[:, :3], y, np.zeros(3), "gaussian")])
    with pytest.raises(QueryError, match="no member answered"):
        combine([])
    with pytest.raises(QueryError, match="expected keys"):
        GlmPart.from_json({"family": "gaussian"})


# --- results -------------------------------------------------------------------------


def test_table_and_json_carry_names_and_estimates() -> None:
    names = ["const", "age", "smoker", "bmi", "dose"]
    result = fit_partitioned(_members("gaussian", 10), "gaussian", names=names)
    rows = result.table()
    assert [row.name for row in rows] == names
    assert rows[1].estimate == result.coefficients[1]
    assert rows[1].ci_low < rows[1].estimate < rows[1].ci_high
    assert result.table(["a", "b", "c", "d", "e"])[0].name == "a"
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["family"] == "gaussian"
    assert [c["name"] for c in data["coefficients"]] == names
    assert data["coefficients"][2]["se"] == pytest.approx(result.standard_errors[2])
    with pytest.raises(QueryError, match="names"):
        fit_partitioned(_members("gaussian", 10), "gaussian", names=["const"])


def test_perfect_gaussian_fit_serialises_without_nan() -> None:
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    result = fit_partitioned([(X, 2 + 3 * X[:, 1])], "gaussian")
    np.testing.assert_allclose(result.coefficients, [2, 3], atol=1e-12)
    json.dumps(result.to_json(), allow_nan=False)


def test_fit_drives_any_parts_provider() -> None:
    blocks = _members("poisson", 11)
    asked: list[Any] = []

    def parts_for(beta: Any) -> list[GlmPart]:
        asked.append(beta)
        return [local_part(X, y, beta, "poisson") for X, y in blocks]

    result = fit(parts_for, 3, "poisson")
    assert isinstance(result, GlmFit)
    assert len(asked) == result.rounds
    assert not asked[0].any()  # the first round is at zero
    assert not asked[-1].flags.writeable  # members cannot change the hub's beta


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_duplicated_column_is_a_clear_error(family: Family) -> None:
    blocks = [(np.column_stack([X, X[:, 1]]), y) for X, y in _members(family, 12)]
    p = blocks[0][0].shape[1]
    names = [f"c{i}" for i in range(p)]
    with pytest.raises(SingularInformationError, match=r"columns c1, c\d are collinear"):
        fit_partitioned(blocks, family, names=names)


def test_newton_step_refuses_singular_and_indefinite_information() -> None:
    X = np.column_stack([np.ones(5), np.arange(5.0), 2 * np.arange(5.0)])
    part = local_part(X, np.arange(5.0), np.zeros(3), "gaussian")
    with pytest.raises(SingularInformationError, match="singular"):
        newton_step(np.zeros(3), part)
    zero_column = local_part(
        np.column_stack([np.ones(4), np.zeros(4)]), np.ones(4), np.zeros(2), "gaussian"
    )
    with pytest.raises(SingularInformationError, match="x1 carry no information"):
        newton_step(np.zeros(2), zero_column)
    indefinite = GlmPart.from_json(
        {**part.to_json(), "information": [[1, 2, 0], [2, 1, 0], [0, 0, 1]]}
    )
    with pytest.raises(SingularInformationError, match="not positive definite"):
        newton_step(np.zeros(3), indefinite)


def test_complete_separation_is_detected() -> None:
    rng = np.random.default_rng(13)
    x = rng.normal(size=200)
    X = np.column_stack([np.ones(200), x, rng.normal(size=200)])
    y = (x > 0.1).astype(float)
    with pytest.raises(SeparationError, match=r"perfect separation.*x1"):
        fit_partitioned([(X[:80], y[:80]), (X[80:], y[80:])], "binomial")


def test_quasi_separation_names_the_separating_covariate() -> None:
    rng = np.random.default_rng(14)
    group = rng.binomial(1, 0.3, 200).astype(float)
    y = np.where(group == 1, 1.0, rng.binomial(1, 0.4, 200))
    X = np.column_stack([np.ones(200), group, rng.normal(size=200)])
    with pytest.raises(SeparationError, match=r"coefficients group diverge"):
        fit_partitioned([(X, y)], "binomial", names=["const", "group", "age"])


def test_poisson_group_without_events_is_detected() -> None:
    rng = np.random.default_rng(15)
    group = rng.binomial(1, 0.3, 200).astype(float)
    y = np.where(group == 1, 0.0, rng.poisson(3.0, 200))
    X = np.column_stack([np.ones(200), group])
    with pytest.raises(SeparationError, match="group run to -infinity"):
        fit_partitioned([(X[:70], y[:70]), (X[70:], y[70:])], "poisson", names=["c", "group"])


@pytest.mark.parametrize(
    ("family", "value"), [("binomial", 0.0), ("binomial", 1.0), ("poisson", 0.0)]
)
def test_constant_outcome_at_a_bound_is_refused(family: Family, value: float) -> None:
    X = np.column_stack([np.ones(20), np.arange(20.0)])
    with pytest.raises(SeparationError, match="every row"):
        fit_partitioned([(X, np.full(20, value))], family)


@pytest.mark.parametrize("rows", [3, 4])
def test_more_parameters_than_rows_is_refused(rows: int) -> None:
    # p = 4 needs at least 5 rows in total, wherever they are.
    blocks = _members("gaussian", 16, (rows,))
    blocks = [(X[:, :4], y) for X, y in blocks]
    with pytest.raises(QueryError, match="more parameters than the data allow"):
        fit_partitioned(blocks, "gaussian")


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_too_few_iterations_is_an_error_not_an_answer(family: Family) -> None:
    with pytest.raises(ConvergenceError, match="did not converge after 1 iteration"):
        fit_partitioned(_members(family, 17), family, max_iter=1)


@pytest.mark.parametrize(
    ("family", "y", "message"),
    [
        ("binomial", [0, 1, 2, 1, 0, 1], "binomial outcome must be 0 or 1: 1 rows"),
        ("binomial", [0, 1, 0.5, 1, 0, 1], "binomial outcome must be 0 or 1"),
        ("poisson", [0, 1, -1, 2, 0, 3], "poisson outcome must be a whole number >= 0"),
        ("poisson", [0, 1, 1.5, 2, 0, 3], r"whole number >= 0: 1 rows are not \(first at row 2\)"),
        ("gaussian", [0, 1, np.nan, 2, 0, 3], "y has 1 missing or infinite values"),
    ],
)
def test_wrong_outcome_for_family_is_refused(family: Family, y: list[float], message: str) -> None:
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    with pytest.raises(QueryError, match=message):
        local_part(X, np.array(y, dtype=float), np.zeros(2), family)


def test_shape_and_family_errors() -> None:
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    y = np.arange(6.0)
    with pytest.raises(QueryError, match="X has 6 rows but y has 5"):
        local_part(X, y[:5], np.zeros(2), "gaussian")
    with pytest.raises(QueryError, match="beta has 3 values"):
        local_part(X, y, np.zeros(3), "gaussian")
    with pytest.raises(QueryError, match="must be a matrix"):
        local_part(y, y, np.zeros(2), "gaussian")
    with pytest.raises(QueryError, match="unknown GLM family 'gamma'"):
        local_part(X, y, np.zeros(2), "gamma")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="max_iter"):
        fit_partitioned([(X, y)], "gaussian", max_iter=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(QueryError, match="X has 1 missing"):
            local_part(np.where(X == 3, np.inf, X), y, np.zeros(2), "gaussian")
