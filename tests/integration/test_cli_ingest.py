"""`accord ingest` as a member runs it: a FHIR export into DuckDB, CSV files into PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from accord.ingest.fhir.synthetic import write_bulk_export
from accord.vocab import STARTER_VOCABULARY_VERSION


def accord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", *args], capture_output=True, text=True, timeout=240
    )


def test_ingest_fhir_loads_an_export_and_records_the_vocabulary(tmp_path: Path) -> None:
    export = tmp_path / "export"
    written = write_bulk_export(export, persons=20, seed=3)
    db = tmp_path / "member.duckdb"
    report_file = tmp_path / "report.json"
    done = accord(
        "ingest",
        "fhir",
        str(export),
        "--db",
        str(db),
        "--report",
        str(report_file),
        "--rejects",
        str(tmp_path / "rejects.ndjson"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["vocabulary_version"] == STARTER_VOCABULARY_VERSION
    assert report["rows"]["person"] == written["Patient"] == 20
    assert report["rows"]["visit_occurrence"] > 0
    assert report["rows_total"] == sum(report["rows"].values())
    with duckdb.connect(str(db), read_only=True) as con:
        loads = con.execute(
            "SELECT kind, status, vocabulary_version, mapping_version FROM accord_loads"
        ).fetchall()
        people = con.execute("SELECT count(*) FROM person").fetchone()
    assert loads == [("fhir", "committed", STARTER_VOCABULARY_VERSION, report["mapping_version"])]
    assert people == (20,)


def test_ingest_omop_into_a_postgresql_schema(
    tmp_path: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    import psycopg

    export = tmp_path / "export"
    export.mkdir()
    (export / "PERSON.csv").write_text(
        # No vocabulary is loaded: concept 0 ("no matching concept") keeps the gate happy.
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
        "1,0,1970,0,0\n"
        "2,0,19x0,0,0\n"
        "3,0,1985,0,0\n",
        encoding="utf-8",
    )
    report_file = tmp_path / "report.json"
    rejects = tmp_path / "rejects.ndjson"
    done = accord(
        "ingest",
        "omop",
        str(export),
        "--db",
        postgres_dsn,
        "--schema",
        postgres_schema,
        "--report",
        str(report_file),
        "--rejects",
        str(rejects),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["rows"] == {"person": 2}
    assert report["rejects"]["by_reason"] == {"year_of_birth is not a 32-bit integer": 1}
    assert [json.loads(line)["locator"] for line in rejects.read_text().splitlines()] == ["line 3"]
    with psycopg.connect(postgres_dsn) as connection:
        people = connection.execute(
            f'SELECT person_id FROM "{postgres_schema}".person ORDER BY 1'
        ).fetchall()
        loads = connection.execute(
            f'SELECT kind, status FROM "{postgres_schema}".accord_loads'
        ).fetchall()
    assert people == [(1,), (3,)]
    assert loads == [("omop", "committed")]
    assert report["quality"]["decision"] == "accepted_with_warnings"  # no observation periods
    assert "quality gate: accepted_with_warnings" in done.stdout

    # Rows of people the CDM does not hold: quarantined, rolled back, exit 21.
    (export / "PERSON.csv").unlink()
    (export / "OBSERVATION_PERIOD.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,"
        "observation_period_end_date,period_type_concept_id\n"
        "1,77,2020-01-01,2020-12-31,0\n",
        encoding="utf-8",
    )
    refused = accord(
        "ingest", "omop", str(export), "--db", postgres_dsn, "--schema", postgres_schema
    )
    assert refused.returncode == 21, refused.stderr
    assert "quarantined: nothing from this load was kept" in refused.stdout
    with psycopg.connect(postgres_dsn) as connection:
        periods = connection.execute(
            f'SELECT count(*) FROM "{postgres_schema}".observation_period'
        ).fetchone()
        loads = connection.execute(
            f'SELECT status FROM "{postgres_schema}".accord_loads ORDER BY started_at'
        ).fetchall()
    assert periods == (0,)
    assert loads == [("committed",), ("quarantined",)]
