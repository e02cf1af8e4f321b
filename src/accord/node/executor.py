"""Running an allowlisted analysis on the member's own database.

This is the only place where member rows are read. What leaves this module has passed
the member's disclosure profile: the raw figure never does. Data the quality gate has not
accepted is not read at all (:func:`accord.quality.gate.serving_refusal`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from accord.analysis.glm import Family, local_part
from accord.errors import DataError, QueryError
from accord.node.config import DatabaseConfig, DisclosureConfig
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.privacy.models import model_refusal
from accord.quality.gate import serving_refusal
from accord.query import CountPersons, GlmStep, query_from_json
from accord.query.run import run_count, run_design

ALLOWED_ANALYSES = {"count_persons", "glm_step"}


class Refusal(Exception):
    """The node will not run this task; the reason is safe to send to the hub."""


def profile_for(config: DisclosureConfig) -> SmallCellProfile:
    return SmallCellProfile(
        name=f"small-cell-{config.threshold}-round-{config.rounding}",
        threshold=config.threshold,
        rounding=config.rounding,
    )


@contextmanager
def connect(database: DatabaseConfig) -> Iterator[Any]:
    """A read-only connection to the member's CDM."""
    connection: Any
    if database.engine == "duckdb":
        import duckdb

        assert database.path is not None
        try:
            connection = duckdb.connect(database.path, read_only=True)
        except duckdb.Error as error:
            raise DataError(f"cannot open member database {database.path}: {error}") from None
    else:
        import psycopg

        assert database.dsn is not None
        connection = psycopg.connect(database.dsn)
        # One snapshot for the gate's verdict and the analysis: a load committing in
        # between cannot slip data past the check.
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
    try:
        yield connection
    finally:
        connection.close()


def execute(
    analysis: dict[str, Any], database: DatabaseConfig, disclosure: DisclosureConfig
) -> dict[str, Any]:
    """Run one analysis and return its disclosed result, ready to seal for the hub."""
    try:
        query = query_from_json(analysis)
    except QueryError as error:
        raise Refusal(f"analysis failed validation at the node: {error.message}") from None
    if query.TYPE not in ALLOWED_ANALYSES:
        raise Refusal(f"analysis {analysis.get('type')!r} is not allowlisted at this node")
    profile = profile_for(disclosure)
    with connect(database) as connection:
        withheld = serving_refusal(connection, database.engine, database.schema_)
        if withheld is not None:
            raise Refusal(withheld)
        if isinstance(query, GlmStep):
            design, outcome = run_design(
                connection, query, database.engine, schema=database.schema_
            )
        else:
            raw = run_count(connection, query, database.engine, schema=database.schema_)
    if isinstance(query, CountPersons):
        return {
            "analysis": "count_persons",
            "disclosed": apply_count(profile, raw).to_json(),
            "profile": profile.to_json(),
        }
    return glm_step_result(query, design, outcome, profile)


def glm_step_result(
    query: GlmStep,
    design: NDArray[np.float64],
    outcome: NDArray[np.float64],
    profile: SmallCellProfile,
) -> dict[str, Any]:
    """This member's part of one step of a model, if its disclosure rules allow it."""
    withheld = model_refusal(profile, design, outcome, query.family)
    if withheld is not None:
        raise Refusal(withheld)
    try:
        part = local_part(design, outcome, np.asarray(query.beta), cast(Family, query.family))
    except QueryError as error:  # says what is wrong with the rows, never their values
        raise Refusal(f"the model cannot be computed at this node: {error.message}") from None
    return {"analysis": "glm_step", "part": part.to_json(), "profile": profile.to_json()}
