"""Small-cell disclosure: the rounding table, the rule text, totals and JSON."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.privacy.disclosure import (
    DisclosedCount,
    SmallCellProfile,
    apply_count,
    combine_total,
)

DEFAULT = SmallCellProfile()
RULE = "1–9 shown as <10; others rounded to nearest 5"


@pytest.mark.parametrize(
    ("n", "value", "display", "suppressed"),
    [
        (0, 0, "0", False),
        (1, None, "<10", True),
        (5, None, "<10", True),
        (9, None, "<10", True),
        (10, 10, "10", False),
        (11, 10, "10", False),
        (12, 10, "10", False),
        (13, 15, "15", False),
        (15, 15, "15", False),
        (17, 15, "15", False),
        (18, 20, "20", False),
        (122, 120, "120", False),
        (123, 125, "125", False),
        (10**15 + 3, 10**15 + 5, str(10**15 + 5), False),
    ],
)
def test_default_profile(n: int, value: int | None, display: str, suppressed: bool) -> None:
    assert apply_count(DEFAULT, n) == DisclosedCount(value, display, suppressed, RULE)


@pytest.mark.parametrize(
    ("profile", "n", "display"),
    [
        (SmallCellProfile(threshold=10, rounding=10), 15, "20"),  # halves go up
        (SmallCellProfile(threshold=10, rounding=10), 14, "10"),
        (SmallCellProfile(threshold=5, rounding=4), 6, "8"),
        (SmallCellProfile(threshold=5, rounding=1), 7, "7"),
        (SmallCellProfile(threshold=1, rounding=5), 1, "0"),
        (SmallCellProfile(threshold=20, rounding=5), 19, "<20"),
    ],
)
def test_other_profiles(profile: SmallCellProfile, n: int, display: str) -> None:
    assert apply_count(profile, n).display == display


@pytest.mark.parametrize(
    ("profile", "rule"),
    [
        (DEFAULT, RULE),
        (SmallCellProfile(threshold=5, rounding=1), "1–4 shown as <5; others shown exactly"),
        (SmallCellProfile(threshold=2, rounding=3), "1 shown as <2; others rounded to nearest 3"),
        (SmallCellProfile(threshold=1, rounding=10), "counts rounded to nearest 10"),
        (SmallCellProfile(threshold=1, rounding=1), "counts shown exactly"),
    ],
)
def test_rule_reads_as_a_sentence(profile: SmallCellProfile, rule: str) -> None:
    assert profile.rule == rule
    assert apply_count(profile, 3).rule == rule


def test_negative_counts_are_a_bug() -> None:
    with pytest.raises(ValueError, match="cannot be negative, got -1"):
        apply_count(DEFAULT, -1)


@pytest.mark.parametrize("n", [True, 3.0, "12", None])
def test_only_ints_are_counts(n: Any) -> None:
    with pytest.raises(TypeError, match="a count must be an int"):
        apply_count(DEFAULT, n)


@given(st.integers(min_value=0, max_value=10**9), st.integers(1, 50), st.integers(1, 50))
def test_released_values_are_near_and_on_the_grid(n: int, threshold: int, rounding: int) -> None:
    released = apply_count(SmallCellProfile(threshold=threshold, rounding=rounding), n)
    if released.suppressed:
        assert released.value is None
        assert 0 < n < threshold
    else:
        assert released.value is not None
        assert released.value % rounding == 0
        assert abs(released.value - n) * 2 <= rounding
        assert released.display == str(released.value)


def released(*values: int | None) -> list[DisclosedCount]:
    return [DisclosedCount(v, "<10" if v is None else str(v), v is None, RULE) for v in values]


def test_total_of_released_counts() -> None:
    total = combine_total(released(120, 5, 0))
    assert (total.value, total.display, total.suppressed) == (125, "125", False)
    assert total.rule == "sum of the released counts of 3 members"


def test_total_with_a_suppressed_member_is_a_lower_bound() -> None:
    total = combine_total(released(120, None, 5))
    assert (total.value, total.display, total.suppressed) == (125, "≥125", True)
    assert total.rule == (
        "sum of the released counts of 3 members; 1 suppressed as small and left out, "
        "so the true total is higher"
    )


def test_total_when_every_member_is_suppressed() -> None:
    total = combine_total(released(None, None))
    assert (total.value, total.display, total.suppressed) == (0, "≥0", True)


def test_total_of_nothing_is_zero() -> None:
    total = combine_total([])
    assert (total.value, total.display, total.suppressed) == (0, "0", False)


def test_totals_can_be_combined_again() -> None:
    # A total of totals (say, per region) keeps the lower-bound mark.
    regional = [combine_total(released(10, None)), combine_total(released(20))]
    total = combine_total(regional)
    assert (total.value, total.display, total.suppressed) == (30, "≥30", True)


@pytest.mark.parametrize("n", [0, 4, 13, 1234])
def test_disclosed_count_json_round_trip(n: int) -> None:
    count = apply_count(DEFAULT, n)
    assert DisclosedCount.from_json(count.to_json()) == count
    assert set(count.to_json()) == {"value", "display", "suppressed", "rule"}


def test_profile_json_round_trip() -> None:
    profile = SmallCellProfile(name="strict", threshold=20, rounding=10, version=3)
    assert profile.to_json() == {"name": "strict", "threshold": 20, "rounding": 10, "version": 3}
    assert SmallCellProfile.from_json(profile.to_json()) == profile


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (SmallCellProfile, [], "expected an object, got list"),
        (SmallCellProfile, {"name": "x", "threshold": 10}, "rounding: required field missing"),
        (SmallCellProfile, {**DEFAULT.to_json(), "k": 1}, "k: unknown field"),
        (SmallCellProfile, {**DEFAULT.to_json(), "threshold": 0}, "threshold: expected a whole"),
        (SmallCellProfile, {**DEFAULT.to_json(), "rounding": "5"}, "rounding: expected a whole"),
        (SmallCellProfile, {**DEFAULT.to_json(), "name": ""}, "name: expected a non-empty"),
        (DisclosedCount, {"value": 5}, "display: required field missing"),
        (
            DisclosedCount,
            {"value": -5, "display": "x", "suppressed": False, "rule": ""},
            "value: expected a count of 0 or more",
        ),
        (
            DisclosedCount,
            {"value": None, "display": "<10", "suppressed": False, "rule": ""},
            "value: only a suppressed count may be null",
        ),
        (
            DisclosedCount,
            {"value": 5, "display": "5", "suppressed": "no", "rule": ""},
            "suppressed: expected true or false",
        ),
    ],
)
def test_from_json_rejects(cls: Any, data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls.from_json(data)
