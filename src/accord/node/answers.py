"""What a member releases for each allowlisted analysis.

The executor reads the member's rows; each function here reduces them to what the
analysis needs (a count, counts per stratum or bin, sums, survival counts, a sketch) and
passes that through the member's disclosure rules, or refuses with a reason that names
the rule broken and never a patient's data. Every result carries the profile it was
released under, so the hub can check the figures follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias, cast

import numpy as np
from numpy.typing import NDArray

from accord.analysis import distinct, survival
from accord.analysis.cells import CellCounts
from accord.analysis.glm import Family, GlmPart, local_part
from accord.analysis.histograms import local_histogram
from accord.analysis.moments import Moments, local_moments
from accord.errors import QueryError
from accord.privacy import tables
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.privacy.models import model_refusal
from accord.query.model import (
    Analysis,
    Correlation,
    CountBy,
    CountPersons,
    DistinctPersons,
    GlmStep,
    Histogram,
    KaplanMeier,
    Summary,
)


class Refusal(Exception):
    """The node will not run this task; the reason is safe to send to the hub."""


@dataclass(frozen=True)
class Release:
    """What the member's rules say about releasing: its small-cell profile, and the
    consortium's patient-token key (held by members, never by the hub) if it has one."""

    profile: SmallCellProfile
    patient_key: bytes | None = None


Answer: TypeAlias = Callable[[Any, Any, Release], dict[str, Any]]


def answer(query: Analysis, data: Any, release: Release) -> dict[str, Any]:
    """The released result of ``query`` from the member's ``data`` (see ``ANSWERS``)."""
    result = ANSWERS[type(query)](query, data, release)
    return {"analysis": query.TYPE, **result, "profile": release.profile.to_json()}


def count_persons(query: CountPersons, n: int, release: Release) -> dict[str, Any]:
    return {"disclosed": apply_count(release.profile, n).to_json()}


def glm_step(
    query: GlmStep,
    data: tuple[NDArray[np.float64], NDArray[np.float64]],
    release: Release,
) -> dict[str, Any]:
    """This member's part of one step of a model, if its disclosure rules allow it."""
    design, outcome = data
    withheld = model_refusal(release.profile, design, outcome, query.family)
    if withheld is not None:
        raise Refusal(withheld)
    try:
        part = local_part(design, outcome, np.asarray(query.beta), cast(Family, query.family))
    except QueryError as error:  # says what is wrong with the rows, never their values
        raise Refusal(f"the model cannot be computed at this node: {error.message}") from None
    # How many rows sit at a fitted 0 or 1 is itself a count of persons; the fit only
    # needs to know whether any do, so a member says yes or no.
    return {"part": replace(part, boundary=min(part.boundary, 1)).to_json()}


def count_by(query: CountBy, rows: list[tuple[Any, ...]], release: Release) -> dict[str, Any]:
    """Persons per stratum, each count through the small-cell rule."""
    cells = CellCounts(
        tuple(v.label for v in query.by), tuple((row[:-1], int(row[-1])) for row in rows)
    )
    try:
        released = tables.release_cells(release.profile, cells)
    except ValueError as error:
        raise Refusal(str(error)) from None
    return {"cells": released.to_json()}


def histogram(query: Histogram, values: NDArray[np.float64], release: Release) -> dict[str, Any]:
    """Persons per bin of the query's edges (and below, above, unknown), each count
    through the small-cell rule."""
    part = local_histogram(values[:, 0], query.edges)
    return {"histogram": tables.release_histogram(release.profile, part).to_json()}


def summary(query: Summary, values: NDArray[np.float64], release: Release) -> dict[str, Any]:
    """The variable's moments (around the middle of the edges, the shift every member
    uses) and its histogram, if the member's rules allow both."""
    known = values[~np.isnan(values[:, 0])]
    moments = local_moments(known, shift=[query.shift])
    _refuse_moments(release, moments, known)
    part = local_histogram(values[:, 0], query.edges)
    released = tables.release_histogram(release.profile, part)
    return {"moments": moments.to_json(), "histogram": released.to_json()}


def correlation(
    query: Correlation, values: NDArray[np.float64], release: Release
) -> dict[str, Any]:
    """Sums and cross-products of the variables over persons with every value known."""
    known = values[~np.isnan(values).any(axis=1)]
    moments = local_moments(known)
    _refuse_moments(release, moments, known)
    return {"moments": moments.to_json()}


def _refuse_moments(release: Release, moments: Moments, rows: NDArray[np.float64]) -> None:
    withheld = tables.moments_refusal(release.profile, moments, rows)
    if withheld is not None:
        raise Refusal(withheld)


def kaplan_meier(
    query: KaplanMeier, rows: list[tuple[Any, ...]], release: Release
) -> dict[str, Any]:
    """Counts at risk, of events and of censorings on the query's grid.

    Each person is followed from the index date to the first event or to the censor date
    (the end of the observation period holding the index date, or ``as_of``). The rule:
    the cohort holds at least the threshold of persons, and every grid point's events are
    0 or at least the threshold, since one event among few is one person's outcome and
    its date; a wider ``step_days`` groups more. Censorings say only that a person's
    follow-up ended in an interval, and are released as they are (the numbers at risk
    would give them away anyway).
    """
    counts = survival_counts(query, rows)
    if _small(release.profile, counts.events) or 0 < counts.rows < release.profile.threshold:
        raise Refusal(
            f"a point of the survival grid holds fewer than {release.profile.threshold} "
            "events at this member; a wider step_days groups more"
        )
    return {"counts": counts.to_json()}


