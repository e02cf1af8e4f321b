"""Descriptive statistics across members (accord.analysis.moments, .histograms, .cells)
against numpy and pandas on the pooled rows: moments, histograms, quantile estimates and
counts by category."""

from __future__ import annotations

import doctest
import itertools
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

import accord.analysis.cells as cells_module
import accord.analysis.histograms as histograms_module
import accord.analysis.moments as moments_module
from accord.analysis.cells import CellCounts, combine_cells, local_cells
from accord.analysis.histograms import (
    MAX_BINS,
    HistogramPart,
    Quantile,
    Summary,
    check_edges,
    combine_histograms,
    local_histogram,
    quantiles,
    regular_edges,
    summarise,
)
from accord.analysis.moments import (
    MAX_VARIABLES,
    Moments,
    combine_moments,
    correlation,
    covariance,
    local_moments,
    mean,
    std,
)
from accord.errors import QueryError


def test_docstring_examples() -> None:
    for module in (moments_module, histograms_module, cells_module):
        assert doctest.testmod(module).failed == 0, module.__name__


@st.composite
def members(draw: st.DrawFn, rows: int) -> list[slice]:
    """1 to 6 members holding consecutive rows; some may hold none."""
    count = draw(st.integers(1, 6))
    cuts = sorted(draw(st.lists(st.integers(0, rows), min_size=count - 1, max_size=count - 1)))
    return [slice(a, b) for a, b in itertools.pairwise([0, *cuts, rows])]


