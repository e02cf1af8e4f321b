"""Generalised linear models fitted exactly by federated Newton-Raphson.

No row leaves a member. At each iteration the hub sends the current coefficients ``beta``;
every member answers with a :class:`GlmPart` computed from its own rows: the score
``U = X^T (y - mu)`` (gradient of the log-likelihood), the Fisher information
``I = X^T W X`` (``W = var(mu)``), its deviance and Pearson chi-squared contributions and
a few totals. Parts are plain sums over rows, so the hub adds them (:func:`combine`) and
takes the Newton step ``beta + I^-1 U`` (:func:`newton_step`). For the canonical links
used here (gaussian/identity, binomial/logit, poisson/log) the Fisher information equals
the negative Hessian, so this is Newton-Raphson and also IRLS: the fit equals a pooled
``statsmodels.api.GLM(y, X, family=...).fit()`` to rounding, without pooling.

The caller provides the design matrix, including the intercept column if one is wanted.
Every figure a part carries is an aggregate over the member's rows; whether a member may
release it (e.g. a small ``n``) is the disclosure layer's decision, not this module's.

Example:
    >>> rng = np.random.default_rng(0)
    >>> blocks = []
    >>> for size in (40, 60):
    ...     x = np.column_stack([np.ones(size), rng.normal(size=size)])
    ...     blocks.append((x, rng.poisson(np.exp(0.5 + 0.3 * x[:, 1])).astype(float)))
    >>> result = fit_partitioned(blocks, "poisson", names=["const", "age"])
    >>> [row.name for row in result.table()]
    ['const', 'age']
    >>> result.n, result.df_resid
    (100, 98)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from accord.errors import QueryError

Family = Literal["gaussian", "binomial", "poisson"]
FAMILIES: tuple[Family, ...] = get_args(Family)

FloatArray = NDArray[np.float64]

# The standard normal 0.975 quantile, the value statsmodels' norm.ppf(0.975) returns.
Z_975 = 1.959963984540054
# A fitted probability (or poisson mean) this close to its bound counts as "on the
# boundary": only a diverging linear predictor (|eta| > 18.4) gets there.
BOUNDARY = 1e-8
# Largest condition number accepted for the unit-diagonal information matrix. Scaling to a
# unit diagonal first makes the test blind to the units covariates happen to be in; 1e12
# leaves about four significant digits in the solution, below which the fit is noise.
MAX_CONDITION = 1e12
# A Newton step that makes the deviance non-finite or larger is halved at most this often.
MAX_HALVINGS = 30


class ConvergenceError(QueryError):
    """The Newton-Raphson iterations did not reach a maximum-likelihood estimate."""


class SeparationError(ConvergenceError):
    """The maximum-likelihood estimate does not exist: some coefficients diverge."""


class SingularInformationError(QueryError):
    """The information matrix cannot be inverted: the design's columns are collinear."""


