"""Checking members' released results and combining them into the consortium's answer.

The hub only ever holds figures that already passed each member's disclosure step, so
combining them cannot reveal more than the members released. It checks that each result
is exactly what its task's analysis and the member's stated profile produce (the right
shape, the task's own grid or edges, counts that follow the profile), so a faulty or
hostile node cannot pass extra fields (such as rows) or an unsuppressed small count on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from accord.analysis import distinct, histograms, survival
from accord.analysis.glm import GlmPart
from accord.analysis.moments import Moments, combine_moments, correlation, mean, std
from accord.errors import UserError
from accord.hub.store import DONE, TaskView
from accord.privacy import tables
from accord.privacy.disclosure import (
    DisclosedCount,
    SmallCellProfile,
    apply_count,
    combine_total,
)
from accord.privacy.tables import check_released_value
from accord.query.model import Summary as SummaryQuery
from accord.query.model import Variable

MAX_REASON_CHARS = 500
MAX_PARAMETERS = 21

Check: TypeAlias = Callable[[dict[str, Any], dict[str, Any], SmallCellProfile], dict[str, Any]]
Combine: TypeAlias = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any] | None]


def accept_result(analysis: dict[str, Any], result: object) -> dict[str, Any]:
    """Check a decrypted result is exactly what ``analysis``'s disclosure step produces,
    and return it rebuilt from its checked parts. Raises ValueError naming what is wrong.
    """
    if not isinstance(result, dict):
        raise ValueError("result is not an object")
    kind = analysis.get("type")
    if result.get("analysis") != kind:
        raise ValueError(f"result is not a {kind} result")
    check = CHECKS.get(str(kind))
    if check is None:
        raise ValueError(f"the hub cannot check {kind} results")
    fields = {"analysis", "profile", *FIELDS[str(kind)]}
    if set(result) != fields:
        extra = sorted(map(str, set(result) - fields))
        missing = sorted(fields - set(result))
        wrong = "; ".join(
            part
            for part in (
                f"unexpected {', '.join(extra)}" if extra else "",
                f"missing {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise ValueError(
            f"a {kind} result has exactly the fields {', '.join(sorted(fields))} ({wrong})"
        )
    profile = SmallCellProfile.from_json(result["profile"])
    try:
        checked = check(analysis, result, profile)
    except UserError as error:
        raise ValueError(error.message) from None
    return {"analysis": kind, **checked, "profile": profile.to_json()}


def summarise(view: TaskView) -> dict[str, Any]:
    """The combined result over the members that answered, and how many answered."""
    results = [
        a.result
        for a in view.assignments
        if a.status == DONE and a.result is not None and "analysis" in a.result
    ]
    answered = sum(1 for a in view.assignments if a.status != "pending")
    combine = COMBINERS.get(str(view.analysis.get("type")))
    summary: dict[str, Any] = {"members": len(view.assignments), "answered": answered}
    if combine is not None and results:
        summary.update(combine(view.analysis, results) or {})
    return summary


def accept_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a refusal needs a reason as text")
    return reason[:MAX_REASON_CHARS]


def released_count(profile: SmallCellProfile, obj: object) -> DisclosedCount:
    """A count as a member's disclosure step releases it: 0, suppressed, or a multiple of
    the rounding from the smallest figure the profile releases up."""
    count = DisclosedCount.from_json(obj)
    if count.value is None and not count.suppressed:
        raise ValueError("a count is neither released nor suppressed")
    check_released_value(profile, count.value, "count")
    return count


# Per analysis: the fields its result carries besides analysis and profile, how the hub
# checks them, and how it combines members' results.


def check_count(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    return {"disclosed": released_count(profile, result["disclosed"]).to_json()}


def combine_count(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    counts = [DisclosedCount.from_json(r["disclosed"]) for r in results]
    return {"total": combine_total(counts).to_json()}


def check_glm(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    """A model part: finite sums of the model's shape over at least the profile's
    minimum of persons."""
    part = GlmPart.from_json(result["part"])
    expected = len(analysis.get("beta", ()))
    if part.p != expected or part.p > MAX_PARAMETERS:
        raise ValueError(f"a model part has {part.p} coefficients; the model has {expected}")
    numbers = [part.score, part.information, part.column_sums]
    scalars = [part.deviance, part.pearson_chi2, part.outcome_sum]
    if not all(np.all(np.isfinite(a)) for a in numbers) or not np.all(np.isfinite(scalars)):
        raise ValueError("a model part holds a number that is not finite")
    if 0 < part.n < profile.threshold + part.p:
        raise ValueError("a model part covers fewer persons than its disclosure profile allows")
    if part.boundary > 1:
        raise ValueError("a model part says how many rows sit at the boundary, not whether any do")
    return {"part": part.to_json()}


def check_survival(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    """Survival counts on the task's own grid, every event count 0 or at least the
    threshold, over at least the threshold of persons."""
    counts = survival.KmCounts.from_json(result["counts"])
    grid = survival.Grid.regular(
        stop=float(analysis["horizon_days"]), step=float(analysis["step_days"])
    )
    if counts.grid != grid:
        raise ValueError("survival counts are not on the task's grid")
    if any(0 < c < profile.threshold for c in (*counts.events, counts.rows)):
        raise ValueError("survival counts do not follow the result's own disclosure profile")
    return {"counts": counts.to_json()}


def combine_survival(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    counts = survival.combine(survival.KmCounts.from_json(r["counts"]) for r in results)
    return {"counts": counts.to_json(), "curve": survival.km(counts).to_json()}


def check_distinct(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    sketch = distinct.Sketch.from_json(result["sketch"])
    if sketch.p != analysis.get("precision"):
        raise ValueError("the sketch's precision is not the task's")
    without = released_count(profile, result["without_id"])
    return {"sketch": sketch.to_json(), "without_id": without.to_json()}


def combine_distinct(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    merged = distinct.merge(distinct.Sketch.from_json(r["sketch"]) for r in results)
    without = combine_total(DisclosedCount.from_json(r["without_id"]) for r in results)
    return {"distinct": distinct.estimate(merged).to_json(), "without_id": without.to_json()}


# Secure aggregation: the hub sums the members' masked vectors and learns only the total,
# which it releases under the strictest profile of the members in the round.


def strictest(profiles: list[SmallCellProfile]) -> SmallCellProfile:
    """The profile no member's rules are looser than: the highest threshold and rounding."""
    if not profiles:
        raise ValueError("a secure total needs the profiles of the members in it")
    threshold = max(p.threshold for p in profiles)
    rounding = max(p.rounding for p in profiles)
    return SmallCellProfile(
        name=f"strictest-of-{len(profiles)}-members-{threshold}-round-{rounding}",
        threshold=threshold,
        rounding=rounding,
    )


