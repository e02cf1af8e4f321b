"""Loading CSV files through a mapping file into a DuckDB CDM with the starter vocabulary."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from accord.cli.ingest import register
from accord.errors import ConfigError, DataError
from accord.ingest import CdmTarget, LoadReport
from accord.ingest.csv import ingest_csv
from accord.vocab import STARTER_VOCABULARY_VERSION, concepts, load_starter_vocabulary

MAPPING = """\
mapping_version: "test 1"
{gem}
files:
  - name: patients.csv
    table: person
    delimiter: ";"
    date_formats: ["%d/%m/%Y", "%Y-%m-%d"]
    key: [patient_no]
    patient: national_id
    columns:
      gender_concept_id: {{column: sex, values: {{1: 8507, 2: 8532}}, default: 0}}
      gender_source_value: sex
      year_of_birth: {{column: born, part: year}}
      month_of_birth: {{column: born, part: month}}
      day_of_birth: {{column: born, part: day}}
    constants:
      race_concept_id: 0
      ethnicity_concept_id: 0
  - name: diagnoses.csv
    date_formats: ["%d.%m.%Y"]
    key: [site, diagnosis_no]
    patient: national_id
    code:
      - {{column: icd9, vocabulary: ICD9CM}}
      - {{column: icd10, vocabulary: ICD10CM}}
    unmapped_table: condition_occurrence
    columns:
      start_date: seen_on
      days_supply: days
    constants:
      type_concept_id: 32817
"""
HEADER = "site,diagnosis_no,national_id,seen_on,icd9,icd10,days\n"
PATIENTS = """\
patient_no;national_id;sex;born
1;NID-1;1;16/05/1967
2;NID-2;2;1980-01-31
3;NID-3;9;01/01/1990
"""


@pytest.fixture
def target(tmp_path: Path) -> Iterator[CdmTarget]:
    cdm = CdmTarget.open(tmp_path / "member.duckdb", gate=False)
    load_starter_vocabulary(cdm.connection)
    yield cdm
    cdm.close()


def extract(
    folder: Path, diagnoses: str, *, patients: str = PATIENTS, gem: str | None = None
) -> Path:
    """Write a mapping file and its CSV files; returns the mapping file's path."""
    if gem is not None:
        (folder / "gem.txt").write_text(gem, encoding="ascii")
    gem_line = "gem: gem.txt" if gem is not None else ""
    (folder / "patients.csv").write_text(patients, encoding="utf-8")
    (folder / "diagnoses.csv").write_text(textwrap.dedent(diagnoses), encoding="utf-8")
    mapping = folder / "mapping.yaml"
    mapping.write_text(MAPPING.format(gem=gem_line), encoding="utf-8")
    return mapping


def run(mapping: Path, target: CdmTarget) -> LoadReport:
    report = LoadReport(kind="csv", source=mapping.name)
    ingest_csv(mapping, target, report)
    return report


def rows(target: CdmTarget, sql: str) -> list[tuple[Any, ...]]:
    return list(target.connection.execute(sql).fetchall())


def rejects(report: LoadReport) -> list[tuple[str, str, str]]:
    return [(r.source, r.locator, r.reason) for r in report.examples]


def test_value_maps_and_date_formats_fill_person(tmp_path: Path, target: CdmTarget) -> None:
    report = run(extract(tmp_path, HEADER), target)
    assert report.rows["person"] == 3
    assert rows(
        target,
        "SELECT person_source_value, gender_concept_id, gender_source_value, year_of_birth, "
        "month_of_birth, day_of_birth FROM person ORDER BY person_source_value",
    ) == [
        ("NID-1", concepts.MALE, "1", 1967, 5, 16),
        ("NID-2", concepts.FEMALE, "2", 1980, 1, 31),
        # 9 is not in the value map: the default applies.
        ("NID-3", 0, "9", 1990, 1, 1),
    ]


def test_codes_route_by_domain_and_persons_resolve(tmp_path: Path, target: CdmTarget) -> None:
    diagnoses = """\
    site,diagnosis_no,national_id,seen_on,icd9,icd10,days
    A,1,NID-1,03.02.2021,401.9,,
    A,2,NID-2,04.02.2021,,E11.9,
    """
    report = run(extract(tmp_path, diagnoses), target)
    assert report.reject_count == 0
    assert rows(
        target,
        "SELECT p.person_source_value, condition_concept_id, condition_source_value, "
        "condition_source_concept_id, condition_start_date::VARCHAR, condition_type_concept_id "
        "FROM condition_occurrence JOIN person p USING (person_id) ORDER BY 1",
    ) == [
        ("NID-1", concepts.HYPERTENSION, "401.9", 44821949, "2021-02-03", concepts.EHR),
        ("NID-2", 4230254, "E11.9", 45561952, "2021-02-04", concepts.EHR),
    ]
    keys = rows(target, "SELECT source_key, locator FROM accord_provenance ORDER BY 1")
    assert ("csv:diagnoses.csv:A:1", "line 2") in keys


