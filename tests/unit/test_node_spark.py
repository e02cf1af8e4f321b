"""A Spark member's configuration, its SQL and its connection, without starting Spark;
and the quality gate's refusal to serve what it cannot check."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from accord.cli.quality import member_database
from accord.cli.quality import report_command as quality_report
from accord.errors import ConfigError, DataError
from accord.node.config import DatabaseConfig, load_node_config
from accord.node.executor import MemberDatabase
from accord.node.quality import QualitySync
from accord.node.spark import SparkConnection
from accord.quality.books import ensure_tables, stored_report
from accord.query import compile_query
from accord.query.builders import (
    age_group,
    cohort,
    count_by,
    entry,
    glm,
    has_condition,
    has_measurement,
    indicator,
    kaplan_meier,
    measurement_value,
)


def node_config(tmp_path: Path, database: dict[str, Any]) -> Path:
    path = tmp_path / "node.json"
    path.write_text(
        json.dumps(
            {
                "member": "lakeside-clinic",
                "hub_url": "http://127.0.0.1:8700",
                "hub_public_key": "hub.pub",
                "key": "lakeside-clinic.key",
                "database": database,
            }
        )
    )
    return path


def test_a_spark_member_reads_its_parquet_folder_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    path = node_config(
        tmp_path,
        {
            "engine": "spark",
            "schema": "member_cdm",
            "spark": {"tables": "lake", "conf": {"spark.driver.memory": "2g"}},
        },
    )
    database = load_node_config(path).database
    assert database.spark is not None
    assert database.spark.tables == str(tmp_path / "lake")
    assert database.spark.master == "local[2]"
    assert database.spark.conf == {"spark.driver.memory": "2g"}


def test_a_missing_parquet_folder_is_named(tmp_path: Path) -> None:
    path = node_config(tmp_path, {"engine": "spark", "spark": {"tables": "nowhere"}})
    with pytest.raises(ConfigError, match=r"database.spark.tables: folder .*nowhere does not"):
        load_node_config(path)


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        ({"engine": "spark"}, "needs database.spark.tables"),
        ({"engine": "spark", "spark": {"master": "local[4]"}}, "or a persistent catalog"),
        (
            {"engine": "spark", "path": "cdm.duckdb", "spark": {"tables": "."}},
            "path cannot be set for engine spark",
        ),
        (
            {"engine": "spark", "schema": "cdm; DROP", "spark": {"tables": "."}},
            "cannot name a Spark database",
        ),
        ({"engine": "duckdb", "path": "x", "spark": {}}, "spark settings are for engine spark"),
        (
            {"engine": "spark", "spark": {"tables": ".", "conf": {"driver.memory": "2g"}}},
            "is not a Spark setting",
        ),
        (
            {"engine": "spark", "spark": {"tables": ".", "conf": {"spark.master": "yarn"}}},
            "set spark.master with database.spark.master",
        ),
        ({"engine": "spark", "spark": {"tables": ".", "master": "local [2]"}}, "master"),
    ],
)
def test_spark_settings_are_checked(tmp_path: Path, database: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match="database") as raised:
        load_node_config(node_config(tmp_path, database))
    assert problem in raised.value.message


def test_a_hive_catalog_needs_no_parquet_folder() -> None:
    conf = {"spark.sql.catalogImplementation": "hive"}
    database = DatabaseConfig.model_validate(
        {"engine": "spark", "schema": "omop", "spark": {"conf": conf}}
    )
    assert database.spark is not None
    assert database.spark.persistent_catalog


# --- the SQL ----------------------------------------------------------------------------

AS_OF = date(2025, 12, 31)
DIABETES, HBA1C = 201826, 3004410
ENTERED = cohort(as_of=AS_OF, entry=entry(has_condition(DIABETES), prior_days=30))
QUERIES = {
    "latest value in strata": count_by(
        ENTERED, measurement_value(HBA1C, within_days=365), age_group(10)
    ),
    "latest value as of a date": glm(
        cohort(has_condition(DIABETES), as_of=AS_OF),
        outcome=measurement_value(HBA1C),
        covariates=[indicator(has_measurement(HBA1C, min_value=7))],
        family="gaussian",
    ),
    "survival": kaplan_meier(ENTERED, has_measurement(HBA1C), horizon_days=720),
}


def sources(select: exp.Select | None) -> set[str]:
    """The names a query's own FROM and JOINs define."""
    if select is None:
        return set()
    return {
        part.this.alias_or_name
        for part in select.find_all(exp.From, exp.Join)
        if part.parent_select is select
    }


def outer_references_too_far(statement: exp.Expression) -> list[str]:
    """Columns naming a table neither their own query nor the query just outside it
    defines: Spark resolves a subquery's columns at most one query out."""
    return [
        column.sql()
        for column in statement.find_all(exp.Column)
        if column.table
        and column.table
        not in sources(column.parent_select)
        | sources(column.parent_select.parent_select if column.parent_select else None)
    ]


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_spark_sql_refers_at_most_one_query_out(query: Any) -> None:
    sql = compile_query(query, "spark", schema="member_cdm")
    statement = sqlglot.parse_one(sql, read="spark")
    assert outer_references_too_far(statement) == []
    # The other engines read the latest day in a subquery of its own, two levels down.
    if "latest" in str(query):
        assert "MAX_BY(" in sql
        duckdb = sqlglot.parse_one(compile_query(query, "duckdb"), read="duckdb")
        assert outer_references_too_far(duckdb)


