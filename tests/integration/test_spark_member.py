"""A member whose CDM is parquet in a data lake is read in place by its node through Spark.

The member's tables are written with pyspark, one folder per table, as a Spark pipeline
would leave them. The node registers the folders, counts on them, and sees files the
pipeline rewrites. It serves analyses from them only once the quality gate accepted the
very files it reads: the steward's ``accord quality run --node`` judges them and keeps
the verdict, with the files' fingerprint, in the member's DuckDB verdicts file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from accord.cdm import load_spec
from accord.cli import app
from accord.node.answers import Refusal
from accord.node.config import DatabaseConfig, DisclosureConfig, SparkConfig, load_node_config
from accord.node.executor import MemberDatabase, execute
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from accord.synth import ConsortiumManifest, generate_consortium
from cdm_testing import copy_to_parquet

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


# Spark as the tests' own session runs it: small data, one thread, nothing re-planned.
QUICK_SPARK = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


@pytest.fixture
def default_database(spark_session: Any) -> Iterator[None]:
    """Spark's default database, left without the tables a test registered in it (their
    files stay: the tables are the member's, registered in place)."""
    yield
    for table in load_spec().tables:
        spark_session.sql(f"DROP TABLE IF EXISTS default.`{table}`")


def node_json(folder: Path, lake: Path) -> Path:
    """The member's node config: its CDM is the parquet folder ``lake``, registered in
    Spark's default database (an analysis names the concept table unqualified on Spark,
    as it does in ``accord.query.run.unknown_concepts``)."""
    path = folder / "node.json"
    spark = {"tables": str(lake), "master": "local[1]", "conf": QUICK_SPARK}
    database = {"engine": "spark", "spark": spark}
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


def count(database: MemberDatabase, manifest: ConsortiumManifest) -> dict[str, Any]:
    return execute(trial_recruitment(manifest.as_of).to_json(), database, DisclosureConfig())


@pytest.mark.usefixtures("default_database")
def test_a_spark_member_is_served_only_with_the_gates_verdict_on_its_files(
    spark_session: Any, member: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    source, manifest = member
    lake = tmp_path / "lake"
    copy_to_parquet(source, lake)
    config = node_json(tmp_path, lake)
    database = MemberDatabase(load_node_config(config).database)
    try:
        with pytest.raises(Refusal, match="has not passed the quality gate yet"):
            count(database, manifest)
        # The steward judges the files, in a process (and a Spark) of its own.
        judged = subprocess.run(
            [sys.executable, "-m", "accord", "quality", "run", "--node", str(config)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "200"},
            check=False,
        )
        assert judged.returncode == 0, judged.stderr
        assert "decision: accepted" in judged.stdout
        assert (lake / "accord_quality.duckdb").is_file()
        served = count(database, manifest)
        released = served["disclosed"]
        assert not released["suppressed"]
        # Released rounded to the nearest 5, as the member's disclosure profile says.
        assert abs(released["value"] - manifest.members[0].trial_recruitment) <= 2
        # The pipeline writes the person table again: the files are not the judged ones.
        copy_to_parquet(source, lake, tables=("person",))
        with pytest.raises(Refusal, match="changed after its last quality check"):
            count(database, manifest)
        # Judged again (here in the tests' own Spark session), it is served again.
        again = CliRunner().invoke(app, ["quality", "run", "--node", str(config)])
        assert again.exit_code == 0, again.output
        assert count(database, manifest) == served
        shown = CliRunner().invoke(app, ["quality", "report", "--node", str(config)])
        assert shown.exit_code == 0, shown.output
        assert "decision: accepted" in shown.output
    finally:
        database.close()


@pytest.mark.usefixtures("default_database")
def test_a_spark_member_with_fatal_defects_is_quarantined_and_refused(
    spark_session: Any, tmp_path: Path
) -> None:
    manifest = generate_consortium(
        tmp_path / "member", members=1, persons_per_member=300, seed=8, defects=0.05
    )
    lake = tmp_path / "lake"
    copy_to_parquet(tmp_path / "member" / manifest.members[0].db_file, lake)
    config = node_json(tmp_path, lake)
    judged = CliRunner().invoke(app, ["quality", "run", "--node", str(config), "--examples", "0"])
    assert judged.exit_code == 0, judged.output
    assert "decision: quarantined" in judged.output
    database = MemberDatabase(load_node_config(config).database)
    try:
        with pytest.raises(Refusal, match="quarantined by its quality gate"):
            count(database, manifest)
    finally:
        database.close()
