"""Running a compiled query on a live connection (DuckDB or psycopg)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from accord.errors import DataError
from accord.query.engines import Dialect, compile_query
from accord.query.model import CountPersons, GlmStep


class Connection(Protocol):
    """What ``run_count`` needs: DuckDB and psycopg connections both have it."""

    def execute(self, query: str, /) -> Any: ...


def run_count(
    connection: Connection, query: CountPersons, dialect: Dialect, *, schema: str | None = None
) -> int:
    """Execute ``query`` and return the raw count, before any disclosure control."""
    sql = compile_query(query, dialect, schema=schema)
    try:
        row = connection.execute(sql).fetchone()
    except _database_errors() as error:
        raise DataError(
            f"the count query failed on the {dialect} database: {error}",
            hint="check that it holds the OMOP CDM v5.4 tables, in the configured schema",
        ) from None
    return int(row[0])


def run_design(
    connection: Connection, query: GlmStep, dialect: Dialect, *, schema: str | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The model's design at this member: ``X`` (an intercept column, then one column per
    covariate) and ``y``, one row per person of the cohort. It never leaves the member."""
    sql = compile_query(query, dialect, schema=schema)
    try:
        rows = connection.execute(sql).fetchall()
    except _database_errors() as error:
        raise DataError(
            f"the model's design query failed on the {dialect} database: {error}",
            hint="check that it holds the OMOP CDM v5.4 tables, in the configured schema",
        ) from None
    width = 1 + len(query.covariates)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    design = np.column_stack([np.ones(len(rows)), values[:, 1:]])
    return design, values[:, 0]


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
    return tuple(errors)