def test_the_latest_value_is_the_largest_on_the_latest_day() -> None:
    sql = compile_query(QUERIES["latest value as of a date"], "spark")
    assert re.search(
        r"MAX_BY\((m\d+)\.value_as_number, STRUCT\(\1\.measurement_date, \1\.value_as_number\)\)",
        sql,
    ), sql


# --- the connection -----------------------------------------------------------------------


class FakeFrame:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def collect(self) -> list[tuple[Any, ...]]:
        return self.rows


class FakeSession:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def sql(self, *args: Any, **kwargs: Any) -> FakeFrame:
        self.calls.append((*args, kwargs))
        return FakeFrame([(1, "a"), (2, "b")])


def test_a_spark_connection_binds_parameters_and_fetches_like_a_cursor() -> None:
    session = FakeSession()
    connection = SparkConnection(session)  # type: ignore[arg-type]
    cursor = connection.execute("SELECT {x} FROM t")
    assert cursor.fetchone() == (1, "a")
    assert cursor.fetchall() == [(2, "b")]
    assert cursor.fetchone() is None
    connection.execute("SELECT ? FROM t", (7,))
    # No keyword arguments ever: pyspark would format the SQL text with them.
    assert session.calls == [("SELECT {x} FROM t", None, {}), ("SELECT ? FROM t", [7], {})]


# --- the quality gate ----------------------------------------------------------------------


def spark_config(tmp_path: Path, **spark: Any) -> DatabaseConfig:
    return DatabaseConfig.model_validate(
        {"engine": "spark", "schema": "member_cdm", "spark": {"tables": str(tmp_path), **spark}}
    )


class NoConnection:
    def execute(self, *args: Any) -> Any:
        raise AssertionError("the refusal needs no query of the CDM")


def test_a_spark_member_keeps_its_verdicts_beside_its_tables_unless_told(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    path = node_config(
        tmp_path, {"engine": "spark", "spark": {"tables": "lake", "gate_db": "gate.duckdb"}}
    )
    spark = load_node_config(path).database.spark
    assert spark is not None
    assert spark.gate_path == tmp_path / "gate.duckdb"
    assert spark_config(tmp_path).spark.gate_path == tmp_path / "accord_quality.duckdb"  # type: ignore[union-attr]


def test_a_spark_member_without_a_verdict_is_refused_without_starting_spark(
    tmp_path: Path,
) -> None:
    reason = MemberDatabase(spark_config(tmp_path)).serving_refusal(NoConnection())
    assert reason is not None
    assert "has not passed the quality gate yet" in reason
    assert not (tmp_path / "accord_quality.duckdb").exists()  # the node only reads it
    hive = DatabaseConfig.model_validate(
        {"engine": "spark", "spark": {"conf": {"spark.sql.catalogImplementation": "hive"}}}
    )
    refused = MemberDatabase(hive).serving_refusal(NoConnection())
    assert refused is not None
    assert "verdicts cannot be read" in refused


def test_an_accepted_spark_verdict_without_the_files_fingerprint_is_not_served(
    tmp_path: Path,
) -> None:
    with duckdb.connect(str(tmp_path / "accord_quality.duckdb")) as books:
        ensure_tables(books, "duckdb")
        books.execute(
            "INSERT INTO accord_quality_submissions VALUES (1, 'x', TIMESTAMP '2025-01-01', "
            "'check', 'test', 'accepted', true, 0, NULL, '{}')"
        )
    reason = MemberDatabase(spark_config(tmp_path)).serving_refusal(NoConnection())
    assert reason is not None
    assert "changed after its last quality check" in reason


@pytest.fixture
def state() -> Iterator[sqlite3.Connection]:
    with sqlite3.connect(":memory:") as db:
        yield db


def test_a_spark_node_without_verdicts_reports_none_without_spark(
    state: sqlite3.Connection, tmp_path: Path
) -> None:
    sync = QualitySync(state, audit=None)  # type: ignore[arg-type]
    assert sync.sync(MemberDatabase(spark_config(tmp_path))) is None


def test_the_quality_commands_read_a_spark_members_verdicts_without_spark(
    tmp_path: Path,
) -> None:
    path = node_config(tmp_path, {"engine": "spark", "spark": {"tables": "."}})
    with member_database(None, path, None, cdm=False, write=False) as member:
        assert member.connection is None
        assert stored_report(*member.verdicts) is None
    with pytest.raises(DataError, match="has no record of any submission"):
        quality_report(db=None, node=path, schema=None, report=None, html=None, submission=None)
    assert not (tmp_path / "accord_quality.duckdb").exists()
