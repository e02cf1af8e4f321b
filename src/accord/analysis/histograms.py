"""Descriptive statistics across members: histograms, quantiles and summaries.

Each statistic is split like the models are. A member computes a small part from its own
rows; the part goes through the member's disclosure step (:mod:`accord.privacy.tables`);
the hub adds the parts and derives the answer a pooled analysis would give. Moments are in
:mod:`accord.analysis.moments`, counts by category in :mod:`accord.analysis.cells`.

Histograms. The hub fixes the edges ``e_0 < ... < e_K`` before any data is read
(:func:`regular_edges`, :func:`check_edges`). Bin ``i`` holds ``e_i <= x < e_{i+1}``,
except the last, which also holds ``x == e_K`` (numpy's ``np.histogram`` convention);
values below ``e_0`` or above ``e_K`` (infinities included) are counted in ``below`` and
``above``, missing values (NaN, None) in ``missing``. :func:`quantiles` estimates
quantiles from the counts alone. :func:`summarise` describes one variable from its
moments and histogram.

>>> edges = regular_edges(0, 10, 5)
>>> hist = combine_histograms([local_histogram([1, 3, 3, 9], edges),
...                           local_histogram([5, 10, 12, None], edges)])
>>> hist.counts, hist.above, hist.missing
((1, 2, 1, 0, 2), 1, 1)
>>> [q.value for q in quantiles(hist, [0.5])]
[5.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from accord.analysis._checks import _count, _fields, _first, _is_finite_number, _numbers
from accord.analysis.moments import FloatArray, Moments, mean, std
from accord.errors import QueryError

MAX_BINS: Final = 200
DEFAULT_PROBS: Final = (0.25, 0.5, 0.75)


def check_edges(edges: object, what: str = "edges") -> tuple[float, ...]:
    """Histogram edges as floats, or a ``QueryError`` naming the first problem.

    Edges are finite, strictly increasing, at least two and at most ``MAX_BINS + 1``.

    Example:
        >>> check_edges([0, 1.5, 3])
        (0.0, 1.5, 3.0)
        >>> check_edges([0, 2, 2])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        accord.errors.QueryError: edges[2]: expected more than the previous edge 2.0, got 2.0 ...
    """
    if isinstance(edges, np.ndarray):
        edges = edges.tolist()
    if not isinstance(edges, tuple | list) or len(edges) < 2:
        raise QueryError(f"{what}: expected a list of at least two numbers")
    if len(edges) > MAX_BINS + 1:
        raise QueryError(f"{what}: expected at most {MAX_BINS} bins, got {len(edges) - 1}")
    values = _numbers(edges, what)
    for i in range(1, len(values)):
        if not values[i] > values[i - 1]:
            raise QueryError(
                f"{what}[{i}]: expected more than the previous edge {values[i - 1]!r}, got "
                f"{values[i]!r} (edges must strictly increase)"
            )
    return values


def regular_edges(low: float, high: float, bins: int) -> tuple[float, ...]:
    """``bins + 1`` evenly spaced edges from ``low`` to ``high`` (both exactly included).

    Example:
        >>> regular_edges(0, 1, 4)
        (0.0, 0.25, 0.5, 0.75, 1.0)
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise QueryError(f"bins: expected a whole number from 1 to {MAX_BINS}, got {bins!r}")
    for name, value in (("low", low), ("high", high)):
        if not _is_finite_number(value):
            raise QueryError(f"{name}: expected a finite number, got {value!r}")
    if not high > low:
        raise QueryError(f"high: expected more than low ({low!r}), got {high!r}")
    # Weighted, not low + i * step: no overflow, and both ends are exact.
    return check_edges(
        [float(low) * (1 - i / bins) + float(high) * (i / bins) for i in range(bins + 1)]
    )


