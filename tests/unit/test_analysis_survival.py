"""Kaplan-Meier on a global grid: members' counts add up to the pooled curve lifelines gives."""

from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from numpy.typing import NDArray

import accord.analysis.survival as survival_module
from accord.analysis.survival import Grid, KmCounts, KmCurve, combine, km, local_counts
from accord.errors import DataError, QueryError


def lifelines_curve(
    durations: NDArray[Any], events: NDArray[Any], times: tuple[float, ...], alpha: float = 0.05
) -> dict[str, NDArray[np.float64]]:
    """lifelines' survival, Greenwood variance and CI at ``times`` (step function)."""
    kmf = KaplanMeierFitter(alpha=alpha).fit(durations, events)
    at = list(times)
    s = kmf.survival_function_.reindex(at, method="ffill").to_numpy()[:, 0]
    sq = kmf._cumulative_sq_.reindex(at, method="ffill").to_numpy()
    ci = kmf.confidence_interval_.reindex(at, method="ffill").to_numpy()
    return {"survival": s, "variance": s**2 * sq, "low": ci[:, 0], "high": ci[:, 1]}


def assert_matches(curve: KmCurve, expected: dict[str, NDArray[np.float64]]) -> None:
    np.testing.assert_allclose(curve.survival, expected["survival"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve.variance, expected["variance"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve.ci_low, expected["low"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(curve.ci_high, expected["high"], rtol=0, atol=1e-9)


def rounded_up(
    durations: NDArray[Any], events: NDArray[Any], grid: Grid
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The documented convention spelled out row by row: up to the next edge, end-censored."""
    edges = np.asarray(grid.edges)
    out_t = np.empty(len(durations))
    out_e = np.empty(len(durations), dtype=np.int64)
    for i, (t, e) in enumerate(zip(durations, events, strict=True)):
        if t > grid.end:
            out_t[i], out_e[i] = grid.end, 0
        else:
            out_t[i], out_e[i] = edges[edges >= t][0], e
    return out_t, out_e


def cohort(rng: np.random.Generator, n: int, horizon: int) -> tuple[NDArray[Any], NDArray[Any]]:
    event_times = rng.exponential(horizon / 2, n)
    censor_times = rng.uniform(0, horizon, n)
    durations = np.ceil(np.minimum(event_times, censor_times))
    events = (event_times <= censor_times).astype(np.int64)
    return durations, events


def test_docstring_examples() -> None:
    assert doctest.testmod(survival_module).failed == 0


def test_integer_days_on_a_step_one_grid_equal_lifelines_on_pooled_rows() -> None:
    rng = np.random.default_rng(7)
    members = [cohort(rng, n, 365) for n in (120, 300, 45, 80)]
    grid = Grid.regular(stop=365, step=1)
    curve = km(combine(local_counts(t, e, grid) for t, e in members))
    pooled_t = np.concatenate([t for t, _ in members])
    pooled_e = np.concatenate([e for _, e in members])
    assert curve.at_risk[0] == len(pooled_t)
    assert sum(curve.events) == int(pooled_e.sum())
    assert_matches(curve, lifelines_curve(pooled_t, pooled_e, curve.times))


def test_alpha_is_passed_through_like_lifelines() -> None:
    rng = np.random.default_rng(8)
    t, e = cohort(rng, 200, 100)
    grid = Grid.regular(stop=100, step=1)
    curve = km(local_counts(t, e, grid), alpha=0.1)
    assert_matches(curve, lifelines_curve(t, e, curve.times, alpha=0.1))


def test_coarse_grid_is_km_of_durations_rounded_up_to_the_grid() -> None:
    rng = np.random.default_rng(11)
    members = [(rng.uniform(0, 400, n), rng.integers(0, 2, n)) for n in (90, 150, 60)]
    grid = Grid.regular(stop=360, step=30)  # rows beyond 360 are censored at 360
    curve = km(combine(local_counts(t, e, grid) for t, e in members))
    pooled_t = np.concatenate([t for t, _ in members])
    pooled_e = np.concatenate([e for _, e in members])
    assert (pooled_t > grid.end).any()
    rt, re = rounded_up(pooled_t, pooled_e, grid)
    assert_matches(curve, lifelines_curve(rt, re, curve.times))


def test_grid_with_every_observed_time_equals_lifelines_on_raw_non_integer_times() -> None:
    rng = np.random.default_rng(12)
    t = np.round(rng.uniform(0.1, 50, 150), 3)
    e = rng.integers(0, 2, 150)
    grid = Grid((0.0, *sorted(set(t.tolist()))))
    curve = km(local_counts(t, e, grid))
    assert_matches(curve, lifelines_curve(t, e, curve.times))


def test_events_at_time_zero_stay_at_time_zero() -> None:
    t = np.array([0, 0, 1, 2, 2, 3])
    e = np.array([1, 0, 1, 1, 0, 1])
    grid = Grid.regular(stop=3, step=1)
    curve = km(local_counts(t, e, grid))
    assert curve.survival[0] == pytest.approx(5 / 6)
    assert_matches(curve, lifelines_curve(t, e, curve.times))


def test_everyone_dies_gives_zero_survival_and_a_zero_interval() -> None:
    t = np.array([1, 2, 2, 3])
    e = np.array([1, 1, 1, 1])
    grid = Grid.regular(stop=4, step=1)
    curve = km(local_counts(t, e, grid))
    assert curve.survival == (1.0, 0.75, 0.25, 0.0, 0.0)
    assert curve.at_risk[-1] == 0
    assert_matches(curve, lifelines_curve(t, e, curve.times))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 40), st.booleans(), st.integers(0, 4)), min_size=1, max_size=80
    ),
    step=st.sampled_from([1, 3, 10]),
)
def test_any_split_across_members_gives_the_pooled_curve(
    rows: list[tuple[int, bool, int]], step: int
) -> None:
    grid = Grid.regular(stop=30, step=step)
    t = np.array([r[0] for r in rows], dtype=np.float64)
    e = np.array([int(r[1]) for r in rows])
    member = np.array([r[2] for r in rows])
    parts = [local_counts(t[member == m], e[member == m], grid) for m in range(5)]
    combined = combine(parts)
    assert combined == local_counts(t, e, grid)
    assert combine(reversed(parts)) == combined
    curve = km(combined)
    rt, re = rounded_up(t, e, grid)
    assert_matches(curve, lifelines_curve(rt, re, curve.times))


def test_plain_interval_is_symmetric_and_clipped() -> None:
    rng = np.random.default_rng(3)
    t, e = cohort(rng, 60, 50)
    curve = km(local_counts(t, e, Grid.regular(stop=50, step=5)), ci="plain")
    z = 1.959963984540054
    for s, v, lo, hi in zip(
        curve.survival, curve.variance, curve.ci_low, curve.ci_high, strict=True
    ):
        assert lo == pytest.approx(max(0.0, s - z * math.sqrt(v)), abs=1e-12)
        assert hi == pytest.approx(min(1.0, s + z * math.sqrt(v)), abs=1e-12)


def test_counts_follow_the_documented_convention() -> None:
    grid = Grid((0, 30, 60))
    counts = local_counts([0, 10, 30, 31, 60, 61, 90], [1, 1, 0, 1, 1, 1, 0], grid)
    assert counts.events == (1, 1, 2)  # 0 | 10 | 31, 60 (61 is beyond the grid)
    assert counts.censored == (0, 1, 2)  # 30 | 61, 90 censored at the end
    assert counts.at_risk == (7, 6, 4)


def test_empty_member_and_booleans_are_accepted() -> None:
    grid = Grid.regular(stop=10, step=5)
    empty = local_counts([], [], grid)
    assert empty.at_risk == (0, 0, 0)
    flagged = local_counts(np.array([1.5, 7.0]), np.array([True, False]), grid)
    assert combine([empty, flagged]) == flagged


def test_json_round_trips_and_inconsistent_counts_are_refused() -> None:
    grid = Grid.regular(stop=90, step=30)
    counts = local_counts([5, 40, 70, 100], [1, 0, 1, 1], grid)
    assert KmCounts.from_json(counts.to_json()) == counts
    assert Grid.from_json(grid.to_json()) == grid
    tampered = counts.to_json()
    tampered["events"][1] += 1
    with pytest.raises(DataError, match=r"at_risk\[1\]"):
        KmCounts.from_json(tampered)
    with pytest.raises(DataError, match="fields"):
        KmCounts.from_json({**counts.to_json(), "rows": [1]})
    with pytest.raises(DataError, match=r"events\[0\]"):
        KmCounts.from_json({**counts.to_json(), "events": [-1, 0, 0, 0]})
    curve = km(counts).to_json()
    assert curve["times"] == [0.0, 30.0, 60.0, 90.0]
    assert set(curve) >= {"survival", "variance", "ci_low", "ci_high", "at_risk", "events"}


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        ((0,), r"at least two"),
        ((1, 2), r"edges\[0\]: expected 0"),
        ((0, 5, 5), r"edges\[2\]: expected more than"),
        ((0, 5, 3), r"edges\[2\]"),
        ((0, math.inf), r"edges\[1\]: expected a finite"),
        ((0, math.nan), r"edges\[1\]: expected a finite"),
        ((0, True), r"edges\[1\]"),
        ((0, "30"), r"edges\[1\]"),
    ],
)
def test_bad_grids_are_refused(edges: tuple[Any, ...], match: str) -> None:
    with pytest.raises(QueryError, match=match):
        Grid(edges)


def test_bad_grid_steps_are_refused() -> None:
    with pytest.raises(QueryError, match="step"):
        Grid.regular(stop=10, step=0)
    with pytest.raises(QueryError, match="at most"):
        Grid.regular(stop=1e9, step=1)


@pytest.mark.parametrize(
    ("durations", "events", "match"),
    [
        ([1, -2, 3], [1, 0, 1], r"durations\[1\]: expected a finite time >= 0"),
        ([1, math.nan], [1, 0], r"durations\[1\]"),
        ([1, math.inf], [1, 0], r"durations\[1\]"),
        ([1, 2], [1, 2], r"events\[1\]: expected 0 or 1"),
        ([1, 2], [0.5, 1], r"events\[0\]"),
        ([1, 2], [1], r"events: expected one flag per duration"),
        (["1", "2"], [1, 0], r"durations: expected numbers"),
        ([[1, 2]], [[1, 0]], r"one-dimensional"),
    ],
)
def test_bad_rows_are_refused(durations: Any, events: Any, match: str) -> None:
    with pytest.raises(DataError, match=match):
        local_counts(durations, events, Grid.regular(stop=10, step=1))


def test_combining_different_grids_or_nothing_is_refused() -> None:
    a = local_counts([1], [1], Grid.regular(stop=10, step=1))
    b = local_counts([1], [1], Grid.regular(stop=10, step=2))
    with pytest.raises(DataError, match=r"counts\[1\].grid"):
        combine([a, b])
    with pytest.raises(DataError, match="at least one"):
        combine([])


def test_bad_alpha_or_interval_kind_is_refused() -> None:
    counts = local_counts([1], [1], Grid.regular(stop=2, step=1))
    with pytest.raises(QueryError, match="alpha"):
        km(counts, alpha=1.5)
    with pytest.raises(QueryError, match="ci"):
        km(counts, ci="linear")  # type: ignore[arg-type]
