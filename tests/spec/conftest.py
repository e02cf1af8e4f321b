"""The ``engine`` fixture: every spec test runs once per database engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdm_testing import DuckDBTestEngine, PostgresTestEngine, TestEngine


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[TestEngine]:
    """An empty CDM on one engine; PostgreSQL gets a schema of its own per test."""
    if request.param == "duckdb":
        created: TestEngine = DuckDBTestEngine.create()
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("postgres_schema")
        created = PostgresTestEngine.create(dsn, schema)
    try:
        yield created
    finally:
        created.close()
