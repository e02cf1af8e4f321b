"""Descriptive statistics across members: moments.

Each statistic is split like the models are. A member computes a small part from its own
rows; the part goes through the member's disclosure step (:mod:`accord.privacy.tables`);
the hub adds the parts and derives the answer a pooled analysis would give. Histograms,
quantiles and summaries are in :mod:`accord.analysis.histograms`, counts by category in
:mod:`accord.analysis.cells`.

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

>>> a = local_moments(np.array([[1.0, 2.0], [2.0, 4.5], [3.0, 5.0]]))
>>> b = local_moments(np.array([[4.0, 9.0]]))
>>> total = combine_moments([a, b])
>>> total.n, mean(total).tolist(), std(total).round(4).tolist()
(4, [2.5, 5.125], [1.291, 2.8976])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from accord.analysis._checks import _count, _fields, _first, _numbers
from accord.errors import QueryError

FloatArray = NDArray[np.float64]

MAX_VARIABLES: Final = 50
# A centred sum of squares at most this fraction of the shifted one is rounding noise:
# sums over millions of rows carry a relative error of a few 1e-15 at most.
ZERO_SPREAD: Final = 1e-12


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


# --- internals ------------------------------------------------------------------------


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
