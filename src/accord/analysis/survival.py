"""Kaplan-Meier survival across members, on a time grid the hub fixes in advance.

The hub fixes a :class:`Grid` (edges ``0 = e_0 < e_1 < ... < e_K``, e.g. days 0 to 720 in
steps of 30) before any data is read. Each member turns its rows (durations, event flags)
into counts on that grid (:func:`local_counts`); only those counts leave. The hub adds
the members' counts (:func:`combine`) and computes the curve (:func:`km`).

Grouping convention. Point ``k`` of the grid stands for the interval ``(e_{k-1}, e_k]``;
point 0 stands for the instant 0 alone (so deaths at time 0 are not merged with later
ones). A duration ``t`` falls in the first point whose edge is ``>= t``, i.e. it is
rounded *up* to the grid. For each point the counts are:

* ``at_risk``: rows whose duration falls in this point or later (still followed at the
  start of the interval);
* ``events``: rows with an event in the interval;
* ``censored``: rows censored in the interval.

Censorings in an interval are taken to happen after its events (they are at risk through
them), the usual Kaplan-Meier tie rule. So the curve is *exactly* the Kaplan-Meier
estimate of the data with durations rounded up to the grid, and, when every distinct
observed duration (event or censoring) lies on the grid -- e.g. integer days with a grid
of step 1 -- exactly the Kaplan-Meier estimate of the pooled rows (what lifelines'
``KaplanMeierFitter`` gives at the grid times). A censoring strictly between two edges is
counted at risk at the next edge, which the ungrouped estimate would not do.

Durations beyond the grid's last edge ``e_K`` are administrative censoring: such a row is
at risk up to ``e_K`` and counted as censored at ``e_K`` whatever its event flag (its event,
if any, happened after the grid ends).

:func:`km` gives ``S(t) = prod_{e_k <= t} (1 - d_k / n_k)``, Greenwood's variance
``S(t)**2 * sum d_k / (n_k (n_k - d_k))`` (terms with ``n_k = d_k`` taken as 0, as lifelines
does) and, by default, the exponential Greenwood ("log-log") confidence interval that
lifelines uses; ``ci="plain"`` gives ``S -/+ z sqrt(var)`` clipped to [0, 1].

>>> grid = Grid.regular(stop=3, step=1)
>>> a = local_counts([1, 2, 3], [1, 0, 1], grid)
>>> b = local_counts([1, 3, 5], [0, 1, 1], grid)
>>> curve = km(combine([a, b]))
>>> curve.times
(0.0, 1.0, 2.0, 3.0)
>>> [round(s, 4) for s in curve.survival]
[1.0, 0.8333, 0.8333, 0.2778]
>>> combine([a, b]).censored  # the row at 5 is censored at the grid's end
(0, 1, 1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from accord.errors import DataError, QueryError

MAX_GRID_POINTS: Final = 100_000
_COUNT_FIELDS: Final = ("at_risk", "events", "censored")


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Grid:
    """The time grid: strictly increasing, finite edges starting at 0 (at least two)."""

    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        edges = self.edges
        if not isinstance(edges, tuple | list) or len(edges) < 2:
            raise QueryError("grid.edges: expected a list of at least two times, from 0 up")
        if len(edges) > MAX_GRID_POINTS:
            raise QueryError(f"grid.edges: expected at most {MAX_GRID_POINTS} times")
        for i, edge in enumerate(edges):
            if not _finite_number(edge):
                raise QueryError(f"grid.edges[{i}]: expected a finite number, got {edge!r}")
        if edges[0] != 0:
            raise QueryError(f"grid.edges[0]: expected 0, got {edges[0]!r}")
        for i in range(1, len(edges)):
            if not edges[i] > edges[i - 1]:
                raise QueryError(
                    f"grid.edges[{i}]: expected more than the previous edge "
                    f"{edges[i - 1]!r}, got {edges[i]!r} (edges must strictly increase)"
                )
        object.__setattr__(self, "edges", tuple(float(e) for e in edges))

    @classmethod
    def regular(cls, stop: float, step: float) -> Grid:
        """Edges ``0, step, 2 step, ...`` up to and including ``stop`` (if on the grid)."""
        if not _finite_number(step) or step <= 0:
            raise QueryError(f"grid step: expected a positive number, got {step!r}")
        if not _finite_number(stop) or stop <= 0:
            raise QueryError(f"grid stop: expected a positive number, got {stop!r}")
        count = math.floor(stop / step + 1e-9)
        if count + 1 > MAX_GRID_POINTS:
            raise QueryError(f"grid: expected at most {MAX_GRID_POINTS} times, got {count + 1}")
        return cls(tuple(k * step for k in range(count + 1)))

    @property
    def end(self) -> float:
        return self.edges[-1]

    def to_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges)}

    @classmethod
    def from_json(cls, data: object) -> Grid:
        if not isinstance(data, dict) or set(data) != {"edges"}:
            raise QueryError('grid: expected an object {"edges": [0, ...]}')
        edges = data["edges"]
        if not isinstance(edges, list):
            raise QueryError("grid.edges: expected a list of times")
        return cls(tuple(edges))


@dataclass(frozen=True)
class KmCounts:
    """Counts on a grid, one entry per grid point (see the module's grouping convention).

    Consistent by construction: ``at_risk[k + 1] == at_risk[k] - events[k] - censored[k]``
    and everyone still at risk at the last point leaves there.
    """

    grid: Grid
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]

    def __post_init__(self) -> None:
        size = len(self.grid.edges)
        for name in _COUNT_FIELDS:
            values = getattr(self, name)
            if not isinstance(values, tuple | list) or len(values) != size:
                raise DataError(f"{name}: expected {size} counts, one per grid time")
            for i, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                    raise DataError(f"{name}[{i}]: expected a non-negative integer, got {v!r}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        for k in range(size):
            leaving = self.events[k] + self.censored[k]
            after = self.at_risk[k + 1] if k + 1 < size else 0
            if self.at_risk[k] - leaving != after:
                raise DataError(
                    f"at_risk[{k}]: expected at_risk - events - censored to equal the next "
                    f"at_risk ({after}), got {self.at_risk[k]} - {self.events[k]} - "
                    f"{self.censored[k]}"
                )

    @property
    def rows(self) -> int:
        """How many rows were counted."""
        return self.at_risk[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid.to_json(),
            "at_risk": list(self.at_risk),
            "events": list(self.events),
            "censored": list(self.censored),
        }

    def to_vector(self) -> NDArray[np.float64]:
        """The counts as one flat vector, to be added by secure aggregation."""
        return np.array([*self.at_risk, *self.events, *self.censored], dtype=np.float64)

    @classmethod
    def from_vector(cls, grid: Grid, vector: ArrayLike) -> KmCounts:
        """The counts a (summed) :meth:`to_vector` holds, rounded to whole numbers."""
        v = np.rint(np.asarray(vector, dtype=np.float64)).astype(np.int64)
        size = len(grid.edges)
        if v.shape != (3 * size,):
            raise DataError(f"km counts: a vector of {v.shape} does not fit a grid of {size}")
        return cls(grid, tuple(v[:size]), tuple(v[size : 2 * size]), tuple(v[2 * size :]))

    @classmethod
    def from_json(cls, data: object) -> KmCounts:
        """Parse :meth:`to_json` output; ``DataError`` naming the bad field otherwise."""
        expected = {"grid", *_COUNT_FIELDS}
        if not isinstance(data, dict) or set(data) != expected:
            raise DataError(
                f"km counts: expected an object with fields {', '.join(sorted(expected))}"
            )
        for name in _COUNT_FIELDS:
            if not isinstance(data[name], list):
                raise DataError(f"{name}: expected a list of counts")
        return cls(
            Grid.from_json(data["grid"]),
            tuple(data["at_risk"]),
            tuple(data["events"]),
            tuple(data["censored"]),
        )


def local_counts(durations: ArrayLike, events: ArrayLike, grid: Grid) -> KmCounts:
    """A member's counts on ``grid`` from its rows.

    ``durations`` are non-negative, finite times on the grid's scale; ``events`` are 1 (the
    event happened at that time) or 0 (censored then), or booleans. Raises ``DataError``
    naming the first bad row. Vectorised: rows are placed with ``np.searchsorted`` and
    counted with ``np.bincount``.
    """
    t = np.asarray(durations)
    e = np.asarray(events)
    if t.ndim != 1 or e.ndim != 1:
        raise DataError("durations, events: expected one-dimensional arrays")
    if t.shape != e.shape:
        raise DataError(f"events: expected one flag per duration ({t.size}), got {e.size}")
    if t.size and (t.dtype.kind not in "iuf"):
        raise DataError(f"durations: expected numbers, got {t.dtype}")
    t = t.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.size:
        raise DataError(f"durations[{bad[0]}]: expected a finite time >= 0, got {t[bad[0]]!r}")
    if e.size and e.dtype.kind not in "biuf":
        raise DataError(f"events: expected 0/1 flags, got {e.dtype}")
    bad = np.flatnonzero((e != 0) & (e != 1))
    if bad.size:
        raise DataError(f"events[{bad[0]}]: expected 0 or 1, got {e[bad[0]]!r}")
    observed = e == 1

    edges = np.asarray(grid.edges)
    size = edges.size
    point = np.searchsorted(edges, t, side="left")
    beyond = point >= size
    point[beyond] = size - 1
    observed = observed & ~beyond
    event_counts = np.bincount(point[observed], minlength=size)
    censored_counts = np.bincount(point[~observed], minlength=size)
    leaving = event_counts + censored_counts
    at_risk = np.cumsum(leaving[::-1])[::-1]
    return KmCounts(
        grid,
        tuple(int(v) for v in at_risk),
        tuple(int(v) for v in event_counts),
        tuple(int(v) for v in censored_counts),
    )


def combine(counts: Iterable[KmCounts]) -> KmCounts:
    """The consortium's counts: the members' counts added, all on the same grid."""
    parts = list(counts)
    if not parts:
        raise DataError("counts: expected at least one member's counts")
    grid = parts[0].grid
    for i, part in enumerate(parts[1:], start=1):
        if part.grid != grid:
            raise DataError(
                f"counts[{i}].grid: expected the query's grid, got a different one",
                hint="every member must count on the grid the hub fixed",
            )

    def total(name: str) -> tuple[int, ...]:
        return tuple(int(v) for v in np.sum([getattr(p, name) for p in parts], axis=0))

    return KmCounts(grid, total("at_risk"), total("events"), total("censored"))


@dataclass(frozen=True)
class KmCurve:
    """The Kaplan-Meier curve at the grid times, with Greenwood variance and CI."""

    times: tuple[float, ...]
    survival: tuple[float, ...]
    variance: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]
    alpha: float
    ci: Literal["log-log", "plain"]

    def to_json(self) -> dict[str, Any]:
        return {
            "times": list(self.times),
            "survival": list(self.survival),
            "variance": list(self.variance),
            "ci_low": list(self.ci_low),
            "ci_high": list(self.ci_high),
            "at_risk": list(self.at_risk),
            "events": list(self.events),
            "censored": list(self.censored),
            "alpha": self.alpha,
            "ci": self.ci,
        }


def _floats(values: NDArray[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def km(
    combined: KmCounts, alpha: float = 0.05, *, ci: Literal["log-log", "plain"] = "log-log"
) -> KmCurve:
    """The Kaplan-Meier estimate from (combined) counts, with a ``1 - alpha`` interval.

    Where nobody is at risk the curve stays where it was. The log-log interval is
    ``exp(-exp(log(-log S) -/+ z sqrt(G) / log S))`` with ``G`` the Greenwood sum, as in
    lifelines; it is [1, 1] where ``S = 1`` and [0, 0] where ``S = 0``.
    """
    if not _finite_number(alpha) or not 0 < alpha < 1:
        raise QueryError(f"alpha: expected a number between 0 and 1, got {alpha!r}")
    if ci not in ("log-log", "plain"):
        raise QueryError(f"ci: expected 'log-log' or 'plain', got {ci!r}")
    n = np.asarray(combined.at_risk, dtype=np.float64)
    d = np.asarray(combined.events, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n > 0, (n - d) / n, 1.0)
        term = np.where((n > 0) & (n > d), d / (n * (n - d)), 0.0)
    survival = np.cumprod(factor)
    greenwood = np.cumsum(term)
    variance = survival**2 * greenwood
    z = NormalDist().inv_cdf(1 - alpha / 2)
    if ci == "plain":
        spread = z * np.sqrt(variance)
        low = np.clip(survival - spread, 0.0, 1.0)
        high = np.clip(survival + spread, 0.0, 1.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log(survival)
            width = z * np.sqrt(greenwood) / v
            low = np.exp(-np.exp(np.log(-v) - width))
            high = np.exp(-np.exp(np.log(-v) + width))
        low = np.where(survival == 1.0, 1.0, np.where(survival == 0.0, 0.0, low))
        high = np.where(survival == 1.0, 1.0, np.where(survival == 0.0, 0.0, high))
    return KmCurve(
        times=combined.grid.edges,
        survival=_floats(survival),
        variance=_floats(variance),
        ci_low=_floats(low),
        ci_high=_floats(high),
        at_risk=combined.at_risk,
        events=combined.events,
        censored=combined.censored,
        alpha=float(alpha),
        ci=ci,
    )
