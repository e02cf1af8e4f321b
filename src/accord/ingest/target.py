"""The CDM an ingestion path writes into, and one load into it as one transaction.

Every ingestion path (an existing OMOP export, FHIR, a member's own CSV files) loads
through :class:`CdmTarget` and :class:`Load`, so all of them get the same guarantees:
rows arrive in bulk (Arrow into DuckDB, ``COPY`` into PostgreSQL, never row by row), a
load commits whole or not at all, and every inserted row has a provenance record that
makes re-loading the same source add nothing (see :mod:`accord.ingest.provenance`).

Tables that Accord creates here have no foreign keys on either engine: ingestion paths
load in whatever order their sources arrive, and the vocabulary may come later, so the
data-quality gate checks references instead (as it already does on DuckDB).

>>> import tempfile, pyarrow as pa
>>> from accord.ingest.report import LoadReport
>>> folder = tempfile.mkdtemp()
>>> target = CdmTarget.open(Path(folder) / "member.duckdb")
>>> report = LoadReport(kind="example", source="doctest")
>>> with target.load(report) as load:
...     ids = load.allocate_ids("location", 2)
...     load.append("location", pa.table({"location_id": ids, "city": ["Leeds", "York"]}),
...                 source_keys=pa.array(["x:1", "x:2"]), source_file="doctest",
...                 locators=pa.array(["line 2", "line 3"]), mapping_version="none")
2
>>> target.close()
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray
from sqlglot import exp

from accord.cdm import arrow_schema, create_cdm, load_spec
from accord.cdm.spec import Table
from accord.errors import DataError
from accord.ingest import provenance as bookkeeping
from accord.ingest.provenance import LOCATOR, POSITION, SOURCE_KEY, Dialect, SqlNames
from accord.ingest.report import LoadReport

_INTEGER_LIMITS: Final = {"integer": 2**31 - 1, "bigint": 2**63 - 1}
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ -]{0,62}")
_POSTGRES_URL: Final = ("postgresql://", "postgres://")
_POSTGRES_KEYWORDS = re.compile(r"\s*[a-z_]+\s*=")
"""libpq's other DSN form, ``host=db port=5432 dbname=cdm``; no file path starts so."""
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