def test_a_header_lacking_mapped_columns_rejects_the_file(
    tmp_path: Path, target: CdmTarget
) -> None:
    diagnoses = """\
    site,diagnosis_no,national_id,date,icd9,icd10,days
    A,1,NID-1,03.02.2021,401.9,,
    """
    report = run(extract(tmp_path, diagnoses), target)
    assert rejects(report) == [
        (
            "diagnoses.csv",
            "line 1",
            "header lacks columns seen_on that the mapping reads; file not loaded",
        )
    ]
    assert report.rows["person"] == 3
    assert "condition_occurrence" not in report.rows


def test_bad_values_reject_their_line_and_the_load_goes_on(
    tmp_path: Path, target: CdmTarget
) -> None:
    diagnoses = """\
    site,diagnosis_no,national_id,seen_on,icd9,icd10,days
    A,1,NID-1,31.02.2021,401.9,,
    A,2,NID-1,01.03.2021,401.9,,ten
    A,3,NID-1,01.03.2021,401.9,,30
    A,4,NID-9,01.03.2021,401.9,,
    A,5,NID-1,01.03.2021,,,
    A,3,NID-1,02.03.2021,401.9,,
    A,6,NID-1,02.03.2021,401.9
    ,7,NID-1,02.03.2021,401.9,,
    """
    report = run(extract(tmp_path, diagnoses), target)
    assert rejects(report) == [
        ("diagnoses.csv", "line 2", "seen_on is not a date in the form %d.%m.%Y"),
        ("diagnoses.csv", "line 3", "days is not an integer"),
        (
            "diagnoses.csv",
            "line 5",
            "no person has this patient's id (load the patients file first)",
        ),
        ("diagnoses.csv", "line 6", "no code in icd9, icd10"),
        ("diagnoses.csv", "line 7", "key repeats an earlier line"),
        ("diagnoses.csv", "line 9", "key column site is empty"),
        ("diagnoses.csv", "line 8", "has 5 fields where the header has 7"),
    ]
    # The rejected value goes to the rejects file only, never into the report.
    assert report.examples[0].value == "31.02.2021"
    # days fills drug_exposure.days_supply; condition_occurrence has no such column.
    loaded = rows(target, "SELECT locator FROM accord_provenance WHERE cdm_table LIKE 'cond%'")
    assert loaded == [("line 4",)]


def test_unmapped_codes_get_concept_0_and_are_reported(tmp_path: Path, target: CdmTarget) -> None:
    diagnoses = """\
    site,diagnosis_no,national_id,seen_on,icd9,icd10,days
    A,1,NID-1,01.03.2021,999.99,,
    A,2,NID-2,01.03.2021,999.99,,
    A,3,NID-2,01.03.2021,,Z99.9,
    """
    report = run(extract(tmp_path, diagnoses), target)
    assert report.unmapped_codes == {("ICD9CM", "999.99"): 2, ("ICD10CM", "Z99.9"): 1}
    assert rows(
        target,
        "SELECT condition_concept_id, condition_source_concept_id, condition_source_value "
        "FROM condition_occurrence ORDER BY condition_source_value",
    ) == [(0, 0, "999.99"), (0, 0, "999.99"), (0, 0, "Z99.9")]


GEM = """\
4019 I10 00000
4011 I10 10000
4932 J449 10111
4932 J45909 10112
"""


def test_icd9_without_maps_to_goes_through_the_gem(tmp_path: Path, target: CdmTarget) -> None:
    diagnoses = """\
    site,diagnosis_no,national_id,seen_on,icd9,icd10,days
    A,1,NID-1,01.03.2021,401.1,,
    A,2,NID-2,01.03.2021,493.2,,
    A,3,NID-2,01.03.2021,401.9,,
    """
    report = run(extract(tmp_path, diagnoses, gem=GEM), target)
    assert report.unmapped_codes == {}
    found = rows(
        target,
        "SELECT condition_source_value, condition_concept_id FROM condition_occurrence "
        "ORDER BY 1, 2",
    )
    # 493.2 is a combination code: chronic obstructive asthma is COPD and asthma.
    assert found == [
        ("401.1", concepts.HYPERTENSION),
        ("401.9", concepts.HYPERTENSION),
        ("493.2", concepts.COPD),
        ("493.2", concepts.ASTHMA),
    ]
    keys = rows(target, "SELECT source_key FROM accord_provenance WHERE source_key LIKE '%:A:2%'")
    assert sorted(key for (key,) in keys) == ["csv:diagnoses.csv:A:2", "csv:diagnoses.csv:A:2#2"]
    assert report.notes[0].startswith("2 ICD-9-CM codes (2 rows) had no 'Maps to'")
    assert "approximate flags: 2, no_map flags: 0, combination flags: 1" in report.notes[0]
    assert "GEM: ICD9CM 493.2 -> ICD10CM J44.9, J45.909 (approximate, combination), 1 rows" in (
        report.notes
    )


