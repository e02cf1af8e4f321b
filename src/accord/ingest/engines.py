"""The databases a :class:`~accord.ingest.target.CdmTarget` writes into: one adapter each.

A load needs only a few things from a database: run a statement, fetch rows, insert and
count, make an Arrow table queryable for the statements that follow, lock a table and
tell a data fault from a bug. :class:`Engine` names them; :class:`DuckDB` stages Arrow
tables zero-copy and :class:`Postgres` stages them with ``COPY``, so rows are never sent
one by one. SQL itself is rendered by :mod:`accord.ingest.provenance` and the callers;
an engine only carries it.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from numpy.typing import NDArray
from sqlglot import exp

from accord.errors import DataError
from accord.ingest.provenance import Dialect, SqlNames

_COPY_BATCH_ROWS: Final = 65_536
# Staging tables on PostgreSQL, by Arrow type; sqlglot renders each for the dialect.
_POSTGRES_TYPES: Final = {
    pa.int32(): "INT",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.date32(): "DATE",
    pa.timestamp("us"): "TIMESTAMP",
    pa.string(): "TEXT",
    pa.bool_(): "BOOLEAN",
}


class Engine:
    """What a load needs from a database; one subclass per engine."""

    dialect: ClassVar[Dialect]
    param: ClassVar[str]

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        # True while this engine's DuckDB file was created here and nothing committed.
        self.created = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def fetch_integers(
        self, sql: str, params: Sequence[Any], columns: Sequence[str]
    ) -> list[NDArray[np.int64]]:
        """The named non-null integer ``columns`` of a query's result, one array each."""
        rows = self.fetch(sql, params)
        return [
            np.fromiter((row[i] for row in rows), dtype=np.int64, count=len(rows))
            for i in range(len(columns))
        ]

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT; the number of rows it inserted."""
        raise NotImplementedError

    def stage(self, name: str, rows: pa.Table) -> None:
        """Make ``rows`` queryable as ``name`` for the statements that follow."""
        raise NotImplementedError

    def unstage(self, name: str) -> None:
        raise NotImplementedError

    def lock(self, table_sql: str) -> None:
        """Keep other writers out of a table until the transaction ends."""

    def describe(self, error: BaseException) -> str | None:
        """A one-line reason if ``error`` is a disk, file or data fault; ``None`` if a bug."""
        if isinstance(error, OSError):
            where = f"{error.filename}: " if error.filename else ""
            return f"{where}{error.strerror or error}"
        return None

    def close(self) -> None:
        self.connection.close()

    def discard(self) -> None:
        """Close, and remove the database if it was created here and never committed to."""
        self.close()


class DuckDB(Engine):
    dialect = "duckdb"
    param = "?"

    def __init__(self, connection: Any, path: Path) -> None:
        super().__init__(connection)
        self.path = path

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(sql, list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.connection.execute(sql, list(params)).fetchall())

    def fetch_integers(
        self, sql: str, params: Sequence[Any], columns: Sequence[str]
    ) -> list[NDArray[np.int64]]:
        result = self.connection.execute(sql, list(params)).fetchnumpy()
        return [np.asarray(result[column], dtype=np.int64) for column in columns]

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        row = self.connection.execute(sql, list(params)).fetchone()
        return int(row[0]) if row else 0

    def stage(self, name: str, rows: pa.Table) -> None:
        self.connection.register(name, rows)

    def unstage(self, name: str) -> None:
        self.connection.unregister(name)

    def describe(self, error: BaseException) -> str | None:
        import duckdb

        faults = (
            duckdb.IOException,
            duckdb.OutOfMemoryException,
            duckdb.ConstraintException,
            duckdb.ConversionException,
        )
        if isinstance(error, faults):
            return first_line(error)
        return super().describe(error)

    def discard(self) -> None:
        self.close()
        if self.created:
            for leftover in (self.path, self.path.with_name(self.path.name + ".wal")):
                leftover.unlink(missing_ok=True)


class Postgres(Engine):
    dialect = "postgres"
    param = "%s"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, tuple(params) or None)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, tuple(params) or None)
            return list(cursor.fetchall())

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, tuple(params) or None)
            return int(cursor.rowcount)

    def stage(self, name: str, rows: pa.Table) -> None:
        # COPY in CSV: Arrow writes strings quoted and nulls as bare empty fields, which is
        # exactly how PostgreSQL's CSV format tells '' from NULL.
        names = SqlNames("postgres")
        definitions = []
        for field in rows.schema:
            kind = _POSTGRES_TYPES.get(field.type)
            if kind is None:
                raise ValueError(f"cannot stage Arrow type {field.type} ({field.name})")
            definitions.append(
                f"{names.column(field.name)} {exp.DataType.build(kind).sql('postgres')}"
            )
        self.execute(f"CREATE TEMPORARY TABLE {names.temporary(name)} ({', '.join(definitions)})")
        copy_sql = (
            f"COPY {names.temporary(name)} ({names.columns(rows.column_names)}) "
            "FROM STDIN (FORMAT csv)"
        )
        options = pacsv.WriteOptions(include_header=False)
        with self.connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for batch in rows.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, write_options=options)
                copy.write(buffer.getbuffer())

    def unstage(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {SqlNames('postgres').temporary(name)}")

    def lock(self, table_sql: str) -> None:
        self.execute(f"LOCK TABLE {table_sql} IN SHARE ROW EXCLUSIVE MODE")

    def describe(self, error: BaseException) -> str | None:
        import psycopg

        if isinstance(error, psycopg.IntegrityError | psycopg.DataError | psycopg.OperationalError):
            return first_line(error)
        return super().describe(error)


def open_duckdb(path: Path, schema: str | None, *, create: bool) -> DuckDB:
    """Connect to the DuckDB file at ``path``, creating it only when ``create`` is true."""

    if path.is_dir():
        raise DataError(f"{path} is a folder, not a DuckDB database file")
    existed = path.exists()
    if not existed and not create:
        raise DataError(
            f"database {path} does not exist",
            hint="check the path; a new database is only created when asked to",
        )
    if not existed and not path.parent.is_dir():
        raise DataError(f"cannot create database {path}: folder {path.parent} does not exist")
    connection = connect_for_writing(path)
    engine = DuckDB(connection, path)
    engine.created = not existed
    try:
        _use_schema(engine, schema, create=create)
    except BaseException:
        engine.discard()
        raise
    return engine


LOCK_WAIT_SECONDS: Final = 15.0
"""How long a writer waits for a DuckDB file another process has open (a member's node
keeps its database open between tasks that follow each other, then lets go)."""


def connect_for_writing(path: Path) -> Any:
    """A read-write DuckDB connection, waiting up to ``LOCK_WAIT_SECONDS`` for the file."""
    import duckdb

    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as error:
            locked = "lock" in str(error).lower()
            if not locked or time.monotonic() >= deadline:
                raise DataError(
                    f"cannot open DuckDB database {path}: {first_line(error)}",
                    hint="check it is a DuckDB file and no other program has it open"
                    + (f" (waited {LOCK_WAIT_SECONDS:.0f} s)" if locked else ""),
                ) from None
        time.sleep(0.25)


def open_postgres(dsn: str, schema: str | None, *, create: bool) -> Postgres:
    """Connect to PostgreSQL at ``dsn`` in autocommit mode; loads open their own
    transactions with explicit ``BEGIN``, as on DuckDB."""
    try:
        import psycopg
    except ImportError:
        raise DataError(
            "PostgreSQL targets need the psycopg package",
            hint="pip install 'accord[postgres]'",
        ) from None
    try:
        connection = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as error:
        raise DataError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {first_line(error)}",
            hint="check the host, port, database, user and password in the DSN",
        ) from None
    engine = Postgres(connection)
    try:
        _use_schema(engine, schema, create=create)
    except BaseException:
        engine.close()
        raise
    return engine


def _use_schema(engine: Engine, schema: str | None, *, create: bool) -> None:
    """Create ``schema`` if asked and make it the connection's default, so readers using
    ``CdmTarget.connection`` find the CDM tables without qualifying them."""
    if schema is None:
        return
    identifier = exp.to_identifier(schema, quoted=True).sql(dialect=engine.dialect)
    exists = engine.fetch(
        f"SELECT 1 FROM information_schema.schemata WHERE schema_name = {engine.param}",
        (schema,),
    )
    if not exists:
        if not create:
            raise DataError(f"schema {schema!r} does not exist", hint="check the schema name")
        engine.execute(f"CREATE SCHEMA {identifier}")
    if engine.dialect == "postgres":
        engine.execute(f"SET search_path TO {identifier}")
    else:
        engine.execute(f"SET search_path = {exp.Literal.string(schema).sql(dialect='duckdb')}")


_POSTGRES_URL: Final = ("postgresql://", "postgres://")
_POSTGRES_KEYWORDS: Final = re.compile(r"\s*[a-z_]+\s*=")


def open_engine(location: str | Path, schema: str | None, *, create: bool) -> tuple[Engine, str]:
    """A DuckDB file or a PostgreSQL DSN (a string in either of libpq's forms), opened;
    with the name it may be shown by (the DSN without its password)."""
    text = str(location)
    if isinstance(location, str) and is_postgres_dsn(text):
        return open_postgres(text, schema, create=create), redact_dsn(text)
    return open_duckdb(Path(location), schema, create=create), text


def is_postgres_dsn(location: str) -> bool:
    """Whether ``location`` is a libpq DSN (``postgresql://...`` or ``host=... dbname=...``).

    No file path starts either way, so anything else is taken for a DuckDB file.
    """
    return location.startswith(_POSTGRES_URL) or bool(_POSTGRES_KEYWORDS.match(location))


def redact_dsn(dsn: str) -> str:
    """A DSN fit for messages and reports: any password replaced by ``***``."""
    dsn = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", dsn)


def first_line(error: BaseException) -> str:
    """The first line of an error's message: database errors run to several lines."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
