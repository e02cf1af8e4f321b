"""Run quality checks on a member's CDM as set-based SQL, one pass per table.

Every check kind has a *violation condition*: a boolean SQL expression over one row of
its table. Every check on a table becomes two aggregates in ONE ``SELECT ... FROM table``:
the number of violating rows (``SUM(CASE WHEN <violation> THEN 1 ELSE 0 END)``, or
``COUNT(key) - COUNT(DISTINCT key)`` for primary keys) and, for optional fields, how many
rows fill the field in. References (foreign keys, concepts, the person's birth year) are
correlated ``EXISTS`` subqueries, which both engines run as joins. If a table's batch
fails, its checks are run one at a time, so a broken check gets status ``error`` and the
others still report. :func:`find_examples` reuses the same conditions to list the
primary keys of violating rows.

Type checks read no rows to decide: one ``information_schema.columns`` query per run
(on Spark, which has no ``information_schema``, ``SHOW TABLES`` and one ``DESCRIBE TABLE``
per CDM table) gives every column's declared type, and a column whose type cannot hold
its CDM datatype counts its filled-in values as violating.

SQL is built as SQLGlot expressions: names reach the database as quoted identifiers and
only constants from the catalogue and :mod:`accord.quality.plausibility` (years, concept
ids, ``'S'``, the run's date) appear as literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from sqlglot import exp

from accord.cdm import load_spec
from accord.cdm.spec import BaseType
from accord.errors import DataError
from accord.quality.catalogue import (
    DEATH_GRACE_DAYS,
    FEMALE,
    MALE,
    Check,
    Kind,
    default_catalogue,
)
from accord.quality.plausibility import PlausibilityRules, plausibility_rules
from accord.quality.results import CheckResult

_ROW: Final = "t"
_REF: Final = "r"
_SUB: Final = "a"
_ERROR_CHARS: Final = 200

Dialect = Literal["duckdb", "postgres", "spark"]
"""The engines the checks run on (a Spark CDM is read through
:class:`accord.node.spark.SparkConnection`)."""

# Declared column types (lower case, without length or precision) that can hold each
# CDM datatype; anything else is a type violation.
_INTEGERS: Final = frozenset(
    {
        "integer", "int", "int4", "int8", "int2", "bigint", "smallint", "tinyint", "hugeint",
        "ubigint", "uinteger", "usmallint", "utinyint", "uhugeint", "numeric", "decimal",
    }
)  # fmt: skip
_COMPATIBLE: Final[dict[BaseType, frozenset[str]]] = {
    "integer": _INTEGERS,
    "bigint": _INTEGERS,
    "float": _INTEGERS
    | {"double", "double precision", "float", "float4", "float8", "real"},
    "date": frozenset({"date"}),
    "datetime": frozenset(
        {
            "timestamp", "timestamp without time zone", "timestamp with time zone",
            "timestamptz", "datetime", "timestamp_s", "timestamp_ms", "timestamp_ns",
            "timestamp_ntz", "timestamp_ltz",
        }
    ),
    "varchar": frozenset(
        {"varchar", "character varying", "text", "character", "char", "bpchar", "string"}
    ),
}  # fmt: skip


@dataclass(frozen=True)
class _Context:
    """What a run's SQL depends on besides the check: where, when, and declared types.

    ``declared`` maps (table, column) to the column's declared type; ``None`` means not
    looked up, and every column is taken to have the right type.
    """

    schema: str | None
    today: date
    declared: Mapping[tuple[str, str], str] | None = None
    rules: PlausibilityRules = field(default_factory=plausibility_rules)


class TransactionAborted(DataError):
    """A check failed inside a DuckDB transaction, which ends it: the caller must stop."""


def run_checks(
    connection: Any,
    dialect: Dialect,
    *,
    schema: str | None = None,
    checks: Iterable[Check] | None = None,
    today: date | None = None,
) -> list[CheckResult]:
    """Run ``checks`` (default: the whole catalogue) and return one result per check,
    in the order given.

    ``connection`` is a DuckDB or psycopg connection, or a Spark one. ``today`` (default:
    the current date) is the date no event may be later than. Raises :class:`DataError` naming the
    tables the checks need that the database does not have.

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
    context = _context(connection, dialect, schema, selected, today)
    by_table: dict[str, list[Check]] = {}
    for check in selected:
        by_table.setdefault(check.table, []).append(check)
    found: dict[str, CheckResult] = {}
    for table, batch in by_table.items():
        try:
            results = _run_batch(connection, dialect, context, table, batch)
        except TransactionAborted:
            raise
        except Exception:
            results = [_run_alone(connection, dialect, context, check) for check in batch]
        found.update({r.check_id: r for r in results})
    return [found[check.id] for check in selected]


