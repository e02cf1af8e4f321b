"""Each reason a FHIR load rejects a resource, line or entry: the load goes on without it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.ingest import CdmTarget, LoadReport
from accord.ingest.fhir import ingest_fhir
from accord.vocab import load_starter_vocabulary
from fhir_examples import ICD10CM, LOINC, coded, condition, encounter, patient


@pytest.fixture
def target(tmp_path: Path) -> Iterator[CdmTarget]:
    cdm = CdmTarget.open(tmp_path / "m.duckdb", gate=False)
    load_starter_vocabulary(cdm.connection)
    yield cdm
    cdm.close()


def write_ndjson(directory: Path, name: str, resources: list[Any]) -> None:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in resources]
    (directory / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def export(tmp_path: Path, extra: dict[str, list[Any]]) -> Path:
    """One Patient and one Condition that load, plus ``extra`` lines after them."""
    folder = tmp_path / "export"
    folder.mkdir()
    files: dict[str, list[Any]] = {
        "Patient.ndjson": [patient("p1")],
        "Condition.ndjson": [condition("good", "p1", ICD10CM, "I10")],
    }
    for name, resources in extra.items():
        files[name] = files.get(name, []) + resources
    for name, resources in files.items():
        write_ndjson(folder, name, resources)
    return folder


def count(target: CdmTarget, table: str) -> int:
    return int(target.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def load(path: Path, target: CdmTarget) -> LoadReport:
    report = LoadReport(kind="fhir", source=str(path))
    ingest_fhir(path, target, report)
    report.finish()
    return report


def bundle(entry: Any) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entry})


def observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "obs",
        "status": "final",
        "code": coded(LOINC, "85354-9"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-03-04",
        **extra,
    }


NAMED_FOR_ANOTHER = (
    "resource in a file named for another type is not read (Bulk Data files hold one type each)"
)

# (extra lines, source, locator, reason, value)
CASES: dict[str, tuple[dict[str, list[Any]], str, str, str, str | None]] = {
    "condition in a Patient file": (
        {"Patient.ndjson": [condition("c2", "p1", ICD10CM, "I10")]},
        "Patient.ndjson",
        "line 2",
        NAMED_FOR_ANOTHER,
        "Condition",
    ),
    "patient in a Condition file": (
        {"Condition.ndjson": [patient("p2")]},
        "Condition.ndjson",
        "line 2",
        NAMED_FOR_ANOTHER,
        "Patient",
    ),
    "line without resourceType in a typed file": (
        {"Condition.ndjson": [{"id": "c2", "code": coded(ICD10CM, "I10")}]},
        "Condition.ndjson",
        "line 2",
        "not a FHIR resource: no resourceType",
        None,
    ),
    "another R4 type not mapped yet": (
        {"Condition.ndjson": [{"resourceType": "Goal", "id": "g1"}]},
        "Condition.ndjson",
        "line 2",
        "Goal is not mapped to the CDM yet",
        None,
    ),
    "explanation of benefit": (
        {"Condition.ndjson": [{"resourceType": "ExplanationOfBenefit", "id": "eob"}]},
        "Condition.ndjson",
        "line 2",
        "ExplanationOfBenefit is not mapped to the CDM yet (cost from claims is planned)",
        None,
    ),
    "id missing": (
        {"Condition.ndjson": [condition(None, "p1", ICD10CM, "I10")]},
        "Condition.ndjson",
        "line 2",
        "Condition.id is missing",
        None,
    ),
    "encounter entered in error": (
        {"Encounter.ndjson": [encounter("e1", "p1", status="entered-in-error")]},
        "Encounter.ndjson",
        "line 1",
        "Encounter.status is entered-in-error: not a visit that took place",
        "entered-in-error",
    ),
    "encounter cancelled": (
        {"Encounter.ndjson": [encounter("e1", "p1", status="cancelled")]},
        "Encounter.ndjson",
        "line 1",
        "Encounter.status is cancelled: not a visit that took place",
        "cancelled",
    ),
    "encounter subject missing": (
        {"Encounter.ndjson": [encounter("e1", "p1", subject=None)]},
        "Encounter.ndjson",
        "line 1",
        "Encounter.subject is missing or has no reference",
        None,
    ),
    "encounter period start missing": (
        {"Encounter.ndjson": [encounter("e1", "p1", period={"end": "2021-02-03"})]},
        "Encounter.ndjson",
        "line 1",
        "Encounter.period.start is missing; a visit start date is required",
        None,
    ),
    "encounter period start not a date": (
        {"Encounter.ndjson": [encounter("e1", "p1", period={"start": "2021-13-01"})]},
        "Encounter.ndjson",
        "line 1",
        "Encounter.period.start is not a FHIR date",
        "2021-13-01",
    ),
    "encounter period end not a date": (
        {
            "Encounter.ndjson": [
                encounter("e1", "p1", period={"start": "2021-02-03", "end": "soon"})
            ]
        },
        "Encounter.ndjson",
        "line 1",
        "Encounter.period.end is not a FHIR date",
        "soon",
    ),
    "patient death date not a date": (
        {"Patient.ndjson": [patient("p2", deceasedDateTime="2020-02-30")]},
        "Patient.ndjson",
        "line 2",
        "Patient.deceasedDateTime is not a FHIR date",
        "2020-02-30",
    ),
    "event end date not a date": (
        {"Condition.ndjson": [condition("c2", "p1", ICD10CM, "I10", abatementDateTime="later")]},
        "Condition.ndjson",
        "line 2",
        "Condition: the end date is not a FHIR date",
        "later",
    ),
    "observation component code without coding": (
        {
            "Observation.ndjson": [
                observation(
                    component=[{"code": {"text": "systolic"}, "valueQuantity": {"value": 1}}]
                )
            ]
        },
        "Observation.ndjson",
        "line 1",
        "Observation.component[0].code has no coding",
        None,
    ),
    "bundle entry not a list": (
        {"b.json": [bundle({"resource": patient("p2")})]},
        "b.json",
        "file",
        "Bundle.entry is not a list",
        None,
    ),
    "bundle entry without resource or method": (
        {"b.json": [bundle([{"fullUrl": "urn:uuid:1"}, {"resource": patient("p2")}])]},
        "b.json",
        "entry[0]",
        "entry has no resource with a resourceType",
        None,
    ),
}


@pytest.mark.parametrize(
    ("extra", "source", "locator", "reason", "value"), CASES.values(), ids=CASES
)
def test_a_rejected_input_is_reported_and_the_load_goes_on(
    tmp_path: Path,
    target: CdmTarget,
    extra: dict[str, list[Any]],
    source: str,
    locator: str,
    reason: str,
    value: str | None,
) -> None:
    report = load(export(tmp_path, extra), target)
    assert [(r.source, r.locator, r.reason, r.value) for r in report.examples] == [
        (source, locator, reason, value)
    ]
    # What the bad input sat beside is loaded.
    assert count(target, "person") >= 1
    assert count(target, "condition_occurrence") == report.rows["condition_occurrence"] == 1
    assert count(target, "visit_occurrence") == 0
    summary = report.to_json()["rejects"]
    assert summary["count"] == report.reject_count == 1
    assert summary["by_reason"] == {reason: 1}
    assert report.rows["person"] == count(target, "person")


def test_a_bundle_entry_list_loads_its_good_entries_beside_the_bad(
    tmp_path: Path, target: CdmTarget
) -> None:
    report = load(export(tmp_path, CASES["bundle entry without resource or method"][0]), target)
    assert report.rows["person"] == 2


def test_deceased_without_a_date_keeps_the_person_without_a_death_row(
    tmp_path: Path, target: CdmTarget
) -> None:
    report = load(
        export(tmp_path, {"Patient.ndjson": [patient("p2", deceasedBoolean=True)]}), target
    )
    reason = (
        "Patient.deceasedBoolean without a date: person kept, no death row "
        "(the CDM requires a death date)"
    )
    # It is recorded as a reject although the person is loaded.
    assert [(r.source, r.locator, r.reason) for r in report.examples] == [
        ("Patient.ndjson", "line 2", reason)
    ]
    assert report.reject_count == 1
    assert report.rows["person"] == count(target, "person") == 2
    assert count(target, "death") == 0
    assert not any("death" in note for note in report.notes)
