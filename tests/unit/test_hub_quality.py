"""The hub takes a member's quality status only in its exact shape: statuses and
percentages of the catalogue's checks, nothing a record id could hide in."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from accord.hub.quality import FORMAT, accept_quality_status
from accord.quality import default_catalogue

CHECKS = [c for c in default_catalogue()[:3]]


def status() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "submission_id": "0123456789abcdef" * 2,
        "at": "2026-03-15T10:04:00.5Z",
        "decision": "accepted_with_warnings",
        "kept": True,
        "counts": {"error": 0, "not_applicable": 1, "fail": 1, "pass": 1},
        "checks": [
            {
                "check_id": CHECKS[0].id,
                "severity": CHECKS[0].severity,
                "status": "pass",
                "percentage": 0.0,
            },
            {
                "check_id": CHECKS[1].id,
                "severity": CHECKS[1].severity,
                "status": "fail",
                "percentage": 12.3457,
            },
            {
                "check_id": CHECKS[2].id,
                "severity": CHECKS[2].severity,
                "status": "not_applicable",
                "percentage": None,
            },
        ],
    }


def test_a_well_formed_status_is_accepted_with_its_time_normalised() -> None:
    accepted = accept_quality_status(status())
    assert accepted["at"] == "2026-03-15T10:04:00.500000Z"
    assert accepted["checks"] == status()["checks"]
    assert accept_quality_status({**status(), "at": "2026-03-15T10:04:00Z"})["at"] == (
        "2026-03-15T10:04:00.000000Z"
    )


def broken(change: str) -> dict[str, Any]:
    value = copy.deepcopy(status())
    checks = value["checks"]
    if change == "extra field":
        value["rows"] = [17]
    elif change == "extra check field":
        checks[1]["examples"] = [17, 18]
    elif change == "unknown check":
        checks[1]["check_id"] = "plausibility.range.person.p17"
    elif change == "wrong severity":
        checks[0]["severity"] = (
            "characterisation" if CHECKS[0].severity != "characterisation" else "fatal"
        )
    elif change == "duplicate":
        checks[2] = {**checks[1]}
        value["counts"] = {"error": 0, "not_applicable": 0, "fail": 2, "pass": 1}
    elif change == "counts":
        value["counts"]["pass"] = 2
    elif change == "decimals":
        checks[1]["percentage"] = 12.345678
    elif change == "range":
        checks[1]["percentage"] = 101
    elif change == "time with offset":
        value["at"] = "2026-03-15T10:04:00+01:00"
    elif change == "time":
        value["at"] = "yesterday"
    elif change == "submission id":
        value["submission_id"] = "1234"
    return value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("extra field", "unexpected fields: rows"),
        ("extra check field", "checks[1] must have exactly"),
        ("unknown check", "checks[1].check_id is not a check of this hub's catalogue"),
        ("wrong severity", "checks[0].severity"),
        ("duplicate", "named more than once"),
        ("counts", "do not tally"),
        ("decimals", "at most 4 decimals"),
        ("range", "checks[1].percentage"),
        ("time with offset", "not a UTC time"),
        ("time", "not a UTC time"),
        ("submission id", "submission_id"),
    ],
)
def test_anything_else_is_refused_with_the_reason(change: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        accept_quality_status(broken(change))