def survival_counts(query: KaplanMeier, rows: list[tuple[Any, ...]]) -> survival.KmCounts:
    """Counts on the query's grid from each person's index, event and censor dates."""
    as_of = query.cohort.as_of
    durations, events = [], []
    for index, event, censor in rows:
        end = min(censor or as_of, as_of)
        happened = event is not None and event <= end
        durations.append(((event if happened else end) - index).days)
        events.append(1 if happened else 0)
    grid = survival.Grid.regular(stop=float(query.horizon_days), step=float(query.step_days))
    return survival.local_counts(
        np.asarray(durations, dtype=np.float64), np.asarray(events, dtype=np.int64), grid
    )


def distinct_persons(
    query: DistinctPersons, rows: list[tuple[Any, ...]], release: Release
) -> dict[str, Any]:
    """A HyperLogLog sketch of keyed tokens of the cohort's national ids, and the number
    of persons without one (who cannot be matched across members), released as a count.
    """
    if release.patient_key is None:
        raise Refusal(
            "this member holds no consortium patient key, so it cannot take part in "
            "counting distinct patients"
        )
    ids = [
        row[0] for row in rows if isinstance(row[0], str) and distinct.normalise_national_id(row[0])
    ]
    if 0 < len(rows) < release.profile.threshold:
        raise Refusal(f"the cohort holds fewer than {release.profile.threshold} persons here")
    tokens = distinct.patient_tokens(ids, release.patient_key)
    sketch = distinct.Sketch.of(tokens, p=query.precision)
    without = apply_count(release.profile, len(rows) - len(ids))
    return {"sketch": sketch.to_json(), "without_id": without.to_json()}


# Secure aggregation: instead of its released result, a member contributes a vector of
# sums that is masked before it leaves (accord.trust.secagg), so the hub learns only the
# consortium's totals, which it releases under the strictest member's profile
# (accord.hub.aggregation.secure_total). Counts, histograms and survival counts are then
# checked on the totals. Moments and model parts still pass the member's own rules
# first: those rules look at groups of rows (a variable's few values, pairs of binary
# variables) that a total no longer shows.


def secure_vector(query: Analysis, data: Any, release: Release) -> NDArray[np.float64]:
    """This member's contribution to a secure sum of ``query``: its raw sums, unrounded.
    Raises ``Refusal`` for an analysis that cannot be summed or that its rules forbid."""
    vector = SECURE_VECTORS.get(type(query))
    if vector is None:
        raise Refusal(f"{query.TYPE} cannot be computed by secure aggregation")
    return vector(query, data, release)


def _count_vector(query: CountPersons, n: int, release: Release) -> NDArray[np.float64]:
    return np.array([float(n)])


def _glm_vector(
    query: GlmStep, data: tuple[NDArray[np.float64], NDArray[np.float64]], release: Release
) -> NDArray[np.float64]:
    part = GlmPart.from_json(glm_step(query, data, release)["part"])
    return part.to_vector()


def _histogram_vector(
    query: Histogram, values: NDArray[np.float64], release: Release
) -> NDArray[np.float64]:
    return local_histogram(values[:, 0], query.edges).to_vector()


def _summary_vector(
    query: Summary, values: NDArray[np.float64], release: Release
) -> NDArray[np.float64]:
    summary(query, values, release)  # the member's own rules still decide if it joins
    known = values[~np.isnan(values[:, 0])]
    moments = local_moments(known, shift=[query.shift])
    part = local_histogram(values[:, 0], query.edges)
    return np.concatenate([moments.to_vector(), part.to_vector()])


def _correlation_vector(
    query: Correlation, values: NDArray[np.float64], release: Release
) -> NDArray[np.float64]:
    correlation(query, values, release)  # the member's own rules still decide if it joins
    return local_moments(values[~np.isnan(values).any(axis=1)]).to_vector()


def _survival_vector(
    query: KaplanMeier, rows: list[tuple[Any, ...]], release: Release
) -> NDArray[np.float64]:
    counts = survival_counts(query, rows)
    return counts.to_vector()


def _small(profile: SmallCellProfile, counts: tuple[int, ...]) -> bool:
    return any(0 < c < profile.threshold for c in counts)


SECURE_VECTORS: Mapping[type[Any], Callable[[Any, Any, Release], NDArray[np.float64]]] = {
    CountPersons: _count_vector,
    GlmStep: _glm_vector,
    Histogram: _histogram_vector,
    Summary: _summary_vector,
    Correlation: _correlation_vector,
    KaplanMeier: _survival_vector,
}
ANSWERS: Mapping[type[Any], Answer] = {
    CountPersons: count_persons,
    CountBy: count_by,
    GlmStep: glm_step,
    Histogram: histogram,
    Summary: summary,
    Correlation: correlation,
    KaplanMeier: kaplan_meier,
    DistinctPersons: distinct_persons,
}
