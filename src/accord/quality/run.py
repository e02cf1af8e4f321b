"""Run quality checks on a member's CDM as set-based SQL, one pass per table.

Every check on a table becomes two aggregates in ONE ``SELECT ... FROM table``: the
number of violating rows (``SUM(CASE WHEN <violation> THEN 1 ELSE 0 END)``, or
``COUNT(key) - COUNT(DISTINCT key)`` for primary keys) and, for optional fields, how many
rows fill the field in. References (foreign keys, concepts, the person's birth year) are
correlated ``EXISTS`` subqueries, which both engines run as joins. If a table's batch
fails, its checks are run one at a time, so a broken check gets status ``error`` and the
others still report.

SQL is built as SQLGlot expressions: names reach the database as quoted identifiers and
only constants from the catalogue (years, ``'S'``) appear as literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from sqlglot import exp

from accord.cdm import Dialect
from accord.errors import DataError
from accord.quality.catalogue import Check, Kind, default_catalogue
from accord.quality.results import CheckResult

_ROW: Final = "t"
_REF: Final = "r"
_ERROR_CHARS: Final = 200


def run_checks(
    connection: Any,
    dialect: Dialect,
    *,
    schema: str | None = None,
    checks: Iterable[Check] | None = None,
) -> list[CheckResult]:
    """Run ``checks`` (default: the whole catalogue) and return one result per check,
    in the order given.

    ``connection`` is a DuckDB or psycopg connection. Raises :class:`DataError` naming
    the tables the checks need that the database does not have.

    >>> import duckdb
    >>> from accord.cdm import create_cdm
    >>> connection = duckdb.connect()
    >>> create_cdm(connection, "duckdb")
    >>> results = run_checks(connection, "duckdb")
    >>> {r.status for r in results}
    {'not_applicable'}
    """
    selected = tuple(default_catalogue() if checks is None else checks)
    _require_tables(connection, dialect, schema, selected)
    by_table: dict[str, list[Check]] = {}
    for check in selected:
        by_table.setdefault(check.table, []).append(check)
    found: dict[str, CheckResult] = {}
    for table, batch in by_table.items():
        try:
            results = _run_batch(connection, dialect, schema, table, batch)
        except Exception:
            results = [_run_alone(connection, dialect, schema, check) for check in batch]
        found.update({r.check_id: r for r in results})
    return [found[check.id] for check in selected]


def batch_sql(dialect: Dialect, schema: str | None, table: str, checks: Sequence[Check]) -> str:
    """The one statement that counts violations of ``checks`` on ``table``.

    Its columns are the row count, then per check the violating rows and the rows whose
    gate field is filled in (or the row count again when the check has no gate).
    """
    columns: list[exp.Expr] = [exp.Count(this=exp.Star())]
    for check in checks:
        if check.table != table:
            raise ValueError(f"check {check.id} is not on table {table!r}")
        columns.append(_VIOLATIONS[check.kind](check, schema))
        gate = check.gate
        columns.append(exp.Count(this=_col(gate) if gate else exp.Star()))
    query = exp.select(*columns).from_(_table(table, schema).as_(_ROW, quoted=True))
    return query.sql(dialect=dialect)


def _run_batch(
    connection: Any, dialect: Dialect, schema: str | None, table: str, checks: Sequence[Check]
) -> list[CheckResult]:
    row = _fetch_one(connection, dialect, batch_sql(dialect, schema, table, checks))
    total = int(row[0])
    results = []
    for index, check in enumerate(checks):
        violating, filled = row[1 + 2 * index], row[2 + 2 * index]
        results.append(
            CheckResult.judge(
                check, violating=int(violating or 0), total=total, applicable=bool(filled)
            )
        )
    return results


def _run_alone(connection: Any, dialect: Dialect, schema: str | None, check: Check) -> CheckResult:
    try:
        return _run_batch(connection, dialect, schema, check.table, [check])[0]
    except Exception as error:
        return CheckResult.failed_to_run(check, _first_line(error))


def _fetch_one(connection: Any, dialect: Dialect, sql: str) -> tuple[Any, ...]:
    # A failed statement aborts a PostgreSQL transaction; a savepoint keeps the caller's
    # transaction usable. In autocommit mode (and on DuckDB) each statement stands alone.
    savepoint = dialect == "postgres" and not getattr(connection, "autocommit", True)
    if savepoint:
        connection.execute("SAVEPOINT accord_quality")
    try:
        row = connection.execute(sql).fetchone()
    except Exception:
        if savepoint:
            connection.execute("ROLLBACK TO SAVEPOINT accord_quality")
        raise
    if savepoint:
        connection.execute("RELEASE SAVEPOINT accord_quality")
    return tuple(row)


def _require_tables(
    connection: Any, dialect: Dialect, schema: str | None, checks: Sequence[Check]
) -> None:
    needed = set().union(*(_tables_read(check) for check in checks))
    # Filtered here rather than in SQL, so the schema name never enters a statement.
    query = exp.select(
        exp.column("table_schema"), exp.column("table_name"), exp.func("current_schema")
    ).from_(exp.table_("tables", db="information_schema"))
    rows = connection.execute(query.sql(dialect=dialect)).fetchall()
    present = {str(name) for home, name, default in rows if home == (schema or default)}
    missing = sorted(needed - present)
    if missing:
        place = f"schema {schema!r}" if schema is not None else "the database"
        raise DataError(
            f"{place} is not an OMOP CDM: tables missing: {', '.join(missing)}",
            hint="point --db (and --schema) at a member's CDM v5.4 database",
        )


def _tables_read(check: Check) -> set[str]:
    """The tables a check's SQL reads: its own and any it looks rows up in."""
    looked_up: dict[Kind, tuple[str, ...]] = {
        "concept": ("concept",),
        "standard_concept": ("concept",),
        "observation_period": ("observation_period",),
        "after_birth": ("person",),
    }
    tables = {check.table, *looked_up.get(check.kind, ())}
    if check.reference is not None:
        tables.add(check.reference.table)
    return tables