def round_trip(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


# --- moments -------------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)


@st.composite
def pooled_and_split(draw: st.DrawFn) -> tuple[NDArray[np.float64], list[slice]]:
    k = draw(st.integers(1, 4))
    n = draw(st.integers(2, 40))
    x = draw(hnp.arrays(np.float64, (n, k), elements=finite))
    return x, draw(members(n))


@settings(max_examples=150, deadline=None)
@given(data=pooled_and_split(), shifted=st.booleans())
def test_split_moments_equal_numpy_on_the_pooled_rows(
    data: tuple[NDArray[np.float64], list[slice]], shifted: bool
) -> None:
    x, parts = data
    n, k = x.shape
    shift = np.round(x[0]) if shifted else None
    total = combine_moments([local_moments(x[part], shift) for part in parts])
    scale = max(1.0, float(np.max(np.abs(x))))
    assert total.n == n
    np.testing.assert_allclose(mean(total), x.mean(axis=0), rtol=1e-12, atol=1e-12 * scale)
    expected_cov = np.cov(x, rowvar=False).reshape(k, k)
    np.testing.assert_allclose(covariance(total), expected_cov, rtol=1e-9, atol=1e-13 * scale**2)
    np.testing.assert_allclose(
        std(total) ** 2, x.var(axis=0, ddof=1), rtol=1e-9, atol=1e-13 * scale**2
    )
    spread = x.std(axis=0)
    if np.any(np.ptp(x, axis=0) == 0):
        constant = int(np.flatnonzero(np.ptp(x, axis=0) == 0)[0])
        with pytest.raises(QueryError, match=f"no correlation with .*column {constant}"):
            correlation(total)
    elif np.all(spread > 1e-3 * scale):
        expected = np.corrcoef(x, rowvar=False).reshape(k, k)
        np.testing.assert_allclose(correlation(total), expected, rtol=0, atol=1e-8)


@settings(max_examples=50, deadline=None)
@given(data=pooled_and_split())
def test_combining_is_exact_addition_in_any_order(
    data: tuple[NDArray[np.float64], list[slice]],
) -> None:
    x, parts = data
    pieces = [local_moments(x[part]) for part in parts]
    assert combine_moments(pieces) == combine_moments(pieces[::-1])
    assert combine_moments([combine_moments(pieces)]) == combine_moments(pieces)


def test_constant_variable_has_zero_sd_and_a_named_correlation_error() -> None:
    x = np.column_stack([np.arange(10.0), np.full(10, 0.1), np.full(10, 7.3)])
    total = combine_moments([local_moments(x[:3]), local_moments(x[3:])])
    assert std(total)[1:].tolist() == [0.0, 0.0]
    assert covariance(total)[0, 1:].tolist() == [0.0, 0.0]
    with pytest.raises(QueryError, match="no correlation with bmi, visits: they have the same"):
        correlation(total, names=["age", "bmi", "visits"])
    with pytest.raises(QueryError, match="no correlation with column 1, column 2"):
        correlation(total)


def test_a_shift_near_the_mean_keeps_full_precision() -> None:
    # Dates as days since 1970: mean about 19 000, sd about 10.
    rng = np.random.default_rng(3)
    x = np.round(19_000 + rng.normal(0, 10, size=(20_000, 2)), 3)
    blocks = np.array_split(x, 5)
    expected = np.cov(x, rowvar=False)
    shifted = combine_moments([local_moments(b, shift=[19_000, 19_000]) for b in blocks])
    plain = combine_moments([local_moments(b) for b in blocks])
    np.testing.assert_allclose(covariance(shifted), expected, rtol=1e-13)
    exact_mean = [math.fsum(column) / len(column) for column in x.T]
    np.testing.assert_allclose(mean(shifted), exact_mean, rtol=2e-16)
    # Without a shift about (mean / sd)**2 = 4e6 of the 1e16 cancel: still 8 digits.
    np.testing.assert_allclose(covariance(plain), expected, rtol=0, atol=1e-8 * 100)


def test_spread_lost_to_rounding_reads_as_constant_and_a_shift_recovers_it() -> None:
    x = 1e9 + np.array([[0.0], [0.001], [0.002], [0.003]])
    assert std(local_moments(x)).tolist() == [0.0]
    with pytest.raises(QueryError, match="give the moments a shift near their mean"):
        correlation(local_moments(np.column_stack([x, x])))
    np.testing.assert_allclose(std(local_moments(x, shift=[1e9])), x.std(ddof=1), rtol=1e-6)


def test_an_empty_member_adds_nothing() -> None:
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    empty = local_moments(np.empty((0, 2)))
    assert empty == Moments(0, (0.0, 0.0), ((0.0, 0.0), (0.0, 0.0)))
    assert combine_moments([empty, local_moments(x)]) == local_moments(x)


def test_too_few_rows_for_derived_statistics() -> None:
    one = local_moments(np.array([[4.0]]))
    assert mean(one).tolist() == [4.0]
    with pytest.raises(QueryError, match="the mean needs at least 1 row"):
        mean(local_moments(np.empty((0, 1))))
    with pytest.raises(QueryError, match="a covariance needs at least 2 rows, got 1"):
        covariance(one)
    with pytest.raises(QueryError, match="a covariance needs at least 2 rows, got 1"):
        std(one)
    with pytest.raises(QueryError, match="a correlation needs at least 2 rows, got 1"):
        correlation(one)
    with pytest.raises(QueryError, match="2 names given for 1 variables"):
        correlation(one, names=["a", "b"])


def test_derived_arrays_are_read_only() -> None:
    total = local_moments(np.array([[1.0, 2.0], [2.0, 1.0], [4.0, 4.0]]))
    for array in (mean(total), covariance(total), std(total), correlation(total)):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1.0, 2.0], [np.nan, 3.0], [4.0, np.nan]], "2 rows with missing or infinite values"),
        ([[1.0], [np.inf]], r"1 rows with missing or infinite values \(first at row 1\)"),
        ([1.0, 2.0], "X must be a matrix"),
        ([["a"], ["b"]], "X must be numeric"),
        (np.empty((3, 0)), "X must have 1 to 50 columns, got 0"),
        ([[1e200], [1e200]], "too large for their sums of squares"),
    ],
)
def test_local_moments_refuses_bad_rows(rows: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        local_moments(rows)


def test_missing_value_errors_name_the_row_not_the_value() -> None:
    with pytest.raises(QueryError) as caught:
        local_moments([[123.456, 1.0], [789.25, np.nan]])
    assert "123.456" not in str(caught.value)
    assert "789.25" not in str(caught.value)
    assert "first at row 1" in str(caught.value)


def test_shift_must_match_the_columns() -> None:
    with pytest.raises(QueryError, match="shift has 1 values but X has 2 columns"):
        local_moments([[1.0, 2.0]], shift=[0.0])
    with pytest.raises(QueryError, match="shift must be a list of finite numbers"):
        local_moments([[1.0, 2.0]], shift=[0.0, np.nan])


@settings(max_examples=50, deadline=None)
@given(data=pooled_and_split(), shifted=st.booleans())
def test_moments_json_round_trip(
    data: tuple[NDArray[np.float64], list[slice]], shifted: bool
) -> None:
    x, _ = data
    part = local_moments(x, np.round(x[0]) if shifted else None)
    assert Moments.from_json(round_trip(part.to_json())) == part


GOOD = {"n": 3, "shift": [0.0, 0.0], "sums": [1.0, 2.0], "cross": [[1.0, 0.5], [0.5, 4.0]]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": -1}, "n: expected a whole number >= 0, got -1"),
        ({"n": True}, "n: expected a whole number >= 0, got bool"),
        ({"n": 2.0}, "n: expected a whole number >= 0, got float"),
        ({"sums": [1.0]}, r"shift has 2 values for 1 variables"),
        ({"sums": [1.0, float("nan")]}, r"sums\[1\]: expected a finite number, got nan"),
        ({"sums": [1.0, "2"]}, r"sums\[1\]: expected a finite number, got str"),
        ({"sums": [], "shift": [], "cross": []}, "expected 1 to 50 variables, got 0"),
        ({"shift": [0.0, float("inf")]}, r"shift\[1\]: expected a finite number, got inf"),
        ({"shift": []}, "shift has 0 values for 2 variables"),
        ({"cross": [[1.0, 0.5]]}, "cross must be a 2 x 2 matrix"),
        ({"cross": [[1.0, 0.5], [0.5]]}, r"cross\[1\] has 1 values, expected 2"),
        ({"cross": [[1.0, 0.5], [0.25, 4.0]]}, "cross is not symmetric"),
        ({"cross": [[1.0, 0.5], [0.5, -4.0]]}, r"cross\[1\]\[1\] cannot be a sum of squares"),
        ({"sums": [1.0, 4.0]}, r"cross\[1\]\[1\] cannot be a sum of squares of 3 rows"),
        ({"n": 0}, "n is 0 but the sums are not all 0"),
        ({"cross": "no"}, "cross must be a list"),
    ],
)
def test_moments_from_json_rejects(change: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Moments.from_json({**GOOD, **change})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "moments: expected an object, got list"),
        ({k: v for k, v in GOOD.items() if k != "shift"}, r"\(missing shift\)"),
        ({**GOOD, "rows": [[1, 2]]}, r"\(unknown rows\)"),
    ],
)
def test_moments_from_json_wants_exactly_its_fields(data: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Moments.from_json(data)


def test_too_many_variables() -> None:
    k = MAX_VARIABLES + 1
    with pytest.raises(QueryError, match=f"expected 1 to {MAX_VARIABLES} variables, got {k}"):
        Moments(0, (0.0,) * k, ((0.0,) * k,) * k)


def test_combine_moments_refuses_mismatched_parts() -> None:
    a = local_moments([[1.0, 2.0]])
    with pytest.raises(QueryError, match="no moments parts to combine"):
        combine_moments([])
    with pytest.raises(QueryError, match="moments part 1 has 1 variables, not 2"):
        combine_moments([a, local_moments([[1.0]])])
    with pytest.raises(QueryError, match="moments part 1 was taken around a different shift"):
        combine_moments([a, local_moments([[1.0, 2.0]], shift=[1.0, 0.0])])
    with pytest.raises(QueryError, match="moments part 1 is a dict, not a Moments"):
        combine_moments([a, a.to_json()])  # type: ignore[list-item]


# --- histograms ----------------------------------------------------------------------

edge_lists = st.one_of(
    st.builds(regular_edges, st.integers(-20, 0), st.integers(1, 60), st.integers(1, 30)),
    st.lists(
        st.floats(-40, 90, allow_nan=False, allow_subnormal=False),
        min_size=2,
        max_size=12,
        unique=True,
    ).map(lambda edges: tuple(sorted(edges))),
)


@st.composite
def histogram_data(draw: st.DrawFn) -> tuple[tuple[float, ...], NDArray[np.float64], list[slice]]:
    edges = draw(edge_lists)
    value = st.one_of(
        st.floats(-60, 110, allow_nan=False, allow_subnormal=False),
        st.sampled_from(edges),  # exactly on an edge, the first and last included
        st.sampled_from([math.nan, math.inf, -math.inf]),
    )
    values = np.array(draw(st.lists(value, max_size=80)), dtype=np.float64)
    return edges, values, draw(members(len(values)))


@settings(max_examples=200, deadline=None)
@given(data=histogram_data())
def test_split_histograms_equal_numpy_on_the_pooled_values(
    data: tuple[tuple[float, ...], NDArray[np.float64], list[slice]],
) -> None:
    edges, values, parts = data
    total = combine_histograms([local_histogram(values[part], edges) for part in parts])
    present = values[~np.isnan(values)]
    expected, _ = np.histogram(present[np.isfinite(present)], bins=np.asarray(edges))
    assert total.counts == tuple(expected.tolist())
    assert total.below == int(np.sum(present < edges[0]))
    assert total.above == int(np.sum(present > edges[-1]))
    assert total.missing == int(np.sum(np.isnan(values)))
    assert total.total + total.missing == len(values)
    assert HistogramPart.from_json(round_trip(total.to_json())) == total


def test_bins_are_closed_on_the_left_and_the_last_on_both_sides() -> None:
    hist = local_histogram([0.0, 1.0, 1.9999, 2.0, 3.0, 3.0000001, -0.0001], (0, 1, 2, 3))
    assert (hist.below, hist.counts, hist.above) == (1, (1, 2, 2), 1)


def test_missing_values_may_be_none_or_nan() -> None:
    hist = local_histogram([1.0, None, float("nan"), 2], [0, 5])
    assert (hist.counts, hist.missing) == ((2,), 2)
    assert local_histogram([], [0, 5]) == HistogramPart((0.0, 5.0), (0,))


@st.composite
def inside_values(draw: st.DrawFn) -> tuple[tuple[float, ...], NDArray[np.float64]]:
    edges = draw(edge_lists)
    value = st.one_of(
        st.floats(edges[0], edges[-1], allow_nan=False, allow_subnormal=False),
        st.sampled_from(edges),
    )
    return edges, np.array(draw(st.lists(value, min_size=1, max_size=80)))


@settings(max_examples=200, deadline=None)
@given(data=inside_values(), probs=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_quantile_estimates_are_within_one_bin_of_numpy(
    data: tuple[tuple[float, ...], NDArray[np.float64]], probs: list[float]
) -> None:
    edges, values = data
    estimates = quantiles(local_histogram(values, edges), probs)
    widest = float(np.max(np.diff(edges)))
    assert [q.p for q in estimates] == probs
    for estimate, expected in zip(estimates, np.quantile(values, probs), strict=True):
        assert estimate.value is not None
        assert estimate.outside is None
        assert abs(estimate.value - expected) <= widest * (1 + 1e-9) + 1e-9
        assert edges[0] <= estimate.value <= edges[-1]


def test_quantiles_that_need_a_value_outside_the_edges_are_unknown() -> None:
    hist = HistogramPart((0.0, 10.0), (4,), below=2, above=2)  # 8 values in all
    found = {q.p: (q.value, q.outside) for q in quantiles(hist, [0.0, 0.2, 0.3, 0.5, 0.8, 1.0])}
    assert found[0.0] == (None, "below")
    assert found[0.2] == (None, "below")  # position 1.4: between the 2nd and 3rd values
    assert found[0.3][0] == pytest.approx(1.25 + 0.1 * 2.5)  # position 2.1
    assert found[0.3][1] is None
    assert found[0.5] == (5.0, None)
    assert found[0.8] == (None, "above")
    assert found[1.0] == (None, "above")


def test_quantiles_of_no_values_and_bad_probabilities() -> None:
    empty = HistogramPart((0.0, 1.0), (0,), missing=3)
    with pytest.raises(QueryError, match="the histogram holds no values"):
        quantiles(empty, [0.5])
    hist = HistogramPart((0.0, 1.0), (3,))
    with pytest.raises(QueryError, match=r"probs\[1\]: expected a probability from 0 to 1"):
        quantiles(hist, [0.5, 1.5])
    with pytest.raises(QueryError, match=r"probs\[0\]: expected a finite number, got nan"):
        quantiles(hist, [math.nan])
    with pytest.raises(QueryError, match="probs: expected a list of at least one"):
        quantiles(hist, [])


def test_regular_edges() -> None:
    assert regular_edges(-1, 1, 4) == (-1.0, -0.5, 0.0, 0.5, 1.0)
    assert regular_edges(0.1, 0.7, 3)[-1] == 0.7
    assert len(regular_edges(-1e308, 1e308, MAX_BINS)) == MAX_BINS + 1
    with pytest.raises(QueryError, match="bins: expected a whole number from 1 to 200"):
        regular_edges(0, 1, MAX_BINS + 1)
    with pytest.raises(QueryError, match="bins: expected a whole number"):
        regular_edges(0, 1, True)
    with pytest.raises(QueryError, match="high: expected more than low"):
        regular_edges(1, 1, 3)
    with pytest.raises(QueryError, match="low: expected a finite number, got nan"):
        regular_edges(math.nan, 1, 3)
    with pytest.raises(QueryError, match="strictly increase"):
        regular_edges(0, 5e-324, 2)


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([1.0], "expected a list of at least two numbers"),
        ("0,1", "expected a list of at least two numbers"),
        ([0, 2, 1], r"edges\[2\]: expected more than the previous edge 2.0, got 1.0"),
        ([0, 1, 1], r"edges\[2\].*\(edges must strictly increase\)"),
        ([0, math.inf], r"edges\[1\]: expected a finite number, got inf"),
        ([0, None], r"edges\[1\]: expected a finite number, got NoneType"),
        ([0, True], r"edges\[1\]: expected a finite number, got bool"),
        (list(range(MAX_BINS + 2)), "expected at most 200 bins, got 201"),
    ],
)
def test_bad_edges(edges: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        check_edges(edges)


GOOD_HIST = {"edges": [0.0, 1.0, 2.0], "counts": [3, 0], "below": 1, "above": 0, "missing": 2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**GOOD_HIST, "counts": [3]}, "expected 2 counts, one per bin"),
        ({**GOOD_HIST, "counts": [3, -1]}, r"counts\[1\]: expected a whole number >= 0, got -1"),
        (
            {**GOOD_HIST, "counts": [3, 1.0]},
            r"counts\[1\]: expected a whole number >= 0, got float",
        ),
        ({**GOOD_HIST, "missing": None}, "missing: expected a whole number >= 0, got NoneType"),
        ({**GOOD_HIST, "below": False}, "below: expected a whole number >= 0, got bool"),
        ({**GOOD_HIST, "edges": [0.0, 2.0, 1.0]}, "edges must strictly increase"),
        ({**GOOD_HIST, "edges": (0.0, 1.0, 2.0)}, "edges must be a list"),
        ({**GOOD_HIST, "rows": []}, r"\(unknown rows\)"),
        ({k: v for k, v in GOOD_HIST.items() if k != "above"}, r"\(missing above\)"),
    ],
)
def test_histogram_from_json_rejects(data: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        HistogramPart.from_json(data)


def test_combine_histograms_refuses_other_edges() -> None:
    a = local_histogram([1.0], (0, 1, 2))
    with pytest.raises(QueryError, match=r"histogram part 1 has edge 2 at 3\.0, not 2\.0"):
        combine_histograms([a, local_histogram([1.0], (0, 1, 3))])
    with pytest.raises(QueryError, match="histogram part 1 has 2 edges, not the 3 of the others"):
        combine_histograms([a, local_histogram([1.0], (0, 2))])
    with pytest.raises(QueryError, match="no histogram parts to combine"):
        combine_histograms([])


def test_local_histogram_wants_numbers() -> None:
    with pytest.raises(QueryError, match="values must be numbers, with None or NaN"):
        local_histogram(["a", "b"], (0, 1))
    with pytest.raises(QueryError, match="values must be a flat list"):
        local_histogram([[1.0]], (0, 1))


# --- summaries -----------------------------------------------------------------------


def test_summary_of_split_rows_matches_pooled_figures() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(50, 12, 3_000).clip(0, 120)
    values[::97] = np.nan
    edges = regular_edges(0, 120, 60)
    blocks = np.array_split(values, 4)
    moments = combine_moments(
        [local_moments(b[~np.isnan(b)][:, None], shift=[60.0]) for b in blocks]
    )
    hist = combine_histograms([local_histogram(b, edges) for b in blocks])
    summary = summarise(moments, hist, probs=(0.1, 0.5, 0.9))
    present = values[~np.isnan(values)]
    assert summary.n == present.size
    assert summary.missing == int(np.isnan(values).sum())
    assert summary.mean == pytest.approx(present.mean(), rel=1e-13)
    assert summary.sd == pytest.approx(present.std(ddof=1), rel=1e-12)
    assert summary.min_bin is not None
    assert summary.max_bin is not None
    assert summary.min_bin[0] <= present.min() <= summary.min_bin[1]
    assert summary.max_bin[0] <= present.max() <= summary.max_bin[1]
    for q, expected in zip(summary.quantiles, np.quantile(present, [0.1, 0.5, 0.9]), strict=True):
        assert q.value is not None
        assert abs(q.value - expected) <= 2.0
    assert Summary(**{**summary.__dict__}) == summary
    json.dumps(summary.to_json(), allow_nan=False)


def test_summary_edge_cases() -> None:
    hist = HistogramPart((0.0, 1.0, 2.0), (0, 1), below=1)
    one = summarise(local_moments([[1.5]]), hist, [0.5])
    assert (one.n, one.mean, one.sd) == (1, 1.5, None)
    assert (one.min_bin, one.max_bin) == (None, (1.0, 2.0))
    assert one.quantiles == (Quantile(0.5, None, "below"),)
    assert one.to_json()["quantiles"] == [{"p": 0.5, "value": None, "outside": "below"}]
    none = summarise(local_moments(np.empty((0, 1))), HistogramPart((0.0, 1.0), (0,), missing=4))
    assert (none.n, none.mean, none.sd, none.missing, none.quantiles) == (0, None, None, 4, ())
    assert (none.min_bin, none.max_bin) == (None, None)
    with pytest.raises(QueryError, match="a summary is of one variable, but the moments hold 2"):
        summarise(local_moments([[1.0, 2.0]]), hist)


# --- counts by category --------------------------------------------------------------

category = st.sampled_from([None, 0, 1, 2, 8507, 8532, -3, 2.5, math.nan, 7.0])


def normal_form(value: Any) -> Any:
    """pandas' key for a category, in the module's normal form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if float(value).is_integer():
        return int(value)
    return float(value)


@st.composite
def table_data(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], int, list[slice]]:
    width = draw(st.integers(1, 3))
    rows = draw(st.lists(st.tuples(*[category] * width), max_size=60))
    return rows, width, draw(members(len(rows)))


@settings(max_examples=150, deadline=None)
@given(data=table_data())
def test_split_cells_equal_pandas_value_counts_on_the_pooled_rows(
    data: tuple[list[tuple[Any, ...]], int, list[slice]],
) -> None:
    rows, width, parts = data
    names = ["a", "b", "c"][:width]
    total = combine_cells([local_cells(rows[part], names) for part in parts])
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    expected = {
        tuple(normal_form(v) for v in (key if isinstance(key, tuple) else (key,))): count
        for key, count in frame.value_counts(dropna=False).items()
    }
    assert total.as_dict() == expected
    assert total.total == len(rows)
    keys = [key for key, _ in total.cells]
    assert keys == sorted(keys, key=cells_module.key_order)
    assert CellCounts.from_json(round_trip(total.to_json())) == total


def test_numeric_arrays_count_like_lists() -> None:
    rng = np.random.default_rng(5)
    ints = rng.integers(0, 4, size=(500, 2))
    floats = ints.astype(np.float64)
    floats[::7, 1] = np.nan
    as_rows = [tuple(None if math.isnan(v) else v for v in row) for row in floats.tolist()]
    assert local_cells(floats, ["x", "y"]) == local_cells(as_rows, ["x", "y"])
    from_ints = local_cells(ints, ["x", "y"])
    frame = pd.DataFrame(ints, columns=["x", "y"])
    crosstab = pd.crosstab(frame["x"], frame["y"])
    for (x, y), count in from_ints.cells:
        assert crosstab.loc[x, y] == count
    assert from_ints.total == 500
    flags = local_cells(np.array([True, False, True]), ["flag"])
    assert flags.cells == (((0,), 1), ((1,), 2))


def test_a_whole_float_is_the_same_category_as_the_integer() -> None:
    cells = local_cells([(8507.0,), (8507,), (np.int32(8507),), (np.float32(2.5),)], ["g"])
    assert cells.cells == (((2.5,), 1), ((8507,), 3))
    assert isinstance(cells.cells[1][0][0], int)


def test_none_sorts_last_and_empty_members_add_nothing() -> None:
    cells = local_cells([(None, 1), (3, None), (3, 1), (None, None)], ["x", "y"])
    assert [key for key, _ in cells.cells] == [(3, 1), (3, None), (None, 1), (None, None)]
    empty = local_cells([], ["x", "y"])
    assert empty.cells == ()
    assert combine_cells([empty, cells]) == cells


@pytest.mark.parametrize(
    ("keys", "variables", "message"),
    [
        ([("F",)], ["sex"], "categories must be numbers or null"),
        ([(object(),)], ["sex"], r"a category must be a number or null, got object"),
        ([(1, "F")], ["a", "b"], "categories must be numbers or null"),
        ([(math.inf,)], ["a"], "a category must be finite"),
        (np.array([[1.0], [-np.inf]]), ["a"], "a category must be finite"),
        ([(2**64,)], ["a"], "must fit in 64 bits"),
        ([(1, 2)], ["a"], r"expected rows of 1 categories .*got shape \(1, 2\)"),
        ([1, 2], ["a", "b"], r"expected rows of 2 categories"),
        ([(1, 2), (3,)], ["a", "b"], "expected rows of 2 categories each"),
        ([(1,)], [], "variables: expected a list of at least one name"),
        ([(1,)], "a", "variables: expected a list of at least one name"),
        ([(1, 2)], ["a", "a"], "each name may appear once"),
        ([(1,)], [""], r"variables\[0\]: expected a non-empty name"),
    ],
)
def test_local_cells_refuses(keys: Any, variables: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message) as caught:
        local_cells(keys, variables)
    assert "'F'" not in str(caught.value)


GOOD_CELLS = {"variables": ["a"], "cells": [{"key": [1], "count": 2}, {"key": [None], "count": 1}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**GOOD_CELLS, "extra": 1}, r"\(unknown extra\)"),
        ({"variables": ["a"]}, r"\(missing cells\)"),
        ({**GOOD_CELLS, "cells": {"1": 2}}, "variables and cells must be lists"),
        ({**GOOD_CELLS, "cells": [{"key": [1], "count": 2, "x": 0}]}, r"cells\[0\]"),
        ({**GOOD_CELLS, "cells": [{"key": 1, "count": 2}]}, r"cells\[0\].key: expected a list"),
        ({**GOOD_CELLS, "cells": [{"key": [1, 2], "count": 2}]}, "expected 1 category"),
        ({**GOOD_CELLS, "cells": [{"key": ["x"], "count": 2}]}, "got str"),
        ({**GOOD_CELLS, "cells": [{"key": [1], "count": -2}]}, "expected a whole number >= 0"),
        ({**GOOD_CELLS, "cells": [{"key": [1], "count": 2}] * 2}, "a key appears twice"),
        (
            {**GOOD_CELLS, "cells": [{"key": [1], "count": 2}, {"key": [1.0], "count": 2}]},
            "a key appears twice",
        ),
    ],
)
def test_cells_from_json_rejects(data: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        CellCounts.from_json(data)


def test_cells_are_sorted_when_built() -> None:
    cells = CellCounts(("a",), (((None,), 1), ((2,), 1), ((1,), 4)))
    assert [key for key, _ in cells.cells] == [(1,), (2,), (None,)]


def test_combine_cells_refuses_other_variables() -> None:
    with pytest.raises(QueryError, match="cell counts part 1 is by b, not a"):
        combine_cells([local_cells([1], ["a"]), local_cells([1], ["b"])])
    with pytest.raises(QueryError, match="no cell counts parts to combine"):
        combine_cells([])