@dataclass(frozen=True)
class HistogramPart:
    """Counts of one variable's values on agreed edges (see the module's conventions).

    - ``edges``: the agreed edges;
    - ``counts``: values in each bin, ``len(edges) - 1`` of them;
    - ``below``, ``above``: values below the first or above the last edge;
    - ``missing``: rows with no value.
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    below: int = 0
    above: int = 0
    missing: int = 0

    def __post_init__(self) -> None:
        edges = check_edges(self.edges, "histogram: edges")
        counts: object = self.counts
        if isinstance(counts, np.ndarray):
            counts = counts.tolist()
        if not isinstance(counts, tuple | list) or len(counts) != len(edges) - 1:
            raise QueryError(
                f"histogram: expected {len(edges) - 1} counts, one per bin between the edges"
            )
        object.__setattr__(self, "edges", edges)
        object.__setattr__(
            self,
            "counts",
            tuple(_count(c, f"histogram: counts[{i}]") for i, c in enumerate(counts)),
        )
        for name in ("below", "above", "missing"):
            object.__setattr__(self, name, _count(getattr(self, name), f"histogram: {name}"))

    @property
    def inside(self) -> int:
        """Values within the edges."""
        return sum(self.counts)

    @property
    def total(self) -> int:
        """Values counted, missing ones excepted."""
        return self.below + self.inside + self.above

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "edges": list(self.edges),
            "counts": list(self.counts),
            "below": self.below,
            "above": self.above,
            "missing": self.missing,
        }

    def to_vector(self) -> FloatArray:
        """The counts as one flat vector (bins, below, above, missing), to be added by
        secure aggregation."""
        cells = (*self.counts, self.below, self.above, self.missing)
        return np.array(cells, dtype=np.float64)

    @classmethod
    def from_vector(cls, vector: ArrayLike, edges: Sequence[float]) -> HistogramPart:
        """The histogram a (summed) :meth:`to_vector` holds, on ``edges``."""
        v = np.rint(np.asarray(vector, dtype=np.float64)).astype(np.int64)
        bins = len(edges) - 1
        if v.shape != (bins + 3,):
            raise QueryError(f"histogram: a vector of {v.shape} does not fit {bins} bins")
        counts = tuple(int(c) for c in v[:bins])
        return cls(tuple(edges), counts, int(v[bins]), int(v[bins + 1]), int(v[bins + 2]))

    @classmethod
    def from_json(cls, data: object) -> HistogramPart:
        """Rebuild a histogram from :meth:`to_json` output, refusing anything malformed."""
        fields = _fields(data, "histogram", {"edges", "counts", "below", "above", "missing"})
        for name in ("edges", "counts"):
            if not isinstance(fields[name], list):
                raise QueryError(f"histogram: {name} must be a list")
        return cls(**fields)


def local_histogram(
    values: ArrayLike | Sequence[float | None], edges: Sequence[float]
) -> HistogramPart:
    """A member's histogram of ``values`` (numbers; None or NaN for missing) on ``edges``.

    Example:
        >>> local_histogram([0.5, 1.0, 2.0, -1.0, None], [0, 1, 2])
        HistogramPart(edges=(0.0, 1.0, 2.0), counts=(1, 2), below=1, above=0, missing=1)
    """
    grid = check_edges(list(edges))
    v = _values(values)
    missing = np.isnan(v)
    present = v[~missing]
    e = np.asarray(grid)
    # side="right" puts e_i in bin i: bins are closed on the left, open on the right.
    where = np.searchsorted(e, present, side="right") - 1
    where[present == e[-1]] = len(grid) - 2  # ... except the last, closed on both sides
    bins = len(grid) - 1
    below = where < 0
    above = where >= bins
    counts = np.bincount(where[~below & ~above], minlength=bins)
    return HistogramPart(
        edges=grid,
        counts=tuple(int(c) for c in counts),
        below=int(below.sum()),
        above=int(above.sum()),
        missing=int(missing.sum()),
    )


def combine_histograms(parts: Sequence[HistogramPart]) -> HistogramPart:
    """Add members' histograms bin by bin; every part must be on exactly the same edges."""
    first = _first(parts, HistogramPart, "histogram")
    for i, part in enumerate(parts):
        if part.edges != first.edges:
            raise QueryError(
                f"histogram part {i} {_edge_difference(part.edges, first.edges)}",
                hint="every member must count on the edges fixed with the query",
            )
    return HistogramPart(
        edges=first.edges,
        counts=tuple(sum(part.counts[b] for part in parts) for b in range(len(first.counts))),
        below=sum(part.below for part in parts),
        above=sum(part.above for part in parts),
        missing=sum(part.missing for part in parts),
    )


