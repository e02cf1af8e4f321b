"""Attaching an OMOP CDM export: a synthetic member round-trips through its CSV files."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from accord.cdm import VOCABULARY_TABLES, load_spec, skipped_foreign_keys
from accord.cli.ingest import register
from accord.errors import DataError, ExitCode
from accord.ingest import CdmTarget, LoadReport, ingest_omop_csv
from accord.ingest.omop import OMOP_MAPPING_VERSION, load_order
from accord.synth import generate_consortium

PERSONS = 200


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The insurer of a small synthetic consortium: clinical, claims and cost tables."""
    out = tmp_path_factory.mktemp("consortium")
    manifest = generate_consortium(out, members=3, persons_per_member=PERSONS, seed=11)
    (insurer,) = [m for m in manifest.members if m.kind == "insurer"]
    return out / insurer.db_file


def export_csv(
    database: Path,
    folder: Path,
    *,
    upper: bool = True,
    delimiter: str = ",",
    datetimes: bool = True,
    vocabulary: bool = True,
    where: dict[str, str] | None = None,
) -> Path:
    """Write every CDM table of ``database`` as OHDSI tools would, one file per table."""
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(database), read_only=True) as con:
        for table in load_spec().tables.values():
            if table.name in VOCABULARY_TABLES and not vocabulary:
                continue
            columns = [f for f in table.field_names if datetimes or not f.endswith("_datetime")]
            name = table.name.upper() if upper else table.name
            condition = (where or {}).get(table.name, "TRUE")
            con.execute(
                f"COPY (SELECT {', '.join(columns)} FROM {table.name} WHERE {condition}) "
                f"TO '{folder / name}.csv' (HEADER, DELIMITER '{delimiter}')"
            )
    return folder


def checksums(database: Path | duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    """Rows and an order-independent digest of every CDM table."""
    con = duckdb.connect(str(database), read_only=True) if isinstance(database, Path) else database
    return {
        table: con.execute(
            "SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), '|' "
            f"ORDER BY CAST(t AS VARCHAR)), '')) FROM {table} AS t"
        ).fetchone()
        for table in load_spec().tables
    }


def ingest(
    folder: Path, database: Path, rejects: Path | None = None, *, gate: bool = True
) -> LoadReport:
    """Load ``folder``; ``gate=False`` for hand-made fragments the gate would quarantine."""
    report = LoadReport(kind="omop", source=str(folder), rejects_path=rejects)
    with CdmTarget.open(database, gate=gate) as target:
        ingest_omop_csv(folder, target, report)
    return report


def read_rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    ("upper", "delimiter", "datetimes"),
    [(True, ",", True), (False, "\t", False), (False, ",", True), (True, "\t", False)],
)
def test_an_export_round_trips_exactly(
    member: Path, tmp_path: Path, upper: bool, delimiter: str, datetimes: bool
) -> None:
    folder = export_csv(
        member, tmp_path / "export", upper=upper, delimiter=delimiter, datetimes=datetimes
    )
    report = ingest(folder, tmp_path / "copy.duckdb")
    original = checksums(member)
    assert checksums(tmp_path / "copy.duckdb") == original
    assert report.to_json()["rows_total"] == sum(n for n, _ in original.values())
    assert original["cost"][0] > 0
    assert original["person"][0] == PERSONS
    assert report.reject_count == 0
    assert report.mapping_version == OMOP_MAPPING_VERSION
    assert report.vocabulary_version == "Accord starter subset 2025.1"


