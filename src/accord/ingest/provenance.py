"""Where every loaded row came from, and which loads ran: Accord's bookkeeping tables.

``accord_provenance`` holds one row per CDM row an ingestion path inserted: the CDM table,
the row's primary key, a stable source key (``fhir:Condition/abc#0``,
``omop:person:17``), the source file, where in it (``line 17``), the mapping version and
the load. Its primary key ``(cdm_table, source_key)`` is what makes loads idempotent: a
row whose source key is already there is skipped, so re-loading a source adds nothing and
a later export of the same source adds only its new rows.

``accord_loads`` holds one row per load with its report.

Statements are rendered per dialect with every name quoted by SQLGlot; values travel as
parameters (``?`` for DuckDB, ``%s`` for psycopg), never in the SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sqlglot import exp

from accord.errors import DataError

Dialect = Literal["duckdb", "postgres"]

PROVENANCE_TABLE: Final = "accord_provenance"
LOADS_TABLE: Final = "accord_loads"
BOOKKEEPING_TABLES: Final = (PROVENANCE_TABLE, LOADS_TABLE)

SOURCE_KEY: Final = "accord_source_key"
"""The staged column holding each row's source key (no CDM column starts with accord_)."""
LOCATOR: Final = "accord_locator"
POSITION: Final = "accord_position"
"""The staged column holding each key's position, to turn matches back into a mask."""

_PLACEHOLDERS: Final[dict[Dialect, str]] = {"duckdb": "?", "postgres": "%s"}

_PROVENANCE_COLUMNS: Final = (
    ("cdm_table", "VARCHAR", True),
    ("row_id", "BIGINT", False),
    ("source_key", "VARCHAR", True),
    ("source_file", "VARCHAR", False),
    ("locator", "VARCHAR", False),
    ("mapping_version", "VARCHAR", False),
    ("load_id", "VARCHAR", True),
)
_LOADS_COLUMNS: Final = (
    ("load_id", "VARCHAR", True),
    ("kind", "VARCHAR", True),
    ("source", "VARCHAR", True),
    ("started_at", "TIMESTAMP", True),
    ("finished_at", "TIMESTAMP", False),
    ("status", "VARCHAR", True),
    ("vocabulary_version", "VARCHAR", False),
    ("mapping_version", "VARCHAR", False),
    ("report", "JSON", False),
)


@dataclass(frozen=True)
class SqlNames:
    """Quoted names and the parameter placeholder for one dialect and schema."""

    dialect: Dialect
    schema: str | None = None

    def __post_init__(self) -> None:
        # psycopg reads a % anywhere in a statement with parameters as a placeholder, so
        # a schema named with one could never be written to: refuse it up front.
        if self.dialect == "postgres" and self.schema is not None and "%" in self.schema:
            raise DataError(
                f"schema name {self.schema!r} contains %",
                hint="PostgreSQL members need a schema name without %",
            )

    @property
    def param(self) -> str:
        return _PLACEHOLDERS[self.dialect]

    def table(self, name: str) -> str:
        """A table of the CDM's schema, schema-qualified when there is one."""
        return self._table_ref(name).sql(dialect=self.dialect)

    def temporary(self, name: str) -> str:
        """A staging table or view, never schema-qualified."""
        return exp.to_identifier(name, quoted=True).sql(dialect=self.dialect)

    def column(self, name: str) -> str:
        return exp.to_identifier(name, quoted=True).sql(dialect=self.dialect)

    def columns(self, names: Sequence[str], prefix: str = "") -> str:
        return ", ".join(prefix + self.column(n) for n in names)

    def _table_ref(self, name: str) -> exp.Table:
        return exp.Table(
            this=exp.to_identifier(name, quoted=True),
            db=exp.to_identifier(self.schema, quoted=True) if self.schema else None,
        )

    def create_table(
        self, name: str, columns: Sequence[tuple[str, str, bool]], primary_key: Sequence[str]
    ) -> str:
        definitions: list[exp.Expression] = [
            exp.ColumnDef(
                this=exp.to_identifier(column, quoted=True),
                kind=exp.DataType.build(kind),
                constraints=(
                    [exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())] if required else []
                ),
            )
            for column, kind, required in columns
        ]
        definitions.append(
            exp.PrimaryKey(expressions=[exp.to_identifier(c, quoted=True) for c in primary_key])
        )
        create = exp.Create(
            this=exp.Schema(this=self._table_ref(name), expressions=definitions),
            kind="TABLE",
            exists=True,
        )
        return create.sql(dialect=self.dialect)


