"""Statuses and the gate's decision."""

from __future__ import annotations

import pytest

from accord.quality import Check, CheckResult, summary

FATAL = Check("required", "person", "year_of_birth", "fatal", 0.0)
WARNING = Check("range", "person", "year_of_birth", "convention", 1.0, bounds=(1850, 2027))
OPTIONAL = Check(
    "concept", "person", "gender_source_concept_id", "fatal", 0.0, gate="gender_source_concept_id"
)


def judge(check: Check, violating: int, total: int, *, applicable: bool = True) -> CheckResult:
    return CheckResult.judge(check, violating=violating, total=total, applicable=applicable)


def test_an_empty_table_is_never_a_pass() -> None:
    result = judge(FATAL, 0, 0)
    assert result.status == "not_applicable"
    assert "person is empty" in result.sentence


def test_a_never_filled_optional_field_is_not_applicable() -> None:
    result = judge(OPTIONAL, 0, 10, applicable=False)
    assert result.status == "not_applicable"
    assert "gender_source_concept_id" in result.sentence


@pytest.mark.parametrize(("violating", "status"), [(0, "pass"), (1, "pass"), (2, "fail")])
def test_fail_only_above_the_threshold(violating: int, status: str) -> None:
    assert judge(WARNING, violating, 100).status == status


def test_decision() -> None:
    ok = judge(FATAL, 0, 10)
    warned = judge(WARNING, 5, 10)
    assert summary([ok]).decision == "accepted"
    assert summary([ok, warned]).decision == "accepted_with_warnings"
    assert summary([warned, judge(FATAL, 1, 10)]).decision == "quarantined"
    assert summary([ok, CheckResult.failed_to_run(FATAL, "boom")]).decision == "quarantined"
    assert summary([ok, CheckResult.failed_to_run(WARNING, "boom")]).decision == "accepted"
    # Nothing to judge (every table empty) is never a pass.
    assert summary([judge(FATAL, 0, 0)]).decision == "quarantined"
    assert summary([ok, judge(FATAL, 0, 0)]).decision == "accepted"


def test_counts_by_status() -> None:
    results = [judge(FATAL, 0, 10), judge(FATAL, 0, 0), judge(WARNING, 9, 10)]
    assert summary(results).counts == {"error": 0, "not_applicable": 1, "fail": 1, "pass": 1}