def test_reloading_the_same_folder_adds_nothing(member: Path, tmp_path: Path) -> None:
    folder = export_csv(member, tmp_path / "export")
    database = tmp_path / "copy.duckdb"
    first = ingest(folder, database)
    again = ingest(folder, database)
    assert again.rows_total == 0
    clinical = {t: n for t, n in first.rows.items() if t not in VOCABULARY_TABLES and n}
    assert dict(again.skipped) == clinical
    assert any("vocabulary files skipped" in note for note in again.notes)
    assert checksums(database) == checksums(member)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT status FROM accord_loads").fetchall() == [("committed",)] * 2
        assert con.execute(
            "SELECT source_key, source_file, locator FROM accord_provenance "
            "WHERE cdm_table = 'person' AND row_id = 1"
        ).fetchone() == ("omop:person:1", "PERSON.csv", "line 2")


def test_a_later_export_adds_only_its_new_rows(member: Path, tmp_path: Path) -> None:
    # The early export is whole in itself (its first 100 people with all their rows),
    # so the quality gate accepts it; the later one brings everything.
    per_person = {
        t.name: "person_id <= 100"
        for t in load_spec().tables.values()
        if "person_id" in t.field_names
    }
    early = ingest(
        export_csv(member, tmp_path / "early", where=per_person), tmp_path / "copy.duckdb"
    )
    later = ingest(export_csv(member, tmp_path / "later"), tmp_path / "copy.duckdb")
    assert early.quality is not None
    assert later.quality is not None
    assert early.quality["decision"] != "quarantined"
    assert later.quality["decision"] != "quarantined"
    with duckdb.connect(str(member), read_only=True) as con:
        for table in per_person:
            (total,) = con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
            assert early.rows.get(table, 0) + later.rows.get(table, 0) == total, table
    assert later.rows["person"] > 0
    assert all(later.rows[t] == 0 for t in later.rows if t not in per_person)
    assert checksums(tmp_path / "copy.duckdb") == checksums(member)


def test_a_folder_without_vocabulary_loads_the_clinical_tables(
    member: Path, tmp_path: Path
) -> None:
    folder = export_csv(member, tmp_path / "export", vocabulary=False)
    report = ingest(folder, tmp_path / "copy.duckdb")
    assert report.vocabulary_version is None
    assert report.rows["person"] == PERSONS
    assert not any(t in report.rows for t in VOCABULARY_TABLES)


def test_load_order_puts_referenced_tables_first() -> None:
    order = load_order()
    assert sorted(order) == sorted(load_spec().tables)
    skipped = {(s.table, s.field) for s in skipped_foreign_keys()}
    for table in load_spec().tables.values():
        for source, key in table.references():
            if (table.name, source.name) not in skipped:
                assert order.index(key.table) < order.index(table.name), (table.name, source.name)


PERSON_CSV = (
    "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,"
    "person_source_value\n"
    "1,8507,1970,0,0,A\n"
    "2,8532,19x0,0,0,B\n"
    '3,8507,1980,0,0,"two\nlines"\n'
    "x4,8507,1980,0,0,D\n"
    "5,8507,1990,0,0\n"
    "1,8532,1990,0,0,F\n"
    "6,,1990,0,0,G\n"
    "7,8507,1991,0,0,H\n"
    "\n"
    "8,8507,3000000000,0,0,I\n"
    "9,8507,1975,0,0,NA\n"
)
OBSERVATION_PERIOD_CSV = (
    "OBSERVATION_PERIOD_ID,PERSON_ID,OBSERVATION_PERIOD_START_DATE,"
    "OBSERVATION_PERIOD_END_DATE,PERIOD_TYPE_CONCEPT_ID\n"
    "1,1,2010-01-01,2020-12-31,32817\n"
    "2,3,20100101,2020-12-31 00:00:00,32817\n"
    "3,7,2010-01-01,2021-02-30,32817\n"
    "4,9,2010-01-01,31/12/2020,32817\n"
)
VISIT_TSV = (
    "visit_occurrence_id\tperson_id\tvisit_concept_id\tvisit_start_date\tvisit_start_datetime"
    "\tvisit_end_date\tvisit_type_concept_id\tvisit_source_value\n"
    '1\t1\t9201\t2020-03-01\t2020-03-01 08:30:00\t2020-03-02\t32817\t"quoted"\n'
    "2\t1\t9202\t2020-04-01\t2020-04-01T09:15:30.1234567\t2020-04-01\t32817\t\n"
    "3\t3\t9202\t2020-05-01\t2020-05-01 25:00:00\t2020-05-01\t32817\tlate\n"
    "4\t3\t9202\t2020-06-01\t\t2020-06-01\t32817\tx\n"
)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    folder = tmp_path / "messy"
    folder.mkdir()
    (folder / "PERSON.csv").write_text(PERSON_CSV, encoding="utf-8")
    (folder / "observation_period.csv").write_text(OBSERVATION_PERIOD_CSV, encoding="utf-8")
    (folder / "VISIT_OCCURRENCE.tsv").write_text(VISIT_TSV, encoding="utf-8")
    (folder / "CONDITION_OCCURRENCE.csv").write_text(
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_type_concept_id,favourite_colour\n1,1,201826,2020-01-01,32817,blue\n"
    )
    (folder / "DEATH.csv").write_text("person_id,death_type_concept_id\n1,32817\n")
    (folder / "NOTE.csv").write_text("note_id\n1\n")
    (folder / "README.md").write_text("exported by hand\n")
    (folder / "COST.csv").write_text("")
    return folder


