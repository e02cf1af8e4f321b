"""The engines a query compiles for; adding one is one file here and one line below."""

from __future__ import annotations

import functools
from typing import Literal, TypeAlias

from accord.errors import QueryError
from accord.query.compiler import BaseCompiler, ConsentHook
from accord.query.engines.duckdb import DuckDBCompiler
from accord.query.engines.postgres import PostgresCompiler
from accord.query.engines.spark import SparkCompiler
from accord.query.model import Analysis

Dialect: TypeAlias = Literal["duckdb", "postgres", "spark"]

ENGINES: dict[str, type[BaseCompiler]] = {
    engine.DIALECT: engine for engine in (DuckDBCompiler, PostgresCompiler, SparkCompiler)
}


def compile_query(
    query: Analysis,
    dialect: Dialect,
    *,
    schema: str | None = None,
    consent: ConsentHook | None = None,
) -> str:
    """One SQL statement for ``query``: for a count, a single row with the column ``n``;
    for a model's part, the cohort's design (columns ``y``, ``x1``, ``x2``, ...).

    ``schema`` names the schema holding the CDM tables; ``None`` uses the connection's
    search path. ``consent`` restricts every cohort to the persons whose consent covers
    the analysis.

    Example:
        >>> from datetime import date
        >>> from accord.query.builders import age_between, cohort, count_persons
        >>> q = count_persons(cohort(age_between(45, 75), as_of=date(2025, 12, 31)))
        >>> print(compile_query(q, "duckdb"))
        SELECT
          COUNT(DISTINCT p.person_id) AS n
        FROM person AS p
        WHERE
          p.year_of_birth BETWEEN 1950 AND 1980
    """
    engine = ENGINES.get(dialect)
    if engine is None:
        known = ", ".join(sorted(ENGINES))
        raise QueryError(f"unknown SQL dialect {dialect!r}; expected one of {known}")
    return _compiled(query, dialect, schema, consent)


@functools.lru_cache(maxsize=256)
def _compiled(
    query: Analysis, dialect: str, schema: str | None, consent: ConsentHook | None
) -> str:
    # Queries are frozen, hashable trees: a node answering the same question again (a
    # model's next step at a new beta is another question) skips the compiler.
    return ENGINES[dialect](schema=schema, consent=consent).compile(query)


__all__ = ["ENGINES", "Dialect", "compile_query"]
