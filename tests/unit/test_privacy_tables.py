"""Disclosure control for tables, histograms and moments (accord.privacy.tables): what a
member releases, what the hub accepts, and how released figures are added up."""

from __future__ import annotations

import doctest
import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accord.privacy.tables as tables_module
from accord.analysis.cells import CellCounts, local_cells
from accord.analysis.histograms import HistogramPart, local_histogram, regular_edges, summarise
from accord.analysis.moments import local_moments
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.privacy.tables import (
    MAX_CELLS,
    ReleasedCells,
    ReleasedHistogram,
    cells_refusal,
    check_released_cells,
    check_released_histogram,
    check_released_moments,
    combine_released_cells,
    combine_released_histograms,
    moments_refusal,
    release_cells,
    release_histogram,
)

DEFAULT = SmallCellProfile()
profiles = st.builds(SmallCellProfile, threshold=st.integers(1, 20), rounding=st.integers(1, 12))


def test_docstring_examples() -> None:
    assert doctest.testmod(tables_module).failed == 0


def over_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


# --- tables --------------------------------------------------------------------------

counts = st.integers(0, 60) | st.integers(0, 10**6)


@st.composite
def cell_counts(draw: st.DrawFn) -> CellCounts:
    keys = draw(
        st.lists(
            st.tuples(st.integers(0, 30) | st.none(), st.sampled_from([1, 2, None])),
            unique=True,
            max_size=40,
        )
    )
    return CellCounts(("stage", "sex"), tuple((key, draw(counts)) for key in keys))


@settings(max_examples=200, deadline=None)
@given(profile=profiles, cells=cell_counts())
def test_every_cell_is_released_by_apply_count(
    profile: SmallCellProfile, cells: CellCounts
) -> None:
    released = release_cells(profile, cells)
    assert released.variables == cells.variables
    assert released.cells == tuple(
        (key, apply_count(profile, count).value) for key, count in cells.cells
    )


@settings(max_examples=300, deadline=None)
@given(profile=profiles, cells=cell_counts())
def test_the_hub_accepts_exactly_what_a_member_releases(
    profile: SmallCellProfile, cells: CellCounts
) -> None:
    released = release_cells(profile, cells)
    assert check_released_cells(profile, over_json(released.to_json())) == released


def test_a_profile_whose_threshold_rounds_down_is_still_accepted() -> None:
    # 11 rounded to the nearest 5 is 10, below the threshold itself.
    profile = SmallCellProfile(threshold=11, rounding=5)
    released = release_cells(profile, local_cells([1] * 11, ["x"]))
    assert released.cells == (((1,), 10),)
    assert check_released_cells(profile, released.to_json()) == released
    # With rounding above the threshold, the smallest released count is the rounding step.
    coarse = SmallCellProfile(threshold=2, rounding=10)
    assert apply_count(coarse, 5).value == 10
    assert check_released_cells(coarse, {"variables": ["x"], "cells": [{"key": [1], "count": 10}]})


CELLS = {"variables": ["stage"], "cells": [{"key": [1], "count": 10}, {"key": [2], "count": None}]}


