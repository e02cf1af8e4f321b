"""Running a compiled count on a live connection (DuckDB or psycopg)."""

from __future__ import annotations

from typing import Any, Protocol

from accord.errors import DataError
from accord.query.engines import Dialect, compile_query
from accord.query.model import CountPersons


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