@pytest.fixture
def messy_load(messy: Path, tmp_path: Path) -> tuple[LoadReport, list[dict[str, Any]]]:
    rejects = tmp_path / "rejects.ndjson"
    report = ingest(messy, tmp_path / "messy.duckdb", rejects, gate=False)
    return report, read_rejects(rejects)


def test_bad_rows_are_rejected_with_their_line_and_reason(
    messy_load: tuple[LoadReport, list[dict[str, Any]]],
) -> None:
    _, rejects = messy_load
    person = [
        (r["locator"], r["reason"], r["value"]) for r in rejects if r["source"] == "PERSON.csv"
    ]
    assert sorted(person, key=lambda r: int(r[0].split()[1])) == [
        ("line 3", "year_of_birth is not a 32-bit integer", "19x0"),
        ("line 6", "person_id is not a 32-bit integer", "x4"),
        ("line 7", "has 5 fields where the header has 6", "5,8507,1990,0,0"),
        ("line 8", "person_id repeats an earlier line", "1"),
        ("line 9", "gender_concept_id is required", None),
        ("line 11", "empty row", None),
        ("line 12", "year_of_birth is not a 32-bit integer", "3000000000"),
    ]


def test_good_rows_around_bad_ones_are_loaded(
    messy_load: tuple[LoadReport, list[dict[str, Any]]], tmp_path: Path
) -> None:
    report, _ = messy_load
    with duckdb.connect(str(tmp_path / "messy.duckdb"), read_only=True) as con:
        people = con.execute(
            "SELECT person_id, person_source_value FROM person ORDER BY 1"
        ).fetchall()
        periods = con.execute(
            "SELECT observation_period_id, observation_period_start_date, "
            "observation_period_end_date FROM observation_period ORDER BY 1"
        ).fetchall()
        visits = con.execute(
            "SELECT visit_occurrence_id, visit_start_datetime, visit_source_value "
            "FROM visit_occurrence ORDER BY 1"
        ).fetchall()
        locators = con.execute(
            "SELECT row_id, locator FROM accord_provenance WHERE cdm_table = 'person' ORDER BY 1"
        ).fetchall()
    assert people == [(1, "A"), (3, "two\nlines"), (7, "H"), (9, None)]
    assert locators == [(1, "line 2"), (3, "line 4"), (7, "line 10"), (9, "line 13")]
    assert periods == [
        (1, date(2010, 1, 1), date(2020, 12, 31)),
        (2, date(2010, 1, 1), date(2020, 12, 31)),
    ]
    # Tab-separated files are read without quoting, as Athena writes them.
    assert visits == [
        (1, datetime(2020, 3, 1, 8, 30), '"quoted"'),
        (2, datetime(2020, 4, 1, 9, 15, 30, 123456), None),
        (4, None, "x"),
    ]
    assert report.rows["person"] == 4