@pytest.mark.parametrize(
    ("profile", "data", "message"),
    [
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": 3}]}, r"cells\[0\]: count does not"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": 12}]}, "multiples of 5 from 10 up"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": 5}]}, "multiples of 5 from 10 up"),
        (SmallCellProfile(threshold=1), CELLS, "suppressed, but the profile suppresses nothing"),
        (DEFAULT, {**CELLS, "rows": [[1, 2]]}, "rows: unknown field"),
        (DEFAULT, {"variables": ["stage"]}, "cells: required field missing"),
        (DEFAULT, [], "expected an object, got list"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": 10, "n": 13}]}, "n: unknown field"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": True}]}, "got bool"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": 10.0}]}, "got float"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": -10}]}, "expected a count from 0"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1, 2], "count": 10}]}, "expected 1 category"),
        (DEFAULT, {**CELLS, "cells": [{"key": ["a"], "count": 10}]}, "got str"),
        (DEFAULT, {**CELLS, "cells": [{"key": [1], "count": 10}] * 2}, "a key appears twice"),
        (DEFAULT, {**CELLS, "variables": ["a", "a"]}, "each name may appear once"),
        (DEFAULT, {**CELLS, "cells": "x"}, "variables and cells must be lists"),
        (
            DEFAULT,
            {**CELLS, "cells": [{"key": [i], "count": 10} for i in range(MAX_CELLS + 1)]},
            f"more than {MAX_CELLS} cells",
        ),
    ],
)
def test_the_hub_rejects_tampered_tables(
    profile: SmallCellProfile, data: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        check_released_cells(profile, data)
    assert not re.search(r"\b(3|12|13)\b", str(caught.value))


def test_a_table_with_too_many_cells_is_refused() -> None:
    big = local_cells(list(range(MAX_CELLS + 1)), ["concept"])
    reason = cells_refusal(DEFAULT, big)
    assert reason == (
        f"the table has more than {MAX_CELLS} cells at this member; "
        "group the categories more coarsely"
    )
    with pytest.raises(ValueError, match="more than 1000 cells"):
        release_cells(DEFAULT, big)
    assert cells_refusal(DEFAULT, local_cells(list(range(MAX_CELLS)), ["concept"])) is None


def test_released_tables_add_up_with_suppressed_cells_counted() -> None:
    a = release_cells(DEFAULT, local_cells([1] * 40 + [2] * 3 + [None] * 12, ["stage"]))
    b = release_cells(DEFAULT, local_cells([1] * 4 + [3] * 20, ["stage"]))
    c = release_cells(DEFAULT, local_cells([2] * 7, ["stage"]))
    combined = combine_released_cells([a, b, c])
    assert combined.members == 3
    assert combined.to_json()["cells"] == [
        {"key": [1], "value": 40, "display": "≥40", "suppressed": 1},
        {"key": [2], "value": 0, "display": "≥0", "suppressed": 2},
        {"key": [3], "value": 20, "display": "20", "suppressed": 0},
        {"key": [None], "value": 10, "display": "10", "suppressed": 0},
    ]
    with pytest.raises(ValueError, match="released table 1 is by other variables"):
        combine_released_cells([a, ReleasedCells(("grade",), ())])
    with pytest.raises(ValueError, match="no member answered"):
        combine_released_cells([])


@settings(max_examples=150, deadline=None)
@given(
    member_profiles=st.lists(profiles, min_size=1, max_size=5),
    rows=st.lists(st.sampled_from([0, 1, 2, 3, None]), max_size=200),
    seed=st.integers(0, 2**32 - 1),
)
def test_combined_totals_bound_the_pooled_counts(
    member_profiles: list[SmallCellProfile], rows: list[int | None], seed: int
) -> None:
    owner = np.random.default_rng(seed).integers(0, len(member_profiles), len(rows))
    parts = [
        release_cells(
            profile, local_cells([r for r, o in zip(rows, owner, strict=True) if o == m], ["x"])
        )
        for m, profile in enumerate(member_profiles)
    ]
    pooled = local_cells(rows, ["x"]).as_dict() if rows else {}
    combined = dict(combine_released_cells(parts).cells)
    slack = sum(p.rounding // 2 for p in member_profiles)
    hidden = sum(p.threshold - 1 for p in member_profiles)
    assert set(combined) <= set(pooled)
    for key, count in combined.items():
        true = pooled[key]
        assert count.value - slack <= true <= count.value + slack + hidden
        assert count.total.suppressed == (count.suppressed > 0)


# --- histograms ----------------------------------------------------------------------


@st.composite
def histograms(draw: st.DrawFn) -> HistogramPart:
    bins = draw(st.integers(1, 8))
    return HistogramPart(
        edges=regular_edges(0, bins, bins),
        counts=tuple(draw(st.lists(counts, min_size=bins, max_size=bins))),
        below=draw(counts),
        above=draw(counts),
        missing=draw(counts),
    )


@settings(max_examples=300, deadline=None)
@given(profile=profiles, hist=histograms())
def test_histogram_release_suppresses_small_cells_and_one_partner(
    profile: SmallCellProfile, hist: HistogramPart
) -> None:
    released = release_histogram(profile, hist)
    raw = (*hist.counts, hist.below, hist.above)
    small = [i for i, c in enumerate(raw) if 0 < c < profile.threshold]
    large = [i for i, c in enumerate(raw) if c >= profile.threshold]
    partner = min(large, key=lambda i: (raw[i], i)) if len(small) == 1 and large else None
    for i, (count, value) in enumerate(zip(raw, released.value_cells, strict=True)):
        expected = None if i == partner else apply_count(profile, count).value
        assert value == expected
    assert released.missing == apply_count(profile, hist.missing).value
    assert released.edges == hist.edges
    # What the hub needs to check it: no lone suppressed cell beside a released positive.
    assert check_released_histogram(profile, over_json(released.to_json())) == released


def test_a_lone_small_bin_takes_the_smallest_other_bin_with_it() -> None:
    hist = HistogramPart((0.0, 1.0, 2.0, 3.0, 4.0), (40, 3, 12, 0), below=0, above=25, missing=2)
    released = release_histogram(DEFAULT, hist)
    assert released.counts == (40, None, None, 0)
    assert (released.below, released.above, released.missing) == (0, 25, None)
    # Two small cells protect each other; nothing else is suppressed.
    two = HistogramPart((0.0, 1.0, 2.0, 3.0), (40, 3, 4), below=12)
    assert release_histogram(DEFAULT, two).value_cells == (40, None, None, 10, 0)
    # A small count of missing values is not part of the values' total.
    assert release_histogram(DEFAULT, HistogramPart((0.0, 1.0), (40,), missing=3)).counts == (40,)
    # With nothing else holding values there is no partner to take.
    alone = release_histogram(DEFAULT, HistogramPart((0.0, 1.0, 2.0), (0, 4)))
    assert alone.value_cells == (0, None, 0, 0)


HIST = {"edges": [0.0, 1.0, 2.0], "counts": [None, None], "below": 0, "above": 15, "missing": 0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**HIST, "counts": [3, 15]}, r"histogram counts\[0\]: count does not follow"),
        ({**HIST, "above": 17}, "histogram above: count does not follow"),
        ({**HIST, "missing": 4}, "histogram missing: count does not follow"),
        ({**HIST, "counts": [None, 0]}, "a single suppressed cell among its bins"),
        ({**HIST, "counts": [None, 15], "above": 0}, "a single suppressed cell"),
        ({**HIST, "counts": [None]}, "expected 2 counts, one per bin"),
        ({**HIST, "edges": [0.0, 2.0, 1.0]}, "edges must strictly increase"),
        ({**HIST, "edges": [0.0, 1.0, float("nan")]}, "expected a finite number"),
        ({**HIST, "raw": [3, 15]}, "raw: unknown field"),
        ({k: v for k, v in HIST.items() if k != "missing"}, "missing: required field missing"),
        ({**HIST, "counts": "x"}, "counts must be a list"),
        ({**HIST, "below": "0"}, "below: expected a whole number or null, got str"),
    ],
)
def test_the_hub_rejects_tampered_histograms(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        check_released_histogram(DEFAULT, data)
    assert not re.search(r"\b(3|4|17)\b", str(caught.value))


def test_accepted_histogram_round_trip() -> None:
    assert check_released_histogram(DEFAULT, HIST).to_json() == HIST
    assert check_released_histogram(DEFAULT, HIST, edges=[0, 1, 2]).to_json() == HIST
    with pytest.raises(ValueError, match="released histogram is not on the query's edges"):
        check_released_histogram(DEFAULT, HIST, edges=[0, 1, 3])


def test_the_hub_can_require_the_query_variables() -> None:
    assert check_released_cells(DEFAULT, CELLS, variables=["stage"]).variables == ("stage",)
    with pytest.raises(ValueError, match="released table is not by the query's variables"):
        check_released_cells(DEFAULT, CELLS, variables=["grade"])


def test_released_histograms_add_up_and_give_a_summary() -> None:
    edges = regular_edges(0, 100, 10)
    rng = np.random.default_rng(2)
    members = [rng.normal(50, 15, size) for size in (400, 250, 30)]
    released = [release_histogram(DEFAULT, local_histogram(v, edges)) for v in members]
    combined = combine_released_histograms(
        [check_released_histogram(DEFAULT, over_json(r.to_json())) for r in released]
    )
    pooled = local_histogram(np.concatenate(members), edges)
    assert combined.members == 3
    for count, true in zip(combined.counts, pooled.counts, strict=True):
        assert count.value - 3 * 2 <= true <= count.value + 3 * 2 + count.suppressed * 9
    moments = local_moments(np.concatenate(members)[:, None])
    summary = summarise(moments, combined.lower_bounds(), [0.5])
    assert summary.n == 680
    assert summary.quantiles[0].value == pytest.approx(50, abs=10)
    assert json.dumps(combined.to_json(), ensure_ascii=False)
    with pytest.raises(ValueError, match="released histogram 1 is on other edges"):
        combine_released_histograms(
            [released[0], release_histogram(DEFAULT, local_histogram([], (0, 1)))]
        )
    with pytest.raises(ValueError, match="no member answered"):
        combine_released_histograms([])


def test_released_forms_refuse_bad_values_when_built() -> None:
    with pytest.raises(ValueError, match="expected a whole number or null, got float"):
        ReleasedHistogram((0.0, 1.0), (1.5,), 0, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"released cells\[0\]: expected a \(key, count\) pair"):
        ReleasedCells(("x",), ((1,),))  # type: ignore[arg-type]


# --- moments -------------------------------------------------------------------------


def continuous(n: int, k: int, seed: int = 0) -> Any:
    return np.random.default_rng(seed).normal(123.456, 7.0, size=(n, k))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_moments_need_threshold_more_rows_than_variables(k: int) -> None:
    profile = SmallCellProfile(threshold=7)
    enough = continuous(7 + k, k)
    assert moments_refusal(profile, local_moments(enough), enough) is None
    short = enough[1:]
    variables = "one variable" if k == 1 else f"{k} variables"
    assert moments_refusal(profile, local_moments(short), short) == (
        f"too few rows at this member for the moments of {variables} (fewer than 7 more "
        "rows than variables)"
    )


def test_moments_of_no_rows_are_released_as_zeros() -> None:
    empty = np.empty((0, 3))
    assert moments_refusal(DEFAULT, local_moments(empty), empty) is None


@pytest.mark.parametrize(
    ("column", "refused"),
    [
        ([0] * 40 + [1] * 3, True),  # binary, a small group
        ([0] * 40 + [1] * 10, False),
        ([1] * 20 + [2] * 20 + [3] * 4, True),  # three values: n, sums, squares solve it
        ([1] * 20 + [2] * 20 + [3] * 10, False),
        ([5.5] * 43, False),  # constant: one group of everyone
        ([1] * 20 + [2] * 20 + [3] * 10 + [4] * 1, False),  # four values are not solved
    ],
)
def test_few_valued_variables_must_not_give_away_small_groups(
    column: list[float], refused: bool
) -> None:
    x = np.column_stack([np.asarray(column, dtype=float), continuous(len(column), 1)[:, 0]])
    reason = moments_refusal(DEFAULT, local_moments(x), x)
    assert (reason is not None) == refused
    if reason is not None:
        assert reason == (
            "a variable with at most three distinct values has one held by fewer than 10 rows"
        )


def test_two_binary_variables_must_not_pick_out_a_small_group() -> None:
    a = np.array([0] * 30 + [1] * 30, dtype=float)
    b = np.array([0] * 27 + [1] * 3 + [0] * 15 + [1] * 15, dtype=float)  # a=0, b=1: 3 rows
    x = np.column_stack([a, b])
    reason = moments_refusal(DEFAULT, local_moments(x), x)
    assert reason == "two of the variables' values together pick out a group of fewer than 10 rows"
    fine = np.column_stack([a, np.array([0] * 20 + [1] * 10 + [0] * 15 + [1] * 15, dtype=float)])
    assert moments_refusal(DEFAULT, local_moments(fine), fine) is None
    # Coded 1/2 rather than 0/1 gives the same counts away.
    coded = x + 1
    assert moments_refusal(DEFAULT, local_moments(coded), coded) == reason


def test_moments_refusal_wants_the_rows_of_the_moments() -> None:
    x = continuous(20, 2)
    with pytest.raises(ValueError, match=r"rows have shape \(19, 2\), but the moments are of 20"):
        moments_refusal(DEFAULT, local_moments(x), x[1:])


def test_the_hub_checks_released_moments() -> None:
    x = continuous(12, 2)
    part = local_moments(x, shift=[120.0, 120.0])
    assert check_released_moments(DEFAULT, over_json(part.to_json())) == part
    empty = local_moments(np.empty((0, 2)))
    assert check_released_moments(DEFAULT, empty.to_json()) == empty
    small = local_moments(x[:11])
    with pytest.raises(ValueError, match="fewer rows than their disclosure profile allows"):
        check_released_moments(DEFAULT, small.to_json())
    with pytest.raises(ValueError, match=r"moments: expected fields .*\(unknown rows\)"):
        check_released_moments(DEFAULT, {**part.to_json(), "rows": x.tolist()})
    tampered = part.to_json()
    tampered["cross"][0][1] += 1.0
    with pytest.raises(ValueError, match="cross is not symmetric"):
        check_released_moments(DEFAULT, tampered)
