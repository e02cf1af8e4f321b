"""The quality gate gives a Spark member's parquet tables the verdict DuckDB gives the
same data: every check's status and count of violating rows, planted defects included."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb

from accord.node import spark
from accord.node.config import DatabaseConfig, SparkConfig
from accord.quality import gate
from accord.synth import generate_consortium
from cdm_testing import copy_to_parquet


def outcomes(verdict: gate.Verdict) -> dict[str, tuple[Any, ...]]:
    return {
        r["check_id"]: (r["status"], r["violating"], r["total"]) for r in verdict.report["results"]
    }


def test_spark_judges_a_member_as_duckdb_does_and_finds_the_planted_defects(
    spark_session: Any, tmp_path: Path
) -> None:
    manifest = generate_consortium(
        tmp_path / "member", members=1, persons_per_member=300, seed=5, defects=0.05
    )
    (member,) = manifest.members
    source = tmp_path / "member" / member.db_file
    copy_to_parquet(source, tmp_path / "lake")
    with duckdb.connect(str(source), read_only=True) as connection:
        expected = gate.judge(
            connection, "duckdb", kind="check", source="test", today=manifest.as_of
        )
    schema = f"judged_{uuid.uuid4().hex[:12]}"
    config = DatabaseConfig(
        engine="spark", schema=schema, spark=SparkConfig(tables=str(tmp_path / "lake"))
    )
    with duckdb.connect() as books:
        found = gate.judge(
            spark.connect(config),
            "spark",
            kind="check",
            source="test",
            schema=schema,
            today=manifest.as_of,
            books=books,
        )
    assert found.decision == expected.decision == "quarantined"
    assert outcomes(found) == outcomes(expected)
    counted = {r["check_id"]: r["violating"] for r in found.report["results"]}
    assert {c: counted[c] for c in member.planted_defects} == member.planted_defects
    assert len(found.report["submission"]["data_fingerprint"]) == 64
