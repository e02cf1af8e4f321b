"""Combining members' disclosed results into the consortium's answer.

The hub only ever holds figures that already passed each member's disclosure step, so
combining them cannot reveal more than the members released.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accord.analysis.glm import GlmPart
from accord.errors import QueryError
from accord.hub.store import DONE, TaskView
from accord.privacy.disclosure import DisclosedCount, SmallCellProfile, combine_total


def summarise(view: TaskView) -> dict[str, Any]:
    """Totals over the members that answered, and how many are still outstanding."""
    disclosed = [
        DisclosedCount.from_json(a.result["disclosed"])
        for a in view.assignments
        if a.status == DONE and a.result is not None and "disclosed" in a.result
    ]
    answered = sum(1 for a in view.assignments if a.status != "pending")
    return {
        "members": len(view.assignments),
        "answered": answered,
        "total": combine_total(disclosed).to_json() if disclosed else None,
    }


RESULT_FIELDS = {"analysis", "disclosed", "profile"}
GLM_FIELDS = {"analysis", "part", "profile"}
MAX_REASON_CHARS = 500
MAX_PARAMETERS = 21


def accept_result(result: dict[str, Any]) -> dict[str, Any]:
    """Check a decrypted result is exactly what its analysis's disclosure step produces.

    Raises ValueError naming what is wrong.
    """
    if not isinstance(result, dict):
        raise ValueError("result is not an object")
    if result.get("analysis") == "glm_step":
        return accept_glm_result(result)
    return accept_count_result(result)


def accept_glm_result(result: dict[str, Any]) -> dict[str, Any]:
    """A model part: finite sums of the right shapes over at least the profile's minimum
    of persons, rebuilt from its checked parts."""
    if set(result) != GLM_FIELDS:
        raise ValueError(f"a model result has exactly the fields {', '.join(sorted(GLM_FIELDS))}")
    profile = SmallCellProfile.from_json(result.get("profile"))
    try:
        part = GlmPart.from_json(result["part"])
    except QueryError as error:
        raise ValueError(error.message) from None
    if part.p > MAX_PARAMETERS:
        raise ValueError(f"a model part has more than {MAX_PARAMETERS} coefficients")
    numbers = [part.score, part.information, part.column_sums]
    scalars = [part.deviance, part.pearson_chi2, part.outcome_sum]
    if not all(np.all(np.isfinite(a)) for a in numbers) or not np.all(np.isfinite(scalars)):
        raise ValueError("a model part holds a number that is not finite")
    if 0 < part.n < profile.threshold + part.p:
        raise ValueError("a model part covers fewer persons than its disclosure profile allows")
    return {"analysis": "glm_step", "part": part.to_json(), "profile": profile.to_json()}


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
