"""Each reason an OMOP CSV load rejects a line or a file: the load goes on without it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from accord.ingest import CdmTarget, LoadReport, ingest_omop_csv

PERSON = (
    "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,"
    "person_source_value\n"
    "1,8507,1970,0,0,A\n"
)
MEASUREMENT = (
    "measurement_id,person_id,measurement_concept_id,measurement_date,"
    "measurement_type_concept_id,value_as_number\n"
    "1,1,3004249,2020-01-01,32817,120.5\n"
)


def load(folder: Path, files: dict[str, str], database: Path) -> LoadReport:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    report = LoadReport(kind="omop", source=str(folder))
    with CdmTarget.open(database, gate=False) as target:
        ingest_omop_csv(folder, target, report)
    report.finish()
    return report


def only_reject(report: LoadReport) -> tuple[str, str, str, str | None]:
    assert report.reject_count == 1
    assert report.to_json()["rejects"]["count"] == 1
    (found,) = report.examples
    assert report.to_json()["rejects"]["by_reason"] == {found.reason: 1}
    return found.source, found.locator, found.reason, found.value


def count(database: Path, table: str) -> int:
    with duckdb.connect(str(database), read_only=True) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_a_header_that_repeats_a_column_rejects_the_file(tmp_path: Path) -> None:
    header, row = MEASUREMENT.splitlines()
    files = {
        "PERSON.csv": PERSON,
        "MEASUREMENT.csv": f"{header},PERSON_ID\n{row},1\n",
    }
    report = load(tmp_path / "export", files, tmp_path / "cdm.duckdb")
    assert only_reject(report) == (
        "MEASUREMENT.csv",
        "line 1",
        "header repeats columns person_id; file not loaded",
        None,
    )
    assert report.rows == {"person": 1}
    assert count(tmp_path / "cdm.duckdb", "measurement") == 0


def test_text_longer_than_its_cdm_length_rejects_the_line(tmp_path: Path) -> None:
    long = "x" * 51
    files = {"PERSON.csv": PERSON + f"2,8532,1980,0,0,{long}\n3,8532,1981,0,0,C\n"}
    report = load(tmp_path / "export", files, tmp_path / "cdm.duckdb")
    assert only_reject(report) == (
        "PERSON.csv",
        "line 3",
        "person_source_value is longer than 50 characters",
        long,
    )
    assert report.rows == {"person": 2}
    assert count(tmp_path / "cdm.duckdb", "person") == 2


def test_text_in_a_float_column_rejects_the_line(tmp_path: Path) -> None:
    files = {
        "PERSON.csv": PERSON,
        "MEASUREMENT.csv": MEASUREMENT + "2,1,3004249,2020-01-02,32817,high\n",
    }
    report = load(tmp_path / "export", files, tmp_path / "cdm.duckdb")
    assert only_reject(report) == (
        "MEASUREMENT.csv",
        "line 3",
        "value_as_number is not a number",
        "high",
    )
    assert report.rows == {"person": 1, "measurement": 1}
    assert count(tmp_path / "cdm.duckdb", "measurement") == 1
