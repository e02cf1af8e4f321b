"""The hub accepts only results a disclosure step could have produced."""

from __future__ import annotations

from typing import Any

import pytest

from accord.hub.aggregation import accept_reason, accept_result
from accord.privacy.disclosure import SmallCellProfile, apply_count

COUNT = {"type": "count_persons"}


def accept_count_result(result: object) -> dict[str, Any]:
    return accept_result(COUNT, result)


def result(n: int, **extra: Any) -> dict[str, Any]:
    profile = SmallCellProfile()
    return {
        "analysis": "count_persons",
        "disclosed": apply_count(profile, n).to_json(),
        "profile": profile.to_json(),
        **extra,
    }


@pytest.mark.parametrize("n", [0, 3, 10, 12, 1234])
def test_genuine_results_pass_unchanged(n: int) -> None:
    assert accept_count_result(result(n)) == result(n)


def test_extra_fields_such_as_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly the fields"):
        accept_count_result(result(20, rows=[{"person_id": 1}]))


def test_a_result_of_another_analysis_than_the_task_is_refused() -> None:
    with pytest.raises(ValueError, match="not a glm_step result"):
        accept_result({"type": "glm_step", "beta": [0.0]}, result(20))


@pytest.mark.parametrize(
    "disclosed",
    [
        {"value": 3, "display": "3", "suppressed": False, "rule": "x"},  # a small cell
        {"value": 23, "display": "23", "suppressed": False, "rule": "x"},  # not rounded
    ],
)
def test_counts_that_break_their_profile_are_refused(disclosed: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="disclosure profile"):
        accept_count_result({**result(20), "disclosed": disclosed})


@pytest.mark.parametrize("bad", [None, "text", {"value": "x"}])
def test_malformed_disclosed_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"disclosed|count|value"):
        accept_count_result({**result(20), "disclosed": bad})


def test_refusal_reasons_are_text_and_bounded() -> None:
    assert len(accept_reason("x" * 10_000)) == 500
    with pytest.raises(ValueError, match="reason"):
        accept_reason({"rows": []})
