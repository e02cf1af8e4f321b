"""Each reason a CSV load rejects a line or a file, and a file that is not its encoding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_csv_ingest import HEADER, extract, rejects, rows, run

from accord.errors import DataError
from accord.ingest import CdmTarget, LoadReport
from accord.vocab import load_starter_vocabulary

GOOD = "A,1,NID-1,01.03.2021,401.9,,\n"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[CdmTarget]:
    cdm = CdmTarget.open(tmp_path / "member.duckdb", gate=False)
    load_starter_vocabulary(cdm.connection)
    yield cdm
    cdm.close()


def edit_mapping(mapping: Path, old: str, new: str) -> None:
    text = mapping.read_text(encoding="utf-8")
    assert old in text
    mapping.write_text(text.replace(old, new, 1), encoding="utf-8")


def only_reject(report: LoadReport) -> tuple[str, str, str]:
    report.finish()
    assert report.reject_count == 1
    (reason,) = report.to_json()["rejects"]["by_reason"]
    (found,) = rejects(report)
    assert found[2] == reason
    return found


def test_a_header_that_repeats_a_mapped_column_rejects_the_file(
    tmp_path: Path, target: CdmTarget
) -> None:
    diagnoses = "site,diagnosis_no,national_id,seen_on,icd9,icd10,days,seen_on\n" + GOOD
    report = run(extract(tmp_path, diagnoses), target)
    assert only_reject(report) == (
        "diagnoses.csv",
        "line 1",
        "header repeats columns seen_on; file not loaded",
    )
    assert report.rows == {"person": 3}


def test_an_empty_patient_column_rejects_the_line(tmp_path: Path, target: CdmTarget) -> None:
    report = run(extract(tmp_path, HEADER + GOOD + "A,2,,01.03.2021,401.9,,\n"), target)
    assert only_reject(report) == (
        "diagnoses.csv",
        "line 3",
        "patient column national_id is empty",
    )
    assert report.rows == {"person": 3, "condition_occurrence": 1, "observation_period": 1}


def test_an_empty_required_field_rejects_the_line(tmp_path: Path, target: CdmTarget) -> None:
    report = run(extract(tmp_path, HEADER + "A,2,NID-1,,401.9,,\n" + GOOD), target)
    assert only_reject(report) == (
        "diagnoses.csv",
        "line 2",
        "start_date is required but seen_on is empty",
    )
    assert report.rows == {"person": 3, "condition_occurrence": 1, "observation_period": 1}


def test_a_person_without_a_birth_date_is_rejected(tmp_path: Path, target: CdmTarget) -> None:
    patients = "patient_no;national_id;sex;born\n1;NID-1;1;16/05/1967\n2;NID-2;2;\n"
    report = run(extract(tmp_path, HEADER, patients=patients), target)
    assert only_reject(report) == (
        "patients.csv",
        "line 3",
        "year_of_birth is required but born is empty",
    )
    assert rows(target, "SELECT person_source_value FROM person") == [("NID-1",)]


def test_text_in_a_number_column_rejects_the_line(tmp_path: Path, target: CdmTarget) -> None:
    mapping = extract(tmp_path, HEADER + GOOD + "A,2,NID-1,01.03.2021,401.9,,1.5e\n")
    edit_mapping(mapping, "days_supply: days", "value_as_number: days")
    report = run(mapping, target)
    assert only_reject(report) == ("diagnoses.csv", "line 3", "days is not a number")
    assert report.examples[0].value == "1.5e"
    assert report.rows == {"person": 3, "condition_occurrence": 1, "observation_period": 1}


def test_a_value_the_value_map_lacks_rejects_the_line(tmp_path: Path, target: CdmTarget) -> None:
    mapping = extract(tmp_path, HEADER)
    edit_mapping(mapping, "values: {1: 8507, 2: 8532}, default: 0}", "values: {1: 8507, 2: 8532}}")
    report = run(mapping, target)
    assert only_reject(report) == (
        "patients.csv",
        "line 4",
        "sex has a value the value map for gender_concept_id lacks",
    )
    assert report.examples[0].value == "9"
    assert report.rows == {"person": 2}


@pytest.mark.parametrize("good_lines", [1, 20_000], ids=["line 3", "far into the file"])
def test_a_byte_not_in_the_declared_encoding_names_its_line_and_keeps_nothing(
    tmp_path: Path, target: CdmTarget, good_lines: int
) -> None:
    mapping = extract(tmp_path, HEADER)
    run(mapping, target)
    before = rows(target, "SELECT count(*) FROM person")
    body = "".join(f"A,{n},NID-1,01.03.2021,401.9,,\n" for n in range(good_lines))
    bad = "B,1,NID-2,01.03.2021,401.9,,Jos\xe9\n".encode("latin-1")
    (tmp_path / "diagnoses.csv").write_bytes((HEADER + body).encode("utf-8") + bad + b"B,2\n")
    patients = (tmp_path / "patients.csv").read_text(encoding="utf-8")
    (tmp_path / "patients.csv").write_text(patients + "4;NID-4;1;01/01/2000\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        run(mapping, target)
    line = good_lines + 2
    assert f"diagnoses.csv: line {line} is not utf-8 text" in str(caught.value)
    assert "encoding" in str(caught.value.hint)
    assert rows(target, "SELECT count(*) FROM person") == before
    assert rows(target, "SELECT count(*) FROM condition_occurrence") == [(0,)]


def test_a_byte_not_in_a_declared_legacy_encoding_names_its_line(
    tmp_path: Path, target: CdmTarget
) -> None:
    mapping = extract(tmp_path, HEADER)
    edit_mapping(mapping, '    delimiter: ";"', '    delimiter: ";"\n    encoding: cp1252')
    body = "".join(f"{n};NID-{n};1;01/01/2000\n" for n in range(5, 5000))
    data = ("patient_no;national_id;sex;born\n" + body).encode("cp1252") + b"9;NID-\x81;1;\n"
    (tmp_path / "patients.csv").write_bytes(data)
    with pytest.raises(DataError, match=r"patients\.csv: line 4997 is not cp1252 text"):
        run(mapping, target)
    # A first load that fails leaves no database behind.
    assert not (tmp_path / "member.duckdb").exists()