def test_dates_that_do_not_exist_are_rejected(
    messy_load: tuple[LoadReport, list[dict[str, Any]]],
) -> None:
    _, rejects = messy_load
    found = {(r["source"], r["locator"], r["reason"], r["value"]) for r in rejects}
    assert (
        "observation_period.csv",
        "line 4",
        "observation_period_end_date is not a date (YYYY-MM-DD or YYYYMMDD)",
        "2021-02-30",
    ) in found
    assert (
        "observation_period.csv",
        "line 5",
        "observation_period_end_date is not a date (YYYY-MM-DD or YYYYMMDD)",
        "31/12/2020",
    ) in found
    assert (
        "VISIT_OCCURRENCE.tsv",
        "line 4",
        "visit_start_datetime is not a date-time (YYYY-MM-DD HH:MM:SS)",
        "2020-05-01 25:00:00",
    ) in found


def test_files_that_cannot_be_loaded_are_reported_not_ignored(
    messy_load: tuple[LoadReport, list[dict[str, Any]]],
) -> None:
    report, rejects = messy_load
    whole = {
        (r["source"], r["locator"], r["reason"]) for r in rejects if r["source"] != "PERSON.csv"
    }
    assert (
        "CONDITION_OCCURRENCE.csv",
        "line 1",
        "columns favourite_colour are not in OMOP CDM v5.4 table condition_occurrence; "
        "file not loaded",
    ) in whole
    assert (
        "DEATH.csv",
        "line 1",
        "required columns death_date are missing; file not loaded",
    ) in whole
    assert ("NOTE.csv", "file", "not an OMOP CDM v5.4 table Accord loads") in whole
    assert ("README.md", "file", "not a CSV file; not loaded") in whole
    assert "condition_occurrence" not in report.rows
    assert any("COST.csv is empty" in note for note in report.notes)
    assert report.to_json()["rejects"]["count"] == len(rejects)


def spoil(path: Path) -> None:
    """Append a well-formed row whose source value is Latin-1, not UTF-8."""
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    row = ["99999", "8507", "1970"] + ["0"] * (len(header) - 4) + ["Zoë"]
    path.write_bytes(path.read_bytes() + ",".join(row).encode("latin-1") + b"\n")


def test_a_file_that_is_not_utf8_stops_the_load_and_keeps_nothing(
    member: Path, tmp_path: Path
) -> None:
    folder = export_csv(member, tmp_path / "export", vocabulary=False)
    spoil(folder / "PERSON.csv")
    database = tmp_path / "new.duckdb"
    with pytest.raises(DataError, match=r"cannot read .*PERSON\.csv: .*UTF8") as caught:
        ingest(folder, database)
    assert "UTF-8" in str(caught.value.hint)
    assert not database.exists()

    existing = tmp_path / "existing.duckdb"
    ingest(export_csv(member, tmp_path / "good", vocabulary=True), existing)
    before = checksums(existing)
    with pytest.raises(DataError, match=r"PERSON\.csv"):
        ingest(folder, existing)
    assert checksums(existing) == before


def test_a_folder_that_is_not_there_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        ingest(tmp_path / "missing", tmp_path / "copy.duckdb")
    assert not (tmp_path / "copy.duckdb").exists()


