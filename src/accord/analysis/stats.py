"""Descriptive statistics across members: moments, histograms and counts by category.

Each statistic is split like the models are. A member computes a small part from its own
rows; the part goes through the member's disclosure step (:mod:`accord.privacy.tables`);
the hub adds the parts and derives the answer a pooled analysis would give.

Moments. :func:`local_moments` gives a :class:`Moments`: the number of rows ``n``, the
sums ``sum(x_j - c_j)`` and the sums of products ``sum((x_i - c_i) (x_j - c_j))`` of ``k``
variables around a shift ``c`` fixed with the query. They add up across members
(:func:`combine_moments`), and from the total come the means, sample covariances (ddof 1),
standard deviations and Pearson correlations (:func:`mean`, :func:`covariance`,
:func:`std`, :func:`correlation`), equal to numpy's on the pooled rows to rounding.

Numerics. A variance from plain sums, ``(sum x**2 - (sum x)**2 / n) / (n - 1)``,
subtracts two numbers of about ``n * mean**2``: when the mean is large against the spread
(dates as days since 1970, say, mean 19 000 and sd 10) most digits cancel. Everything
here is float64, and the sums are taken around the shift ``c``, which every member is
given with the query, so parts are still plain sums and combining is still addition
(each entry added with ``math.fsum``, correctly rounded, so the total does not depend on
the order of the members). The relative error of a variance is then about
``1e-16 * (1 + ((mean - c) / sd)**2)``: full precision for any shift within a few sd of
the mean (the middle of the histogram's edges, a clinical reference value), and about
eight digits with no shift when ``|mean|`` is at most ``10**4`` sd. Within a member the
sums of products are formed around the member's own mean and then moved to the shift
exactly (``sum d d' = sum r r' + mu s' + s mu' + n mu mu'`` with ``d = x - c``,
``mu`` the member's mean of ``d``, ``r = d - mu`` and ``s = sum r``), so rounding does not
build up over a member's many rows. A centred sum of squares that is at most
``ZERO_SPREAD`` times the shifted one is within rounding of zero and taken as exactly
zero: the variable is constant (or its spread is lost to rounding, which a shift near the
mean cures), its standard deviation is 0 and :func:`correlation` refuses it by name.

Histograms. The hub fixes the edges ``e_0 < ... < e_K`` before any data is read
(:func:`regular_edges`, :func:`check_edges`). Bin ``i`` holds ``e_i <= x < e_{i+1}``,
except the last, which also holds ``x == e_K`` (numpy's ``np.histogram`` convention);
values below ``e_0`` or above ``e_K`` (infinities included) are counted in ``below`` and
``above``, missing values (NaN, None) in ``missing``. :func:`quantiles` estimates
quantiles from the counts alone.

Cells. :func:`local_cells` counts the rows of each distinct combination of category
values (a crosstab, or stratified counts); :func:`combine_cells` adds members' counts key
by key. Categories are whole numbers (concept ids, bin indices), other finite numbers,
or None for "unknown" (NaN counts as None); a float with a whole value is the same
category as the integer (``8507.0`` is ``8507``). Keys sort by value with None last.

>>> a = local_moments(np.array([[1.0, 2.0], [2.0, 4.5], [3.0, 5.0]]))
>>> b = local_moments(np.array([[4.0, 9.0]]))
>>> total = combine_moments([a, b])
>>> total.n, mean(total).tolist(), std(total).round(4).tolist()
(4, [2.5, 5.125], [1.291, 2.8976])
>>> edges = regular_edges(0, 10, 5)
>>> hist = combine_histograms([local_histogram([1, 3, 3, 9], edges),
...                           local_histogram([5, 10, 12, None], edges)])
>>> hist.counts, hist.above, hist.missing
((1, 2, 1, 0, 2), 1, 1)
>>> [q.value for q in quantiles(hist, [0.5])]
[5.0]
>>> combine_cells([local_cells([(1, None), (2, 0)], ["sex", "smoker"]),
...                local_cells([(1, None)], ["sex", "smoker"])]).cells
(((1, None), 2), ((2, 0), 1))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from accord.errors import QueryError

FloatArray = NDArray[np.float64]
Category = int | float | None
Key = tuple[Category, ...]

MAX_VARIABLES: Final = 50
MAX_BINS: Final = 200
# A centred sum of squares at most this fraction of the shifted one is rounding noise:
# sums over millions of rows carry a relative error of a few 1e-15 at most.
ZERO_SPREAD: Final = 1e-12
DEFAULT_PROBS: Final = (0.25, 0.5, 0.75)
# Categories and counts travel as JSON numbers; 64-bit integers are what every client reads.
_INT_LIMIT: Final = 2**63
# Whole-valued floats below this are exactly integers, so 8507.0 becomes 8507.
_EXACT_FLOAT: Final = 2**53


# --- moments -------------------------------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Sums over rows of ``k`` variables, taken around ``shift`` (see the module's notes).

    - ``n``: the number of rows;
    - ``sums``: ``sum(x_j - shift_j)`` for each variable;
    - ``cross``: ``sum((x_i - shift_i) (x_j - shift_j))``, a symmetric ``k x k`` matrix;
    - ``shift``: the agreed shift; empty means no shift (zeros).

    Parts of different members add up only when they share the shift.
    """

    n: int
    sums: tuple[float, ...]
    cross: tuple[tuple[float, ...], ...]
    shift: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = _count(self.n, "moments: n")
        sums = _numbers(self.sums, "moments: sums")
        k = len(sums)
        if not 1 <= k <= MAX_VARIABLES:
            raise QueryError(f"moments: expected 1 to {MAX_VARIABLES} variables, got {k}")
        given: object = self.shift
        shift = _numbers(given, "moments: shift") if len(self.shift) else (0.0,) * k
        if len(shift) != k:
            raise QueryError(f"moments: shift has {len(shift)} values for {k} variables")
        rows: object = self.cross
        if isinstance(rows, np.ndarray):
            rows = rows.tolist()
        if not isinstance(rows, tuple | list) or len(rows) != k:
            raise QueryError(f"moments: cross must be a {k} x {k} matrix (one row per variable)")
        cross = tuple(_numbers(row, f"moments: cross[{i}]") for i, row in enumerate(rows))
        for i, row in enumerate(cross):
            if len(row) != k:
                raise QueryError(f"moments: cross[{i}] has {len(row)} values, expected {k}")
        for i in range(k):
            for j in range(i):
                if cross[i][j] != cross[j][i]:
                    raise QueryError(
                        f"moments: cross is not symmetric (cross[{i}][{j}] differs from "
                        f"cross[{j}][{i}])"
                    )
        if n == 0 and (any(sums) or any(any(row) for row in cross)):
            raise QueryError("moments: n is 0 but the sums are not all 0")
        for j in range(k):
            # Cauchy-Schwarz: (sum d)**2 <= n sum d**2 for any n real numbers d, with slack
            # for rounding and for squares of values below 1e-154 underflowing to 0.
            if cross[j][j] < 0 or sums[j] ** 2 > n * cross[j][j] * (1 + 1e-9) + n * n * 1e-300:
                raise QueryError(
                    f"moments: cross[{j}][{j}] cannot be a sum of squares of {n} rows "
                    f"with sum sums[{j}]"
                )
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "sums", sums)
        object.__setattr__(self, "cross", cross)
        object.__setattr__(self, "shift", shift)

    @property
    def k(self) -> int:
        """Number of variables."""
        return len(self.sums)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, as a member sends it to the hub."""
        return {
            "n": self.n,
            "shift": list(self.shift),
            "sums": list(self.sums),
            "cross": [list(row) for row in self.cross],
        }

    def to_vector(self) -> FloatArray:
        """The moments as one flat vector of sums (``n``, ``sums``, ``cross``), to be
        added by secure aggregation."""
        return np.array([self.n, *self.sums, *itertools.chain(*self.cross)], dtype=np.float64)

    @classmethod
    def from_vector(cls, vector: ArrayLike, shift: Sequence[float]) -> Moments:
        """The moments a (summed) :meth:`to_vector` holds, around ``shift``."""
        v = np.asarray(vector, dtype=np.float64)
        k = len(shift)
        if v.shape != (1 + k + k * k,):
            raise QueryError(f"moments: a vector of {v.shape} does not hold {k} variables")
        cross = v[1 + k :].reshape(k, k)
        return cls(
            n=round(float(v[0])),
            sums=tuple(v[1 : 1 + k].tolist()),
            cross=tuple(tuple(row) for row in ((cross + cross.T) / 2).tolist()),
            shift=tuple(shift),
        )

    @classmethod
    def from_json(cls, data: object) -> Moments:
        """Rebuild moments from :meth:`to_json` output, refusing anything malformed."""
        fields = _fields(data, "moments", {"n", "shift", "sums", "cross"})
        for name in ("shift", "sums", "cross"):
            if not isinstance(fields[name], list):
                raise QueryError(f"moments: {name} must be a list")
        if len(fields["shift"]) != len(fields["sums"]):
            raise QueryError(
                f"moments: shift has {len(fields['shift'])} values for {len(fields['sums'])} "
                "variables"
            )
        return cls(n=fields["n"], sums=fields["sums"], cross=fields["cross"], shift=fields["shift"])


def local_moments(X: ArrayLike, shift: ArrayLike | None = None) -> Moments:
    """A member's moments of the columns of the ``n x k`` array ``X``.

    Rows with a missing value are not allowed: the caller decides whether to drop them
    (complete cases) and counts them separately. ``shift`` is the agreed shift, one value
    per column, the same at every member; none means zeros. A member with no rows
    returns zeros.

    Example:
        >>> part = local_moments(np.array([[19000.0], [19010.0], [19020.0]]), shift=[19000])
        >>> part.sums, part.cross
        ((30.0,), ((500.0,),))
    """
    x = _finite_matrix(X, "X")
    n, k = x.shape
    if not 1 <= k <= MAX_VARIABLES:
        raise QueryError(f"X must have 1 to {MAX_VARIABLES} columns, got {k}")
    if shift is None:
        c = np.zeros(k)
    else:
        c = _finite_vector(shift, "shift")
        if c.shape[0] != k:
            raise QueryError(f"shift has {c.shape[0]} values but X has {k} columns")
    if n == 0:
        return Moments(0, (0.0,) * k, ((0.0,) * k,) * k, tuple(c.tolist()))
    with np.errstate(over="ignore", invalid="ignore"):
        d = x - c
        mu = d.mean(axis=0)
        r = d - mu
        s = r.sum(axis=0)
        cross = r.T @ r + np.outer(mu, s) + np.outer(s, mu) + n * np.outer(mu, mu)
        sums = d.sum(axis=0)
    if not (np.all(np.isfinite(cross)) and np.all(np.isfinite(sums))):
        raise QueryError(
            "X holds values too large for their sums of squares (overflow)",
            hint="rescale the variables, e.g. to other units",
        )
    cross = (cross + cross.T) / 2  # exactly symmetric: a + b == b + a in floating point
    return Moments(
        n=n,
        sums=tuple(sums.tolist()),
        cross=tuple(tuple(row) for row in cross.tolist()),
        shift=tuple(c.tolist()),
    )


def combine_moments(parts: Sequence[Moments]) -> Moments:
    """Add members' moments entry by entry; they must share the variables and the shift.

    Example:
        >>> x = np.array([[1.0], [2.0], [4.0]])
        >>> combine_moments([local_moments(x[:1]), local_moments(x[1:])]) == local_moments(x)
        True
    """
    first = _first(parts, Moments, "moments")
    for i, part in enumerate(parts):
        if part.k != first.k:
            raise QueryError(f"moments part {i} has {part.k} variables, not {first.k}")
        if part.shift != first.shift:
            raise QueryError(
                f"moments part {i} was taken around a different shift",
                hint="every member must use the shift given with the query",
            )
    k = first.k
    return Moments(
        n=sum(part.n for part in parts),
        sums=tuple(math.fsum(part.sums[j] for part in parts) for j in range(k)),
        cross=tuple(
            tuple(math.fsum(part.cross[i][j] for part in parts) for j in range(k)) for i in range(k)
        ),
        shift=first.shift,
    )


def mean(m: Moments) -> FloatArray:
    """The mean of each variable.

    Example:
        >>> mean(local_moments(np.array([[1.0, 10.0], [3.0, 20.0]]))).tolist()
        [2.0, 15.0]
    """
    if m.n < 1:
        raise QueryError("the mean needs at least 1 row, got none")
    return _frozen(np.asarray(m.shift) + np.asarray(m.sums) / m.n)


def covariance(m: Moments) -> FloatArray:
    """The sample covariance matrix (divisor ``n - 1``), as ``np.cov(X, rowvar=False)``.

    Example:
        >>> covariance(local_moments(np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 9.0]]))).tolist()
        [[1.0, 3.5], [3.5, 13.0]]
    """
    if m.n < 2:
        raise QueryError(f"a covariance needs at least 2 rows, got {m.n}")
    return _frozen(_centred(m) / (m.n - 1))


def std(m: Moments) -> FloatArray:
    """The sample standard deviation (ddof 1) of each variable; exactly 0 for a constant.

    Example:
        >>> std(local_moments(np.array([[2.0], [4.0], [4.0], [6.0]]))).round(6).tolist()
        [1.632993]
    """
    return _frozen(np.sqrt(np.diag(covariance(m))))


def correlation(m: Moments, names: Sequence[str] | None = None) -> FloatArray:
    """The Pearson correlation matrix, as ``np.corrcoef(X, rowvar=False)``.

    A variable with no spread has no correlation: rather than NaN, the error names it
    (by ``names``, else as ``column j``).

    Example:
        >>> x = np.array([[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 9.0, 5.0]])
        >>> correlation(local_moments(x[:, :2])).round(4).tolist()
        [[1.0, 0.9707], [0.9707, 1.0]]
        >>> correlation(local_moments(x), names=["age", "bmi", "visits"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        accord.errors.QueryError: no correlation with visits: it has the same value in every row...
    """
    labels = _labels(names, m.k)
    if m.n < 2:
        raise QueryError(f"a correlation needs at least 2 rows, got {m.n}")
    centred = _centred(m)
    spread = np.diag(centred)
    flat = [labels[j] for j in np.flatnonzero(spread == 0)]
    if flat:
        raise QueryError(
            f"no correlation with {', '.join(flat)}: "
            f"{'it has' if len(flat) == 1 else 'they have'} the same value in every row",
            hint="drop constant variables, or if they vary, give the moments a shift near "
            "their mean",
        )
    scale = 1.0 / np.sqrt(spread)
    result = np.clip(centred * scale[:, None] * scale[None, :], -1.0, 1.0)
    np.fill_diagonal(result, 1.0)
    return _frozen(result)


def _centred(m: Moments) -> FloatArray:
    """Centred sums of products ``sum((x_i - mean_i) (x_j - mean_j))``."""
    sums = np.asarray(m.sums)
    raw = np.asarray(m.cross)
    centred = raw - np.outer(sums, sums) / m.n
    centred = (centred + centred.T) / 2
    # Zero to within rounding: the variable is constant, and so are its products.
    flat = np.diag(centred) <= ZERO_SPREAD * np.diag(raw)
    centred[flat, :] = 0.0
    centred[:, flat] = 0.0
    return centred


# --- histograms ----------------------------------------------------------------------


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


# --- one variable summarised ---------------------------------------------------------


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


# --- counts by category --------------------------------------------------------------


@dataclass(frozen=True)
class CellCounts:
    """Rows counted by the values of ``variables``: ``(key, count)`` pairs, one per
    distinct key, sorted by key (None last). Keys that no row has are left out.
    """

    variables: tuple[str, ...]
    cells: tuple[tuple[Key, int], ...]

    def __post_init__(self) -> None:
        variables = check_variables(self.variables)
        if not isinstance(self.cells, tuple | list):
            raise QueryError("cells: expected a list of (key, count) pairs")
        cells = []
        for i, item in enumerate(self.cells):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise QueryError(f"cells[{i}]: expected a (key, count) pair")
            key = as_key(item[0], len(variables), f"cells[{i}].key")
            cells.append((key, _count(item[1], f"cells[{i}].count")))
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "cells", sort_cells(cells, "cells"))

    @property
    def total(self) -> int:
        """Rows counted."""
        return sum(count for _, count in self.cells)

    def as_dict(self) -> dict[Key, int]:
        """The counts by key."""
        return dict(self.cells)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"variables": [...], "cells": [{"key", "count"}, ...]}``."""
        return {
            "variables": list(self.variables),
            "cells": [{"key": list(key), "count": count} for key, count in self.cells],
        }

    @classmethod
    def from_json(cls, data: object) -> CellCounts:
        """Rebuild counts from :meth:`to_json` output, refusing anything malformed."""
        fields = _fields(data, "cell counts", {"variables", "cells"})
        if not isinstance(fields["variables"], list) or not isinstance(fields["cells"], list):
            raise QueryError("cell counts: variables and cells must be lists")
        pairs: list[Any] = []
        for i, cell in enumerate(fields["cells"]):
            item = _fields(cell, f"cell counts: cells[{i}]", {"key", "count"})
            if not isinstance(item["key"], list):
                raise QueryError(f"cells[{i}].key: expected a list of categories")
            pairs.append((item["key"], item["count"]))
        return cls(tuple(fields["variables"]), tuple(pairs))


def local_cells(keys: ArrayLike | Sequence[Any], variables: Sequence[str]) -> CellCounts:
    """A member's counts of each distinct row of ``keys``, an ``n x v`` table of
    categories with one column per variable (a flat list when there is one variable).

    Example:
        >>> local_cells([(8507, 1), (8532, None), (8507, 1)], ["gender", "smoker"]).cells
        (((8507, 1), 2), ((8532, None), 1))
    """
    names = check_variables(variables)
    width = len(names)
    try:
        table = np.asarray(keys)
    except ValueError as exc:
        raise QueryError(f"keys: expected rows of {width} categories each ({exc})") from exc
    if table.ndim == 1 and (width == 1 or table.size == 0):
        table = table.reshape(-1, width)
    if table.ndim != 2 or table.shape[1] != width:
        raise QueryError(
            f"keys: expected rows of {width} categories (one per variable), got shape {table.shape}"
        )
    if table.shape[0] == 0:
        return CellCounts(names, ())
    codes = []
    levels = []
    for j in range(width):
        column_codes, column_levels = _factorise(table[:, j], f"keys column {names[j]!r}")
        codes.append(column_codes)
        levels.append(column_levels)
    rows, counts = np.unique(np.column_stack(codes), axis=0, return_counts=True)
    cells = tuple(
        (tuple(levels[j][int(code)] for j, code in enumerate(row)), int(count))
        for row, count in zip(rows.tolist(), counts.tolist(), strict=True)
    )
    return CellCounts(names, cells)


def combine_cells(parts: Sequence[CellCounts]) -> CellCounts:
    """Add members' counts key by key; a key missing at a member counts 0 there."""
    first = _first(parts, CellCounts, "cell counts")
    for i, part in enumerate(parts):
        if part.variables != first.variables:
            raise QueryError(
                f"cell counts part {i} is by {', '.join(part.variables)}, not "
                f"{', '.join(first.variables)}"
            )
    totals: dict[Key, int] = {}
    for part in parts:
        for key, count in part.cells:
            totals[key] = totals.get(key, 0) + count
    return CellCounts(first.variables, tuple(totals.items()))


def check_variables(variables: object) -> tuple[str, ...]:
    """Variable names: at least one, each a non-empty string, all different."""
    if isinstance(variables, str) or not isinstance(variables, Sequence) or not variables:
        raise QueryError("variables: expected a list of at least one name")
    names = tuple(variables)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise QueryError(f"variables[{i}]: expected a non-empty name")
    if len(set(names)) != len(names):
        raise QueryError("variables: each name may appear once")
    return names


def as_key(value: object, width: int, what: str) -> Key:
    """A key of ``width`` categories in normal form (see the module's notes), or a
    ``QueryError`` naming the problem without echoing a value."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, tuple | list) or len(value) != width:
        raise QueryError(f"{what}: expected {width} categor{'y' if width == 1 else 'ies'}")
    return tuple(_category(v, f"{what}[{j}]") for j, v in enumerate(value))


def key_order(key: Key) -> tuple[tuple[bool, float | int], ...]:
    """Sort order of keys: by value in each place, None after every number."""
    return tuple((v is None, 0 if v is None else v) for v in key)


def sort_cells(cells: Sequence[tuple[Key, Any]], what: str) -> tuple[tuple[Key, Any], ...]:
    """``(key, value)`` pairs sorted by key; a key given twice is an error."""
    ordered = sorted(cells, key=lambda cell: key_order(cell[0]))
    for i in range(1, len(ordered)):
        if ordered[i][0] == ordered[i - 1][0]:
            raise QueryError(f"{what}: a key appears twice")
    return tuple(ordered)


# --- internals -----------------------------------------------------------------------


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _numbers(value: object, what: str) -> tuple[float, ...]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, tuple | list):
        raise QueryError(f"{what}: expected a list of numbers, got {type(value).__name__}")
    for i, v in enumerate(value):
        if not _is_finite_number(v):
            got = repr(v) if isinstance(v, float) else type(v).__name__
            raise QueryError(f"{what}[{i}]: expected a finite number, got {got}")
    return tuple(float(v) for v in value)


def _count(value: object, what: str) -> int:
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or not 0 <= value < _INT_LIMIT
    ):
        number = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        got = value if number else type(value).__name__
        raise QueryError(f"{what}: expected a whole number >= 0, got {got}")
    return int(value)


def _fields(data: object, what: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise QueryError(f"{what}: expected an object, got {type(data).__name__}")
    if set(data) != names:
        missing = sorted(names - set(data))
        unknown = sorted(str(k) for k in set(data) - names)
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise QueryError(
            f"{what}: expected fields {', '.join(sorted(names))} ({'; '.join(problems)})"
        )
    return {name: data[name] for name in names}


def _first(parts: Sequence[Any], kind: type, what: str) -> Any:
    if not isinstance(parts, Sequence) or not parts:
        raise QueryError(f"no {what} parts to combine: no member answered")
    for i, part in enumerate(parts):
        if not isinstance(part, kind):
            raise QueryError(f"{what} part {i} is a {type(part).__name__}, not a {kind.__name__}")
    return parts[0]


def _as_float_array(value: ArrayLike, what: str) -> FloatArray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"{what} must be numeric ({exc})") from exc


def _finite_matrix(value: ArrayLike, what: str) -> FloatArray:
    array = _as_float_array(value, what)
    if array.ndim != 2:
        raise QueryError(f"{what} must be a matrix (rows x columns), got shape {array.shape}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        # The count and first row, never a value: the message may travel to the hub.
        raise QueryError(
            f"{what} has {int(bad.sum())} rows with missing or infinite values (first at row "
            f"{int(np.argmax(bad))})",
            hint="drop rows with missing values first and count them separately",
        )
    return array


def _finite_vector(value: ArrayLike, what: str) -> FloatArray:
    array = _as_float_array(value, what)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise QueryError(f"{what} must be a list of finite numbers")
    return array


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


def _category(value: object, what: str) -> Category:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise QueryError(f"{what}: a whole-number category must fit in 64 bits")
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            raise QueryError(f"{what}: a category must be finite")
        if number.is_integer() and abs(number) < _EXACT_FLOAT:
            return int(number)
        return number
    raise QueryError(
        f"{what}: a category must be a number or null, got {type(value).__name__}",
        hint="code text categories as numbers (e.g. concept ids) first",
    )


def _factorise(column: NDArray[Any], what: str) -> tuple[NDArray[np.intp], list[Category]]:
    """Codes ``0..L-1`` for each row and the ``L`` categories they stand for."""
    kind = column.dtype.kind
    if kind == "b":
        column = column.astype(np.int64)
        kind = "i"
    if kind in "iu":
        levels, codes = np.unique(column, return_inverse=True)
        return codes.reshape(-1), [_category(v, what) for v in levels.tolist()]
    if kind == "f":
        missing = np.isnan(column)
        if np.isinf(column).any():
            raise QueryError(f"{what}: a category must be finite")
        levels, inverse = np.unique(column[~missing], return_inverse=True)
        codes = np.full(column.shape[0], levels.shape[0], dtype=np.intp)
        codes[~missing] = inverse.reshape(-1)
        return codes, [_category(v, what) for v in levels.tolist()] + [None]
    if kind != "O":
        raise QueryError(
            f"{what}: categories must be numbers or null, got {column.dtype}",
            hint="code text categories as numbers (e.g. concept ids) first",
        )
    index: dict[Category, int] = {}
    codes = np.empty(column.shape[0], dtype=np.intp)
    for i, value in enumerate(column.tolist()):
        codes[i] = index.setdefault(_category(value, what), len(index))
    return codes, list(index)


def _labels(names: Sequence[str] | None, k: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"column {j}" for j in range(k))
    labels = tuple(str(name) for name in names)
    if len(labels) != k:
        raise QueryError(f"{len(labels)} names given for {k} variables")
    return labels


def _frozen(value: ArrayLike) -> FloatArray:
    array = np.array(value, dtype=np.float64)
    array.setflags(write=False)
    return array
