"""A member's CDM in Apache Spark: the session, the CDM's tables, and a connection.

Spark runs inside the node's process (``local[2]`` by default) or on the member's
cluster. One session serves the whole process: starting Spark costs seconds, a query a
fraction of one. When the member keeps its CDM as parquet files (``database.spark.tables``)
the node registers each table folder as a table of the configured database and reads the
files where they are; nothing is copied. The tables are refreshed before every task, so
files the member's pipeline rewrote in between are read afresh.

:class:`SparkConnection` gives the query runner what it needs of a DB-API connection:
``execute(sql)`` returning a cursor with ``fetchone()`` and ``fetchall()``.

:func:`gate_books` opens the DuckDB file that keeps the quality gate's verdicts on the
member's Spark CDM (Spark's parquet tables cannot keep them).

pyspark is an optional dependency (``pip install 'accord[spark]'``) and needs a Java
runtime (17 or later); both are only looked for when a Spark member connects.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from accord.cdm import load_spec
from accord.errors import DataError
from accord.node.config import DatabaseConfig, SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DIALECT = "spark"
# Settings the node starts Spark with unless the member's configuration says otherwise:
# no web UI (it would show every query to whoever reaches its port), dates and times read
# in UTC, no progress bars in the node's log.
DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# pyspark logs every failed statement, JVM stack and all, before raising it; the error
# itself reaches the caller, which says what went wrong in its own words.
_QUERY_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")

# How long the steward's gate waits for the node to let go of the verdicts file (the node
# holds it for a moment per task).
_BOOKS_WAIT_SECONDS = 15.0

_lock = threading.Lock()
_started: SparkSession | None = None
_warehouse: Path | None = None


class SparkCursor:
    """The rows of one statement, already fetched."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._next = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    def close(self) -> None:
        self._rows = []


class SparkConnection:
    """One statement at a time on a Spark session, DB-API style.

    ``execute`` runs the statement and fetches its rows (as tuples) before returning.
    Parameters are Spark's positional markers (``?``), bound by Spark, never formatted
    into the text. Closing it leaves the session, which other connections share, running.
    """

    def __init__(self, session: SparkSession) -> None:
        self.session = session

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> SparkCursor:
        # No keyword arguments: with them, pyspark would format the text with str.format.
        frame = self.session.sql(sql, list(parameters) if parameters else None)
        return SparkCursor([tuple(row) for row in frame.collect()])

    def close(self) -> None:
        pass


def connect(database: DatabaseConfig) -> SparkConnection:
    """A connection to the member's CDM in Spark, starting Spark on first use and
    registering (or refreshing) the CDM's parquet tables."""
    assert database.engine == DIALECT
    settings = database.spark or SparkConfig()
    session = start_session(settings)
    if settings.tables is not None:
        from pyspark.errors import PySparkException

        try:
            with _lock:
                attach_tables(session, Path(settings.tables), database.schema_)
        except PySparkException as error:
            raise DataError(
                f"cannot read the CDM's tables in {settings.tables}: {_first_line(error)}",
                hint="each CDM table is a folder of parquet files named after the table",
            ) from None
    return SparkConnection(session)


def start_session(settings: SparkConfig) -> SparkSession:
    """The process's Spark session, started with ``settings`` unless one is running
    (Spark allows one per process; a running one is used as it is)."""
    global _started, _warehouse
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        raise DataError(
            "this member's CDM is in Spark, and pyspark is not installed",
            hint="pip install 'accord[spark]' (Spark also needs a Java 17 runtime)",
        ) from None
    with _lock:
        if SparkContext._active_spark_context is not None:
            return SparkSession.builder.getOrCreate()
        conf = {**DEFAULTS, **settings.conf, "spark.master": settings.master}
        warehouse = settings.warehouse
        if warehouse is None:
            _warehouse = Path(tempfile.mkdtemp(prefix="accord-spark-"))
            warehouse = str(_warehouse)
        conf["spark.sql.warehouse.dir"] = warehouse
        builder = SparkSession.builder.appName("accord-node")
        for key, value in conf.items():
            builder = builder.config(key, value)
        if settings.persistent_catalog:
            builder = builder.enableHiveSupport()
        try:
            session = builder.getOrCreate()
        except Exception as error:  # Java missing, or the JVM refusing a setting
            if _warehouse is not None:
                shutil.rmtree(_warehouse, ignore_errors=True)
                _warehouse = None
            raise DataError(
                f"cannot start Spark: {_first_line(error)}",
                hint="Spark needs a Java 17 runtime (java on PATH, or JAVA_HOME)",
            ) from None
        quiet(session)
        _started = session
        return session


def quiet(session: SparkSession) -> None:
    """Keep Spark's own logging to errors, and failed statements to the exceptions."""
    session.sparkContext.setLogLevel("ERROR")
    from pyspark.logger import PySparkLogger

    for name in _QUERY_LOGGERS:
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def stop() -> None:
    """Stop the session if this module started it (one started elsewhere is left)."""
    global _started, _warehouse
    with _lock:
        if _started is not None:
            _started.stop()
            _started = None
        if _warehouse is not None:
            shutil.rmtree(_warehouse, ignore_errors=True)
            _warehouse = None


def attach_tables(session: SparkSession, folder: Path, schema: str | None) -> list[str]:
    """Register each CDM table found in ``folder`` (a parquet dataset in a folder named
    after the table) as a table of ``schema``, read in place; refresh those already
    registered. Returns the tables found."""
    if schema is not None:
        create = exp.Create(
            this=exp.Table(this=exp.to_identifier(schema, quoted=True)),
            kind="SCHEMA",
            exists=True,
        )
        session.sql(create.sql(dialect=DIALECT))
    found = []
    for name in load_spec().tables:
        location = folder / name
        if not location.is_dir():
            continue
        qualified = exp.table_(name, db=schema, quoted=True).sql(dialect=DIALECT)
        if session.catalog.tableExists(qualified):
            session.catalog.refreshTable(qualified)
        else:
            session.catalog.createTable(qualified, path=str(location), source="parquet")
        found.append(name)
    return found


@contextmanager
def gate_books(database: DatabaseConfig, *, write: bool) -> Iterator[Any]:
    """The DuckDB file keeping the quality gate's verdicts on the member's Spark CDM.

    For the node (``write=False``) it is opened read-only, and ``None`` is yielded when
    it does not exist: no verdict was ever recorded. The data steward's gate opens it
    for writing, creating it when absent, and waits a little while the node reads it.
    """
    import duckdb

    settings = database.spark or SparkConfig()
    path = settings.gate_path
    if path is None:
        raise DataError(
            "this Spark member's node config names no file for its quality gate's verdicts",
            hint="set database.spark.gate_db (a .duckdb file) in the node config",
        )
    if not write and not path.exists():
        yield None
        return
    if write and not path.parent.is_dir():
        raise DataError(f"cannot keep the quality gate's verdicts in {path}: no such folder")
    deadline = time.monotonic() + (_BOOKS_WAIT_SECONDS if write else 0.0)
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=not write)
            break
        except duckdb.Error as error:
            if time.monotonic() >= deadline:
                raise DataError(
                    f"cannot open the quality gate's verdicts {path}: {_first_line(error)}",
                    hint="another process may be writing them (a steward's quality run)",
                ) from None
            time.sleep(0.2)
    try:
        yield connection
    finally:
        connection.close()


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__