@dataclass(frozen=True)
class Quantile:
    """A quantile estimate. ``value`` is None when it depends on a value outside the
    edges, which the histogram does not place: ``outside`` then says on which side
    (``"below"`` when some value it needs is below the first edge, else ``"above"``)."""

    p: float
    value: float | None
    outside: Literal["below", "above"] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"p": self.p, "value": self.value, "outside": self.outside}


def quantiles(hist: HistogramPart, probs: Sequence[float] = DEFAULT_PROBS) -> tuple[Quantile, ...]:
    """Estimate quantiles from the histogram's counts, one per probability in ``probs``.

    These are histogram estimates, not the data's quantiles. The rule is numpy's default
    ("linear"): with ``N`` values in all, the ``p`` quantile is the value at position
    ``h = (N - 1) p`` in sorted order, interpolating between the values at ``floor(h)``
    and ``floor(h) + 1``. Values are placed evenly within their bin (the ``j``-th of
    ``c`` values in a bin ``[a, b]`` at ``a + (j + 1/2) (b - a) / c``), which is linear
    interpolation of the distribution within each bin. Each placed value lies in the
    same bin as the true one, so when every value is within the edges the estimate
    differs from ``np.quantile`` of the data by less than the width of the widest bin
    involved: at most one bin width.

    Values below or above the edges keep their place in the order but have no position;
    a quantile that needs one of them is reported as unknown (``value`` None, and
    ``outside`` saying which side). Missing values are left out.

    Example:
        >>> hist = HistogramPart(edges=(0.0, 10.0, 20.0), counts=(2, 2), above=1)
        >>> [(q.p, q.value, q.outside) for q in quantiles(hist, [0.0, 0.5, 1.0])]
        [(0.0, 2.5, None), (0.5, 12.5, None), (1.0, None, 'above')]
    """
    p_values = _probabilities(probs)
    n = hist.total
    if n == 0:
        raise QueryError("no quantiles: the histogram holds no values")
    edges = np.asarray(hist.edges)
    counts = np.asarray(hist.counts, dtype=np.int64)
    upper = np.cumsum(counts)  # values in bins 0..b

    def placed(rank: int) -> float | Literal["below", "above"]:
        """Where the value at 0-based ``rank`` in sorted order is placed."""
        if rank < hist.below:
            return "below"
        inner = rank - hist.below
        if inner >= hist.inside:
            return "above"
        b = int(np.searchsorted(upper, inner, side="right"))
        within = inner - (int(upper[b]) - int(counts[b]))
        width = float(edges[b + 1] - edges[b])
        return float(edges[b]) + (within + 0.5) / int(counts[b]) * width

    results = []
    for p in p_values:
        h = (n - 1) * p
        low = min(math.floor(h), n - 1)
        fraction = h - low
        at_low = placed(low)
        at_high = placed(min(low + 1, n - 1)) if fraction > 0 else at_low
        if isinstance(at_low, str):
            results.append(Quantile(p, None, at_low))
        elif isinstance(at_high, str):
            results.append(Quantile(p, None, at_high))
        else:
            results.append(Quantile(p, at_low + fraction * (at_high - at_low)))
    return tuple(results)


