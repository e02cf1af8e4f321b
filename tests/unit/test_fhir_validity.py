"""What the synthetic export and the FHIR tests load is valid FHIR R4.

Validated with the ``fhir.resources`` models of FHIR 4.3.0 (``fhir.resources.R4B``): R4B
changed none of the resources checked here, whereas the package's top-level models are R5
and refuse valid R4 (an R4 ``Encounter.class`` is one Coding, R5's a list). The models
check structure, cardinality and primitive formats but neither FHIRPath invariants nor
required bindings, so the two of those the export could break are checked here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from fhir.resources.R4B import __fhir_version__, get_fhir_model_class

from accord.ingest.fhir.synthetic import write_bulk_export
from fhir_examples import (
    BLOOD_PRESSURE,
    ICD10CM,
    SNOMED,
    UCUM,
    coded,
    condition,
    encounter,
    patient,
)

# Required bindings of the R4 elements the export and the fixtures fill in.
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Encounter", "status"): frozenset(
        {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled"}
        | {"entered-in-error", "unknown"}
    ),
    ("Condition", "clinicalStatus"): frozenset(
        {"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
    ),
    ("Observation", "status"): frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled"}
        | {"entered-in-error", "unknown"}
    ),
    ("MedicationRequest", "status"): frozenset(
        {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped"}
        | {"draft", "unknown"}
    ),
    ("MedicationRequest", "intent"): frozenset(
        {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order"}
        | {"instance-order", "option"}
    ),
    ("Procedure", "status"): frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed"}
        | {"entered-in-error", "unknown"}
    ),
    ("Immunization", "status"): frozenset({"completed", "entered-in-error", "not-done"}),
}
EXPORTED_TYPES = {
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Procedure",
    "Immunization",
}


def problems(resource: dict[str, Any]) -> list[str]:
    """Why ``resource`` is not valid R4; empty when it is."""
    found: list[str] = []
    kind = resource.get("resourceType", "?")
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except (pydantic.ValidationError, KeyError, ValueError) as error:
        found.append(f"{kind}: {error}")
    for (bound_type, element), allowed in REQUIRED_CODES.items():
        if bound_type != kind or element not in resource:
            continue
        value = resource[element]
        codes = [value] if isinstance(value, str) else [c.get("code") for c in value["coding"]]
        found += [
            f"{kind}.{element}: {code!r} is not in its value set"
            for code in codes
            if code not in allowed
        ]
    found += [f"{kind}: {why}" for why in _invariant_faults(resource, kind)]
    return found


def _invariant_faults(value: Any, where: str) -> Iterator[str]:
    if value is None:
        # The models take None for an absent element; FHIR JSON has no nulls at all.
        yield f"{where} is null"
    elif isinstance(value, dict):
        # qty-3 (a Quantity's code needs its system) and drt-1 (a Duration's code is UCUM).
        quantity = "code" in value and isinstance(value.get("value"), int | float)
        if quantity and value.get("system") != UCUM:
            yield f"{where} has a coded quantity without system {UCUM}"
        for key, inner in value.items():
            yield from _invariant_faults(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _invariant_faults(inner, f"{where}[{index}]")


def test_the_models_are_fhir_r4_not_r5() -> None:
    assert __fhir_version__.startswith("4.")
    r4_encounter = encounter("e1", "p1")
    assert problems(r4_encounter) == []
    from fhir.resources.encounter import Encounter as R5Encounter

    with pytest.raises(pydantic.ValidationError, match="class"):
        R5Encounter.model_validate(r4_encounter)


def test_the_checks_catch_what_the_models_leave_out() -> None:
    assert problems({"resourceType": "Observation", "code": coded(SNOMED, "1")})
    assert problems(patient("p1", gender="woman")) == [
        "Patient.gender: 'woman' is not in its value set"
    ]
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": coded(SNOMED, "1"),
        "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"}},
    }
    assert problems(request) == [
        "MedicationRequest: MedicationRequest.dispenseRequest.expectedSupplyDuration "
        f"has a coded quantity without system {UCUM}"
    ]
    assert problems({"resourceType": "Patient", "birthDate": None}) == [
        "Patient: Patient.birthDate is null"
    ]


def test_every_resource_of_a_synthetic_export_is_valid_r4(tmp_path: Path) -> None:
    counts = write_bulk_export(tmp_path, persons=50, seed=3)
    assert set(counts) == EXPORTED_TYPES
    checked: dict[str, int] = {}
    invalid: list[str] = []
    for path in sorted(tmp_path.glob("*.ndjson")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            resource = json.loads(line)
            checked[resource["resourceType"]] = checked.get(resource["resourceType"], 0) + 1
            invalid += [f"{path.name} line {number}: {p}" for p in problems(resource)]
    assert invalid == []
    assert checked == counts


FIXTURES: dict[str, dict[str, Any]] = {
    "patient": patient("p1"),
    "patient with a year of birth": patient("p2", gender="male", birthDate="1980"),
    "patient with identifiers and links": patient(
        "p1",
        identifier=[
            {"system": "urn:mrn", "value": "M1"},
            {"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "999"},
        ],
        managingOrganization={"reference": "Organization/o1"},
        generalPractitioner=[{"reference": "Practitioner/dr1"}],
        address=[{"line": ["1 High St", "Flat 2"], "city": "York"}],
    ),
    "encounter": encounter("e1", "p1", "EMER"),
    "encounter with provider": encounter(
        "e1",
        "p1",
        serviceProvider={"reference": "Organization/o1"},
        participant=[{"individual": {"reference": "Practitioner/dr1"}}],
    ),
    "condition": condition("c1", "p1", ICD10CM, "I10", encounter={"reference": "Encounter/e1"}),
    "condition with a partial onset": condition("m", "p1", ICD10CM, "I10", onsetDateTime="2019-03"),
    "condition with an onset period": condition(
        "p",
        "p1",
        ICD10CM,
        "I10",
        onsetDateTime=None,
        onsetPeriod={"start": "2018-07", "end": "2018-09-30"},
    ),
    "blood pressure panel": BLOOD_PRESSURE,
}


@pytest.mark.parametrize("name", FIXTURES)
def test_the_fhir_tests_valid_fixtures_are_valid_r4(name: str) -> None:
    assert problems(FIXTURES[name]) == []
