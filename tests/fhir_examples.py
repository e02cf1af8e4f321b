"""FHIR R4 resources the FHIR tests load, shared so one test checks they are valid R4.

Builders take the resource's id and references and any element to add or replace (or,
given as ``None``, to leave out: FHIR JSON has no nulls), so a test states only what it
is about; ``tests/unit/test_fhir_validity.py`` validates what
they build with an independent library's R4 models.
"""

from __future__ import annotations

from typing import Any

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"


def coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return _present(
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": "female",
            "birthDate": "1970-05-06",
            **extra,
        }
    )


def encounter(eid: str, pid: str, kind: str = "AMB", **extra: Any) -> dict[str, Any]:
    return _present(
        {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"code": kind},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2021-02-03T09:00:00+01:00", "end": "2021-02-03T10:00:00+01:00"},
            **extra,
        }
    )


def condition(cid: str, pid: str, system: str, code: str, **extra: Any) -> dict[str, Any]:
    return _present(
        {
            "resourceType": "Condition",
            "id": cid,
            "subject": {"reference": f"Patient/{pid}"},
            "code": coded(system, code),
            "onsetDateTime": "2021-02-03",
            **extra,
        }
    )


def _present(resource: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in resource.items() if value is not None}


BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "category": [{"coding": [{"code": "vital-signs"}]}],
    "code": coded(LOINC, "85354-9"),
    "subject": {"reference": "Patient/1"},
    "effectiveDateTime": "2020-05-01",
    "component": [
        {
            "code": coded(LOINC, code),
            "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]"},
        }
        for code, value in (("8480-6", 120), ("8462-4", 80))
    ],
}