def find_examples(
    connection: Any,
    dialect: Dialect,
    checks: Iterable[Check],
    *,
    schema: str | None = None,
    limit: int = 5,
    today: date | None = None,
) -> dict[str, list[int | str]]:
    """Up to ``limit`` primary-key values of violating rows per check, smallest first.

    The rows are those the check's count includes (the same condition); for a
    ``primary_key`` check they are the repeated key values. A check on a table without
    a single-column primary key, or whose query fails, gets ``[]``. Meant for the few
    checks that failed: it runs one query per check.

    >>> import duckdb
    >>> from accord.cdm import create_cdm
    >>> connection = duckdb.connect()
    >>> create_cdm(connection, "duckdb")
    >>> _ = connection.execute(
    ...     "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id,"
    ...     " ethnicity_concept_id) VALUES (3, 0, 1700, 0, 0), (1, 0, 1990, 0, 0),"
    ...     " (2, 0, 1600, 0, 0)"
    ... )
    >>> birth = "plausibility.range.person.year_of_birth"
    >>> checks = [c for c in default_catalogue() if c.id == birth]
    >>> find_examples(connection, "duckdb", checks)
    {'plausibility.range.person.year_of_birth': [2, 3]}
    """
    selected = tuple(checks)
    context = _context(connection, dialect, schema, selected, today)
    spec = load_spec()
    found: dict[str, list[int | str]] = {}
    for check in selected:
        table = spec.tables.get(check.table)
        if table is None or len(table.primary_key) != 1:
            found[check.id] = []
            continue
        sql = examples_sql(dialect, context, check, table.primary_key[0], limit)
        try:
            rows = _fetch_all(connection, dialect, sql)
        except TransactionAborted:
            raise
        except Exception:
            found[check.id] = []
            continue
        found[check.id] = [_key(row[0]) for row in rows]
    return found


