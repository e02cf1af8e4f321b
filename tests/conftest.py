"""Fixtures shared by every test directory: a real PostgreSQL server and a Spark
session, each started once."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from pg import PostgresServer, PostgresUnavailable


def _unavailable(reason: str, service: str = "PostgreSQL") -> NoReturn:
    # In CI a missing service means the pipeline is broken, not that the test is optional.
    if os.environ.get("CI") == "true":
        pytest.fail(f"{service} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"{service} not available: {reason}")


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


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """A Spark session in local mode for the whole test session, stopped afterwards: one
    worker thread, one shuffle partition, no UI, UTC, its warehouse in a temporary
    folder."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _unavailable("pyspark is not installed (pip install -e '.[dev]')", "Spark")
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and os.path.isdir(java_home)):
        _unavailable("no Java runtime (install openjdk-17-jre-headless)", "Spark")
    from accord.node.spark import DEFAULTS, quiet

    warehouse = tempfile.mkdtemp(prefix="accord-spark-")
    builder = SparkSession.builder.master("local[1]").appName("accord-tests")
    settings = {
        **DEFAULTS,
        "spark.sql.warehouse.dir": warehouse,
        "spark.sql.catalogImplementation": "in-memory",
        # Test tables are tiny: one partition per shuffle, and no re-planning between
        # stages nor code generated for whole stages (either costs more than the rows);
        # no looking up the machine's network address.
        "spark.sql.shuffle.partitions": "1",
        "spark.default.parallelism": "1",
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.codegen.wholeStage": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as error:  # the JVM would not start
        shutil.rmtree(warehouse, ignore_errors=True)
        _unavailable(f"Spark did not start: {str(error).strip()[:300]}", "Spark")
    quiet(session)
    try:
        yield session
    finally:
        session.stop()
        shutil.rmtree(warehouse, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that reaches the server is a postgres test (and anything that uses Spark
    # a spark test), so `-m "not postgres"` is reliable even where a test forgot the
    # marker.
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_dsn" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "spark_session" in fixtures:
            item.add_marker(pytest.mark.spark)
