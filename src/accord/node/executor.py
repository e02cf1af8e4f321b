"""Running an allowlisted analysis on the member's own database.

This is the only place where member rows are read. What leaves this module has passed
the member's disclosure profile: the raw figure never does. Data the quality gate has not
accepted is not read at all (:func:`accord.quality.gate.serving_refusal`).
"""

from __future__ import annotations

import threading
import time
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


class MemberDatabase:
    """The member's CDM as the node reads it: read-only, and for a DuckDB file kept open
    between tasks that follow each other closely.

    Opening a DuckDB file costs more than a small query, so the node keeps it open while
    tasks keep coming and closes it once idle for ``idle_seconds`` (see
    :meth:`close_if_idle`), letting the data steward's loads, which need the file to
    themselves, in between. PostgreSQL gets a connection per task, in one repeatable-read
    snapshot, so the gate's verdict and the analysis see the same data.
    """

    def __init__(self, config: DatabaseConfig, *, idle_seconds: float = 2.0) -> None:
        self.config = config
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._duckdb: Any = None
        self._users = 0
        self._last_used = 0.0

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A read-only connection (for DuckDB, a cursor of the shared one) for one task."""
        if self.config.engine != "duckdb":
            with _postgres(self.config) as connection:
                yield connection
            return
        with self._lock:
            if self._duckdb is None:
                self._duckdb = _open_duckdb(self.config)
            self._users += 1
            cursor = self._duckdb.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()

    def close_if_idle(self) -> None:
        """Close the DuckDB file if no task used it for ``idle_seconds``."""
        with self._lock:
            idle = time.monotonic() - self._last_used >= self.idle_seconds
            if self._duckdb is not None and self._users == 0 and idle:
                self._duckdb.close()
                self._duckdb = None

    def close(self) -> None:
        with self._lock:
            if self._duckdb is not None:
                self._duckdb.close()
                self._duckdb = None


def _open_duckdb(database: DatabaseConfig) -> Any:
    import duckdb

    assert database.path is not None
    try:
        return duckdb.connect(database.path, read_only=True)
    except duckdb.Error as error:
        raise DataError(f"cannot open member database {database.path}: {error}") from None


@contextmanager
def _postgres(database: DatabaseConfig) -> Iterator[Any]:
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
    analysis: dict[str, Any], database: MemberDatabase, disclosure: DisclosureConfig
) -> dict[str, Any]:
    """Run one analysis and return its disclosed result, ready to seal for the hub."""
    try:
        query = query_from_json(analysis)
    except QueryError as error:
        raise Refusal(f"analysis failed validation at the node: {error.message}") from None
    if query.TYPE not in ALLOWED_ANALYSES:
        raise Refusal(f"analysis {analysis.get('type')!r} is not allowlisted at this node")
    profile = profile_for(disclosure)
    engine, schema = database.config.engine, database.config.schema_
    with database.connect() as connection:
        withheld = serving_refusal(connection, engine, schema)
        if withheld is not None:
            raise Refusal(withheld)
        if isinstance(query, GlmStep):
            design, outcome = run_design(connection, query, engine, schema=schema)
        else:
            raw = run_count(connection, query, engine, schema=schema)
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