def batch_sql(
    dialect: Dialect,
    schema: str | None,
    table: str,
    checks: Sequence[Check],
    *,
    today: date | None = None,
    declared: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """The one statement that counts violations of ``checks`` on ``table``.

    Its columns are the row count, then per check the violating rows and the rows whose
    gate field is filled in (or the row count again when the check has no gate).
    ``declared`` gives columns' declared types for type checks (default: all right).
    """
    context = _Context(schema=schema, today=today or date.today(), declared=declared)
    return _batch_sql(dialect, context, table, checks)


def examples_sql(dialect: Dialect, context: _Context, check: Check, key: str, limit: int) -> str:
    """The statement listing up to ``limit`` ``key`` values of rows violating ``check``."""
    key_column = _col(key)
    source = _table(check.table, context.schema).as_(_ROW, quoted=True)
    if check.kind == "primary_key":
        value = _col(check.field)
        query = (
            exp.select(value)
            .from_(source)
            .where(value.is_(exp.null()).not_())
            .group_by(value.copy())
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
            .order_by(value.copy())
        )
    else:
        query = (
            exp.select(key_column)
            .from_(source)
            .where(_CONDITIONS[check.kind](check, context))
            .order_by(key_column.copy())
        )
    return query.limit(exp.Literal.number(max(limit, 0))).sql(dialect=dialect)


def _batch_sql(dialect: Dialect, context: _Context, table: str, checks: Sequence[Check]) -> str:
    columns: list[exp.Expr] = [exp.Count(this=exp.Star())]
    for check in checks:
        if check.table != table:
            raise ValueError(f"check {check.id} is not on table {table!r}")
        columns.append(_violations(check, context))
        gate = check.gate
        columns.append(exp.Count(this=_col(gate) if gate else exp.Star()))
    query = exp.select(*columns).from_(_table(table, context.schema).as_(_ROW, quoted=True))
    return query.sql(dialect=dialect)


def _violations(check: Check, context: _Context) -> exp.Expr:
    """The aggregate counting ``check``'s violating rows."""
    if check.kind == "primary_key":
        key = _col(check.field)
        return exp.Sub(
            this=exp.Count(this=key), expression=exp.Count(this=exp.Distinct(expressions=[key]))
        )
    condition = _CONDITIONS[check.kind](check, context)
    if isinstance(condition, exp.Boolean) and not condition.this:
        return exp.Literal.number(0)  # nothing can violate: no need to look at rows
    return _rows_where(condition)


def _context(
    connection: Any,
    dialect: Dialect,
    schema: str | None,
    checks: Sequence[Check],
    today: date | None,
) -> _Context:
    declared = None
    if any(check.kind == "type" for check in checks):
        declared = _declared_types(connection, dialect, schema)
    return _Context(schema=schema, today=today or date.today(), declared=declared)


def _run_batch(
    connection: Any, dialect: Dialect, context: _Context, table: str, checks: Sequence[Check]
) -> list[CheckResult]:
    row = _fetch_one(connection, dialect, _batch_sql(dialect, context, table, checks))
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


def _run_alone(connection: Any, dialect: Dialect, context: _Context, check: Check) -> CheckResult:
    try:
        return _run_batch(connection, dialect, context, check.table, [check])[0]
    except TransactionAborted:
        raise
    except Exception as error:
        return CheckResult.failed_to_run(check, _first_line(error))


def _fetch_one(connection: Any, dialect: Dialect, sql: str) -> tuple[Any, ...]:
    rows = _fetch(connection, dialect, sql, one=True)
    return tuple(rows[0])


def _fetch_all(connection: Any, dialect: Dialect, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in _fetch(connection, dialect, sql, one=False)]


def _fetch(connection: Any, dialect: Dialect, sql: str, *, one: bool) -> list[Any]:
    # A failed statement aborts a PostgreSQL transaction; a savepoint keeps the caller's
    # transaction usable (a load judges its rows inside its own transaction, opened with
    # an explicit BEGIN on an autocommit connection). Outside a transaction, and on
    # DuckDB, each statement stands alone.
    savepoint = dialect == "postgres" and _in_transaction(connection)
    if savepoint:
        connection.execute("SAVEPOINT accord_quality")
    try:
        cursor = connection.execute(sql)
        rows = [cursor.fetchone()] if one else list(cursor.fetchall())
    except Exception as error:
        if savepoint:
            connection.execute("ROLLBACK TO SAVEPOINT accord_quality")
        elif dialect == "duckdb" and _aborted(connection):
            # DuckDB has no savepoints: inside a load's transaction, a failed check ends
            # the transaction, and no later check could run. Stop the load, and say why.
            raise TransactionAborted(
                f"a quality check could not run inside the load: {_first_line(error)}",
                hint="the load was rolled back; run `accord quality run` to see which check",
            ) from error
        raise
    if savepoint:
        connection.execute("RELEASE SAVEPOINT accord_quality")
    return rows


def _key(value: Any) -> int | str:
    return value if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _catalog(
    connection: Any, dialect: Dialect, schema: str | None, view: str, *names: str
) -> list[tuple[Any, ...]]:
    """Rows of an information_schema view in ``schema`` (default: the current one).

    Filtered here rather than in SQL, so the schema name never enters a statement.
    """
    query = exp.select(
        exp.column("table_schema"), exp.func("current_schema"), *(exp.column(n) for n in names)
    ).from_(exp.table_(view, db="information_schema"))
    rows = connection.execute(query.sql(dialect=dialect)).fetchall()
    return [tuple(row[2:]) for row in rows if row[0] == (schema or row[1])]


def present_tables(connection: Any, dialect: Dialect, schema: str | None) -> set[str]:
    """The tables of ``schema`` (default: the current one), by name."""
    if dialect == "spark":
        return {str(row[1]) for row in _spark_tables(connection, schema) if not row[2]}
    return {str(name) for (name,) in _catalog(connection, dialect, schema, "tables", "table_name")}


def _spark_tables(connection: Any, schema: str | None) -> list[tuple[Any, ...]]:
    """``SHOW TABLES`` of a Spark database: (database, table, is temporary) per table."""
    statement = "SHOW TABLES"
    if schema is not None:
        statement += " IN " + exp.to_identifier(schema, quoted=True).sql(dialect="spark")
    return [tuple(row) for row in connection.execute(statement).fetchall()]


def _spark_declared_types(connection: Any, schema: str | None) -> list[tuple[str, str, str]]:
    """(table, column, type) for every column of the CDM tables of a Spark database."""
    spec = load_spec()
    found = []
    for table in sorted(present_tables(connection, "spark", schema) & set(spec.tables)):
        name = exp.table_(table, db=schema, quoted=True).sql(dialect="spark")
        for row in connection.execute(f"DESCRIBE TABLE {name}").fetchall():
            column, kind = str(row[0]), str(row[1] or "")
            if not column or column.startswith("#"):
                break  # partitioning and other details follow the columns
            found.append((table, column, kind))
    return found


def _require_tables(
    connection: Any, dialect: Dialect, schema: str | None, checks: Sequence[Check]
) -> None:
    needed = set().union(*(_tables_read(check) for check in checks))
    present = present_tables(connection, dialect, schema)
    missing = sorted(needed - present)
    if missing:
        place = f"schema {schema!r}" if schema is not None else "the database"
        raise DataError(
            f"{place} is not an OMOP CDM: tables missing: {', '.join(missing)}",
            hint="point --db (and --schema) at a member's CDM v5.4 database",
        )


def _declared_types(
    connection: Any, dialect: Dialect, schema: str | None
) -> dict[tuple[str, str], str]:
    if dialect == "spark":
        rows: list[tuple[Any, ...]] = list(_spark_declared_types(connection, schema))
    else:
        rows = _catalog(
            connection, dialect, schema, "columns", "table_name", "column_name", "data_type"
        )
    return {
        (str(table), str(column)): str(kind).split("(", 1)[0].strip().lower()
        for table, column, kind in rows
    }


def _tables_read(check: Check) -> set[str]:
    """The tables a check's SQL reads: its own and any it looks rows up in."""
    looked_up: dict[Kind, tuple[str, ...]] = {
        "concept": ("concept",),
        "standard_concept": ("concept",),
        "valid_concept": ("concept",),
        "concept_domain": ("concept",),
        "observation_period": ("observation_period",),
        "after_birth": ("person",),
        "after_death": ("death",),
        "sex": ("person", "concept_ancestor"),
        "before_market": ("concept_ancestor",),
        "in_visit": ("visit_occurrence",),
    }
    tables = {check.table, *looked_up.get(check.kind, ())}
    if check.reference is not None:
        tables.add(check.reference.table)
    return tables


# --- one function per kind: the condition a violating row meets -----------------------


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


def _exists(table: str, schema: str | None, condition: exp.Expr, alias: str = _REF) -> exp.Exists:
    query = (
        exp.select(exp.Literal.number(1))
        .from_(_table(table, schema).as_(alias, quoted=True))
        .where(condition)
    )
    return exp.Exists(this=query)


def _number(value: int | float) -> exp.Expr:
    return exp.Literal.number(value)


def _date(value: date) -> exp.Expr:
    return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))


