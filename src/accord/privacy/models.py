"""Disclosure control for model parts: pure functions, no I/O.

A model's part (score vector, information matrix, totals) is computed from a member's
rows, and its sums can reveal small groups: at ``beta = 0`` the information matrix of a
logistic model holds, a quarter at a time, the number of persons in every pair of binary
variables. So before a member releases a part, its design must pass the profile's
small-cell rule on every such group, as DataSHIELD's ``nfilter`` rules do:

- enough persons for the parameters: at least ``threshold`` residual degrees of freedom
  (or none at all: an empty cohort's part is all zeros, like a count of 0);
- every binary variable (a 0/1 covariate, or a binomial outcome), and every pair of
  them, splits the persons into groups that are empty or hold at least ``threshold``.

Example:
    >>> import numpy as np
    >>> profile = SmallCellProfile(threshold=3)
    >>> design = np.column_stack([np.ones(8), [0, 0, 0, 1, 1, 1, 1, 1]])
    >>> model_refusal(profile, design, np.array([0, 0, 1, 0, 1, 1, 1, 0.0]), "binomial")
    "a group of the model's binary variables holds fewer than 3 persons at this member"
    >>> model_refusal(profile, design, np.array([1, 2, 3, 4, 5, 6, 7, 8.0]), "gaussian")
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from accord.privacy.disclosure import SmallCellProfile


def model_refusal(
    profile: SmallCellProfile,
    design: NDArray[np.float64],
    outcome: NDArray[np.float64],
    family: str,
) -> str | None:
    """Why this member must not release a model part of this design, or ``None``.

    ``design`` has one row per person (the intercept column included); the reason names
    the rule broken, never a count.
    """
    n, p = design.shape
    if n == 0:
        return None  # an empty cohort releases zeros, as a count of 0 is released as 0
    if n - p < profile.threshold:
        return (
            f"too few persons at this member for a model with {p} parameters "
            f"(fewer than {profile.threshold} residual degrees of freedom)"
        )
    candidates = [design[:, j] for j in range(1, p)]
    if family == "binomial":
        candidates.append(outcome)
    binary = [c for c in candidates if np.all((c == 0) | (c == 1))]
    if not binary:
        return None
    groups = np.column_stack(binary)
    ones = groups.sum(axis=0)
    both = groups.T @ groups
    first_only = ones[:, None] - both
    neither = n - ones[:, None] - ones[None, :] + both
    cells = np.concatenate([ones, n - ones, both.ravel(), first_only.ravel(), neither.ravel()])
    if np.any((cells > 0) & (cells < profile.threshold)):
        return (
            "a group of the model's binary variables holds fewer than "
            f"{profile.threshold} persons at this member"
        )
    return None
