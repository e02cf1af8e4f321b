"""A member whose CDM is parquet in a data lake is read in place by its node through Spark.

The member's tables are written with pyspark, one folder per table, as a Spark pipeline
would leave them. The node registers the folders, counts on them, and sees files the
pipeline rewrites. It serves no analysis from them, though: the quality gate does not run
on Spark, and no data is served without its verdict.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from accord.node.config import DatabaseConfig, DisclosureConfig, SparkConfig
from accord.node.executor import MemberDatabase, Refusal, execute
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from accord.synth import ConsortiumManifest, generate_consortium

# What the trial recruitment count reads.
TABLES = ("person", "condition_occurrence", "drug_exposure", "concept_ancestor")


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    root = tmp_path_factory.mktemp("member")
    manifest = generate_consortium(root, members=1, persons_per_member=300, seed=8)
    return root / manifest.members[0].db_file, manifest


def write_lake(spark: Any, source: Path, lake: Path, tables: tuple[str, ...] = TABLES) -> None:
    """Copy the member's ``tables`` into parquet folders under ``lake`` with pyspark."""
    with duckdb.connect(str(source), read_only=True) as connection:
        for table in tables:
            rows = connection.sql(f"SELECT * FROM {table}").to_arrow_table()
            spark.createDataFrame(rows).write.mode("overwrite").parquet(str(lake / table))


def even_persons(spark: Any, lake: Path) -> None:
    """The pipeline rewrites the person table, keeping those with an even id."""
    kept = spark.read.parquet(str(lake / "person")).where("person_id % 2 = 0").collect()
    rewritten = spark.createDataFrame(kept, spark.read.parquet(str(lake / "person")).schema)
    rewritten.write.mode("overwrite").parquet(str(lake / "person"))


def count_in_duckdb(source: Path, query: Any, *, even: bool = False) -> int:
    with duckdb.connect() as connection:
        connection.execute("ATTACH ? AS member (READ_ONLY)", [str(source)])
        for table in TABLES:
            where = " WHERE person_id % 2 = 0" if even and table == "person" else ""
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM member.{table}{where}")
        return run_count(connection, query, "duckdb")


def spark_member(lake: Path) -> MemberDatabase:
    schema = f"lake_{uuid.uuid4().hex[:12]}"
    config = DatabaseConfig(engine="spark", schema=schema, spark=SparkConfig(tables=str(lake)))
    return MemberDatabase(config)


def test_the_node_counts_on_parquet_in_place_and_sees_it_rewritten(
    spark_session: Any, member: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    source, manifest = member
    query = trial_recruitment(manifest.as_of)
    lake = tmp_path / "lake"
    write_lake(spark_session, source, lake)
    database = spark_member(lake)
    schema = database.config.schema_
    try:
        with database.connect() as connection:
            assert run_count(connection, query, "spark", schema=schema) == (
                manifest.members[0].trial_recruitment
            )
        # The member's pipeline rewrites the persons: the next task reads the new files.
        even_persons(spark_session, lake)
        with database.connect() as connection:
            halved = run_count(connection, query, "spark", schema=schema)
        assert halved == count_in_duckdb(source, query, even=True)
        assert 0 < halved < manifest.members[0].trial_recruitment
    finally:
        database.close()
    # The session was started by the tests, not the node: closing the node leaves it.
    assert spark_session.sql("SELECT 1").collect()[0][0] == 1


def test_the_node_refuses_to_serve_spark_data_without_the_quality_gate(
    spark_session: Any, member: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    source, manifest = member
    lake = tmp_path / "lake"
    write_lake(spark_session, source, lake, tables=("person",))
    database = spark_member(lake)
    try:
        with pytest.raises(Refusal, match="quality gate does not run on spark"):
            execute(trial_recruitment(manifest.as_of).to_json(), database, DisclosureConfig())
    finally:
        database.close()