@dataclass(frozen=True, eq=False)
class GlmPart:
    """What one member (or, after :func:`combine`, the consortium) contributes at ``beta``.

    All fields are sums over rows, which is what makes :func:`combine` exact.

    - ``score``: ``X^T (y - mu)``, the log-likelihood gradient (up to the gaussian scale,
      which cancels in the Newton step);
    - ``information``: ``X^T W X`` with ``W = var(mu)``, the Fisher information;
    - ``deviance``, ``pearson_chi2``: the rows' contributions at ``beta``;
    - ``n``, ``outcome_sum``, ``column_sums``: totals the driver uses for a start value
      and to refuse fits with more parameters than rows;
    - ``boundary``: rows whose fitted value sits at 0 or 1 (within ``BOUNDARY``), a
      symptom of separation.
    """

    family: Family
    n: int
    score: FloatArray
    information: FloatArray
    deviance: float
    pearson_chi2: float
    outcome_sum: float
    column_sums: FloatArray
    boundary: int

    def __post_init__(self) -> None:
        family = _check_family(self.family)
        score = _frozen(self.score)
        information = _frozen(self.information)
        column_sums = _frozen(self.column_sums)
        p = score.shape[0] if score.ndim == 1 else -1
        if p < 1 or information.shape != (p, p) or column_sums.shape != (p,):
            raise QueryError(
                "GLM part has inconsistent shapes: score "
                f"{score.shape}, information {information.shape}, "
                f"column sums {column_sums.shape}"
            )
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 0:
            raise QueryError(f"GLM part: n must be a whole number >= 0, got {self.n!r}")
        if self.boundary < 0 or self.boundary > self.n:
            raise QueryError(f"GLM part: boundary count {self.boundary} is not in 0..n")
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "boundary", int(self.boundary))
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "information", information)
        object.__setattr__(self, "column_sums", column_sums)
        object.__setattr__(self, "deviance", float(self.deviance))
        object.__setattr__(self, "pearson_chi2", float(self.pearson_chi2))
        object.__setattr__(self, "outcome_sum", float(self.outcome_sum))

    @property
    def p(self) -> int:
        """Number of coefficients."""
        return int(self.score.shape[0])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, as a member sends it to the hub."""
        return {
            "family": self.family,
            "n": self.n,
            "score": self.score.tolist(),
            "information": self.information.tolist(),
            "deviance": self.deviance,
            "pearson_chi2": self.pearson_chi2,
            "outcome_sum": self.outcome_sum,
            "column_sums": self.column_sums.tolist(),
            "boundary": self.boundary,
        }

    def to_vector(self) -> FloatArray:
        """The part as one flat vector of sums, to be added by secure aggregation."""
        head = [self.n, self.boundary, self.deviance, self.pearson_chi2, self.outcome_sum]
        return np.concatenate(
            [
                np.array(head, dtype=np.float64),
                self.score,
                self.column_sums,
                self.information.ravel(),
            ]
        )

    @classmethod
    def from_vector(cls, vector: ArrayLike, family: str, p: int) -> GlmPart:
        """The part a (summed) :meth:`to_vector` holds; counts round to whole numbers."""
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (5 + 2 * p + p * p,):
            raise QueryError(f"GLM part: a vector of {v.shape} does not hold {p} coefficients")
        return cls(
            family=_check_family(family),
            n=round(float(v[0])),
            score=v[5 : 5 + p],
            information=v[5 + 2 * p :].reshape(p, p),
            deviance=float(v[2]),
            pearson_chi2=float(v[3]),
            outcome_sum=float(v[4]),
            column_sums=v[5 + p : 5 + 2 * p],
            boundary=round(float(v[1])),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GlmPart:
        """Rebuild a part from :meth:`to_json` output, refusing anything malformed."""
        expected = {
            "family",
            "n",
            "score",
            "information",
            "deviance",
            "pearson_chi2",
            "outcome_sum",
            "column_sums",
            "boundary",
        }
        if not isinstance(data, Mapping) or set(data) != expected:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise QueryError(f"GLM part: expected keys {sorted(expected)}, got {got}")
        try:
            return cls(
                family=data["family"],
                n=data["n"],
                score=np.asarray(data["score"], dtype=np.float64),
                information=np.asarray(data["information"], dtype=np.float64),
                deviance=float(data["deviance"]),
                pearson_chi2=float(data["pearson_chi2"]),
                outcome_sum=float(data["outcome_sum"]),
                column_sums=np.asarray(data["column_sums"], dtype=np.float64),
                boundary=data["boundary"],
            )
        except (TypeError, ValueError) as exc:
            raise QueryError(f"GLM part: malformed value ({exc})") from exc


@dataclass(frozen=True)
class CoefficientRow:
    """One line of a coefficient table."""

    name: str
    estimate: float
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, eq=False)
class GlmFit:
    """A converged fit. Inference is Wald-type with the normal distribution, as statsmodels'
    GLM does by default: ``se = sqrt(diag(I^-1) * dispersion)`` with the information at
    the final coefficients; ``dispersion`` is Pearson chi2 / (n - p) for gaussian and 1 for
    binomial and poisson; ``p`` two-sided; the confidence intervals are 95%.
    """

    family: Family
    names: tuple[str, ...]
    coefficients: FloatArray
    standard_errors: FloatArray
    z: FloatArray
    p_values: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    covariance: FloatArray
    dispersion: float
    deviance: float
    null_deviance: float | None
    pearson_chi2: float
    n: int
    df_resid: int
    iterations: int
    rounds: int

    def table(self, names: Sequence[str] | None = None) -> list[CoefficientRow]:
        """One row per coefficient; ``names`` overrides the fit's parameter names."""
        labels = _names(names, len(self.coefficients)) if names is not None else self.names
        return [
            CoefficientRow(
                name=labels[i],
                estimate=float(self.coefficients[i]),
                se=float(self.standard_errors[i]),
                z=float(self.z[i]),
                p=float(self.p_values[i]),
                ci_low=float(self.ci_low[i]),
                ci_high=float(self.ci_high[i]),
            )
            for i in range(len(labels))
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite numbers (a perfect gaussian fit) become ``None``."""
        return {
            "family": self.family,
            "n": self.n,
            "df_resid": self.df_resid,
            "iterations": self.iterations,
            "rounds": self.rounds,
            "deviance": _json_float(self.deviance),
            "null_deviance": _json_float(self.null_deviance),
            "pearson_chi2": _json_float(self.pearson_chi2),
            "dispersion": _json_float(self.dispersion),
            "coefficients": [
                {
                    "name": row.name,
                    "estimate": _json_float(row.estimate),
                    "se": _json_float(row.se),
                    "z": _json_float(row.z),
                    "p": _json_float(row.p),
                    "ci_low": _json_float(row.ci_low),
                    "ci_high": _json_float(row.ci_high),
                }
                for row in self.table()
            ],
            "covariance": [[_json_float(v) for v in row] for row in self.covariance.tolist()],
        }


def local_part(X: ArrayLike, y: ArrayLike, beta: ArrayLike, family: Family) -> GlmPart:
    """Compute a member's part from its own rows at the coefficients ``beta``.

    ``X`` is the ``n x p`` design matrix (with the intercept column if wanted), ``y`` the
    outcome: any finite number for gaussian, 0/1 for binomial, a whole number >= 0 for
    poisson. A member with no rows returns a part of zeros.

    Example:
        >>> X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
        >>> part = local_part(X, [0.0, 1.0, 1.0], np.zeros(2), "binomial")
        >>> part.score.tolist(), part.information.tolist()
        ([0.5, 1.5], [[0.75, 0.75], [0.75, 1.25]])
    """
    fam = _check_family(family)
    x = _as_array(X, "X", ndim=2)
    outcome = _as_array(y, "y", ndim=1)
    b = _as_array(beta, "beta", ndim=1)
    n, p = x.shape
    if p < 1:
        raise QueryError("X has no columns: a model needs at least one coefficient")
    if outcome.shape[0] != n:
        raise QueryError(f"X has {n} rows but y has {outcome.shape[0]}")
    if b.shape[0] != p:
        raise QueryError(f"beta has {b.shape[0]} values but X has {p} columns")
    _check_outcome(outcome, fam)

    eta = x @ b
    # Overflow to inf (poisson, far from the optimum) is reported through a non-finite
    # deviance, which makes the driver halve its step; it is not an error here.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mu, weight, deviance, boundary = _family_terms(fam, outcome, eta)
        resid = outcome - mu
        score = x.T @ resid
        information = x.T @ (x * weight[:, None])
        # The Pearson residual is 0/0 only where mu sits exactly on a bound it also hits.
        ratio = np.where(weight > 0, resid**2 / np.where(weight > 0, weight, 1.0), np.inf)
        pearson = np.where((weight == 0) & (resid == 0), 0.0, ratio)
    return GlmPart(
        family=fam,
        n=n,
        score=score,
        # Symmetric by construction; forcing it removes rounding asymmetry before Cholesky.
        information=(information + information.T) / 2,
        deviance=float(deviance),
        pearson_chi2=float(pearson.sum()),
        outcome_sum=float(outcome.sum()),
        column_sums=x.sum(axis=0),
        boundary=boundary,
    )


def combine(parts: Sequence[GlmPart]) -> GlmPart:
    """Add members' parts; every field is a sum over rows, so the total is exact.

    Example:
        >>> X, y = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]), np.array([1.0, 2.0, 4.0])
        >>> whole = local_part(X, y, np.zeros(2), "gaussian")
        >>> halves = combine([local_part(X[:1], y[:1], np.zeros(2), "gaussian"),
        ...                   local_part(X[1:], y[1:], np.zeros(2), "gaussian")])
        >>> bool(np.allclose(whole.score, halves.score)), halves.n
        (True, 3)
    """
    if not parts:
        raise QueryError("no GLM parts to combine: no member answered")
    first = parts[0]
    for i, part in enumerate(parts):
        if not isinstance(part, GlmPart):
            raise QueryError(f"part {i} is a {type(part).__name__}, not a GlmPart")
        if part.family != first.family:
            raise QueryError(f"part {i} is for family {part.family!r}, not {first.family!r}")
        if part.p != first.p:
            raise QueryError(f"part {i} has {part.p} coefficients, not {first.p}")
    return GlmPart(
        family=first.family,
        n=sum(part.n for part in parts),
        score=np.sum([part.score for part in parts], axis=0),
        information=np.sum([part.information for part in parts], axis=0),
        deviance=math.fsum(part.deviance for part in parts),
        pearson_chi2=math.fsum(part.pearson_chi2 for part in parts),
        outcome_sum=math.fsum(part.outcome_sum for part in parts),
        column_sums=np.sum([part.column_sums for part in parts], axis=0),
        boundary=sum(part.boundary for part in parts),
    )


def newton_step(
    beta: ArrayLike, combined: GlmPart, *, names: Sequence[str] | None = None
) -> FloatArray:
    """Return ``beta + I^-1 U`` from the consortium's combined part at ``beta``.

    Raises :class:`SingularInformationError` naming the collinear columns when the
    information matrix is singular, ill-conditioned or not positive definite, rather
    than returning a least-squares answer that hides the problem.

    Example:
        >>> X, y = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]), np.array([1.0, 2.0, 4.0])
        >>> newton_step(np.zeros(2), local_part(X, y, np.zeros(2), "gaussian")).round(6)
        array([0.833333, 1.5     ])
    """
    b = _as_array(beta, "beta", ndim=1)
    if b.shape[0] != combined.p:
        raise QueryError(f"beta has {b.shape[0]} values but the part has {combined.p}")
    labels = _names(names, combined.p)
    return b + _solve(combined.information, labels)(combined.score)


def fit(
    parts_for: Callable[[FloatArray], Sequence[GlmPart]],
    p: int,
    family: Family,
    *,
    names: Sequence[str] | None = None,
    max_iter: int = 25,
    tol: float = 1e-10,
) -> GlmFit:
    """Drive the federated Newton-Raphson fit; ``parts_for(beta)`` asks every member.

    The first round, at ``beta = 0``, yields the totals for a start value: if the design
    spans a constant (it has an intercept), the start is the intercept-only model, whose
    deviance is reported as ``null_deviance``; otherwise the start is zero. Each iteration
    then costs one round. Iterations stop when the deviance changes by less than ``tol``
    relative to its size (``|dev - dev_old| / (|dev| + 0.1)``, as R's ``glm`` does;
    statsmodels uses an absolute 1e-8) or no coefficient moves by ``tol``. For gaussian
    the log-likelihood is quadratic, so one step is exact and is the only one taken.

    Raises ``QueryError`` (or its subclasses here) when there are more parameters than
    the data allow, the design is collinear, the outcome makes the model unidentifiable
    (separation, all-zero counts) or the iterations do not converge within ``max_iter``.

    Example:
        >>> X, y = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]), np.array([1.0, 2.0, 4.0])
        >>> result = fit(lambda beta: [local_part(X, y, beta, "gaussian")], 2, "gaussian")
        >>> result.coefficients.round(6).tolist(), result.iterations
        ([0.833333, 1.5], 1)
    """
    fam = _check_family(family)
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise QueryError(f"p must be a whole number >= 1, got {p!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise QueryError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol > 0):
        raise QueryError(f"tol must be a positive number, got {tol!r}")
    labels = _names(names, p)
    rounds = 0

    def ask(beta: FloatArray) -> GlmPart:
        nonlocal rounds
        rounds += 1
        # Members get a read-only copy: they cannot change the hub's coefficients.
        combined = combine(parts_for(_frozen(beta)))
        if combined.family != fam or combined.p != p:
            raise QueryError(
                f"members answered for a {combined.family} model with {combined.p} "
                f"coefficients; the fit is {fam} with {p}"
            )
        return combined

    at_zero = ask(np.zeros(p))
    n = at_zero.n
    if p > n - 1:
        raise QueryError(
            f"more parameters than the data allow: {p} coefficients but only {n} rows "
            "in total (need at least p + 1)",
            hint="drop covariates or add members",
        )
    _check_outcome_total(fam, at_zero)
    start, has_intercept = _start(fam, at_zero, labels)
    current = ask(start) if has_intercept else at_zero
    null_deviance = current.deviance if has_intercept else None

    beta = start
    steps: list[FloatArray] = []
    iterations = 0
    converged = False
    while iterations < max_iter:
        try:
            step = _solve(current.information, labels)(current.score)
        except SingularInformationError as exc:
            _raise_if_separated(fam, steps, current, labels, exc)
            raise
        candidate, trial = _halve_until_better(ask, beta, step, current)
        iterations += 1
        moved = candidate - beta
        steps.append(moved)
        change = abs(trial.deviance - current.deviance) / (abs(trial.deviance) + 0.1)
        beta, current = candidate, trial
        if fam == "gaussian" or change < tol or float(np.max(np.abs(moved))) < tol:
            converged = True
            break
    _raise_if_separated(fam, steps, current, labels, None)
    if not converged:
        raise ConvergenceError(
            f"did not converge after {max_iter} iteration{'' if max_iter == 1 else 's'} "
            f"(deviance {current.deviance:.6g}, last step {np.max(np.abs(steps[-1])):.3g})",
            hint="raise max_iter, or rescale covariates measured in very large units",
        )
    return _result(fam, labels, beta, current, null_deviance, iterations, rounds)


def fit_partitioned(
    blocks: Sequence[tuple[ArrayLike, ArrayLike]],
    family: Family,
    names: Sequence[str] | None = None,
    *,
    max_iter: int = 25,
    tol: float = 1e-10,
) -> GlmFit:
    """Fit with each ``(X, y)`` block standing in for a member, all in this process.

    Useful for tests and single-process runs; the arithmetic is the federated one.

    Example:
        >>> X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
        >>> y = np.array([1.0, 2.0, 4.0, 5.0])
        >>> fit_partitioned([(X[:1], y[:1]), (X[1:], y[1:])], "gaussian").coefficients
        array([0.9, 1.4])
    """
    if not blocks:
        raise QueryError("no members: fit_partitioned needs at least one (X, y) block")
    members = [(_as_array(X, "X", ndim=2), _as_array(y, "y", ndim=1)) for X, y in blocks]
    widths = {x.shape[1] for x, _ in members}
    if len(widths) != 1:
        raise QueryError(f"members' design matrices differ in width: {sorted(widths)}")

    def parts_for(beta: FloatArray) -> list[GlmPart]:
        return [local_part(x, y, beta, family) for x, y in members]

    return fit(parts_for, widths.pop(), family, names=names, max_iter=max_iter, tol=tol)


# --- internals -----------------------------------------------------------------------


def _check_family(family: object) -> Family:
    for known in FAMILIES:
        if family == known:
            return known
    raise QueryError(f"unknown GLM family {family!r}; expected one of {', '.join(FAMILIES)}")


def _as_array(value: ArrayLike, what: str, *, ndim: int) -> FloatArray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"{what} must be numeric ({exc})") from exc
    if array.ndim != ndim:
        shape = "a matrix (rows x columns)" if ndim == 2 else "a vector"
        raise QueryError(f"{what} must be {shape}, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise QueryError(
            f"{what} has {int(bad.sum())} missing or infinite values (first at index {where})",
            hint="drop or impute missing values before fitting",
        )
    return array


def _check_outcome(y: FloatArray, family: Family) -> None:
    # Report the count and first row, not the values: an error may travel to the hub.
    if family == "binomial":
        bad = (y != 0) & (y != 1)
        need = "0 or 1"
    elif family == "poisson":
        bad = (y < 0) | (y != np.floor(y))
        need = "a whole number >= 0"
    else:
        return
    if bad.any():
        raise QueryError(
            f"{family} outcome must be {need}: {int(bad.sum())} rows are not "
            f"(first at row {int(np.argmax(bad))})"
        )


def _family_terms(
    family: Family, y: FloatArray, eta: FloatArray
) -> tuple[FloatArray, FloatArray, float, int]:
    """Fitted mean, IRLS weight (= variance), deviance and boundary count at ``eta``."""
    if family == "gaussian":
        mu = eta
        return mu, np.ones_like(eta), float(np.sum((y - mu) ** 2)), 0
    if family == "binomial":
        # log(1 + e^eta) via logaddexp never overflows; the deviance written with it,
        # 2 * sum(log(1 + e^eta) - y * eta), keeps full precision for fitted values near
        # 0 or 1, where the textbook form in log(mu) and log(1 - mu) cancels.
        softplus = np.logaddexp(0.0, eta)
        mu = np.exp(eta - softplus)
        # mu * (1 - mu) computed from |eta| so that 1 - mu never cancels.
        tail = np.exp(-np.logaddexp(0.0, np.abs(eta)))  # min(mu, 1 - mu)
        weight = tail * (1.0 - tail)
        deviance = 2.0 * float(np.sum(softplus - y * eta))
        return mu, weight, deviance, int(np.count_nonzero(tail < BOUNDARY))
    mu = np.exp(eta)
    # y * log(y) is taken as 0 at y = 0, its limit.
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    deviance = 2.0 * float(np.sum(ylogy - y * eta - y + mu))
    return mu, mu, deviance, int(np.count_nonzero(mu < BOUNDARY))


def _check_outcome_total(family: Family, part: GlmPart) -> None:
    # With every outcome at a bound the likelihood has no maximum: say so before iterating.
    if family == "binomial" and part.outcome_sum in (0.0, float(part.n)):
        value = 0 if part.outcome_sum == 0 else 1
        raise SeparationError(
            f"binomial outcome is {value} for every row: the model cannot be estimated"
        )
    if family == "poisson" and part.outcome_sum == 0:
        raise SeparationError("poisson outcome is 0 for every row: the model cannot be estimated")


def _start(family: Family, at_zero: GlmPart, labels: Sequence[str]) -> tuple[FloatArray, bool]:
    """Intercept-only coefficients when the design spans a constant, else zeros.

    At beta = 0 the information is ``w0 * X^T X`` with a known constant weight, so
    solving ``X^T X c = X^T 1`` from totals the first round already carries projects the
    constant column onto the design. If the projection is exact, ``X c = 1`` and
    ``link(mean y) * c`` is the intercept-only fit: a start every row agrees with, which
    keeps the poisson Newton steps from overshooting into overflow.
    """
    p = at_zero.p
    w0 = {"gaussian": 1.0, "binomial": 0.25, "poisson": 1.0}[family]
    gram = at_zero.information / w0
    c = _solve(gram, labels)(at_zero.column_sums)
    # |1 - X c|^2 = n - 2 c.X^T1 + c.X^TX c = n - c.X^T1 at the least-squares solution.
    residual = at_zero.n - float(at_zero.column_sums @ c)
    if residual > 1e-8 * at_zero.n:
        return np.zeros(p), False
    mean = at_zero.outcome_sum / at_zero.n
    # Not a dict of all three: the other families' links may be undefined at this mean.
    if family == "binomial":
        level = math.log(mean / (1.0 - mean))
    elif family == "poisson":
        level = math.log(mean)
    else:
        level = mean
    return level * c, True


def _solve(information: FloatArray, labels: Sequence[str]) -> Callable[[FloatArray], FloatArray]:
    """Check that ``information`` is safely invertible and return ``v -> I^-1 v``."""
    if not np.all(np.isfinite(information)):
        raise SingularInformationError(
            "information matrix has infinite or missing entries (a step overflowed)"
        )
    scale_sq = np.diag(information)
    empty = [labels[int(i)] for i in np.flatnonzero(scale_sq <= 0)]
    if empty:
        raise SingularInformationError(
            f"information matrix is singular: column(s) {', '.join(empty)} carry no "
            "information (all zero, or all rows at a fitted value of 0 or 1)",
            hint="drop the column(s)",
        )
    scale = 1.0 / np.sqrt(scale_sq)
    # Unit diagonal: the condition number then measures collinearity, not units.
    unit = information * scale[:, None] * scale[None, :]
    eigenvalues, eigenvectors = np.linalg.eigh(unit)
    # An X^T W X is never indefinite; rounding makes a singular one at most about
    # -1e-15 * p. A clearly negative eigenvalue means the part was not built from rows.
    if eigenvalues[0] < -1e-8 * eigenvalues[-1]:
        raise SingularInformationError(
            "information matrix is not positive definite (smallest eigenvalue "
            f"{eigenvalues[0]:.3g} after scaling to a unit diagonal)",
            hint="a member's part is malformed: information must be X^T W X",
        )
    if eigenvalues[0] <= eigenvalues[-1] / MAX_CONDITION:
        # The eigenvector of the smallest eigenvalue is the near-null combination.
        involved = np.flatnonzero(np.abs(eigenvectors[:, 0]) > 0.1)
        condition = "inf" if eigenvalues[0] <= 0 else f"{eigenvalues[-1] / eigenvalues[0]:.2g}"
        raise SingularInformationError(
            "information matrix is singular or nearly so (condition number "
            f"{condition}): columns {', '.join(labels[int(i)] for i in involved)} are collinear",
            hint="drop a duplicated or linearly dependent column",
        )
    try:
        lower = np.linalg.cholesky(unit)
    except np.linalg.LinAlgError as exc:
        raise SingularInformationError(
            "information matrix is not positive definite", hint="check the design matrix"
        ) from exc

    def apply(vector: FloatArray) -> FloatArray:
        half = np.linalg.solve(lower, scale * vector)
        result: FloatArray = scale * np.linalg.solve(lower.T, half)
        return result

    return apply


def _halve_until_better(
    ask: Callable[[FloatArray], GlmPart], beta: FloatArray, step: FloatArray, current: GlmPart
) -> tuple[FloatArray, GlmPart]:
    # The canonical-link log-likelihood is concave, so a short enough Newton step always
    # lowers the deviance; a full step may overshoot (exp overflow in poisson). The slack
    # lets rounding noise at the optimum through without a pointless halving.
    slack = 1e-9 * (abs(current.deviance) + 0.1)
    for _ in range(MAX_HALVINGS + 1):
        candidate = beta + step
        trial = ask(candidate)
        if math.isfinite(trial.deviance) and trial.deviance <= current.deviance + slack:
            return candidate, trial
        step = step / 2
    raise ConvergenceError(
        f"Newton step did not lower the deviance even after {MAX_HALVINGS} halvings",
        hint="rescale covariates measured in very large units",
    )


def _raise_if_separated(
    family: Family,
    steps: Sequence[FloatArray],
    current: GlmPart,
    labels: Sequence[str],
    cause: Exception | None,
) -> None:
    """Raise :class:`SeparationError` if the coefficients are running off to infinity.

    Newton-Raphson converges quadratically, so near a maximum each step is far smaller
    than the one before. When the maximum does not exist the deviance still levels off
    but the steps stay about the same length (the linear predictor grows by about one
    per step) while fitted values pile up at 0 or 1. Both signs together mean separation,
    whether the deviance test was passed, the information went singular or ``max_iter``
    ran out.
    """
    if family == "gaussian" or current.boundary == 0 or len(steps) < 3:
        return
    sizes = [float(np.max(np.abs(step))) for step in steps[-3:]]
    if not (sizes[-1] > 0.3 * sizes[-2] and sizes[-2] > 0.3 * sizes[-3]):
        return
    last = np.abs(steps[-1])
    diverging = ", ".join(labels[int(i)] for i in np.flatnonzero(last > 0.1 * last.max()))
    if family == "binomial":
        message = (
            "perfect separation: the outcome is perfectly predicted for some rows "
            "(they have fitted probabilities of 0 or 1), so coefficients "
            f"{diverging} diverge and the maximum-likelihood estimates do not exist"
        )
        hint = "drop or merge the covariates that separate the outcome, or use Firth regression"
    else:
        message = (
            "coefficients diverge: some rows' counts are all 0 where the model can push "
            "their mean to 0 (they have fitted means of 0), so "
            f"coefficients {diverging} run to -infinity and the maximum-likelihood estimates "
            "do not exist"
        )
        hint = "drop or merge the categories with no events"
    raise SeparationError(message, hint=hint) from cause


def _result(
    family: Family,
    labels: tuple[str, ...],
    beta: FloatArray,
    final: GlmPart,
    null_deviance: float | None,
    iterations: int,
    rounds: int,
) -> GlmFit:
    df_resid = final.n - final.p
    dispersion = final.pearson_chi2 / df_resid if family == "gaussian" else 1.0
    inverse = np.column_stack([_solve(final.information, labels)(unit) for unit in np.eye(final.p)])
    covariance = (inverse + inverse.T) / 2 * dispersion
    se = np.sqrt(np.diag(covariance))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beta / se
    p_values = np.array([math.erfc(abs(value) / math.sqrt(2.0)) for value in z])
    return GlmFit(
        family=family,
        names=labels,
        coefficients=_frozen(beta),
        standard_errors=_frozen(se),
        z=_frozen(z),
        p_values=_frozen(p_values),
        ci_low=_frozen(beta - Z_975 * se),
        ci_high=_frozen(beta + Z_975 * se),
        covariance=_frozen(covariance),
        dispersion=dispersion,
        deviance=final.deviance,
        null_deviance=null_deviance,
        pearson_chi2=final.pearson_chi2,
        n=final.n,
        df_resid=df_resid,
        iterations=iterations,
        rounds=rounds,
    )


def _names(names: Sequence[str] | None, p: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"x{i}" for i in range(p))
    labels = tuple(str(name) for name in names)
    if len(labels) != p:
        raise QueryError(f"{len(labels)} parameter names given for {p} coefficients")
    if len(set(labels)) != p:
        raise QueryError("parameter names must be distinct")
    return labels


def _frozen(value: ArrayLike) -> FloatArray:
    array = np.array(value, dtype=np.float64)  # a copy: the caller keeps its own
    array.setflags(write=False)
    return array


def _json_float(value: float | None) -> float | None:
    # NaN and infinity are not JSON; None says "no finite value" in every client.
    return value if value is not None and math.isfinite(value) else None