def secure_total(
    analysis: dict[str, Any], total: NDArray[np.float64], profiles: list[SmallCellProfile]
) -> dict[str, Any]:
    """The summary of a secure sum: the total released under the strictest profile, or
    ``withheld`` with the rule it broke. Raises ValueError for a total of the wrong shape.
    """
    kind = str(analysis.get("type"))
    release = SECURE_TOTALS.get(kind)
    if release is None:
        raise ValueError(f"{kind} cannot be computed by secure aggregation")
    profile = strictest(profiles)
    try:
        released = release(analysis, np.asarray(total, dtype=np.float64), profile)
    except UserError as error:
        raise ValueError(error.message) from None
    return {**released, "profile": profile.to_json()}


def _secure_count(
    analysis: dict[str, Any], total: NDArray[np.float64], profile: SmallCellProfile
) -> dict[str, Any]:
    if total.shape != (1,):
        raise ValueError("a count's total is one number")
    return {"total": apply_count(profile, round(float(total[0]))).to_json()}


def _secure_glm(
    analysis: dict[str, Any], total: NDArray[np.float64], profile: SmallCellProfile
) -> dict[str, Any]:
    p = len(analysis.get("beta", ()))
    part = GlmPart.from_vector(total, str(analysis.get("family")), p)
    if 0 < part.n < profile.threshold + part.p:
        return {"withheld": "the model covers too few persons for the members' rules"}
    return {"part": part.to_json()}


def _secure_survival(
    analysis: dict[str, Any], total: NDArray[np.float64], profile: SmallCellProfile
) -> dict[str, Any]:
    grid = survival.Grid.regular(
        stop=float(analysis["horizon_days"]), step=float(analysis["step_days"])
    )
    counts = survival.KmCounts.from_vector(grid, total)
    if any(0 < c < profile.threshold for c in (*counts.events, counts.rows)):
        return {
            "withheld": f"a point of the survival grid holds fewer than {profile.threshold} "
            "events over the members; a wider step_days groups more"
        }
    return {"counts": counts.to_json(), "curve": survival.km(counts).to_json()}


def _secure_histogram(
    analysis: dict[str, Any], total: NDArray[np.float64], profile: SmallCellProfile
) -> dict[str, Any]:
    part = histograms.HistogramPart.from_vector(total, analysis["edges"])
    return {"histogram": tables.release_histogram(profile, part).to_json()}


def _secure_summary(
    analysis: dict[str, Any], total: NDArray[np.float64], profile: SmallCellProfile
) -> dict[str, Any]:
    moments = Moments.from_vector(total[:3], [SummaryQuery.from_json(analysis).shift])
    if 0 < moments.n < profile.threshold + 1:
        return {"withheld": "the summary covers too few persons for the members' rules"}
    part = histograms.HistogramPart.from_vector(total[3:], analysis["edges"])
    released = tables.release_histogram(profile, part)
    lower = tables.combine_released_histograms([released]).lower_bounds()
    return {
        "summary": histograms.summarise(moments, lower).to_json(),
        "histogram": released.to_json(),
    }


