"""Importing an OMOP vocabulary release downloaded from Athena into a member's CDM.

An Athena download is a directory of CSV files, one per vocabulary table. They are read
in streamed batches with pyarrow's CSV reader, checked (field counts, dates, whole
numbers, required values, lengths, UTF-8) with the file and line of the first problem
named, and bulk-loaded: Arrow inserts on DuckDB, ``COPY`` on PostgreSQL. The whole
import is one transaction, so a bad file leaves the previous vocabulary untouched.

>>> import duckdb
>>> from accord.vocab.starter import starter_directory
>>> result = import_vocabulary(starter_directory(), duckdb.connect(), "duckdb")
>>> result.version
'Accord starter subset 2025.1'
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, get_args

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlglot import exp, parse_one

from accord.cdm import VOCABULARY_TABLES, Dialect, ddl_statements
from accord.errors import DataError
from accord.vocab.starter import (
    CONCEPT_SYNONYM,
    TableLayout,
    read_athena_batches,
    table_layout,
)

Progress = Callable[[str, int], None]
"""Called with a table name and the rows of it loaded so far, after every batch."""

VERSION_TABLE: Final = "accord_vocabulary_version"
REQUIRED_FILES: Final = frozenset({"concept"})

# CONCEPT_SYNONYM is not in the CDM specification, so the generated DDL does not cover it.
_SYNONYM_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS {table} (concept_id INT NOT NULL, "
    "concept_synonym_name VARCHAR(1000) NOT NULL, language_concept_id INT NOT NULL)"
)


@functools.cache
def vocabulary_layouts() -> tuple[TableLayout, ...]:
    """Every table an import replaces, referenced tables first (the order to load them)."""
    # The DDL lists tables in an order that satisfies PostgreSQL's foreign keys.
    statements = ddl_statements("duckdb", tables=VOCABULARY_TABLES)
    names = [table.name for s in statements if (table := parse_one(s).find(exp.Table))]
    if CONCEPT_SYNONYM.name not in names:
        names.append(CONCEPT_SYNONYM.name)
    return tuple(table_layout(name) for name in names)


@dataclass(frozen=True)
class VocabularyImport:
    """What an import loaded: rows per table, the release version, files not given."""

    version: str
    rows: Mapping[str, int]
    missing_files: tuple[str, ...] = ()

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def find_vocabulary_files(directory: Path) -> dict[str, Path]:
    """The file for each vocabulary table in ``directory``: ``CONCEPT.csv`` or
    ``concept.csv`` (any case). Raises ``DataError`` if CONCEPT is missing."""
    if not directory.is_dir():
        raise DataError(
            f"vocabulary directory {directory} does not exist",
            hint="give the directory an Athena download was unpacked into",
        )
    wanted = {f"{layout.name}.csv": layout.name for layout in vocabulary_layouts()}
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        table = wanted.get(path.name.lower())
        if table is None or not path.is_file():
            continue
        if table in found:
            raise DataError(
                f"vocabulary directory {directory} has both {found[table].name} and {path.name}",
                hint="keep one file per table",
            )
        found[table] = path
    missing = sorted(REQUIRED_FILES - found.keys())
    if missing:
        raise DataError(
            f"vocabulary directory {directory} has no {missing[0].upper()}.csv",
            hint="an Athena download has CONCEPT.csv; unpack the whole archive",
        )
    return found


def import_vocabulary(
    directory: Path,
    connection: Any,
    dialect: Dialect,
    *,
    schema: str | None = None,
    progress: Progress | None = None,
) -> VocabularyImport:
    """Replace the vocabulary tables on ``connection`` with an Athena download.

    ``connection`` is a DuckDB or psycopg connection; ``schema`` (PostgreSQL) names the
    CDM schema, default the connection's current one. Vocabulary tables that do not
    exist yet are created. Every vocabulary table is replaced, so a file left out of the
    download leaves its table empty (and is listed in ``missing_files``). Everything
    happens in one transaction: on any error the previous vocabulary stays as it was and
    a ``DataError`` names the file, line and what was expected. The release version is
    recorded for :func:`current_vocabulary_version`.
    """
    if dialect not in get_args(Dialect):
        raise DataError(
            f"unsupported SQL dialect {dialect!r}",
            hint=f"expected {' or '.join(get_args(Dialect))}",
        )
    files = find_vocabulary_files(directory)
    layouts = vocabulary_layouts()
    loader = _loader(dialect, connection, schema)
    rows: dict[str, int] = {}
    if getattr(connection, "autocommit", True) is not False:
        connection.execute("BEGIN")
    try:
        loader.prepare(layouts)
        for layout in layouts:
            rows[layout.name] = 0
            path = files.get(layout.name)
            if path is None:
                continue
            for batch in read_athena_batches(path, layout):
                loader.insert(layout, batch, path)
                rows[layout.name] += batch.num_rows
                if progress is not None:
                    progress(layout.name, rows[layout.name])
        loader.finish(layouts)
        version = release_version(connection, schema=schema)
        _record_version(connection, schema, dialect, version)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    missing = tuple(layout.name for layout in layouts if layout.name not in files)
    return VocabularyImport(version, MappingProxyType(rows), missing)


def release_version(connection: Any, *, schema: str | None = None) -> str:
    """The version of the vocabulary in ``connection``'s VOCABULARY table.

    Athena states the release in the row whose ``vocabulary_id`` is ``'None'``; without
    that row, each vocabulary's own version is listed, e.g. ``'ICD10CM 2024; SNOMED 2024-03'``.
    """
    table = _table("vocabulary", schema)
    rows = connection.execute(
        f"SELECT DISTINCT vocabulary_id, vocabulary_version FROM {table} "
        "WHERE vocabulary_version IS NOT NULL ORDER BY vocabulary_id"
    ).fetchall()
    versions = dict(rows)
    if "None" in versions:
        return str(versions["None"])
    return "; ".join(f"{vid} {version}" for vid, version in rows) or "unknown"


def current_vocabulary_version(connection: Any, *, schema: str | None = None) -> str:
    """The version of the vocabulary last imported into ``connection``'s CDM.

    Falls back to the VOCABULARY table itself for a vocabulary loaded another way (such
    as the starter vocabulary). Raises ``DataError`` if there is neither.
    """
    where = exp.Literal.string(schema).sql() if schema is not None else "current_schema()"
    present = {
        row[0]
        for row in connection.execute(
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = {where} AND table_name IN ('{VERSION_TABLE}', 'vocabulary')"
        ).fetchall()
    }
    if VERSION_TABLE in present:
        row = connection.execute(
            f"SELECT version FROM {_table(VERSION_TABLE, schema)} ORDER BY imported_at DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            return str(row[0])
    if "vocabulary" in present:
        version = release_version(connection, schema=schema)
        if version != "unknown":
            return version
    raise DataError(
        "no vocabulary has been loaded into this CDM",
        hint="import an Athena download with accord.vocab.athena.import_vocabulary",
    )


def _record_version(connection: Any, schema: str | None, dialect: Dialect, version: str) -> None:
    table = _table(VERSION_TABLE, schema, dialect)
    # UTC, so imports recorded on machines in different time zones compare.
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    connection.execute(f"DELETE FROM {table}")
    connection.execute(
        f"INSERT INTO {table} (version, imported_at) VALUES "
        f"({exp.Literal.string(version).sql(dialect)}, CAST('{now}' AS TIMESTAMP))"
    )


def _table(name: str, schema: str | None, dialect: Dialect = "duckdb") -> str:
    return str(exp.table_(name, db=schema, quoted=True).sql(dialect))


def _columns(layout: TableLayout, prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{name}"' for name in layout.schema.names)


class _Loader:
    """How one database receives the batches; subclasses per dialect."""

    dialect: Dialect

    def __init__(self, connection: Any, schema: str | None) -> None:
        self.connection = connection
        self.schema = schema

    def table(self, name: str) -> str:
        return _table(name, self.schema, self.dialect)

    def prepare(self, layouts: tuple[TableLayout, ...]) -> None:
        # Inside the import's transaction, so a failed import creates nothing either.
        tables = [layout.name for layout in layouts if layout.name in VOCABULARY_TABLES]
        for statement in ddl_statements(self.dialect, schema=self.schema, tables=tables):
            self.connection.execute(statement)
        self.connection.execute(_SYNONYM_DDL.format(table=self.table(CONCEPT_SYNONYM.name)))
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table(VERSION_TABLE)} "
            "(version TEXT, imported_at TIMESTAMP)"
        )

    def insert(self, layout: TableLayout, batch: pa.Table, path: Path) -> None:
        raise NotImplementedError

    def finish(self, layouts: tuple[TableLayout, ...]) -> None:
        """Called once every batch is in."""

    def database_error(self, exc: Exception, table: str, path: Path | None) -> DataError:
        source = f"{path} into {table}" if path else table
        return DataError(
            f"cannot load {source}: {exc}",
            hint="the files must agree with each other (keys, references) and keep every "
            "concept that rows elsewhere in the CDM refer to",
        )


class _DuckDBLoader(_Loader):
    dialect: Dialect = "duckdb"

    def prepare(self, layouts: tuple[TableLayout, ...]) -> None:
        super().prepare(layouts)
        for layout in reversed(layouts):
            self.connection.execute(f"DELETE FROM {self.table(layout.name)}")

    def insert(self, layout: TableLayout, batch: pa.Table, path: Path) -> None:
        view = "accord_athena_batch"
        self.connection.register(view, batch)
        try:
            self.connection.execute(
                f"INSERT INTO {self.table(layout.name)} ({_columns(layout)}) "
                f"SELECT {_columns(layout)} FROM {view}"
            )
        except duckdb.Error as exc:
            raise self.database_error(exc, layout.name, path) from exc
        finally:
            # An aborted transaction refuses even this; the next import replaces the view.
            with contextlib.suppress(duckdb.Error):
                self.connection.unregister(view)


class _PostgresLoader(_Loader):
    """Stages each file with COPY, then updates the tables in place.

    Clinical tables may hold foreign keys to ``concept``, so the vocabulary cannot be
    emptied and refilled: rows are updated, added, and the ones a release dropped deleted.
    """

    dialect: Dialect = "postgres"

    @staticmethod
    def stage(name: str) -> str:
        return f'"accord_stage_{name}"'

    def prepare(self, layouts: tuple[TableLayout, ...]) -> None:
        super().prepare(layouts)
        for layout in layouts:
            self.connection.execute(
                f"CREATE TEMP TABLE {self.stage(layout.name)} "
                f"(LIKE {self.table(layout.name)}) ON COMMIT DROP"
            )

    def insert(self, layout: TableLayout, batch: pa.Table, path: Path) -> None:
        import psycopg

        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
        copy_sql = f"COPY {self.stage(layout.name)} ({_columns(layout)}) FROM STDIN (FORMAT csv)"
        try:
            with self.connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.write(buffer.getvalue())
        except psycopg.Error as exc:
            raise self.database_error(exc, layout.name, path) from exc

    def finish(self, layouts: tuple[TableLayout, ...]) -> None:
        import psycopg

        keyed = [layout for layout in layouts if layout.primary_key]
        unkeyed = [layout for layout in layouts if not layout.primary_key]
        try:
            for layout in reversed(unkeyed):
                self.connection.execute(f"DELETE FROM {self.table(layout.name)}")
            for layout in keyed:
                self._upsert(layout)
            for layout in unkeyed:
                self.connection.execute(
                    f"INSERT INTO {self.table(layout.name)} ({_columns(layout)}) "
                    f"SELECT {_columns(layout)} FROM {self.stage(layout.name)}"
                )
            for layout in reversed(keyed):
                self.connection.execute(
                    f"DELETE FROM {self.table(layout.name)} t WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {self.stage(layout.name)} s WHERE {_key_match(layout)})"
                )
            # Fresh statistics, or the planner keeps the empty tables' estimates and picks
            # nested loops that take hours over millions of concepts.
            for layout in layouts:
                self.connection.execute(f"ANALYZE {self.table(layout.name)}")
        except psycopg.Error as exc:
            raise self.database_error(exc, "the vocabulary tables", None) from exc

    def _upsert(self, layout: TableLayout) -> None:
        # UPDATE then INSERT rather than ON CONFLICT: a CDM made by other DDL scripts may
        # lack the primary key constraint ON CONFLICT needs.
        table, stage = self.table(layout.name), self.stage(layout.name)
        others = [n for n in layout.schema.names if n not in layout.primary_key]
        assignments = ", ".join(f'"{n}" = s."{n}"' for n in others)
        changed = f"({_columns(layout, 't.')}) IS DISTINCT FROM ({_columns(layout, 's.')})"
        self.connection.execute(
            f"UPDATE {table} t SET {assignments} FROM {stage} s "
            f"WHERE {_key_match(layout)} AND {changed}"
        )
        self.connection.execute(
            f"INSERT INTO {table} ({_columns(layout)}) SELECT {_columns(layout)} FROM {stage} s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {_key_match(layout)})"
        )


def _key_match(layout: TableLayout) -> str:
    return " AND ".join(f't."{k}" = s."{k}"' for k in layout.primary_key)


def _loader(dialect: Dialect, connection: Any, schema: str | None) -> _Loader:
    loaders: dict[Dialect, type[_Loader]] = {"duckdb": _DuckDBLoader, "postgres": _PostgresLoader}
    return loaders[dialect](connection, schema)