def _is_in(value: exp.Expr, ids: Iterable[int]) -> exp.Expr:
    listed = sorted(ids)
    if not listed:
        return exp.false()
    return exp.In(this=value, expressions=[_number(i) for i in listed])


def _known_concept(check: Check) -> exp.Expr:
    value = _col(check.field)
    return exp.and_(value.is_(exp.null()).not_(), value.neq(_number(0)))


def _concept_where(check: Check, context: _Context, condition: exp.Expr) -> exp.Expr:
    """A known concept in the field whose concept row meets ``condition``."""
    match = exp.and_(_col("concept_id", _REF).eq(_col(check.field)), exp.paren(condition))
    return exp.and_(_known_concept(check), _exists("concept", context.schema, match))


def _required(check: Check, context: _Context) -> exp.Expr:
    return _col(check.field).is_(exp.null())


def _foreign_key(check: Check, context: _Context) -> exp.Expr:
    assert check.reference is not None  # guaranteed by Check.__post_init__
    value = _col(check.field)
    match = _col(check.reference.field, _REF).eq(value)
    orphan = exp.not_(_exists(check.reference.table, context.schema, match))
    return exp.and_(value.is_(exp.null()).not_(), orphan)


def _concept(check: Check, context: _Context) -> exp.Expr:
    match = _col("concept_id", _REF).eq(_col(check.field))
    return exp.and_(_known_concept(check), exp.not_(_exists("concept", context.schema, match)))