class CdmTarget:
    """An OMOP CDM v5.4 database that loads write into: a DuckDB file or PostgreSQL."""

    dialect: Literal["duckdb", "postgres"]

    def __init__(self, engine: _Engine, *, location: str, schema: str | None) -> None:
        self._engine: _Engine | None = engine
        self.dialect = engine.dialect
        self.location = location
        self.schema = schema
        self.names = SqlNames(engine.dialect, schema)
        self._loading = False

    @classmethod
    def open(
        cls, location: str | Path, *, schema: str | None = None, create: bool = True
    ) -> CdmTarget:
        """Open a ``.duckdb`` file or a PostgreSQL DSN and make sure the tables exist.

        ``location`` is a DSN when it is a string in either of libpq's forms
        (``postgresql://...`` or ``host=... dbname=...``); anything else is a DuckDB path.

        A missing DuckDB file is created when ``create`` is true (and removed again if its
        first load fails); otherwise it is a :class:`DataError`. A PostgreSQL ``schema`` is
        likewise created when missing only if ``create`` is true. CDM tables and Accord's
        bookkeeping tables are created when absent and left alone when present.
        """
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise DataError(
                f"schema name {schema!r} is not allowed",
                hint="use letters, digits, underscores, spaces or hyphens, starting with a letter",
            )
        text = str(location)
        if isinstance(location, str) and (
            text.startswith(_POSTGRES_URL) or _POSTGRES_KEYWORDS.match(text)
        ):
            engine: _Engine = _open_postgres(text, schema, create=create)
            shown = redact_dsn(text)
        else:
            engine = _open_duckdb(Path(location), schema, create=create)
            shown = text
        target = cls(engine, location=shown, schema=schema)
        try:
            create_cdm(engine.connection, engine.dialect, schema=schema, foreign_keys=False)
            engine.execute("BEGIN")
            for statement in bookkeeping.bookkeeping_statements(target.names):
                engine.execute(statement)
            engine.execute("COMMIT")
        except BaseException as error:
            target._discard()
            reason = engine.describe(error)
            if reason is not None:
                raise DataError(f"cannot create the CDM tables in {shown}: {reason}") from error
            raise
        return target

    @property
    def connection(self) -> Any:
        """The raw DuckDB or psycopg connection, for readers such as concept mappers."""
        return self._require_open().connection

    def has_rows(self, table: str) -> bool:
        """Whether CDM table ``table`` holds any row (inside a load: including its rows)."""
        load_spec().table(table)
        sql = f"SELECT 1 FROM {self.names.table(table)} LIMIT 1"
        return bool(self._require_open().fetch(sql))

    def vocabulary_version(self) -> str | None:
        """The loaded vocabulary's release, as Athena records it on the ``None`` row."""
        sql = (
            f"SELECT {self.names.column('vocabulary_version')} "
            f"FROM {self.names.table('vocabulary')} "
            f"WHERE {self.names.column('vocabulary_id')} = {self.names.param}"
        )
        rows = self._require_open().fetch(sql, ("None",))
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    @contextmanager
    def load(self, report: LoadReport) -> Iterator[Load]:
        """One load as ONE transaction: committed if the block ends, rolled back if it raises.

        The load is recorded in ``accord_loads`` with its report (``report.finish()`` is
        called here). After a failure, a DuckDB file this target created and never
        committed to is removed; otherwise the failure is recorded as a ``failed`` load.
        Disk, file and database faults come out as :class:`DataError`.
        """
        engine = self._require_open()
        if self._loading:
            raise RuntimeError("a load is already running on this target")
        load = Load(engine, report, uuid.uuid4().hex, self.names)
        started = _utc_now()
        self._loading = True
        try:
            engine.execute("BEGIN")
            yield load
            load._closed = True
            report.finish()
            self._record(load.load_id, report, started, "committed")
            engine.execute("COMMIT")
            engine.created = False
        except BaseException as error:
            load._closed = True
            self._abandon(load.load_id, report, started, error)
            reason = None if isinstance(error, DataError) else engine.describe(error)
            if reason is not None:
                raise DataError(
                    f"load into {self.location} failed and was rolled back: {reason}",
                    hint="nothing from this load was kept; fix the cause and run it again",
                ) from error
            raise
        finally:
            self._loading = False

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> CdmTarget:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # A block that fails before any load commits must not leave a new, empty database.
        if kind is not None and self._engine is not None and self._engine.created:
            self._discard()
        self.close()

    def _require_open(self) -> _Engine:
        if self._engine is None:
            raise DataError(
                f"the CDM target {self.location} is closed",
                hint="a failed first load removes the new database; open it again",
            )
        return self._engine

    def _record(self, load_id: str, report: LoadReport, started: datetime, status: str) -> None:
        engine = self._require_open()
        engine.execute(
            bookkeeping.record_load(self.names),
            (
                load_id,
                report.kind,
                report.source,
                started,
                _utc_now(),
                status,
                report.vocabulary_version,
                report.mapping_version,
                json.dumps(report.to_json()),
            ),
        )

    def _abandon(
        self, load_id: str, report: LoadReport, started: datetime, error: BaseException
    ) -> None:
        engine = self._require_open()
        # The original error is what the caller must see; a rollback that fails as well
        # (a lost connection, say) adds nothing to it.
        with suppress(Exception):
            engine.execute("ROLLBACK")
        if engine.created:
            self._discard()
            return
        # Best effort: a failed load is worth recording, but not at the price of hiding
        # why it failed (a full disk may refuse this write too).
        try:
            report.note(f"rolled back: {type(error).__name__}: {error}")
            report.finish()
            engine.execute("BEGIN")
            self._record(load_id, report, started, "failed")
            engine.execute("COMMIT")
        except Exception:
            with suppress(Exception):
                engine.execute("ROLLBACK")

    def _discard(self) -> None:
        """Close, and remove the database if this target created it."""
        if self._engine is not None:
            self._engine.discard()
            self._engine = None


