"""The load report: counts, rejects file as it goes, JSON without rejected values."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

import accord.ingest.report
from accord.errors import DataError
from accord.ingest.report import TOP_UNMAPPED, LoadReport, Reject


def read_rejects(path: Path) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_docstring_examples() -> None:
    assert doctest.testmod(accord.ingest.report).failed == 0


def test_counts_rows_skips_and_versions() -> None:
    report = LoadReport(kind="omop", source="export")
    report.add_rows("person", 150)
    report.add_rows("person", 50)
    report.add_rows("death", 3)
    report.skipped_existing("person", 7)
    report.vocabulary_version = "v5.0 31-AUG-23"
    report.mapping_version = "northgate-2025.1"
    report.finish()
    summary = report.to_json()
    assert summary["rows"] == {"death": 3, "person": 200}
    assert summary["rows_total"] == 203
    assert summary["skipped_existing"] == {"person": 7}
    assert summary["vocabulary_version"] == "v5.0 31-AUG-23"
    assert summary["mapping_version"] == "northgate-2025.1"
    assert summary["kind"] == "omop"
    assert summary["source"] == "export"
    assert summary["seconds"] >= 0
    assert summary["rejects"] == {"count": 0, "by_reason": {}, "file": None}
    json.dumps(summary)


def test_seconds_are_none_until_finished() -> None:
    assert LoadReport(kind="omop", source="x").to_json()["seconds"] is None


def test_rejects_are_written_as_they_come_and_counted_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    report = LoadReport(kind="fhir", source="bundle.json", rejects_path=path)
    report.reject("PERSON.csv", "line 17", "year_of_birth is not a 32-bit integer", value="19x0")
    # Readable before the load ends: a load that dies halfway still leaves its rejects.
    assert read_rejects(path) == [
        {
            "source": "PERSON.csv",
            "locator": "line 17",
            "reason": "year_of_birth is not a 32-bit integer",
            "value": "19x0",
        }
    ]
    report.reject("PERSON.csv", "line 20", "year_of_birth is not a 32-bit integer", value="x")
    report.reject("bundle.json", "Condition/abc", "subject is not a known Patient")
    report.finish()
    assert len(read_rejects(path)) == 3
    rejects = report.to_json()["rejects"]
    assert rejects["count"] == 3
    assert rejects["file"] == str(path)
    assert rejects["by_reason"] == {
        "year_of_birth is not a 32-bit integer": 2,
        "subject is not a known Patient": 1,
    }
    assert report.examples[2] == Reject(
        "bundle.json", "Condition/abc", "subject is not a known Patient"
    )


def test_rejected_values_stay_out_of_the_report(tmp_path: Path) -> None:
    report = LoadReport(kind="omop", source="x", rejects_path=tmp_path / "r.ndjson")
    report.reject(
        "PERSON.csv",
        "line 2",
        "person_source_value is longer than 50 characters",
        value="SECRET-NATIONAL-ID",
    )
    report.finish()
    assert "SECRET-NATIONAL-ID" not in json.dumps(report.to_json())
    assert "SECRET-NATIONAL-ID" in (tmp_path / "r.ndjson").read_text()


def test_rejects_without_a_file_are_still_counted() -> None:
    report = LoadReport(kind="omop", source="x")
    report.reject("PERSON.csv", "line 2", "empty row")
    report.finish()
    assert report.to_json()["rejects"] == {"count": 1, "by_reason": {"empty row": 1}, "file": None}


def test_a_stale_rejects_file_is_emptied_by_a_clean_load(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    path.write_text('{"source": "old"}\n')
    report = LoadReport(kind="omop", source="x", rejects_path=path)
    report.finish()
    assert path.read_text() == ""


def test_a_new_load_replaces_an_old_rejects_file(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    path.write_text('{"source": "old", "locator": "", "reason": "", "value": null}\n')
    report = LoadReport(kind="omop", source="x", rejects_path=path)
    report.reject("A.csv", "line 2", "empty row")
    report.finish()
    assert [r["source"] for r in read_rejects(path)] == ["A.csv"]


def test_an_unwritable_rejects_file_is_a_data_error(tmp_path: Path) -> None:
    report = LoadReport(kind="omop", source="x", rejects_path=tmp_path / "missing" / "r.ndjson")
    with pytest.raises(DataError, match=r"cannot write rejects file .*r\.ndjson"):
        report.reject("A.csv", "line 2", "empty row")


def test_unmapped_codes_top_list_and_total() -> None:
    report = LoadReport(kind="fhir", source="x")
    for number in range(TOP_UNMAPPED + 20):
        report.unmapped("ICD10", f"code-{number}", count=number + 1)
    report.unmapped("ICD10", "code-0")
    unmapped = report.to_json()["unmapped"]
    assert unmapped["distinct"] == TOP_UNMAPPED + 20
    assert unmapped["total"] == sum(range(1, TOP_UNMAPPED + 21)) + 1
    assert len(unmapped["top"]) == TOP_UNMAPPED
    assert unmapped["top"][0] == {
        "vocabulary_id": "ICD10",
        "code": f"code-{TOP_UNMAPPED + 19}",
        "count": TOP_UNMAPPED + 20,
    }
    counts = [entry["count"] for entry in unmapped["top"]]
    assert counts == sorted(counts, reverse=True)


def test_notes_are_reported() -> None:
    report = LoadReport(kind="omop", source="x")
    report.note("vocabulary files skipped")
    assert report.to_json()["notes"] == ["vocabulary files skipped"]


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    report = LoadReport(kind="omop", source="x")
    report.add_rows("person", 2)
    report.finish()
    report.write(path)
    assert json.loads(path.read_text())["rows"] == {"person": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_into_a_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    report = LoadReport(kind="omop", source="x")
    with pytest.raises(DataError, match="cannot write load report"):
        report.write(tmp_path / "missing" / "report.json")
