"""Disclosure control for tables, histograms and moments: pure functions, no I/O.

A member applies its :class:`SmallCellProfile` to every figure before it leaves:

- every cell of a table (:func:`release_cells`) and every bin of a histogram, with its
  counts below and above the edges and of missing values (:func:`release_histogram`),
  goes through :func:`apply_count`: 0 stays 0, 1 to ``threshold - 1`` is suppressed
  (released as ``None``), anything else is rounded;
- a table of more than ``MAX_CELLS`` cells is refused (:func:`cells_refusal`): so fine a
  table says more about single rows than a summary should;
- moments (means, covariances, correlations) are released whole or refused
  (:func:`moments_refusal`).

Secondary suppression. A suppressed cell can be recovered by subtraction when the total
of its row, column or table is released exactly beside the other cells. A released
table here carries no margins and the hub only adds members' released cells, so within
a release primary suppression suffices and no cell is suppressed for the sake of
another. Histograms are the exception: the moments of the same variable (released with
it for a summary) carry its exact number of values, which is the total of the bins and
of the counts below and above the edges. So when exactly one of those cells is
suppressed, :func:`release_histogram` also suppresses the smallest other cell that
holds values, and the difference then only bounds the sum of two cells, one of them at
least ``threshold``. What no single release can prevent is differencing across queries:
a count of the same cohort bounds the sum of a table's suppressed cells, to within the
rounding of the count and of the cells (exactly, under a profile that does not round),
and so does that count against a histogram's missing values and the moments' ``n``.

Moments. The moments of ``k`` variables hold everything a gaussian regression of any one
of them on the others needs (``k`` parameters with the intercept), so the rule for
models applies (:mod:`accord.privacy.models`): at least ``threshold`` residual degrees of
freedom, ``n >= threshold + k``, or no rows at all (zeros, as a count of 0 is released
as 0). They also give away counts: for a variable with at most three distinct values,
``n``, ``sum x`` and ``sum x**2`` solve for how many rows hold each value, and for two
two-valued variables ``sum x_i x_j`` adds the four joint counts. So every such group must
be empty or hold at least ``threshold`` rows, as for a model's binary variables. (These
are the cases where the moments fix the counts exactly; other combinations leave them
some freedom.)

At the hub, :func:`check_released_cells`, :func:`check_released_histogram` and
:func:`check_released_moments` accept exactly what the member-side functions can produce
under the stated profile (raising ValueError naming what is wrong, never a count), and
:func:`combine_released_cells` and :func:`combine_released_histograms` add released
figures with :func:`combine_total`: a suppressed member cell is left out and the total
marked as a lower bound, with the number of suppressed member cells beside it.

Example:
    >>> from accord.analysis.cells import local_cells
    >>> profile = SmallCellProfile()
    >>> cells = local_cells([1] * 12 + [2] * 3 + [3] * 23, ["stage"])
    >>> release_cells(profile, cells).to_json()["cells"]
    [{'key': [1], 'count': 10}, {'key': [2], 'count': None}, {'key': [3], 'count': 25}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from accord.analysis.cells import CellCounts, Key, as_key, check_variables, sort_cells
from accord.analysis.histograms import HistogramPart, check_edges
from accord.analysis.moments import Moments
from accord.errors import QueryError
from accord.privacy.disclosure import (
    DisclosedCount,
    SmallCellProfile,
    apply_count,
    combine_total,
)

MAX_CELLS: Final = 1000
_HISTOGRAM_FIELDS: Final = ("counts", "below", "above", "missing")


# --- released forms ------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasedCells:
    """A member's table after disclosure: ``(key, count)`` pairs sorted by key, where
    ``count`` is the released value, or None for a suppressed cell."""

    variables: tuple[str, ...]
    cells: tuple[tuple[Key, int | None], ...]

    def __post_init__(self) -> None:
        variables = _checked(check_variables, self.variables)
        if not isinstance(self.cells, tuple | list):
            raise ValueError("released cells: expected a list of (key, count) pairs")
        if len(self.cells) > MAX_CELLS:
            raise ValueError(f"released cells: more than {MAX_CELLS} cells")
        cells = []
        for i, item in enumerate(self.cells):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(f"released cells[{i}]: expected a (key, count) pair")
            key = _checked(as_key, item[0], len(variables), f"released cells[{i}].key")
            cells.append((key, _released(item[1], f"released cells[{i}].count")))
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "cells", _checked(sort_cells, cells, "released cells"))

    def to_json(self) -> dict[str, Any]:
        """``{"variables": [...], "cells": [{"key": [...], "count": n or null}, ...]}``."""
        return {
            "variables": list(self.variables),
            "cells": [{"key": list(key), "count": count} for key, count in self.cells],
        }

    @classmethod
    def from_json(cls, data: object) -> ReleasedCells:
        """Parse :meth:`to_json` output; ValueError naming the first problem otherwise."""
        fields = _fields(data, "released cells", {"variables", "cells"})
        if not isinstance(fields["variables"], list) or not isinstance(fields["cells"], list):
            raise ValueError("released cells: variables and cells must be lists")
        pairs: list[Any] = []
        for i, cell in enumerate(fields["cells"][: MAX_CELLS + 1]):
            item = _fields(cell, f"released cells[{i}]", {"key", "count"})
            if not isinstance(item["key"], list):
                raise ValueError(f"released cells[{i}].key: expected a list of categories")
            pairs.append((item["key"], item["count"]))
        return cls(tuple(fields["variables"]), tuple(pairs))


@dataclass(frozen=True)
class ReleasedHistogram:
    """A member's histogram after disclosure: the released value of each bin, of the
    counts below and above the edges and of missing values, None where suppressed."""

    edges: tuple[float, ...]
    counts: tuple[int | None, ...]
    below: int | None
    above: int | None
    missing: int | None

    def __post_init__(self) -> None:
        edges = _checked(check_edges, self.edges, "released histogram: edges")
        counts: object = self.counts
        if not isinstance(counts, tuple | list) or len(counts) != len(edges) - 1:
            raise ValueError(f"released histogram: expected {len(edges) - 1} counts, one per bin")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(
            self,
            "counts",
            tuple(_released(c, f"released histogram: counts[{i}]") for i, c in enumerate(counts)),
        )
        for name in ("below", "above", "missing"):
            value = _released(getattr(self, name), f"released histogram: {name}")
            object.__setattr__(self, name, value)

    @property
    def value_cells(self) -> tuple[int | None, ...]:
        """The cells whose total is the number of values: the bins, below and above."""
        return (*self.counts, self.below, self.above)

    def to_json(self) -> dict[str, Any]:
        """``{"edges", "counts", "below", "above", "missing"}``, null where suppressed."""
        return {
            "edges": list(self.edges),
            "counts": list(self.counts),
            "below": self.below,
            "above": self.above,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: object) -> ReleasedHistogram:
        """Parse :meth:`to_json` output; ValueError naming the first problem otherwise."""
        fields = _fields(data, "released histogram", {"edges", *_HISTOGRAM_FIELDS})
        for name in ("edges", "counts"):
            if not isinstance(fields[name], list):
                raise ValueError(f"released histogram: {name} must be a list")
        return cls(**fields)


# --- at the member -------------------------------------------------------------------


def cells_refusal(profile: SmallCellProfile, cells: CellCounts) -> str | None:
    """Why this member must not release this table at all, or None.

    The reason names the rule broken, never a count of rows.
    """
    del profile  # every profile refuses the same tables; kept for a uniform signature
    if len(cells.cells) > MAX_CELLS:
        return (
            f"the table has more than {MAX_CELLS} cells at this member; "
            "group the categories more coarsely"
        )
    return None


def release_cells(profile: SmallCellProfile, cells: CellCounts) -> ReleasedCells:
    """Release a member's table cell by cell.

    Raises ValueError with the reason when :func:`cells_refusal` refuses the table.
    """
    reason = cells_refusal(profile, cells)
    if reason is not None:
        raise ValueError(reason)
    return ReleasedCells(
        cells.variables,
        tuple((key, apply_count(profile, count).value) for key, count in cells.cells),
    )


def release_histogram(profile: SmallCellProfile, hist: HistogramPart) -> ReleasedHistogram:
    """Release a member's histogram cell by cell, with secondary suppression when a lone
    cell among the bins, below and above would be suppressed (see the module's notes).

    Example:
        >>> hist = HistogramPart((0.0, 1.0, 2.0, 3.0), (40, 3, 12), below=0, above=25)
        >>> release_histogram(SmallCellProfile(), hist).to_json()
        {'edges': [0.0, 1.0, 2.0, 3.0], 'counts': [40, None, None], 'below': 0, 'above': 25, 'missing': 0}
    """  # noqa: E501 - a doctest's output is one line
    raw = (*hist.counts, hist.below, hist.above)
    released = [apply_count(profile, count).value for count in raw]
    alone = [i for i, count in enumerate(raw) if 0 < count < profile.threshold]
    if len(alone) == 1:
        others = [i for i, count in enumerate(raw) if count >= profile.threshold]
        if others:
            released[min(others, key=lambda i: (raw[i], i))] = None
    bins = len(hist.counts)
    return ReleasedHistogram(
        edges=hist.edges,
        counts=tuple(released[:bins]),
        below=released[bins],
        above=released[bins + 1],
        missing=apply_count(profile, hist.missing).value,
    )


def moments_refusal(profile: SmallCellProfile, moments: Moments, rows: ArrayLike) -> str | None:
    """Why this member must not release ``moments`` of ``rows``, or None.

    ``rows`` is the ``n x k`` array the moments were computed from. The reason names the
    rule broken, never a count or a value.

    Example:
        >>> from accord.analysis.moments import local_moments
        >>> profile = SmallCellProfile(threshold=3)
        >>> x = np.column_stack([np.arange(8.0), [0, 0, 0, 1, 1, 1, 1, 1]])
        >>> moments_refusal(profile, local_moments(x), x) is None
        True
        >>> moments_refusal(profile, local_moments(x[1:]), x[1:])
        'a variable with at most three distinct values has one held by fewer than 3 rows'
    """
    n, k = moments.n, moments.k
    x = np.asarray(rows, dtype=np.float64)
    if x.shape != (n, k):
        raise ValueError(f"rows have shape {x.shape}, but the moments are of {n} x {k}")
    if n == 0:
        return None
    if n < profile.threshold + k:
        variables = "one variable" if k == 1 else f"{k} variables"
        return (
            f"too few rows at this member for the moments of {variables} (fewer than "
            f"{profile.threshold} more rows than variables)"
        )
    two_valued = []
    for j in range(k):
        values, counts = np.unique(x[:, j], return_counts=True)
        if len(values) <= 3 and np.any(counts < profile.threshold):
            return (
                "a variable with at most three distinct values has one held by fewer than "
                f"{profile.threshold} rows"
            )
        if len(values) == 2:
            two_valued.append(x[:, j] == values[1])
    if len(two_valued) >= 2:
        groups = np.column_stack(two_valued).astype(np.float64)
        ones = groups.sum(axis=0)
        both = groups.T @ groups
        cells = np.concatenate(
            [
                both.ravel(),
                (ones[:, None] - both).ravel(),
                (n - ones[:, None] - ones[None, :] + both).ravel(),
            ]
        )
        if np.any((cells > 0) & (cells < profile.threshold)):
            return (
                "two of the variables' values together pick out a group of fewer than "
                f"{profile.threshold} rows"
            )
    return None


# --- at the hub ----------------------------------------------------------------------


def check_released_cells(
    profile: SmallCellProfile, data: object, variables: Sequence[str] | None = None
) -> ReleasedCells:
    """Parse a member's released table and check it follows ``profile`` (and, if given,
    is by the query's ``variables``).

    Raises ValueError naming what is wrong, never a count.
    """
    released = ReleasedCells.from_json(data)
    if variables is not None and released.variables != tuple(variables):
        raise ValueError("released table is not by the query's variables")
    for i, (_, count) in enumerate(released.cells):
        check_released_value(profile, count, f"cells[{i}]")
    return released


def check_released_histogram(
    profile: SmallCellProfile, data: object, edges: Sequence[float] | None = None
) -> ReleasedHistogram:
    """Parse a member's released histogram and check it follows ``profile``, including
    the secondary suppression of :func:`release_histogram` (and, if given, is on the
    query's ``edges``).

    Raises ValueError naming what is wrong, never a count.
    """
    released = ReleasedHistogram.from_json(data)
    if edges is not None and released.edges != tuple(float(e) for e in edges):
        raise ValueError("released histogram is not on the query's edges")
    for i, count in enumerate(released.counts):
        check_released_value(profile, count, f"histogram counts[{i}]")
    for name in ("below", "above", "missing"):
        check_released_value(profile, getattr(released, name), f"histogram {name}")
    cells = released.value_cells
    if sum(count is None for count in cells) == 1 and any(count for count in cells):
        raise ValueError(
            "histogram has a single suppressed cell among its bins, below and above: "
            "a second must be suppressed with it"
        )
    return released


def check_released_moments(profile: SmallCellProfile, data: object) -> Moments:
    """Parse a member's released moments and check their ``n`` is allowed by ``profile``.

    Raises ValueError naming what is wrong.
    """
    try:
        moments = Moments.from_json(data)
    except QueryError as error:
        raise ValueError(error.message) from None
    if 0 < moments.n < profile.threshold + moments.k:
        raise ValueError("moments cover fewer rows than their disclosure profile allows")
    return moments


@dataclass(frozen=True)
class CombinedCount:
    """The consortium's figure for one cell: ``total`` from :func:`combine_total` (a
    lower bound when ``suppressed`` is not 0), and ``suppressed``, how many members'
    counts there were suppressed (each between 1 and its threshold - 1)."""

    total: DisclosedCount
    suppressed: int

    @property
    def value(self) -> int:
        return self.total.value or 0

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "display": self.total.display,
            "suppressed": self.suppressed,
        }


@dataclass(frozen=True)
class CombinedCells:
    """The members' released tables added key by key."""

    variables: tuple[str, ...]
    members: int
    cells: tuple[tuple[Key, CombinedCount], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "variables": list(self.variables),
            "members": self.members,
            "cells": [{"key": list(key), **count.to_json()} for key, count in self.cells],
        }


@dataclass(frozen=True)
class CombinedHistogram:
    """The members' released histograms added bin by bin."""

    edges: tuple[float, ...]
    members: int
    counts: tuple[CombinedCount, ...]
    below: CombinedCount
    above: CombinedCount
    missing: CombinedCount

    def lower_bounds(self) -> HistogramPart:
        """The released totals as a histogram, suppressed member counts taken as 0: what
        :func:`~accord.analysis.histograms.quantiles` and ``summarise`` can work from."""
        return HistogramPart(
            edges=self.edges,
            counts=tuple(c.value for c in self.counts),
            below=self.below.value,
            above=self.above.value,
            missing=self.missing.value,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "members": self.members,
            "counts": [c.to_json() for c in self.counts],
            "below": self.below.to_json(),
            "above": self.above.to_json(),
            "missing": self.missing.to_json(),
        }


def combine_released_cells(parts: Sequence[ReleasedCells]) -> CombinedCells:
    """Add members' released tables key by key (a key a member does not list is 0 there).

    Example:
        >>> a = ReleasedCells(("stage",), (((1,), 10), ((2,), None)))
        >>> b = ReleasedCells(("stage",), (((1,), 25),))
        >>> combine_released_cells([a, b]).to_json()["cells"]
        [{'key': [1], 'value': 35, 'display': '35', 'suppressed': 0}, {'key': [2], 'value': 0, 'display': '≥0', 'suppressed': 1}]
    """  # noqa: E501 - a doctest's output is one line
    if not parts:
        raise ValueError("no released tables to combine: no member answered")
    variables = parts[0].variables
    by_key: dict[Key, list[int | None]] = {}
    for i, part in enumerate(parts):
        if part.variables != variables:
            raise ValueError(f"released table {i} is by other variables than the first")
        for key, count in part.cells:
            by_key.setdefault(key, []).append(count)
    cells = [(key, _combined(counts)) for key, counts in by_key.items()]
    return CombinedCells(variables, len(parts), _checked(sort_cells, cells, "combined cells"))


def combine_released_histograms(parts: Sequence[ReleasedHistogram]) -> CombinedHistogram:
    """Add members' released histograms bin by bin; all must be on the same edges."""
    if not parts:
        raise ValueError("no released histograms to combine: no member answered")
    edges = parts[0].edges
    for i, part in enumerate(parts):
        if part.edges != edges:
            raise ValueError(f"released histogram {i} is on other edges than the first")
    return CombinedHistogram(
        edges=edges,
        members=len(parts),
        counts=tuple(_combined([part.counts[b] for part in parts]) for b in range(len(edges) - 1)),
        below=_combined([part.below for part in parts]),
        above=_combined([part.above for part in parts]),
        missing=_combined([part.missing for part in parts]),
    )


# --- internals -----------------------------------------------------------------------


def _smallest_released(profile: SmallCellProfile) -> int:
    """The smallest non-zero value :func:`apply_count` can release under ``profile``.

    Not always ``threshold``: rounding may take it lower (threshold 11, rounding 5 gives
    10) or to 0, and then the rounding step itself is the smallest.
    """
    lowest = apply_count(profile, profile.threshold).value or 0
    return max(lowest, profile.rounding)


def check_released_value(profile: SmallCellProfile, value: int | None, what: str) -> None:
    if value is None:
        if profile.threshold == 1:
            raise ValueError(f"{what}: suppressed, but the profile suppresses nothing")
        return
    if value == 0:
        return
    smallest = _smallest_released(profile)
    if value < smallest or value % profile.rounding:
        raise ValueError(
            f"{what}: count does not follow the disclosure profile (released counts are 0, "
            f"suppressed, or multiples of {profile.rounding} from {smallest} up)"
        )


def _released(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what}: expected a whole number or null, got {type(value).__name__}")
    if not 0 <= value < 2**63:
        raise ValueError(f"{what}: expected a count from 0 up")
    return int(value)


def _combined(values: Sequence[int | None]) -> CombinedCount:
    disclosed = [
        DisclosedCount(v, "<" if v is None else str(v), suppressed=v is None, rule="")
        for v in values
    ]
    return CombinedCount(combine_total(disclosed), sum(v is None for v in values))


def _fields(data: object, what: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    missing = sorted(names - set(data))
    unknown = sorted(str(k) for k in set(data) - names)
    problems = [f"{name}: required field missing" for name in missing]
    problems += [f"{name}: unknown field" for name in unknown]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))
    return {name: data[name] for name in names}


def _checked(check: Any, *args: Any) -> Any:
    """Run one of the analysis module's checks, reporting its error as a ValueError."""
    try:
        return check(*args)
    except QueryError as error:
        raise ValueError(error.message) from None
