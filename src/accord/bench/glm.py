"""Benchmark: scenario 6's federated logistic regression against statsmodels on pooled rows.

Five members run as real node processes beside a hub; the clock covers
``Client.fit_glm``: every Newton step is one task to every member (design query, small-
cell rules, the member's part, sealing, the hub's checks). The baseline, measured in the
same run, is a pooled analysis: the same design read from every member's rows into one
process, and statsmodels fitting it (the fit alone is reported too). The coefficients
must agree to 1e-6; the report gives the largest difference found and the time ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np

from accord.bench.running import running_consortium
from accord.errors import UserError
from accord.query.run import run_design
from accord.query.scenarios import TREATMENT_RESPONSE_COVARIATES, treatment_response

MEMBERS = 5
TOLERANCE = 1e-6


def run(
    persons: int = 50_000, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Fit the model both ways and report the time ratio and the largest difference."""
    try:
        import statsmodels.api as sm
    except ImportError:
        raise UserError(
            "the glm benchmark compares with statsmodels", hint="pip install 'accord[dev]'"
        ) from None
    with running_consortium(members=MEMBERS, persons=persons, progress=progress) as running:
        model = treatment_response(running.manifest.as_of)
        names = ["intercept", *TREATMENT_RESPONSE_COVARIATES]
        started = time.perf_counter()
        fitted = running.client.fit_glm(model, names=names)
        federated_s = time.perf_counter() - started
        started = time.perf_counter()
        blocks = []
        for member in running.manifest.members:
            with duckdb.connect(str(running.member_database(member.id)), read_only=True) as con:
                blocks.append(run_design(con, model, "duckdb"))
        design = np.vstack([x for x, _ in blocks])
        outcome = np.concatenate([y for _, y in blocks])
        design_s = time.perf_counter() - started
    started = time.perf_counter()
    pooled = sm.GLM(outcome, design, family=sm.families.Binomial()).fit(tol=1e-13)
    pooled_s = time.perf_counter() - started
    difference = float(np.max(np.abs(fitted.coefficients - pooled.params)))
    if difference > TOLERANCE:
        raise UserError(
            f"the federated coefficients differ from the pooled fit by {difference:.2e}",
            hint=f"expected at most {TOLERANCE:g}",
        )
    return {
        "bench": "glm",
        "metric": "seconds",
        "value": round(federated_s, 3),
        "unit": "s",
        "baseline": round(design_s + pooled_s, 4),
        "ratio": round(federated_s / (design_s + pooled_s), 2),
        "baseline_fit_only": round(pooled_s, 4),
        "ratio_fit_only": round(federated_s / pooled_s, 1),
        "max_coefficient_difference": difference,
        "persons_in_model": fitted.n,
        "rounds": fitted.rounds,
        "iterations": fitted.iterations,
        "members": MEMBERS,
        "persons": persons * MEMBERS,
        "coefficients": dict(zip(names, fitted.coefficients.round(6).tolist(), strict=True)),
    }
