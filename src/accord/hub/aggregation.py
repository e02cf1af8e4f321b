"""Combining members' disclosed results into the consortium's answer.

The hub only ever holds figures that already passed each member's disclosure step, so
combining them cannot reveal more than the members released.
"""

from __future__ import annotations

from typing import Any

from accord.hub.store import DONE, TaskView
from accord.privacy.disclosure import DisclosedCount, SmallCellProfile, combine_total


def summarise(view: TaskView) -> dict[str, Any]:
    """Totals over the members that answered, and how many are still outstanding."""
    disclosed = [
        DisclosedCount.from_json(a.result["disclosed"])
        for a in view.assignments
        if a.status == DONE and a.result is not None
    ]
    answered = sum(1 for a in view.assignments if a.status != "pending")
    return {
        "members": len(view.assignments),
        "answered": answered,
        "total": combine_total(disclosed).to_json() if disclosed else None,
    }


RESULT_FIELDS = {"analysis", "disclosed", "profile"}
MAX_REASON_CHARS = 500


def accept_count_result(result: dict[str, Any]) -> dict[str, Any]:
    """Check a decrypted count result is exactly what a disclosure step can produce.

    The hub stores and forwards only results of this shape, so a faulty or hostile node
    cannot pass extra fields (such as rows) or an unsuppressed small count onward.
    Raises ValueError naming what is wrong.
    """
    extra = set(result) - RESULT_FIELDS
    if extra:
        raise ValueError(f"result has fields a count does not have: {', '.join(sorted(extra))}")
    if result.get("analysis") != "count_persons":
        raise ValueError("result is not a count_persons result")
    profile = SmallCellProfile.from_json(result.get("profile"))
    disclosed = DisclosedCount.from_json(result.get("disclosed"))
    if disclosed.value is None:
        consistent = disclosed.suppressed
    else:
        consistent = disclosed.value == 0 or (
            disclosed.value >= profile.threshold and disclosed.value % profile.rounding == 0
        )
    if not consistent:
        raise ValueError("result's count does not follow its own disclosure profile")
    return {
        "analysis": "count_persons",
        "disclosed": disclosed.to_json(),
        "profile": profile.to_json(),
    }


def accept_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a refusal needs a reason as text")
    return reason[:MAX_REASON_CHARS]