# --- one function per kind: the SQL aggregate counting violating rows -----------------


def _table(name: str, schema: str | None) -> exp.Table:
    return exp.Table(
        this=exp.to_identifier(name, quoted=True),
        db=exp.to_identifier(schema, quoted=True) if schema is not None else None,
    )


def _col(name: str, alias: str = _ROW) -> exp.Column:
    return exp.Column(
        this=exp.to_identifier(name, quoted=True), table=exp.to_identifier(alias, quoted=True)
    )


def _rows_where(condition: exp.Expr) -> exp.Expr:
    case = exp.Case().when(condition, exp.Literal.number(1)).else_(exp.Literal.number(0))
    return exp.Sum(this=case)


def _exists(table: str, schema: str | None, condition: exp.Expr) -> exp.Exists:
    query = (
        exp.select(exp.Literal.number(1))
        .from_(_table(table, schema).as_(_REF, quoted=True))
        .where(condition)
    )
    return exp.Exists(this=query)


def _known_concept(check: Check) -> exp.Expr:
    value = _col(check.field)
    return exp.and_(value.is_(exp.null()).not_(), value.neq(exp.Literal.number(0)))


def _required(check: Check, schema: str | None) -> exp.Expr:
    return _rows_where(_col(check.field).is_(exp.null()))


def _primary_key(check: Check, schema: str | None) -> exp.Expr:
    key = _col(check.field)
    return exp.Sub(
        this=exp.Count(this=key), expression=exp.Count(this=exp.Distinct(expressions=[key]))
    )


def _foreign_key(check: Check, schema: str | None) -> exp.Expr:
    assert check.reference is not None  # guaranteed by Check.__post_init__
    value = _col(check.field)
    match = _col(check.reference.field, _REF).eq(value)
    orphan = exp.not_(_exists(check.reference.table, schema, match))
    return _rows_where(exp.and_(value.is_(exp.null()).not_(), orphan))


def _concept(check: Check, schema: str | None) -> exp.Expr:
    match = _col("concept_id", _REF).eq(_col(check.field))
    return _rows_where(exp.and_(_known_concept(check), exp.not_(_exists("concept", schema, match))))


def _standard_concept(check: Check, schema: str | None) -> exp.Expr:
    standard = _col("standard_concept", _REF)
    not_standard = exp.or_(standard.is_(exp.null()), standard.neq(exp.Literal.string("S")))
    match = exp.and_(_col("concept_id", _REF).eq(_col(check.field)), exp.paren(not_standard))
    return _rows_where(exp.and_(_known_concept(check), _exists("concept", schema, match)))


def _observation_period(check: Check, schema: str | None) -> exp.Expr:
    match = _col("person_id", _REF).eq(_col(check.field))
    return _rows_where(exp.not_(_exists("observation_period", schema, match)))


def _source_mapped(check: Check, schema: str | None) -> exp.Expr:
    assert check.other_field is not None
    concept = _col(check.other_field)
    unmapped = exp.or_(concept.is_(exp.null()), concept.eq(exp.Literal.number(0)))
    return _rows_where(exp.and_(_col(check.field).is_(exp.null()).not_(), exp.paren(unmapped)))


def _range(check: Check, schema: str | None) -> exp.Expr:
    assert check.bounds is not None
    low, high = check.bounds
    value = _col(check.field)
    outside = exp.or_(
        exp.LT(this=value, expression=exp.Literal.number(low)),
        exp.GT(this=value.copy(), expression=exp.Literal.number(high)),
    )
    return _rows_where(outside)


def _start_before_end(check: Check, schema: str | None) -> exp.Expr:
    assert check.other_field is not None
    return _rows_where(exp.GT(this=_col(check.field), expression=_col(check.other_field)))


def _after_birth(check: Check, schema: str | None) -> exp.Expr:
    born_later = exp.GT(
        this=_col("year_of_birth", _REF), expression=exp.Year(this=_col(check.field))
    )
    match = exp.and_(_col("person_id", _REF).eq(_col("person_id")), born_later)
    return _rows_where(_exists("person", schema, match))


_VIOLATIONS: Final[dict[Kind, Callable[[Check, str | None], exp.Expr]]] = {
    "required": _required,
    "primary_key": _primary_key,
    "foreign_key": _foreign_key,
    "concept": _concept,
    "standard_concept": _standard_concept,
    "observation_period": _observation_period,
    "source_mapped": _source_mapped,
    "range": _range,
    "start_before_end": _start_before_end,
    "after_birth": _after_birth,
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line[:_ERROR_CHARS]