# --- one variable summarised ----------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """One variable described: from its moments ``n``, ``mean`` and ``sd`` (exact; None
    when there are too few rows), from its histogram the count of ``missing`` values,
    those ``below`` and ``above`` the edges, the bins holding the smallest and largest
    value (None when that value lies outside the edges, or there is none), and quantile
    estimates (see :func:`quantiles`; none when the histogram holds no values).
    """

    n: int
    mean: float | None
    sd: float | None
    missing: int
    below: int
    above: int
    min_bin: tuple[float, float] | None
    max_bin: tuple[float, float] | None
    quantiles: tuple[Quantile, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean,
            "sd": self.sd,
            "missing": self.missing,
            "below": self.below,
            "above": self.above,
            "min_bin": None if self.min_bin is None else list(self.min_bin),
            "max_bin": None if self.max_bin is None else list(self.max_bin),
            "quantiles": [q.to_json() for q in self.quantiles],
        }


def summarise(
    moments: Moments, hist: HistogramPart, probs: Sequence[float] = DEFAULT_PROBS
) -> Summary:
    """Describe one variable from its (combined) moments and histogram.

    ``n``, ``mean`` and ``sd`` come from the moments; everything else from the histogram.
    After disclosure the histogram's counts are rounded and small ones left out, so its
    total need not equal ``n``; its quantiles are then estimates of estimates.

    Example:
        >>> from accord.analysis.moments import local_moments
        >>> values = np.array([1.0, 2.0, 2.5, 4.0, 7.0])
        >>> summary = summarise(local_moments(values[:, None]),
        ...                     local_histogram(values, regular_edges(0, 8, 4)), [0.5])
        >>> summary.n, summary.mean, round(summary.sd, 4), summary.min_bin, summary.max_bin
        (5, 3.3, 2.3345, (0.0, 2.0), (6.0, 8.0))
        >>> summary.quantiles
        (Quantile(p=0.5, value=3.5, outside=None),)
    """
    if moments.k != 1:
        raise QueryError(f"a summary is of one variable, but the moments hold {moments.k}")
    p_values = _probabilities(probs)
    filled = [b for b, count in enumerate(hist.counts) if count > 0]
    edges = hist.edges
    lowest = (edges[filled[0]], edges[filled[0] + 1]) if filled and not hist.below else None
    highest = (edges[filled[-1]], edges[filled[-1] + 1]) if filled and not hist.above else None
    return Summary(
        n=moments.n,
        mean=float(mean(moments)[0]) if moments.n >= 1 else None,
        sd=float(std(moments)[0]) if moments.n >= 2 else None,
        missing=hist.missing,
        below=hist.below,
        above=hist.above,
        min_bin=lowest,
        max_bin=highest,
        quantiles=quantiles(hist, p_values) if hist.total else (),
    )


# --- internals ------------------------------------------------------------------------


def _values(values: ArrayLike | Sequence[float | None]) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise QueryError(
            "values must be numbers, with None or NaN for a missing value",
            hint="convert other missing markers (such as pandas' NA) to NaN first",
        ) from None
    if array.ndim != 1:
        raise QueryError(f"values must be a flat list, got shape {array.shape}")
    return array


def _probabilities(probs: object) -> tuple[float, ...]:
    if isinstance(probs, str) or not isinstance(probs, Sequence) or not probs:
        raise QueryError("probs: expected a list of at least one probability")
    values = _numbers(list(probs), "probs")
    for i, p in enumerate(values):
        if not 0 <= p <= 1:
            raise QueryError(f"probs[{i}]: expected a probability from 0 to 1, got {p!r}")
    return values


def _edge_difference(got: tuple[float, ...], expected: tuple[float, ...]) -> str:
    if len(got) != len(expected):
        return f"has {len(got)} edges, not the {len(expected)} of the others"
    first = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
    return f"has edge {first} at {got[first]!r}, not {expected[first]!r}"
