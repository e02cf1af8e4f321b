"""Combining members' disclosed results into the consortium's answer.

The hub only ever holds figures that already passed each member's disclosure step, so
combining them cannot reveal more than the members released.
"""

from __future__ import annotations

from typing import Any

from accord.hub.store import DONE, TaskView
from accord.privacy.disclosure import DisclosedCount, combine_total


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
