"""Running an allowlisted analysis on the member's own database.

This is the only place where member rows are read. What leaves this module has passed
the member's disclosure profile: the raw figure never does. Data the quality gate has not
accepted is not read at all (:func:`accord.quality.gate.serving_refusal`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from accord.errors import DataError, QueryError
from accord.node.answers import (
    ANSWERS,
    SECURE_VECTORS,
    Refusal,
    Release,
    answer,
    secure_vector,
)
from accord.node.config import DatabaseConfig, DisclosureConfig
from accord.privacy.disclosure import SmallCellProfile
from accord.quality.gate import serving_refusal
from accord.query import CountPersons, GlmStep, query_from_json
from accord.query.model import (
    Analysis,
    Correlation,
    Histogram,
    Summary,
)
from accord.query.nodes import QueryValidationError
from accord.query.run import run_count, run_design, run_rows, run_values, unknown_concepts

ALLOWED_ANALYSES = frozenset(node.TYPE for node in ANSWERS)
MAX_CACHED_DESIGNS = 4


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
        # A model's design, kept between its Newton steps while the file stays open (and
        # so cannot have changed): each step then costs arithmetic, not a query.
        self._designs: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
        self._withheld: tuple[str | None] | None = None
        # Concept ids found in the vocabulary while the file is open (it cannot change).
        self._known_concepts: set[int] = set()
        self.opened = 0
        """How many times the file was opened: what was read before may be stale after."""

    def serving_refusal(self, connection: Any) -> str | None:
        """The quality gate's say on serving this data (a DuckDB file cannot change while
        the node holds it open, so the answer is kept until it closes)."""
        engine, schema = self.config.engine, self.config.schema_
        if engine == "spark":  # its verdicts are kept in a DuckDB file of their own
            from accord.node.spark import gate_books

            try:
                with gate_books(self.config, write=False) as books:
                    return serving_refusal(connection, engine, schema, books=books)
            except DataError:  # no file configured, or a steward's run writing it
                return (
                    "this member's quality gate verdicts cannot be read right now, and no "
                    "data is served without them"
                )
        if engine != "duckdb":
            return serving_refusal(connection, engine, schema)
        with self._lock:
            known = self._withheld
        if known is None:
            known = (serving_refusal(connection, engine, schema),)
            with self._lock:
                self._withheld = known
        return known[0]

    def unknown_concepts(self, query: Analysis, connection: Any) -> list[str]:
        """Each concept of ``query`` the member's vocabulary lacks, with its path (for a
        DuckDB file, what was found is remembered while it stays open)."""
        engine, schema = self.config.engine, self.config.schema_
        if engine != "duckdb":
            return unknown_concepts(connection, query, engine, schema=schema)
        wanted = {c for _, c in query.concept_paths()}
        with self._lock:
            if wanted <= self._known_concepts:
                return []
        problems = unknown_concepts(connection, query, engine, schema=schema)
        if not problems:
            with self._lock:
                self._known_concepts |= wanted
        return problems

    def read(self, query: Analysis, connection: Any) -> Any:
        """What ``query`` needs of the member's rows (see ``accord.node.answers``)."""
        engine, schema = self.config.engine, self.config.schema_
        if isinstance(query, GlmStep):
            return self.design(query, connection)
        if isinstance(query, CountPersons):
            return run_count(connection, query, engine, schema=schema)
        if isinstance(query, Histogram | Summary | Correlation):
            return run_values(connection, query, engine, schema=schema)
        return run_rows(connection, query, engine, schema=schema)

    def design(
        self, query: GlmStep, connection: Any
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The model's design at this member (from the cache while the file is open)."""
        engine, schema = self.config.engine, self.config.schema_
        if engine != "duckdb":
            return run_design(connection, query, engine, schema=schema)
        key = json.dumps({**query.to_json(), "beta": None}, sort_keys=True)
        with self._lock:
            found = self._designs.get(key)
        if found is None:
            found = run_design(connection, query, engine, schema=schema)
            with self._lock:
                if len(self._designs) >= MAX_CACHED_DESIGNS:
                    self._designs.clear()
                self._designs[key] = found
        return found

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A read-only connection (for DuckDB, a cursor of the shared one) for one task."""
        if self.config.engine == "spark":  # the process's Spark session (accord.node.spark)
            from accord.node import spark

            yield spark.connect(self.config)
            return
        if self.config.engine != "duckdb":
            with _postgres(self.config) as connection:
                yield connection
            return
        with self._lock:
            if self._duckdb is None:
                self._duckdb = _open_duckdb(self.config)
                self.opened += 1
            self._users += 1
            cursor = self._duckdb.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()

    @property
    def open_since(self) -> int | None:
        """Which opening of the DuckDB file is current (``None`` while it is closed):
        anything read under the same opening is still true."""
        with self._lock:
            return self.opened if self._duckdb is not None else None

    def close_if_idle(self) -> None:
        """Close the DuckDB file if no task used it for ``idle_seconds``."""
        with self._lock:
            idle = time.monotonic() - self._last_used >= self.idle_seconds
            if self._duckdb is not None and self._users == 0 and idle:
                self._duckdb.close()
                self._duckdb = None
                self._designs.clear()
                self._withheld = None
                self._known_concepts.clear()

    def close(self) -> None:
        with self._lock:
            if self._duckdb is not None:
                self._duckdb.close()
                self._duckdb = None
            self._designs.clear()
            self._withheld = None
            self._known_concepts.clear()
        if self.config.engine == "spark":  # stops Spark if the node started it
            from accord.node import spark

            spark.stop()


def _open_duckdb(database: DatabaseConfig) -> Any:
    import duckdb

    assert database.path is not None
    settings: dict[str, str | bool | int | float | list[str]] = {}
    if database.threads is not None:
        settings["threads"] = database.threads
    try:
        return duckdb.connect(database.path, read_only=True, config=settings)
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
    analysis: dict[str, Any],
    database: MemberDatabase,
    disclosure: DisclosureConfig,
    *,
    patient_key: bytes | None = None,
    secure: bool = False,
) -> dict[str, Any]:
    """Run one analysis and return its released result, ready to seal for the hub.

    With ``secure``, the result is this member's contribution to a secure sum instead:
    ``{"analysis", "vector", "profile"}``, where ``vector`` holds raw sums that must be
    masked (``accord.trust.secagg``) before they leave the node.
    """
    try:
        query = query_from_json(analysis)
    except QueryError as error:
        raise Refusal(f"analysis failed validation at the node: {error.message}") from None
    if query.TYPE not in ALLOWED_ANALYSES:
        raise Refusal(f"analysis {analysis.get('type')!r} is not allowlisted at this node")
    if secure and type(query) not in SECURE_VECTORS:
        raise Refusal(f"{query.TYPE} cannot be computed by secure aggregation")
    with database.connect() as connection:
        withheld = database.serving_refusal(connection)
        if withheld is not None:
            raise Refusal(withheld)
        unknown = database.unknown_concepts(query, connection)
        if unknown:
            raise Refusal(
                f"analysis failed validation at the node: {QueryValidationError(unknown)}"
            )
        data = database.read(query, connection)
    release = Release(profile_for(disclosure), patient_key)
    if secure:
        vector = secure_vector(query, data, release)
        return {
            "analysis": query.TYPE,
            "vector": vector.tolist(),
            "profile": release.profile.to_json(),
        }
    return answer(query, data, release)
