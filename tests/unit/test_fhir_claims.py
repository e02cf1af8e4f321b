"""FHIR Claims loaded as a claim visit with its diagnoses and billed procedures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.ingest import CdmTarget, LoadReport
from accord.ingest.fhir import ingest_fhir
from accord.vocab import concepts, load_starter_vocabulary
from fhir_examples import ICD10CM, SNOMED, coded, patient

ELECTROCARDIOGRAM = 4163951  # SNOMED 29303009, a Procedure-domain concept


@pytest.fixture
def target(tmp_path: Path) -> Iterator[CdmTarget]:
    cdm = CdmTarget.open(tmp_path / "m.duckdb", gate=False)
    load_starter_vocabulary(cdm.connection)
    yield cdm
    cdm.close()


def claim(cid: str, pid: str, **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Claim",
        "id": cid,
        "status": "active",
        "type": coded("http://terminology.hl7.org/CodeSystem/claim-type", "professional"),
        "use": "claim",
        "patient": {"reference": f"Patient/{pid}"},
        "billablePeriod": {"start": "2021-03-04", "end": "2021-03-05"},
        "created": "2021-03-10",
        "provider": {"reference": "Practitioner/dr1"},
        "priority": coded("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Plan A"}}],
        "diagnosis": [
            {"sequence": 1, "diagnosisCodeableConcept": coded(ICD10CM, "I10")},
            {"sequence": 2, "diagnosisCodeableConcept": coded(ICD10CM, "E11.9")},
        ],
        "item": [
            {
                "sequence": 1,
                "productOrService": coded(SNOMED, "29303009"),
                "servicedDate": "2021-03-05",
            }
        ],
        **extra,
    }
    return {name: value for name, value in resource.items() if value is not None}


def write_export(directory: Path, claims: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "Patient.ndjson": [patient("p1")],
        "Practitioner.ndjson": [{"resourceType": "Practitioner", "id": "dr1"}],
        "Claim.ndjson": claims,
    }
    for name, resources in files.items():
        text = "".join(json.dumps(resource) + "\n" for resource in resources)
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def load(path: Path, target: CdmTarget) -> LoadReport:
    report = LoadReport(kind="fhir", source=str(path))
    ingest_fhir(path, target, report)
    return report


def rows(target: CdmTarget, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in target.connection.execute(sql).fetchall()]


def test_claim_becomes_a_visit_with_its_diagnoses_and_procedures(
    tmp_path: Path, target: CdmTarget
) -> None:
    report = load(write_export(tmp_path / "export", [claim("c1", "p1")]), target)
    assert report.reject_count == 0
    assert rows(
        target,
        "SELECT v.visit_concept_id, v.visit_type_concept_id, v.visit_source_value, "
        "v.visit_start_date::VARCHAR, v.visit_end_date::VARCHAR, p.person_source_value, "
        "v.provider_id IS NOT NULL "
        "FROM visit_occurrence v JOIN person p USING (person_id)",
    ) == [
        (
            concepts.OUTPATIENT_VISIT,
            concepts.CLAIM,
            "professional",
            "2021-03-04",
            "2021-03-05",
            "p1",
            True,
        )
    ]
    [(visit, person)] = rows(target, "SELECT visit_occurrence_id, person_id FROM visit_occurrence")
    assert rows(
        target,
        "SELECT condition_source_value, condition_concept_id <> 0, condition_type_concept_id, "
        "condition_start_date::VARCHAR, visit_occurrence_id, person_id "
        "FROM condition_occurrence ORDER BY 1",
    ) == [
        ("E11.9", True, concepts.CLAIM, "2021-03-04", visit, person),
        ("I10", True, concepts.CLAIM, "2021-03-04", visit, person),
    ]
    assert rows(
        target,
        "SELECT procedure_concept_id, procedure_type_concept_id, procedure_date::VARCHAR, "
        "visit_occurrence_id, person_id FROM procedure_occurrence",
    ) == [(ELECTROCARDIOGRAM, concepts.CLAIM, "2021-03-05", visit, person)]

    again = load(tmp_path / "export", target)
    assert again.rows_total == 0
    assert again.reject_count == 0
    assert rows(target, "SELECT count(*) FROM visit_occurrence") == [(1,)]
    assert rows(target, "SELECT count(*) FROM condition_occurrence") == [(2,)]
    assert rows(target, "SELECT count(*) FROM procedure_occurrence") == [(1,)]


def test_claims_of_unknown_patients_and_cancelled_claims_are_rejected_whole(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = write_export(
        tmp_path / "export",
        [claim("ghost", "nobody"), claim("void", "p1", status="cancelled")],
    )
    report = load(export, target)
    assert {(r.source, r.locator, r.reason, r.value) for r in report.examples} == {
        (
            "Claim.ndjson",
            "line 1",
            "Claim: the referenced Patient is not in this export or an earlier load",
            "Patient/nobody",
        ),
        (
            "Claim.ndjson",
            "line 2",
            "Claim.status is cancelled: not a record of care",
            "cancelled",
        ),
    }
    for table in ("visit_occurrence", "condition_occurrence", "procedure_occurrence"):
        assert rows(target, f"SELECT count(*) FROM {table}") == [(0,)]


def test_explanation_of_benefit_is_still_not_mapped(tmp_path: Path, target: CdmTarget) -> None:
    export = write_export(tmp_path / "export", [])
    (export / "ExplanationOfBenefit.ndjson").write_text(
        json.dumps({"resourceType": "ExplanationOfBenefit", "id": "eob1"}) + "\n",
        encoding="utf-8",
    )
    report = load(export, target)
    assert [r.reason for r in report.examples] == [
        "ExplanationOfBenefit is not mapped to the CDM yet (cost from claims is planned)"
    ]
