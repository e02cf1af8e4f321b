"""CREATE TABLE statements for the OMOP CDM, generated from the specification.

SQL is built as SQLGlot expressions and rendered per dialect, so every name reaches the
database as a quoted identifier and is never spliced into SQL text.

Foreign keys are off by default on DuckDB: its constraint checks slow bulk loads and force
tables to be loaded parent first, so Accord's data-quality gate checks references there
instead. They are on by default on PostgreSQL, where tables are created parents first.
Some references cannot be declared that way and are left out (see
:func:`skipped_foreign_keys`):

* self references (``visit_occurrence.preceding_visit_occurrence_id``,
  ``visit_detail.parent_visit_detail_id``, ...): a bulk load split into batches cannot
  promise that a row's predecessor arrived in an earlier batch;
* the back edge of each cycle: ``concept.domain_id`` refers to ``domain`` while
  ``domain.domain_concept_id`` refers to ``concept`` (likewise ``vocabulary`` and
  ``concept_class``). Declaring both would make the vocabulary impossible to load in any
  order, so the edge found to close the cycle, from the small reference table back to
  ``concept``, is dropped;
* references to a table that is not among those requested.

>>> ddl_statements("duckdb", tables=["location"])[0][:46]
'CREATE TABLE IF NOT EXISTS "location" ("locati'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from sqlglot import exp

from accord.cdm.spec import BaseType, CdmSpec, Field, ForeignKey, Table, load_spec
from accord.errors import DataError

Dialect = Literal["duckdb", "postgres"]

# Dialects whose foreign keys are declared unless the caller says otherwise.
_FOREIGN_KEYS_BY_DEFAULT: Final[dict[Dialect, bool]] = {"duckdb": False, "postgres": True}

# Rendered per dialect by SQLGlot: DOUBLE becomes DOUBLE PRECISION on PostgreSQL.
_SQL_TYPES: Final[dict[BaseType, str]] = {
    "integer": "INT",
    "bigint": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMP",
}

_SELF_REFERENCE: Final = (
    "refers to its own table; batched bulk loads cannot promise parents arrive first"
)
_CYCLE: Final = (
    "closes a reference cycle; declaring it would leave no order in which to load the tables"
)
_NOT_SELECTED: Final = "refers to a table that is not being created"


class SqlConnection(Protocol):
    """Anything that runs one SQL statement: DuckDB and psycopg connections both do."""

    def execute(self, query: str, /) -> object: ...


@dataclass(frozen=True)
class SkippedForeignKey:
    """A foreign key from the specification that the generated DDL does not declare."""

    table: str
    field: str
    references: str
    reason: str


def ddl_statements(
    dialect: Dialect,
    *,
    schema: str | None = None,
    tables: Iterable[str] | None = None,
    foreign_keys: bool | None = None,
) -> list[str]:
    """CREATE TABLE IF NOT EXISTS statements for the CDM, referenced tables first.

    ``tables`` picks a subset (default: every table in the specification); ``schema``
    qualifies every table name and must already exist; ``foreign_keys`` defaults to
    ``False`` for DuckDB and ``True`` for PostgreSQL.

    >>> [s.split("(")[0] for s in ddl_statements("postgres", tables=["person", "concept"])]
    ['CREATE TABLE IF NOT EXISTS "concept" ', 'CREATE TABLE IF NOT EXISTS "person" ']
    """
    _check_dialect(dialect)
    if schema is not None and (not isinstance(schema, str) or not schema.strip()):
        raise DataError(f"schema must be a non-empty name or None, not {schema!r}")
    if foreign_keys is None:
        foreign_keys = _FOREIGN_KEYS_BY_DEFAULT[dialect]
    spec = load_spec()
    ordered = _selected_in_creation_order(spec, tables)
    skipped = {(s.table, s.field) for s in skipped_foreign_keys(t.name for t in ordered)}
    statements = []
    for table in ordered:
        references = (
            [r for r in table.references() if (table.name, r[0].name) not in skipped]
            if foreign_keys
            else []
        )
        statements.append(_create_table(table, references, dialect, schema))
    return statements


def create_cdm(
    connection: SqlConnection,
    dialect: Dialect,
    *,
    schema: str | None = None,
    tables: Iterable[str] | None = None,
    foreign_keys: bool | None = None,
) -> None:
    """Create the CDM tables on ``connection`` in one transaction.

    Either every table is created or none is. Existing tables are left as they are, so
    running this twice is harmless. A DB-API connection that is not in autocommit mode
    (psycopg's default) already has a transaction open: the tables join it, and it is
    committed, together with any work already pending on it, or rolled back on failure.

    >>> import duckdb
    >>> connection = duckdb.connect()
    >>> create_cdm(connection, "duckdb", tables=["person"])
    >>> connection.execute("SELECT count(*) FROM person").fetchone()
    (0,)
    """
    statements = ddl_statements(dialect, schema=schema, tables=tables, foreign_keys=foreign_keys)
    # DuckDB connections have no autocommit attribute and commit each statement unless
    # told to BEGIN; psycopg opens its own transaction when autocommit is off.
    if getattr(connection, "autocommit", True) is not False:
        connection.execute("BEGIN")
    try:
        for statement in statements:
            try:
                connection.execute(statement)
            except Exception as exc:
                exc.add_note(f"while running: {statement}")
                raise
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def skipped_foreign_keys(tables: Iterable[str] | None = None) -> tuple[SkippedForeignKey, ...]:
    """The foreign keys :func:`ddl_statements` leaves out when creating ``tables``, and why.

    The data-quality gate checks these references itself.
    """
    spec = load_spec()
    selected = {t.name for t in _selected_in_creation_order(spec, tables)}
    _, cycle_edges = _creation_order(spec)
    skipped = []
    for table in spec.tables.values():
        if table.name not in selected:
            continue
        for source, key in table.references():
            if key.table == table.name:
                reason = _SELF_REFERENCE
            elif (table.name, source.name) in cycle_edges:
                reason = _CYCLE
            elif key.table not in selected:
                reason = _NOT_SELECTED
            else:
                continue
            skipped.append(SkippedForeignKey(table.name, source.name, str(key), reason))
    return tuple(skipped)


def column_type(field: Field, dialect: Dialect) -> exp.DataType:
    """The SQL type of a CDM field in ``dialect``."""
    _check_dialect(dialect)
    if field.base_type != "varchar":
        return exp.DataType.build(_SQL_TYPES[field.base_type])
    length = field.max_length
    if length is None:
        # varchar(MAX) holds free text such as drug_exposure.sig: no length limit.
        return exp.DataType.build("TEXT")
    return exp.DataType(
        this=exp.DataType.Type.VARCHAR,
        expressions=[exp.DataTypeParam(this=exp.Literal.number(length))],
    )


def _check_dialect(dialect: str) -> None:
    if dialect not in get_args(Dialect):
        raise DataError(
            f"unsupported SQL dialect {dialect!r}",
            hint=f"expected one of {', '.join(get_args(Dialect))}",
        )


def _selected_in_creation_order(spec: CdmSpec, tables: Iterable[str] | None) -> list[Table]:
    if isinstance(tables, str):
        raise DataError(
            f"tables must be a collection of table names, not the single string {tables!r}",
            hint=f"pass [{tables!r}]",
        )
    order, _ = _creation_order(spec)
    if tables is None:
        return list(order)
    wanted = {spec.table(name).name for name in tables}
    return [t for t in order if t.name in wanted]


def _creation_order(spec: CdmSpec) -> tuple[tuple[Table, ...], frozenset[tuple[str, str]]]:
    """Tables with referenced tables first, and the (table, field) edges closing cycles.

    A depth-first walk from each table in specification order. Computing this over the
    whole specification, never a subset, means a table's declared keys do not depend on
    which other tables were requested alongside it.
    """
    done: dict[str, Table] = {}
    on_path: list[str] = []
    cycle_edges: set[tuple[str, str]] = set()

    def visit(table: Table) -> None:
        on_path.append(table.name)
        for source, key in table.references():
            if key.table == table.name or key.table in done:
                continue
            if key.table in on_path:
                cycle_edges.add((table.name, source.name))
                continue
            visit(spec.table(key.table))
        on_path.pop()
        done[table.name] = table

    for table in spec.tables.values():
        if table.name not in done:
            visit(table)
    return tuple(done.values()), frozenset(cycle_edges)


def _table_ref(name: str, schema: str | None) -> exp.Table:
    return exp.Table(
        this=exp.to_identifier(name, quoted=True),
        db=exp.to_identifier(schema, quoted=True) if schema is not None else None,
    )


def _identifiers(names: Sequence[str]) -> list[exp.Identifier]:
    return [exp.to_identifier(n, quoted=True) for n in names]


def _create_table(
    table: Table,
    references: Sequence[tuple[Field, ForeignKey]],
    dialect: Dialect,
    schema: str | None,
) -> str:
    columns: list[exp.Expression] = [
        exp.ColumnDef(
            this=exp.to_identifier(f.name, quoted=True),
            kind=column_type(f, dialect),
            constraints=(
                [exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())] if f.required else []
            ),
        )
        for f in table.fields
    ]
    if table.primary_key:
        columns.append(exp.PrimaryKey(expressions=_identifiers(table.primary_key)))
    for source, target in references:
        columns.append(
            exp.ForeignKey(
                expressions=_identifiers([source.name]),
                reference=exp.Reference(
                    this=exp.Schema(
                        this=_table_ref(target.table, schema),
                        expressions=_identifiers([target.field]),
                    )
                ),
            )
        )
    create = exp.Create(
        this=exp.Schema(this=_table_ref(table.name, schema), expressions=columns),
        kind="TABLE",
        exists=True,
    )
    return create.sql(dialect=dialect)
