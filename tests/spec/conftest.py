"""The ``engine`` fixture: every spec test runs once per database engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdm_testing import DuckDBTestEngine, PostgresTestEngine, SparkTestEngine, TestEngine


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("spark", marks=pytest.mark.spark),
    ]
)
def engine(request: pytest.FixtureRequest) -> Iterator[TestEngine]:
    """An empty CDM on one engine; PostgreSQL gets a schema of its own per test, Spark a
    database no other open engine uses."""
    if request.param == "duckdb":
        created: TestEngine = DuckDBTestEngine.create()
    elif request.param == "spark":
        created = SparkTestEngine.create(request.getfixturevalue("spark_session"))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("postgres_schema")
        created = PostgresTestEngine.create(dsn, schema)
    try:
        yield created
    finally:
        created.close()