def _secure_correlation(
    analysis: dict[str, Any], total: NDArray[np.float64], profile: SmallCellProfile
) -> dict[str, Any]:
    k = len(analysis["variables"])
    moments = Moments.from_vector(total, [0.0] * k)
    if 0 < moments.n < profile.threshold + k:
        return {"withheld": "the correlation covers too few persons for the members' rules"}
    return {"correlation": _correlation(analysis, moments)}


SECURE_TOTALS: Mapping[
    str, Callable[[dict[str, Any], NDArray[np.float64], SmallCellProfile], dict[str, Any]]
] = {
    "count_persons": _secure_count,
    "glm_step": _secure_glm,
    "histogram": _secure_histogram,
    "summary": _secure_summary,
    "correlation": _secure_correlation,
    "kaplan_meier": _secure_survival,
}


def check_cells(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    released = tables.check_released_cells(profile, result["cells"], _labels(analysis["by"]))
    return {"cells": released.to_json()}


def combine_cells(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [tables.ReleasedCells.from_json(r["cells"]) for r in results]
    return {"cells": tables.combine_released_cells(parts).to_json()}


def check_histogram(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    released = tables.check_released_histogram(profile, result["histogram"], analysis["edges"])
    return {"histogram": released.to_json()}


def combine_histogram(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [tables.ReleasedHistogram.from_json(r["histogram"]) for r in results]
    return {"histogram": tables.combine_released_histograms(parts).to_json()}


def check_summary(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    moments = tables.check_released_moments(profile, result["moments"])
    if moments.k != 1 or moments.shift != (SummaryQuery.from_json(analysis).shift,):
        raise ValueError("a summary's moments are not of one variable around the agreed shift")
    checked = check_histogram(analysis, result, profile)
    return {"moments": moments.to_json(), **checked}


def combine_summary(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    moments = combine_moments([Moments.from_json(r["moments"]) for r in results])
    hist = tables.combine_released_histograms(
        [tables.ReleasedHistogram.from_json(r["histogram"]) for r in results]
    )
    return {
        "summary": histograms.summarise(moments, hist.lower_bounds()).to_json(),
        "histogram": hist.to_json(),
    }


def check_moments(
    analysis: dict[str, Any], result: dict[str, Any], profile: SmallCellProfile
) -> dict[str, Any]:
    moments = tables.check_released_moments(profile, result["moments"])
    if moments.k != len(analysis["variables"]) or any(moments.shift):
        raise ValueError("the moments are not of the task's variables")
    return {"moments": moments.to_json()}


def combine_correlation(analysis: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    moments = combine_moments([Moments.from_json(r["moments"]) for r in results])
    return {"correlation": _correlation(analysis, moments)}


def _correlation(analysis: dict[str, Any], moments: Moments) -> dict[str, Any]:
    labels = _labels(analysis["variables"])
    if moments.n < 2:
        return {"variables": labels, "n": moments.n, "withheld": "fewer than 2 persons"}
    try:
        matrix = correlation(moments, labels)
    except UserError as error:
        return {"variables": labels, "n": moments.n, "withheld": error.message}
    return {
        "variables": labels,
        "n": moments.n,
        "mean": mean(moments).tolist(),
        "sd": std(moments).tolist(),
        "matrix": matrix.tolist(),
    }


def _labels(variables: list[dict[str, Any]]) -> list[str]:
    return [Variable.from_json(v).label for v in variables]


FIELDS: Mapping[str, frozenset[str]] = {
    "count_persons": frozenset({"disclosed"}),
    "count_by": frozenset({"cells"}),
    "glm_step": frozenset({"part"}),
    "histogram": frozenset({"histogram"}),
    "summary": frozenset({"moments", "histogram"}),
    "correlation": frozenset({"moments"}),
    "kaplan_meier": frozenset({"counts"}),
    "distinct_persons": frozenset({"sketch", "without_id"}),
}
CHECKS: Mapping[str, Check] = {
    "count_persons": check_count,
    "count_by": check_cells,
    "glm_step": check_glm,
    "histogram": check_histogram,
    "summary": check_summary,
    "correlation": check_moments,
    "kaplan_meier": check_survival,
    "distinct_persons": check_distinct,
}
COMBINERS: Mapping[str, Combine] = {
    "count_persons": combine_count,
    "count_by": combine_cells,
    "histogram": combine_histogram,
    "summary": combine_summary,
    "correlation": combine_correlation,
    "kaplan_meier": combine_survival,
    "distinct_persons": combine_distinct,
}