def test_two_files_for_one_table_are_a_data_error(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "PERSON.csv").write_text("person_id\n")
    (folder / "person.tsv").write_text("person_id\n")
    with pytest.raises(DataError, match="two files for table person"):
        ingest(folder, tmp_path / "copy.duckdb")


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_the_command_loads_prints_a_summary_and_writes_the_report(
    messy: Path, tmp_path: Path
) -> None:
    report_file = tmp_path / "report.json"
    rejects_file = tmp_path / "rejects.ndjson"
    result = CliRunner().invoke(
        cli(),
        [
            "ingest",
            "omop",
            str(messy),
            "--db",
            str(tmp_path / "cli.duckdb"),
            "--report",
            str(report_file),
            "--rejects",
            str(rejects_file),
        ],
    )
    # The messy export's people have no vocabulary to resolve their concepts against:
    # the gate quarantines the load, and the command says so with exit code 21.
    assert result.exit_code == ExitCode.QUARANTINED, result.output
    assert "person" in result.output
    assert "rejected" in result.output
    assert "year_of_birth is not a 32-bit integer" in result.output
    assert "quality gate: quarantined" in result.output
    saved = json.loads(report_file.read_text())
    assert saved["rows"]["person"] == 4
    assert saved["quality"]["decision"] == "quarantined"
    assert any("no row of this load was kept" in note for note in saved["notes"])
    assert saved["rejects"]["file"] == str(rejects_file)
    assert len(read_rejects(rejects_file)) == saved["rejects"]["count"]


def test_the_command_stops_with_a_data_error_and_leaves_no_database(
    member: Path, tmp_path: Path
) -> None:
    folder = export_csv(member, tmp_path / "export", vocabulary=False)
    spoil(folder / "PERSON.csv")
    database = tmp_path / "cli.duckdb"
    rejects = tmp_path / "rejects.ndjson"
    result = CliRunner().invoke(
        cli(), ["ingest", "omop", str(folder), "--db", str(database), "--rejects", str(rejects)]
    )
    assert isinstance(result.exception, DataError)
    assert result.exception.exit_code == 20
    assert not database.exists()


def test_the_command_refuses_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli(),
        [
            "ingest",
            "omop",
            str(tmp_path / "nope"),
            "--db",
            str(tmp_path / "x.duckdb"),
            "--rejects",
            str(tmp_path / "rejects.ndjson"),
        ],
    )
    assert result.exit_code == 2
    assert not (tmp_path / "x.duckdb").exists()


def test_a_windows_export_with_bom_crlf_and_quoted_upper_case_header(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    text = (
        '"PERSON_ID","GENDER_CONCEPT_ID","YEAR_OF_BIRTH","RACE_CONCEPT_ID",'
        '"ETHNICITY_CONCEPT_ID","PERSON_SOURCE_VALUE"\r\n'
        '1,8507,1970,0,0,"Zoë"\r\n'
        "2,8532,19x0,0,0,B\r\n"
        "3,8532,1985,0,0,C\r\n"
    )
    (folder / "PERSON.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rejects = tmp_path / "rejects.ndjson"
    database = tmp_path / "copy.duckdb"
    report = ingest(folder, database, rejects, gate=False)
    with duckdb.connect(str(database), read_only=True) as con:
        got = con.execute("SELECT person_id, person_source_value FROM person ORDER BY 1")
        assert got.fetchall() == [(1, "Zoë"), (3, "C")]
    assert [(r["locator"], r["value"]) for r in read_rejects(rejects)] == [("line 3", "19x0")]
    assert report.rows["person"] == 2


def test_progress_is_reported_per_file_up_to_its_size(member: Path, tmp_path: Path) -> None:
    folder = export_csv(member, tmp_path / "export", vocabulary=False)
    calls: list[tuple[str, int, int]] = []
    with CdmTarget.open(tmp_path / "copy.duckdb") as target:
        report = LoadReport(kind="omop", source=str(folder))
        ingest_omop_csv(folder, target, report, progress=lambda *call: calls.append(call))
    size = (folder / "PERSON.csv").stat().st_size
    person = [(done, total) for name, done, total in calls if name == "PERSON.csv"]
    assert person[-1] == (size, size)
    assert all(0 < done <= total == size for done, total in person)