def _standard_concept(check: Check, context: _Context) -> exp.Expr:
    standard = _col("standard_concept", _REF)
    not_standard = exp.or_(standard.is_(exp.null()), standard.neq(exp.Literal.string("S")))
    return _concept_where(check, context, not_standard)


def _valid_concept(check: Check, context: _Context) -> exp.Expr:
    return _concept_where(check, context, _col("invalid_reason", _REF).is_(exp.null()).not_())


def _concept_domain(check: Check, context: _Context) -> exp.Expr:
    assert check.domain is not None
    domain = _col("domain_id", _REF)
    other = exp.or_(domain.is_(exp.null()), domain.neq(exp.Literal.string(check.domain)))
    return _concept_where(check, context, other)


def _type(check: Check, context: _Context) -> exp.Expr:
    assert check.datatype is not None
    if context.declared is not None:
        declared = context.declared.get((check.table, check.field))
        # A missing column falls through to the count, which then fails: status error.
        if declared is not None and declared in _COMPATIBLE[check.datatype]:  # type: ignore[index]
            return exp.false()
        return _col(check.field).is_(exp.null()).not_()
    return exp.false()


def _observation_period(check: Check, context: _Context) -> exp.Expr:
    match = _col("person_id", _REF).eq(_col(check.field))
    return exp.not_(_exists("observation_period", context.schema, match))


def _source_mapped(check: Check, context: _Context) -> exp.Expr:
    assert check.other_field is not None
    concept = _col(check.other_field)
    unmapped = exp.or_(concept.is_(exp.null()), concept.eq(_number(0)))
    return exp.and_(_col(check.field).is_(exp.null()).not_(), exp.paren(unmapped))


def _range(check: Check, context: _Context) -> exp.Expr:
    assert check.bounds is not None
    low, high = check.bounds
    value = _col(check.field)
    return exp.or_(
        exp.LT(this=value, expression=_number(low)),
        exp.GT(this=value.copy(), expression=_number(high)),
    )


def _start_before_end(check: Check, context: _Context) -> exp.Expr:
    assert check.other_field is not None
    return exp.GT(this=_col(check.field), expression=_col(check.other_field))


def _after_birth(check: Check, context: _Context) -> exp.Expr:
    born_later = exp.GT(
        this=_col("year_of_birth", _REF), expression=exp.Year(this=_col(check.field))
    )
    match = exp.and_(_col("person_id", _REF).eq(_col("person_id")), born_later)
    return _exists("person", context.schema, match)


def _future(check: Check, context: _Context) -> exp.Expr:
    return exp.GT(this=_col(check.field), expression=_date(context.today))


def _after_death(check: Check, context: _Context) -> exp.Expr:
    grace = exp.DateAdd(
        this=_col("death_date", _REF), expression=_number(DEATH_GRACE_DAYS), unit=exp.var("DAY")
    )
    later = exp.GT(this=_col(check.field), expression=grace)
    match = exp.and_(_col("person_id", _REF).eq(_col("person_id")), later)
    return _exists("death", context.schema, match)


def _is_or_descends(value: exp.Expr, ids: frozenset[int], schema: str | None) -> exp.Expr:
    """``value`` is one of ``ids`` or, where concept_ancestor has rows, a descendant."""
    descends = exp.and_(
        _col("descendant_concept_id", _SUB).eq(value.copy()),
        _is_in(_col("ancestor_concept_id", _SUB), ids),
    )
    return exp.or_(_is_in(value, ids), _exists("concept_ancestor", schema, descends, _SUB))


