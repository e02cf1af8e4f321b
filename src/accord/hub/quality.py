"""What the hub accepts of a member's quality gate: statuses and percentages, nothing more.

A node reports each submission's decision and, per check, its status and the percentage
of violating rows. The hub checks the message is exactly that shape before storing it,
so a faulty node cannot pass record ids, source values or row counts to the consortium:
every check must be one of the catalogue's, named once, with its own severity; the
counts must tally; a percentage carries at most four decimals and a time is UTC to the
microsecond. Fails closed: a node running a catalogue the hub does not know is refused
(with the reason) until both run the same release.

>>> status = {"format": FORMAT, "submission_id": "ab" * 16, "at": "2026-03-15T10:04:00Z",
...           "decision": "accepted", "kept": True,
...           "counts": {"error": 0, "not_applicable": 0, "fail": 0, "pass": 1},
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

import functools
import math
import re
from datetime import UTC, datetime
from typing import Any, Final, get_args

from accord.quality.catalogue import default_catalogue
from accord.quality.results import STATUSES, Decision

FORMAT: Final = "accord-quality-status/1"
MAX_CHECKS: Final = 5000
DECISIONS: Final = get_args(Decision)
_FIELDS: Final = {"format", "submission_id", "at", "decision", "kept", "counts", "checks"}
_CHECK_FIELDS: Final = {"check_id", "severity", "status", "percentage"}
_SUBMISSION_ID: Final = re.compile(r"[0-9a-f]{32}")
_AT: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
_DECIMALS: Final = 4


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
    try:
        if not isinstance(at, str) or not _AT.fullmatch(at):
            raise ValueError
        moment = datetime.fromisoformat(at).astimezone(UTC)
    except ValueError:
        raise ValueError("at is not a UTC time such as 2026-03-15T10:04:00Z") from None
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
    accepted = [_check(entry, index) for index, entry in enumerate(checks)]
    if len({c["check_id"] for c in accepted}) != len(accepted):
        raise ValueError("a check is named more than once")
    tally = {s: sum(1 for c in accepted if c["status"] == s) for s in STATUSES}
    if tally != {s: int(counts[s]) for s in STATUSES}:
        raise ValueError("counts do not tally with the checks' statuses")
    return {
        "format": FORMAT,
        "submission_id": submission_id,
        "at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "decision": status["decision"],
        "kept": status["kept"],
        "counts": tally,
        "checks": accepted,
    }


@functools.cache
def _severities() -> dict[str, str]:
    return {check.id: check.severity for check in default_catalogue()}


def _check(entry: Any, index: int) -> dict[str, Any]:
    if not isinstance(entry, dict) or set(entry) != _CHECK_FIELDS:
        raise ValueError(f"checks[{index}] must have exactly {', '.join(sorted(_CHECK_FIELDS))}")
    check_id = entry["check_id"]
    if not isinstance(check_id, str) or check_id not in _severities():
        raise ValueError(f"checks[{index}].check_id is not a check of this hub's catalogue")
    if entry["severity"] != _severities()[check_id]:
        raise ValueError(f"checks[{index}].severity is not {check_id}'s")
    if entry["status"] not in STATUSES:
        raise ValueError(f"checks[{index}].status is not one of {', '.join(STATUSES)}")
    percentage = entry["percentage"]
    if percentage is not None and (
        isinstance(percentage, bool)
        or not isinstance(percentage, int | float)
        or not math.isfinite(percentage)
        or not 0 <= percentage <= 100
        or round(percentage, _DECIMALS) != percentage
    ):
        raise ValueError(
            f"checks[{index}].percentage is not a percentage with at most {_DECIMALS} decimals"
        )
    return {
        "check_id": check_id,
        "severity": entry["severity"],
        "status": entry["status"],
        "percentage": None if percentage is None else float(percentage),
    }


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**6
