"""Fixtures shared by every test directory: a real PostgreSQL server, started once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest

from pg import PostgresServer, PostgresUnavailable


def _unavailable(reason: str) -> NoReturn:
    # In CI a missing service means the pipeline is broken, not that the test is optional.
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session, deleted afterwards."""
    try:
        import psycopg  # noqa: F401 - only checking it is installed
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[dev]')")
    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as error:
        missing = str(error)
    else:
        missing = ""
    if missing:
        _unavailable(missing)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A libpq connection string for an empty database on the test run's server."""
    return postgres_server.dsn()


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh, empty schema for one test, dropped with everything in it afterwards."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {name} CASCADE")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that reaches the server is a postgres test, so `-m "not postgres"` is
    # reliable even where a test forgot the marker.
    for item in items:
        if "postgres_dsn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