def _sex(check: Check, context: _Context) -> exp.Expr:
    rules = context.rules
    concept = _col(check.field)
    gender = _col("gender_concept_id", _REF)
    checks = []
    for ids, wrong in ((rules.female_only, MALE), (rules.male_only, FEMALE)):
        of_person = exp.and_(
            _col("person_id", _REF).eq(_col("person_id")), gender.copy().eq(_number(wrong))
        )
        checks.append(
            exp.and_(
                exp.paren(_is_or_descends(concept, ids, context.schema)),
                _exists("person", context.schema, of_person),
            )
        )
    return exp.or_(*(exp.paren(c) for c in checks))


def _value(check: Check, context: _Context) -> exp.Expr:
    assert check.other_field is not None
    value = _col(check.field)
    outside = [
        exp.and_(
            _col(check.other_field).eq(_number(r.concept_id)),
            _col("unit_concept_id").eq(_number(r.unit_concept_id)),
            exp.paren(
                exp.or_(
                    exp.LT(this=value.copy(), expression=_number(r.low)),
                    exp.GT(this=value.copy(), expression=_number(r.high)),
                )
            ),
        )
        for r in context.rules.ranges
    ]
    return exp.or_(*(exp.paren(o) for o in outside)) if outside else exp.false()


def _before_market(check: Check, context: _Context) -> exp.Expr:
    assert check.other_field is not None
    by_date: dict[date, set[int]] = {}
    for ingredient, marketed in context.rules.first_marketed.items():
        by_date.setdefault(marketed, set()).add(ingredient)
    if not by_date:
        return exp.false()
    start = _col(check.field)
    drug = _col(check.other_field)

    def too_early(concept: exp.Expr) -> exp.Expr:
        return exp.or_(
            *(
                exp.paren(
                    exp.and_(
                        _is_in(concept.copy(), ids),
                        exp.LT(this=start.copy(), expression=_date(marketed)),
                    )
                )
                for marketed, ids in sorted(by_date.items())
            )
        )

    # The drug is an ingredient itself, or has one as ancestor (one lookup for all).
    via_ancestor = exp.and_(
        _col("descendant_concept_id", _SUB).eq(drug.copy()),
        exp.paren(too_early(_col("ancestor_concept_id", _SUB))),
    )
    return exp.or_(
        exp.paren(too_early(drug)),
        _exists("concept_ancestor", context.schema, via_ancestor, _SUB),
    )


def _in_visit(check: Check, context: _Context) -> exp.Expr:
    assert check.other_field is not None
    when = _col(check.field)
    outside = exp.or_(
        exp.LT(this=when, expression=_col("visit_start_date", _REF)),
        exp.GT(this=when.copy(), expression=_col("visit_end_date", _REF)),
    )
    match = exp.and_(
        _col("visit_occurrence_id", _REF).eq(_col(check.other_field)), exp.paren(outside)
    )
    return _exists("visit_occurrence", context.schema, match)


def _not_a_condition(check: Check, context: _Context) -> exp.Expr:
    raise ValueError(f"check kind {check.kind!r} has no row condition")


_CONDITIONS: Final[dict[Kind, Callable[[Check, _Context], exp.Expr]]] = {
    "required": _required,
    "primary_key": _not_a_condition,  # counted as COUNT(key) - COUNT(DISTINCT key)
    "foreign_key": _foreign_key,
    "concept": _concept,
    "standard_concept": _standard_concept,
    "valid_concept": _valid_concept,
    "concept_domain": _concept_domain,
    "type": _type,
    "observation_period": _observation_period,
    "source_mapped": _source_mapped,
    "range": _range,
    "start_before_end": _start_before_end,
    "after_birth": _after_birth,
    "future": _future,
    "after_death": _after_death,
    "sex": _sex,
    "value": _value,
    "before_market": _before_market,
    "in_visit": _in_visit,
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line[:_ERROR_CHARS]


def _aborted(connection: Any) -> bool:
    """Whether a DuckDB connection's transaction was aborted by the last error."""
    import duckdb

    try:
        connection.execute("SELECT 1").fetchall()
    except duckdb.TransactionException:
        return True
    return False


def _in_transaction(connection: Any) -> bool:
    """Whether a psycopg connection is inside a transaction, however it was opened."""
    from psycopg.pq import TransactionStatus

    return bool(connection.info.transaction_status != TransactionStatus.IDLE)