def test_loading_the_same_files_again_adds_nothing(tmp_path: Path, target: CdmTarget) -> None:
    diagnoses = """\
    site,diagnosis_no,national_id,seen_on,icd9,icd10,days
    A,1,NID-1,01.03.2021,401.9,,
    A,2,NID-2,01.03.2021,493.2,,
    """
    mapping = extract(tmp_path, diagnoses, gem=GEM)
    first = run(mapping, target)
    again = run(mapping, target)
    # 3 persons and 3 diagnoses, and an observation period for each of the 2 diagnosed.
    assert first.rows_total == 3 + 3 + 2
    assert again.rows_total == 0
    assert again.skipped == {"person": 3, "condition_occurrence": 3}
    assert rows(target, "SELECT count(*) FROM condition_occurrence") == [(3,)]


def test_later_files_find_persons_of_an_earlier_load(tmp_path: Path, target: CdmTarget) -> None:
    mapping = extract(tmp_path, HEADER)
    run(mapping, target)
    extract(
        tmp_path,
        HEADER + "A,1,NID-3,01.03.2021,401.9,,\n",
    )
    report = run(mapping, target)
    # NID-3 had no event, so no observation period, until now.
    assert report.rows == {"condition_occurrence": 1, "observation_period": 1}


def test_a_missing_csv_file_stops_before_loading(tmp_path: Path, target: CdmTarget) -> None:
    mapping = extract(tmp_path, HEADER)
    (tmp_path / "diagnoses.csv").unlink()
    with pytest.raises(DataError, match=r"lacks diagnoses\.csv"):
        run(mapping, target)
    assert rows(target, "SELECT count(*) FROM person") == [(0,)]


def test_declared_encoding_is_used(tmp_path: Path, target: CdmTarget) -> None:
    mapping = extract(tmp_path, HEADER)
    text = mapping.read_text(encoding="utf-8").replace(
        '    delimiter: ";"', '    delimiter: ";"\n    encoding: latin-1', 1
    )
    mapping.write_text(text, encoding="utf-8")
    (tmp_path / "patients.csv").write_bytes(
        "patient_no;national_id;sex;born\n1;NID-Ø;1;16/05/1967\n".encode("latin-1")
    )
    run(mapping, target)
    assert rows(target, "SELECT person_source_value FROM person") == [("NID-Ø",)]


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_the_command_loads_the_starter_vocabulary_into_an_empty_target(tmp_path: Path) -> None:
    diagnoses = HEADER + "A,1,NID-1,01.03.2021,401.9,,\n"
    mapping = extract(tmp_path, diagnoses)
    data = tmp_path / "elsewhere"
    data.mkdir()
    for name in ("patients.csv", "diagnoses.csv"):
        (tmp_path / name).rename(data / name)
    report_file = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli(),
        [
            "ingest",
            "csv",
            str(mapping),
            "--db",
            str(tmp_path / "cli.duckdb"),
            "--data-dir",
            str(data),
            "--report",
            str(report_file),
            "--rejects",
            str(tmp_path / "rejects.ndjson"),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(report_file.read_text())
    assert saved["rows"] == {"condition_occurrence": 1, "observation_period": 1, "person": 3}
    assert saved["mapping_version"] == "test 1"
    assert saved["notes"] == [
        f"the target had no vocabulary: loaded {STARTER_VOCABULARY_VERSION} first",
        "observation periods derived from first to last event for 1 person",
    ]


def test_the_command_refuses_a_bad_mapping_and_leaves_no_database(tmp_path: Path) -> None:
    mapping = extract(tmp_path, HEADER)
    mapping.write_text(mapping.read_text().replace("table: person", "table: people"))
    database = tmp_path / "cli.duckdb"
    result = CliRunner().invoke(
        cli(),
        ["ingest", "csv", str(mapping), "--db", str(database), "--rejects", str(tmp_path / "r")],
    )
    assert isinstance(result.exception, ConfigError)
    assert result.exception.exit_code == 10
    assert "line 5: file patients.csv: 'people' is not an OMOP CDM v5.4 table" in str(
        result.exception
    )
    assert not database.exists()
