"""Running a compiled query on a live connection (DuckDB, psycopg, or Spark's adapter).

What these return is read at the member and never leaves it as is: the node reduces it
to a count, sums or a sketch and passes that through its disclosure step.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlglot import exp

from accord.errors import DataError
from accord.query.compiler import ConsentHook
from accord.query.engines import Dialect, compile_query
from accord.query.model import Analysis, CountPersons, GlmStep


class Connection(Protocol):
    """What ``run_count`` needs: DuckDB and psycopg connections both have it."""

    def execute(self, query: str, /) -> Any: ...


def run_count(
    connection: Connection,
    query: CountPersons,
    dialect: Dialect,
    *,
    schema: str | None = None,
    consent: ConsentHook | None = None,
) -> int:
    """Execute ``query`` and return the raw count, before any disclosure control."""
    rows = run_rows(connection, query, dialect, schema=schema, consent=consent)
    return int(rows[0][0])


def run_rows(
    connection: Connection,
    query: Analysis,
    dialect: Dialect,
    *,
    schema: str | None = None,
    consent: ConsentHook | None = None,
) -> list[tuple[Any, ...]]:
    """Every row ``query``'s SQL yields (see ``accord.query.compiler`` for their shapes)."""
    sql = compile_query(query, dialect, schema=schema, consent=consent)
    try:
        return [tuple(row) for row in connection.execute(sql).fetchall()]
    except _database_errors() as error:
        raise DataError(
            f"the {query.TYPE} query failed on the {dialect} database: {error}",
            hint="check that it holds the OMOP CDM v5.4 tables, in the configured schema",
        ) from None


def run_values(
    connection: Connection,
    query: Analysis,
    dialect: Dialect,
    *,
    schema: str | None = None,
    consent: ConsentHook | None = None,
) -> NDArray[np.float64]:
    """The cohort's values as floats, one row per person, unknown values as NaN."""
    rows = run_rows(connection, query, dialect, schema=schema, consent=consent)
    width = len(rows[0]) if rows else _width(query)
    values = np.array(
        [[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64
    )
    return values.reshape(len(rows), width)


def run_design(
    connection: Connection,
    query: GlmStep,
    dialect: Dialect,
    *,
    schema: str | None = None,
    consent: ConsentHook | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The model's design at this member: ``X`` (an intercept column, then one column per
    covariate) and ``y``, one row per person of the cohort whose every value is known
    (a complete-case analysis). It never leaves the member."""
    values = run_values(connection, query, dialect, schema=schema, consent=consent)
    values = values[~np.isnan(values).any(axis=1)]
    design = np.column_stack([np.ones(len(values)), values[:, 1:]])
    return design, values[:, 0]


def unknown_concepts(
    connection: Connection, query: Analysis, dialect: Dialect, *, schema: str | None = None
) -> list[str]:
    """A problem for each concept id of ``query`` that the member's vocabulary (its
    ``concept`` table) lacks, with its path in the query's JSON."""
    wanted = query.concept_paths()
    ids = sorted({c for _, c in wanted})
    if not ids:
        return []
    table = exp.table_("concept", db=schema, quoted=True)
    column = exp.column("concept_id")
    sql = (
        exp.select(column)
        .from_(table)
        .where(column.isin(*(exp.Literal.number(c) for c in ids)))
        .sql(dialect=dialect)
    )
    try:
        known = {int(row[0]) for row in connection.execute(sql).fetchall()}
    except _database_errors() as error:
        raise DataError(f"cannot read the member's vocabulary: {error}") from None
    return [
        f"{path}: concept {c} is not in this member's vocabulary"
        for path, c in wanted
        if c not in known
    ]


def _width(query: Analysis) -> int:
    variables = getattr(query, "variables", None) or getattr(query, "by", None)
    if variables is not None:
        return len(variables)
    covariates = getattr(query, "covariates", None)
    return 1 if covariates is None else 1 + len(covariates)


def _database_errors() -> tuple[type[Exception], ...]:
    # psycopg is an optional dependency; DuckDB always ships.
    import duckdb

    errors: list[type[Exception]] = [duckdb.Error]
    try:
        import psycopg
    except ImportError:
        pass
    else:
        errors.append(psycopg.Error)
    try:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException
    except ImportError:
        pass
    else:
        # pyspark raises its own errors, and py4j's for a failure in Spark's JVM that
        # pyspark does not translate (a job failing on a file it cannot read).
        errors += [PySparkException, Py4JError]
    return tuple(errors)