class Load:
    """One running load: id allocation and idempotent bulk appends, inside its transaction."""

    def __init__(self, engine: _Engine, report: LoadReport, load_id: str, names: SqlNames) -> None:
        self.load_id = load_id
        self.report = report
        self._engine = engine
        self._names = names
        self._allocated: dict[str, int] = {}
        self._stages = 0
        self._closed = False

    def allocate_ids(self, table: str, n: int) -> NDArray[np.int64]:
        """The next ``n`` primary keys of ``table``: above every id it holds and every id
        allocated earlier in this load. On PostgreSQL the table is locked against other
        writers until the load ends, so concurrent loads cannot draw the same ids."""
        self._check_open()
        if n < 0:
            raise ValueError(f"cannot allocate {n} ids")
        spec_table = load_spec().table(table)
        key = _integer_key(spec_table)
        if key is None:
            raise DataError(f"table {table!r} has no integer primary key to allocate ids for")
        if table not in self._allocated:
            self._engine.lock(self._names.table(table))
        rows = self._engine.fetch(
            f"SELECT max({self._names.column(key)}) FROM {self._names.table(table)}"
        )
        highest = max(int(rows[0][0] or 0), self._allocated.get(table, 0))
        limit = _INTEGER_LIMITS[spec_table.field(key).base_type]
        if highest + n > limit:
            raise DataError(
                f"{table}.{key} would pass {limit:,} allocating {n:,} ids above {highest:,}",
                hint="the CDM declares this id as a 32-bit integer",
            )
        self._allocated[table] = highest + n
        return np.arange(highest + 1, highest + n + 1, dtype=np.int64)

    def append(
        self,
        table: str,
        rows: pa.Table,
        *,
        source_keys: pa.Array,
        source_file: str,
        locators: pa.Array,
        mapping_version: str,
    ) -> int:
        """Insert ``rows`` into CDM table ``table`` unless their source keys are loaded.

        ``rows`` may hold any subset of the table's columns: missing ones become null and
        every column is cast to the CDM type; a missing or empty required column is a
        :class:`DataError`. Rows whose ``(table, source key)`` is already recorded are
        skipped. Inserted and skipped rows are counted in the load's report
        (``add_rows``, ``skipped_existing``), so callers do not count them again.
        Returns the number of rows inserted.
        """
        self._check_open()
        spec_table = load_spec().table(table)
        keys = _strings(source_keys, "source_keys", rows.num_rows)
        where = _strings(locators, "locators", rows.num_rows)
        shaped = _shape_rows(spec_table, rows)
        if rows.num_rows == 0:
            return 0
        _check_unique(keys, table)
        staged = shaped.append_column(SOURCE_KEY, keys).append_column(LOCATOR, where)
        with self._staged(staged, table) as stage:
            inserted = self._engine.insert(
                bookkeeping.insert_new_rows(self._names, table, shaped.column_names, stage),
                (table,),
            )
            self._engine.insert(
                bookkeeping.insert_provenance(self._names, _integer_key(spec_table), stage),
                (table, source_file, mapping_version, self.load_id, table),
            )
        self.report.add_rows(table, inserted)
        if inserted < rows.num_rows:
            self.report.skipped_existing(table, rows.num_rows - inserted)
        return inserted

    def append_vocabulary(self, table: str, rows: pa.Table) -> int:
        """Insert vocabulary rows (CONCEPT, CONCEPT_ANCESTOR, ...) without provenance.

        Vocabulary rows are reference data, the same at every member and identified as a
        whole by their release; recording each of Athena's tens of millions of ancestor
        rows would double the database for nothing. Returns the number inserted.
        """
        self._check_open()
        spec_table = load_spec().table(table)
        if spec_table.category != "vocabulary":
            raise ValueError(f"{table} is not a vocabulary table; use append")
        shaped = _shape_rows(spec_table, rows)
        if rows.num_rows == 0:
            return 0
        columns = self._names.columns(shaped.column_names)
        with self._staged(shaped, table) as stage:
            inserted = self._engine.insert(
                f"INSERT INTO {self._names.table(table)} ({columns}) "
                f"SELECT {columns} FROM {self._names.temporary(stage)}"
            )
        self.report.add_rows(table, inserted)
        return inserted

    def existing_keys(self, table: str, source_keys: pa.Array) -> pa.Array:
        """A boolean mask: which of ``source_keys`` are already loaded into ``table``."""
        return self._matching(table, source_keys, this_load_only=False)

    def keys_loaded_here(self, table: str, source_keys: pa.Array) -> pa.Array:
        """A boolean mask: which of ``source_keys`` this load has already appended, for
        telling a duplicate inside one source from a row an earlier load brought."""
        return self._matching(table, source_keys, this_load_only=True)

    def _matching(self, table: str, source_keys: pa.Array, *, this_load_only: bool) -> pa.Array:
        self._check_open()
        load_spec().table(table)
        keys = _strings(source_keys, "source_keys", len(source_keys))
        mask = np.zeros(len(keys), dtype=np.bool_)
        if len(keys):
            positions = pa.array(np.arange(len(keys), dtype=np.int64))
            staged = pa.table({SOURCE_KEY: keys, POSITION: positions})
            params: tuple[str, ...] = (table, self.load_id) if this_load_only else (table,)
            with self._staged(staged, table) as stage:
                sql = bookkeeping.matching_keys(self._names, stage, this_load_only=this_load_only)
                mask[self._engine.fetch_positions(sql, params)] = True
        return pa.array(mask, type=pa.bool_())

    @contextmanager
    def _staged(self, rows: pa.Table, table: str) -> Iterator[str]:
        self._stages += 1
        name = f"accord_stage_{table}_{self._stages}"
        self._engine.stage(name, rows)
        try:
            yield name
        except Exception as error:
            reason = self._engine.describe(error)
            if reason is not None:
                raise DataError(f"cannot load rows into {table}: {reason}") from error
            raise
        finally:
            # After a database error PostgreSQL refuses every statement until ROLLBACK,
            # and the rollback drops the staging table anyway.
            with suppress(Exception):
                self._engine.unstage(name)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this load has ended; start another with CdmTarget.load")


