"""What the hub accepts of a member's quality gate: statuses and percentages, nothing more.

A node reports each submission's decision and, per check, its status and the percentage
of violating rows. The hub checks the message is exactly that shape before storing it,
so a faulty node cannot pass record ids, source values or row counts to the consortium.

>>> status = {"format": FORMAT, "submission_id": "ab" * 16, "at": "2026-03-15T10:04:00Z",
...           "decision": "accepted", "kept": True,
...           "counts": {"error": 0, "not_applicable": 1, "fail": 0, "pass": 1},
...           "checks": [{"check_id": "conformance.required.person.person_id",
...                       "severity": "fatal", "status": "pass", "percentage": 0.0}]}
>>> accept_quality_status(status)["decision"]
'accepted'
>>> accept_quality_status({**status, "examples": [17]})
Traceback (most recent call last):
...
ValueError: quality status has unexpected fields: examples
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Final

FORMAT: Final = "accord-quality-status/1"
MAX_CHECKS: Final = 5000
DECISIONS: Final = ("quarantined", "accepted_with_warnings", "accepted")
STATUSES: Final = ("error", "not_applicable", "fail", "pass")
SEVERITIES: Final = ("fatal", "convention", "characterisation")
_FIELDS: Final = {"format", "submission_id", "at", "decision", "kept", "counts", "checks"}
_CHECK_FIELDS: Final = {"check_id", "severity", "status", "percentage"}
_CHECK_ID: Final = re.compile(r"(conformance|completeness|plausibility)(\.[a-z0-9_]{1,63}){3}")
_SUBMISSION_ID: Final = re.compile(r"[0-9a-f]{32}")


def accept_quality_status(status: Any) -> dict[str, Any]:
    """The status, re-built from its checked parts; ValueError names what is wrong."""
    if not isinstance(status, dict):
        raise ValueError("quality status is not an object")
    extra = set(status) - _FIELDS
    if extra:
        raise ValueError(f"quality status has unexpected fields: {', '.join(sorted(extra))}")
    missing = _FIELDS - set(status)
    if missing:
        raise ValueError(f"quality status lacks fields: {', '.join(sorted(missing))}")
    if status["format"] != FORMAT:
        raise ValueError(f"quality status format is not {FORMAT}")
    submission_id = status["submission_id"]
    if not isinstance(submission_id, str) or not _SUBMISSION_ID.fullmatch(submission_id):
        raise ValueError("submission_id is not 32 lowercase hex digits")
    at = status["at"]
    if not isinstance(at, str) or len(at) > 40:
        raise ValueError("at is not an ISO 8601 time")
    try:
        datetime.fromisoformat(at)
    except ValueError:
        raise ValueError("at is not an ISO 8601 time") from None
    if status["decision"] not in DECISIONS:
        raise ValueError(f"decision is not one of {', '.join(DECISIONS)}")
    if not isinstance(status["kept"], bool):
        raise ValueError("kept is not true or false")
    counts = status["counts"]
    if (
        not isinstance(counts, dict)
        or set(counts) != set(STATUSES)
        or not all(_count(v) for v in counts.values())
    ):
        raise ValueError(f"counts must give a number of checks for each of {', '.join(STATUSES)}")
    checks = status["checks"]
    if not isinstance(checks, list) or len(checks) > MAX_CHECKS:
        raise ValueError(f"checks is not a list of at most {MAX_CHECKS}")
    return {
        "format": FORMAT,
        "submission_id": submission_id,
        "at": at,
        "decision": status["decision"],
        "kept": status["kept"],
        "counts": {s: int(counts[s]) for s in STATUSES},
        "checks": [_check(entry, index) for index, entry in enumerate(checks)],
    }


def _check(entry: Any, index: int) -> dict[str, Any]:
    if not isinstance(entry, dict) or set(entry) != _CHECK_FIELDS:
        raise ValueError(f"checks[{index}] must have exactly {', '.join(sorted(_CHECK_FIELDS))}")
    check_id = entry["check_id"]
    if not isinstance(check_id, str) or not _CHECK_ID.fullmatch(check_id):
        raise ValueError(f"checks[{index}].check_id is not a check name")
    if entry["severity"] not in SEVERITIES:
        raise ValueError(f"checks[{index}].severity is not one of {', '.join(SEVERITIES)}")
    if entry["status"] not in STATUSES:
        raise ValueError(f"checks[{index}].status is not one of {', '.join(STATUSES)}")
    percentage = entry["percentage"]
    if percentage is not None and (
        isinstance(percentage, bool)
        or not isinstance(percentage, int | float)
        or not math.isfinite(percentage)
        or not 0 <= percentage <= 100
    ):
        raise ValueError(f"checks[{index}].percentage is not a percentage")
    return {
        "check_id": check_id,
        "severity": entry["severity"],
        "status": entry["status"],
        "percentage": None if percentage is None else float(percentage),
    }


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**6