def bookkeeping_statements(names: SqlNames) -> list[str]:
    """CREATE TABLE IF NOT EXISTS for ``accord_provenance`` and ``accord_loads``."""
    return [
        names.create_table(PROVENANCE_TABLE, _PROVENANCE_COLUMNS, ("cdm_table", "source_key")),
        names.create_table(LOADS_TABLE, _LOADS_COLUMNS, ("load_id",)),
    ]


def _not_yet_loaded(names: SqlNames) -> str:
    # One parameter: the CDM table. NOT EXISTS plans as an anti-join on both engines.
    return (
        f"NOT EXISTS (SELECT 1 FROM {names.table(PROVENANCE_TABLE)} AS p "
        f"WHERE p.{names.column('cdm_table')} = {names.param} "
        f"AND p.{names.column('source_key')} = s.{names.column(SOURCE_KEY)})"
    )


def insert_new_rows(names: SqlNames, cdm_table: str, columns: Sequence[str], stage: str) -> str:
    """Copy staged rows whose source key is not yet loaded into the CDM table.

    Parameters: the CDM table name.
    """
    return (
        f"INSERT INTO {names.table(cdm_table)} ({names.columns(columns)}) "
        f"SELECT {names.columns(columns, 's.')} FROM {names.temporary(stage)} AS s "
        f"WHERE {_not_yet_loaded(names)}"
    )


def insert_provenance(names: SqlNames, row_id: str | None, stage: str) -> str:
    """Record the staged rows that are not yet loaded; run after :func:`insert_new_rows`.

    The CDM insert leaves ``accord_provenance`` untouched, so both statements select the
    same rows. Parameters: CDM table, source file, mapping version, load id, CDM table.
    """
    row_id_sql = f"s.{names.column(row_id)}" if row_id is not None else "NULL"
    text = "VARCHAR" if names.dialect == "duckdb" else "TEXT"
    value = f"CAST({names.param} AS {text})"
    target = names.columns([column for column, _, _ in _PROVENANCE_COLUMNS])
    return (
        f"INSERT INTO {names.table(PROVENANCE_TABLE)} ({target}) "
        f"SELECT {value}, {row_id_sql}, s.{names.column(SOURCE_KEY)}, {value}, "
        f"s.{names.column(LOCATOR)}, {value}, {value} "
        f"FROM {names.temporary(stage)} AS s WHERE {_not_yet_loaded(names)}"
    )


def matching_keys(names: SqlNames, stage: str, *, this_load_only: bool) -> str:
    """Positions of staged keys already in ``accord_provenance``.

    Parameters: the CDM table, then the load id if ``this_load_only``.
    """
    sql = (
        f"SELECT s.{names.column(POSITION)} FROM {names.temporary(stage)} AS s "
        f"JOIN {names.table(PROVENANCE_TABLE)} AS p "
        f"ON p.{names.column('source_key')} = s.{names.column(SOURCE_KEY)} "
        f"WHERE p.{names.column('cdm_table')} = {names.param}"
    )
    if this_load_only:
        sql += f" AND p.{names.column('load_id')} = {names.param}"
    return sql


def loaded_row_ids(names: SqlNames, stage: str) -> str:
    """Positions of staged keys already in ``accord_provenance`` with the id of their row.

    Rows without an integer primary key record no id and are left out. Parameters: the
    CDM table.
    """
    return (
        f"SELECT s.{names.column(POSITION)}, p.{names.column('row_id')} "
        f"FROM {names.temporary(stage)} AS s "
        f"JOIN {names.table(PROVENANCE_TABLE)} AS p "
        f"ON p.{names.column('source_key')} = s.{names.column(SOURCE_KEY)} "
        f"WHERE p.{names.column('cdm_table')} = {names.param} "
        f"AND p.{names.column('row_id')} IS NOT NULL"
    )


def record_load(names: SqlNames) -> str:
    """Insert one ``accord_loads`` row; parameters in the table's column order."""
    columns = [column for column, _, _ in _LOADS_COLUMNS]
    values = [names.param] * (len(columns) - 1) + [f"CAST({names.param} AS JSON)"]
    return (
        f"INSERT INTO {names.table(LOADS_TABLE)} ({names.columns(columns)}) "
        f"VALUES ({', '.join(values)})"
    )