def _integer_key(table: Table) -> str | None:
    """The single integer primary key column, which provenance records as ``row_id``."""
    if len(table.primary_key) != 1:
        return None
    key = table.primary_key[0]
    return key if table.field(key).base_type in _INTEGER_LIMITS else None


def _check_unique(keys: pa.Array, table: str) -> None:
    if pc.count_distinct(keys).as_py() == len(keys):
        return
    counts = pc.value_counts(keys)
    repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:3]
    raise DataError(
        f"rows for {table} repeat source keys {', '.join(map(repr, repeated))}",
        hint="each row needs its own source key; drop duplicates before appending",
    )


def _utc_now() -> datetime:
    # Stored as TIMESTAMP without zone on both engines, always in UTC.
    return datetime.now(UTC).replace(tzinfo=None)


def _shape_rows(table: Table, rows: pa.Table) -> pa.Table:
    """``rows`` as the CDM table's full Arrow schema: columns cast, absent ones null."""
    schema = arrow_schema(table.name)
    names = rows.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    unknown = [n for n in names if n not in schema.names]
    if repeated or unknown:
        raise DataError(
            f"rows for {table.name} have "
            + (f"repeated columns {', '.join(repeated)}" if repeated else "")
            + (" and " if repeated and unknown else "")
            + (f"columns not in the CDM: {', '.join(unknown)}" if unknown else ""),
            hint=f"{table.name} columns are: {', '.join(schema.names)}",
        )
    missing = [f.name for f in table.fields if f.required and f.name not in names]
    if missing:
        raise DataError(
            f"rows for {table.name} lack required columns {', '.join(missing)}",
            hint="the OMOP CDM requires a value for these in every row",
        )
    arrays = []
    for field in schema:
        if field.name not in names:
            arrays.append(pa.nulls(rows.num_rows, field.type))
            continue
        column = rows.column(field.name)
        try:
            column = column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DataError(
                f"{table.name}.{field.name}: cannot convert {column.type} to {field.type}: "
                f"{_first_line(error)}"
            ) from error
        if not field.nullable and column.null_count:
            raise DataError(
                f"{table.name}.{field.name} is required but {column.null_count:,} of "
                f"{rows.num_rows:,} rows have no value",
                hint="reject those rows before appending",
            )
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _strings(values: pa.Array | pa.ChunkedArray, what: str, expected: int) -> pa.Array:
    """Source keys or locators as one string array, one non-null entry per row."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, type=pa.string())
    if len(values) != expected:
        raise ValueError(f"{what} has {len(values)} entries for {expected} rows")
    if values.null_count:
        raise ValueError(f"{what} has {values.null_count} null entries")
    return values.cast(pa.string())


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def redact_dsn(dsn: str) -> str:
    """A DSN fit for messages and reports: any password replaced by ``***``."""
    dsn = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", dsn)


class _Engine:
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

    def fetch_positions(self, sql: str, params: Sequence[Any]) -> NDArray[np.int64]:
        return np.fromiter((row[0] for row in self.fetch(sql, params)), dtype=np.int64)

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


class _DuckDB(_Engine):
    dialect = "duckdb"
    param = "?"

    def __init__(self, connection: Any, path: Path) -> None:
        super().__init__(connection)
        self.path = path

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(sql, list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.connection.execute(sql, list(params)).fetchall())

    def fetch_positions(self, sql: str, params: Sequence[Any]) -> NDArray[np.int64]:
        column = self.connection.execute(sql, list(params)).fetchnumpy()[POSITION]
        return np.asarray(column, dtype=np.int64)

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
            return _first_line(error)
        return super().describe(error)

    def discard(self) -> None:
        self.close()
        if self.created:
            for leftover in (self.path, self.path.with_name(self.path.name + ".wal")):
                leftover.unlink(missing_ok=True)


class _Postgres(_Engine):
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
            return _first_line(error)
        return super().describe(error)


def _open_duckdb(path: Path, schema: str | None, *, create: bool) -> _DuckDB:
    import duckdb

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
    try:
        connection = duckdb.connect(str(path))
    except duckdb.Error as error:
        raise DataError(
            f"cannot open DuckDB database {path}: {_first_line(error)}",
            hint="check it is a DuckDB file and no other program has it open for writing",
        ) from None
    engine = _DuckDB(connection, path)
    engine.created = not existed
    try:
        _use_schema(engine, schema, create=create)
    except BaseException:
        engine.discard()
        raise
    return engine


def _open_postgres(dsn: str, schema: str | None, *, create: bool) -> _Postgres:
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
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {_first_line(error)}",
            hint="check the host, port, database, user and password in the DSN",
        ) from None
    engine = _Postgres(connection)
    try:
        _use_schema(engine, schema, create=create)
    except BaseException:
        engine.close()
        raise
    return engine


def _use_schema(engine: _Engine, schema: str | None, *, create: bool) -> None:
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
