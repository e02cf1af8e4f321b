"""FHIR exports loaded end to end into a DuckDB CDM with the starter vocabulary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.errors import DataError
from accord.ingest import CdmTarget, LoadReport
from accord.ingest.fhir import ingest_fhir
from accord.vocab import concepts, load_starter_vocabulary
from fhir_examples import ICD10CM, LOINC, RXNORM, SNOMED, UCUM, coded, condition, encounter, patient


@pytest.fixture
def target(tmp_path: Path) -> Iterator[CdmTarget]:
    cdm = CdmTarget.open(tmp_path / "m.duckdb", gate=False)
    load_starter_vocabulary(cdm.connection)
    yield cdm
    cdm.close()


def write_ndjson(directory: Path, name: str, resources: list[Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in resources]
    (directory / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def load(path: Path, target: CdmTarget, **options: Any) -> LoadReport:
    report = LoadReport(kind="fhir", source=str(path))
    ingest_fhir(path, target, report, **options)
    return report


def rows(target: CdmTarget, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in target.connection.execute(sql).fetchall()]


def count(target: CdmTarget, table: str) -> int:
    return int(rows(target, f"SELECT count(*) FROM {table}")[0][0])


def test_ndjson_export_with_split_files_loads_and_resolves_references(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.000.ndjson", [patient("p1")])
    write_ndjson(export, "Patient.001.ndjson", [patient("p2", gender="male", birthDate="1980")])
    write_ndjson(export, "Encounter.ndjson", [encounter("e1", "p1", "EMER")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [condition("c1", "p1", ICD10CM, "I10", encounter={"reference": "Encounter/e1"})],
    )
    report = load(export, target)
    assert report.reject_count == 0
    assert rows(
        target,
        "SELECT person_source_value, gender_concept_id, year_of_birth, "
        "month_of_birth, day_of_birth FROM person ORDER BY 1",
    ) == [
        ("p1", concepts.FEMALE, 1970, 5, 6),
        ("p2", concepts.MALE, 1980, None, None),
    ]
    assert rows(
        target,
        "SELECT visit_concept_id, visit_start_date::VARCHAR, "
        "visit_start_datetime::VARCHAR FROM visit_occurrence",
    ) == [(concepts.EMERGENCY_ROOM_VISIT, "2021-02-03", "2021-02-03 09:00:00")]
    assert rows(
        target,
        """
        SELECT p.person_source_value, c.condition_concept_id, c.condition_source_value,
               c.condition_source_concept_id, v.visit_source_value
        FROM condition_occurrence c JOIN person p USING (person_id)
        JOIN visit_occurrence v USING (visit_occurrence_id)""",
    ) == [("p1", concepts.HYPERTENSION, "I10", concepts.ICD10CM_I10, "EMER")]
    provenance = rows(
        target,
        "SELECT source_key, source_file, locator FROM accord_provenance "
        "WHERE cdm_table = 'condition_occurrence'",
    )
    assert provenance == [("fhir:Condition/c1#0", "Condition.ndjson", "line 1")]


def test_blood_pressure_components_become_two_measurements(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    panel = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": coded(LOINC, "85354-9"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-03-04T08:15:00Z",
        "component": [
            {
                "code": coded(LOINC, code),
                "valueQuantity": {
                    "value": value,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }
            for code, value in (("8480-6", 131), ("8462-4", 84))
        ],
    }
    write_ndjson(export, "Observation.ndjson", [panel])
    load(export, target)
    assert rows(
        target,
        "SELECT measurement_concept_id, value_as_number, unit_concept_id, "
        "measurement_source_value FROM measurement ORDER BY 1",
    ) == [
        (concepts.SYSTOLIC_BP, 131.0, concepts.MILLIMETER_MERCURY, "8480-6"),
        (concepts.DIASTOLIC_BP, 84.0, concepts.MILLIMETER_MERCURY, "8462-4"),
    ]
    keys = rows(
        target,
        "SELECT source_key FROM accord_provenance WHERE cdm_table = 'measurement' ORDER BY 1",
    )
    assert keys == [("fhir:Observation/bp#0",), ("fhir:Observation/bp#1",)]


def add_local_codes(target: CdmTarget, maps: dict[str, list[int]]) -> None:
    """ICD-10-CM source codes with the given 'Maps to' targets, for routing tests."""
    for number, (code, targets) in enumerate(maps.items()):
        concept_id = 2_100_000_000 + number
        target.connection.execute(
            "INSERT INTO concept VALUES (?, ?, 'Condition', 'ICD10CM', 'Test code', NULL, ?, "
            "DATE '1970-01-01', DATE '2099-12-31', NULL)",
            [concept_id, f"test {code}", code],
        )
        for mapped in targets:
            target.connection.execute(
                "INSERT INTO concept_relationship VALUES (?, ?, 'Maps to', DATE '1970-01-01', "
                "DATE '2099-12-31', NULL)",
                [concept_id, mapped],
            )


def test_the_standard_concepts_domain_decides_the_table(tmp_path: Path, target: CdmTarget) -> None:
    add_local_codes(
        target, {"Z00.PROC": [concepts.ECG], "Z00.BOTH": [concepts.HYPERTENSION, concepts.HBA1C]}
    )
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [
            condition("proc", "p1", ICD10CM, "Z00.PROC"),
            condition("both", "p1", ICD10CM, "Z00.BOTH"),
        ],
    )
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": coded(LOINC, "4548-4"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-01-01",
        "valueQuantity": {
            "value": 6.1,
            "unit": "%",
            "code": "%",
            "system": "http://unitsofmeasure.org",
        },
    }
    write_ndjson(export, "Observation.ndjson", [observation])
    report = load(export, target)
    assert report.reject_count == 0
    assert rows(
        target, "SELECT procedure_concept_id, procedure_source_value FROM procedure_occurrence"
    ) == [(concepts.ECG, "Z00.PROC")]
    # One code, two standard concepts in two domains: two rows, each in its own table.
    assert rows(
        target, "SELECT condition_concept_id, condition_source_value FROM condition_occurrence"
    ) == [(concepts.HYPERTENSION, "Z00.BOTH")]
    assert sorted(
        rows(
            target,
            "SELECT measurement_concept_id, measurement_source_value, "
            "value_as_number FROM measurement",
        )
    ) == [
        (concepts.HBA1C, "4548-4", 6.1),
        (concepts.HBA1C, "Z00.BOTH", None),
    ]
    assert count(target, "observation") == 0
    keys = rows(
        target,
        "SELECT cdm_table, source_key FROM accord_provenance "
        "WHERE source_key LIKE 'fhir:Condition/both%' ORDER BY 2",
    )
    assert keys == [
        ("condition_occurrence", "fhir:Condition/both#0"),
        ("measurement", "fhir:Condition/both#1"),
    ]


def test_one_code_mapping_to_two_concepts_gives_two_rows(tmp_path: Path, target: CdmTarget) -> None:
    add_local_codes(target, {"Z00.TWO": [concepts.HYPERTENSION, concepts.TYPE_2_DIABETES]})
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(export, "Condition.ndjson", [condition("two", "p1", ICD10CM, "Z00.TWO")])
    load(export, target)
    assert rows(target, "SELECT condition_concept_id FROM condition_occurrence ORDER BY 1") == [
        (concepts.TYPE_2_DIABETES,),
        (concepts.HYPERTENSION,),
    ]


def test_unmapped_codes_get_concept_zero_and_are_listed(tmp_path: Path, target: CdmTarget) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [
            condition("a", "p1", ICD10CM, "Q99.9"),
            condition("b", "p1", ICD10CM, "Q99.9"),
            condition("c", "p1", "urn:local:codes", "X1"),
        ],
    )
    immunization = {
        "resourceType": "Immunization",
        "id": "i1",
        "status": "completed",
        "vaccineCode": coded("http://hl7.org/fhir/sid/cvx", "140"),
        "patient": {"reference": "Patient/p1"},
        "occurrenceDateTime": "2021-10-01",
        "lotNumber": "LOT7",
    }
    write_ndjson(export, "Immunization.ndjson", [immunization])
    report = load(export, target)
    assert rows(
        target,
        "SELECT condition_concept_id, condition_source_value, "
        "condition_source_concept_id FROM condition_occurrence ORDER BY 2",
    ) == [(0, "Q99.9", 0), (0, "Q99.9", 0)]
    assert rows(
        target,
        "SELECT drug_concept_id, drug_source_value, lot_number, "
        "drug_exposure_end_date::VARCHAR FROM drug_exposure",
    ) == [(0, "140", "LOT7", "2021-10-01")]
    assert dict(report.unmapped_codes) == {("ICD10CM", "Q99.9"): 2, ("CVX", "140"): 1}
    # A code system no vocabulary knows cannot be mapped at all: the record is rejected.
    assert report.to_json()["rejects"]["by_reason"] == {
        "Condition.code has no coding in a known code system": 1
    }


def billed(cid: str, *codings: tuple[str, str]) -> dict[str, Any]:
    """A Condition whose code carries several codings, as a claim-derived record does."""
    resource = condition(cid, "p1", SNOMED, "replaced")
    resource["code"] = {"coding": [{"system": system, "code": code} for system, code in codings]}
    return resource


CONDITION_CODES = (
    "SELECT condition_concept_id, condition_source_value, condition_source_concept_id "
    "FROM condition_occurrence ORDER BY 2"
)


def test_the_billed_code_is_the_source_and_its_mapping_the_concept(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    # The standard coding first, so the order of codings is not what decides.
    write_ndjson(export, "Condition.ndjson", [billed("c1", (SNOMED, "59621000"), (ICD10CM, "I10"))])
    report = load(export, target)
    assert report.reject_count == 0
    assert rows(target, CONDITION_CODES) == [(concepts.HYPERTENSION, "I10", concepts.ICD10CM_I10)]
    assert dict(report.unmapped_codes) == {}


def test_an_unmapped_billed_code_takes_its_concept_from_the_standard_coding(
    tmp_path: Path, target: CdmTarget
) -> None:
    add_local_codes(target, {"Z00.NONE": []})
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [
            billed("known", (ICD10CM, "Z00.NONE"), (SNOMED, "44054006")),
            billed("unknown", (ICD10CM, "Q99.9"), (SNOMED, "44054006")),
            billed("neither", (ICD10CM, "Q99.8"), (SNOMED, "999999999")),
        ],
    )
    report = load(export, target)
    assert rows(target, CONDITION_CODES) == [
        (0, "Q99.8", 0),
        (concepts.TYPE_2_DIABETES, "Q99.9", 0),
        (concepts.TYPE_2_DIABETES, "Z00.NONE", 2_100_000_000),
    ]
    # Only the row left without a concept is reported, under the code it was billed as.
    assert dict(report.unmapped_codes) == {("ICD10CM", "Q99.8"): 1}


def test_a_standard_coding_alone_is_its_own_source(tmp_path: Path, target: CdmTarget) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(export, "Condition.ndjson", [billed("c1", (SNOMED, "59621000"))])
    load(export, target)
    assert rows(target, CONDITION_CODES) == [
        (concepts.HYPERTENSION, "59621000", concepts.HYPERTENSION)
    ]


def test_the_standard_concepts_domain_routes_a_billed_code(
    tmp_path: Path, target: CdmTarget
) -> None:
    add_local_codes(target, {"Z00.PROC": [concepts.ECG], "Z00.NONE": []})
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [
            billed("mapped", (ICD10CM, "Z00.PROC"), (SNOMED, "59621000")),
            billed("fallback", (ICD10CM, "Z00.NONE"), (LOINC, "4548-4")),
        ],
    )
    load(export, target)
    assert rows(
        target,
        "SELECT procedure_concept_id, procedure_source_value, procedure_source_concept_id "
        "FROM procedure_occurrence",
    ) == [(concepts.ECG, "Z00.PROC", 2_100_000_000)]
    assert rows(
        target,
        "SELECT measurement_concept_id, measurement_source_value, "
        "measurement_source_concept_id FROM measurement",
    ) == [(concepts.HBA1C, "Z00.NONE", 2_100_000_001)]
    assert count(target, "condition_occurrence") == 0


BUNDLE_TYPES = ["collection", "transaction", "searchset"]


@pytest.mark.parametrize("bundle_type", BUNDLE_TYPES)
def test_bundles_of_each_type_load_with_urn_references(
    tmp_path: Path, target: CdmTarget, bundle_type: str
) -> None:
    entries = [
        {"fullUrl": "urn:uuid:pat-1", "resource": patient("p1")},
        {
            "fullUrl": "urn:uuid:enc-1",
            "resource": encounter("e1", "p1", "IMP", subject={"reference": "urn:uuid:pat-1"}),
        },
        {
            "fullUrl": "urn:uuid:con-1",
            "resource": condition(
                "c1",
                "p1",
                SNOMED,
                "44054006",
                subject={"reference": "urn:uuid:pat-1"},
                encounter={"reference": "urn:uuid:enc-1"},
            ),
        },
        {
            "fullUrl": "urn:uuid:med-1",
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "m1",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": coded(RXNORM, "6809"),
                "subject": {"reference": "urn:uuid:pat-1"},
                "encounter": {"reference": "urn:uuid:enc-1"},
                "authoredOn": "2021-02-03",
                "dispenseRequest": {
                    "quantity": {"value": 60},
                    "expectedSupplyDuration": {"value": 30, "system": UCUM, "code": "d"},
                },
            },
        },
    ]
    if bundle_type == "transaction":
        for entry in entries:
            entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    if bundle_type == "searchset":
        for entry in entries:
            entry["search"] = {"mode": "match"}
    bundle = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    report = load(path, target)
    assert report.reject_count == 0
    assert rows(
        target,
        """
        SELECT c.condition_concept_id, v.visit_concept_id, p.person_source_value
        FROM condition_occurrence c JOIN visit_occurrence v USING (visit_occurrence_id)
        JOIN person p ON p.person_id = c.person_id""",
    ) == [(concepts.TYPE_2_DIABETES, concepts.INPATIENT_VISIT, "p1")]
    assert rows(
        target,
        "SELECT drug_concept_id, quantity, days_supply, drug_type_concept_id, "
        "visit_occurrence_id IS NOT NULL FROM drug_exposure",
    ) == [(concepts.METFORMIN, 60.0, 30, concepts.EHR_PRESCRIPTION, True)]


def test_a_directory_of_bundles_resolves_references_across_files(
    tmp_path: Path, target: CdmTarget
) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    later = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": condition("c1", "p1", ICD10CM, "E11.9")}],
    }
    earlier = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient("p1")}],
    }
    (bundles / "a.json").write_text(json.dumps(later), encoding="utf-8")
    (bundles / "b.json").write_text(json.dumps(earlier), encoding="utf-8")
    report = load(bundles, target)
    assert report.reject_count == 0
    assert rows(target, "SELECT condition_concept_id FROM condition_occurrence") == [
        (concepts.TYPE_2_DIABETES_WITHOUT_COMPLICATION,)
    ]


def test_partial_dates_mean_the_first_day(tmp_path: Path, target: CdmTarget) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [
            condition("y", "p1", ICD10CM, "I10", onsetDateTime="2019"),
            condition("m", "p1", ICD10CM, "I10", onsetDateTime="2019-03"),
            condition(
                "p",
                "p1",
                ICD10CM,
                "I10",
                onsetDateTime=None,
                onsetPeriod={"start": "2018-07", "end": "2018-09-30"},
            ),
        ],
    )
    load(export, target)
    assert rows(
        target,
        "SELECT condition_start_date::VARCHAR, condition_end_date::VARCHAR "
        "FROM condition_occurrence ORDER BY 1",
    ) == [("2018-07-01", "2018-09-30"), ("2019-01-01", None), ("2019-03-01", None)]


def test_every_bad_input_is_rejected_with_its_reason_and_the_load_goes_on(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = tmp_path / "export"
    write_ndjson(
        export,
        "Patient.ndjson",
        [
            patient("p1"),
            "{broken json",
            {"resourceType": "Patient", "id": "nobirth"},
            patient("baddate", birthDate="1970-02-31"),
        ],
    )
    write_ndjson(export, "Encounter.ndjson", [encounter("e-orphan", "ghost")])
    write_ndjson(
        export,
        "Condition.ndjson",
        [
            condition("good", "p1", ICD10CM, "I10"),
            {
                "resourceType": "Condition",
                "id": "nosubject",
                "code": coded(ICD10CM, "I10"),
                "onsetDateTime": "2020",
            },
            {
                "resourceType": "Condition",
                "id": "nocode",
                "subject": {"reference": "Patient/p1"},
                "onsetDateTime": "2020",
            },
            condition("ghost", "ghost", ICD10CM, "I10"),
            condition("baddate", "p1", ICD10CM, "I10", onsetDateTime="yesterday"),
            {"resourceType": "Bogus", "id": "x"},
            {"resourceType": "ExplanationOfBenefit", "id": "eob-1"},
        ],
    )
    report = load(export, target)
    assert count(target, "person") == 1
    assert count(target, "condition_occurrence") == 1
    assert {(r.source, r.locator, r.reason) for r in report.examples} == {
        ("Patient.ndjson", "line 2", "malformed JSON"),
        (
            "Patient.ndjson",
            "line 3",
            "Patient.birthDate is missing; the CDM requires a year of birth",
        ),
        ("Patient.ndjson", "line 4", "Patient.birthDate is not a FHIR date"),
        (
            "Encounter.ndjson",
            "line 1",
            "Encounter: the referenced Patient is not in this export or an earlier load",
        ),
        ("Condition.ndjson", "line 2", "Condition.subject is missing or has no reference"),
        ("Condition.ndjson", "line 3", "Condition.code is missing or has no coding"),
        (
            "Condition.ndjson",
            "line 4",
            "Condition: the referenced Patient is not in this export or an earlier load",
        ),
        ("Condition.ndjson", "line 5", "Condition: the start date is not a FHIR date"),
        ("Condition.ndjson", "line 6", "unknown resourceType: not a FHIR R4 resource type"),
        (
            "Condition.ndjson",
            "line 7",
            "ExplanationOfBenefit is not mapped to the CDM yet (cost from claims is planned)",
        ),
    }
    values = {r.locator: r.value for r in report.examples if r.source == "Condition.ndjson"}
    assert values["line 4"] == "Patient/ghost"
    assert values["line 5"] == "yesterday"


def test_an_unreadable_file_rolls_the_whole_load_back(tmp_path: Path, target: CdmTarget) -> None:
    first = tmp_path / "first"
    write_ndjson(first, "Patient.ndjson", [patient("p0")])
    load(first, target)
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    (export / "Condition.ndjson").write_bytes(b'{"resourceType":"Condition","note":"caf\xe9"}\n')
    with pytest.raises(DataError, match=r"Condition\.ndjson is not UTF-8"):
        load(export, target)
    assert rows(target, "SELECT person_source_value FROM person") == [("p0",)]


def test_reloading_adds_nothing_and_an_increment_adds_only_new_resources(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1", deceasedDateTime="2022-01-01")])
    write_ndjson(export, "Encounter.ndjson", [encounter("e1", "p1")])
    write_ndjson(export, "Condition.ndjson", [condition("c1", "p1", ICD10CM, "I10")])
    first = load(export, target)
    assert first.rows_total == 5  # 4 from the resources, and p1's observation period
    assert first.rows["observation_period"] == 1
    again = load(export, target)
    assert again.rows_total == 0
    assert again.skipped.total() == 4
    increment = tmp_path / "increment"
    write_ndjson(
        increment,
        "Condition.ndjson",
        [
            condition("c1", "p1", ICD10CM, "I10"),
            condition("c2", "p1", ICD10CM, "E11.9", encounter={"reference": "Encounter/e1"}),
        ],
    )
    third = load(increment, target)
    assert dict(third.rows) == {"condition_occurrence": 1}
    assert rows(
        target,
        """
        SELECT c.condition_source_value, p.person_source_value, v.visit_occurrence_id IS NOT NULL
        FROM condition_occurrence c JOIN person p USING (person_id)
        LEFT JOIN visit_occurrence v USING (visit_occurrence_id) ORDER BY 1""",
    ) == [("E11.9", "p1", True), ("I10", "p1", False)]


def test_national_id_becomes_the_person_source_value(tmp_path: Path, target: CdmTarget) -> None:
    export = tmp_path / "export"
    system = "urn:oid:2.16.840.1.113883.2.4.6.3"
    write_ndjson(
        export,
        "Patient.ndjson",
        [
            patient(
                "p1",
                identifier=[
                    {"system": "urn:mrn", "value": "M1"},
                    {"system": system, "value": "999"},
                ],
            ),
            patient("p2", identifier=[{"system": "urn:mrn", "value": "M2"}]),
        ],
    )
    load(export, target, national_id_system=system)
    assert rows(target, "SELECT person_source_value FROM person ORDER BY 1") == [("999",), ("p2",)]


def test_people_and_places_are_linked(tmp_path: Path, target: CdmTarget) -> None:
    export = tmp_path / "export"
    write_ndjson(
        export,
        "Organization.ndjson",
        [
            {
                "resourceType": "Organization",
                "id": "o1",
                "name": "St Elsewhere",
                "address": [{"city": "Boston", "state": "MA", "postalCode": "02118"}],
            }
        ],
    )
    write_ndjson(
        export,
        "Practitioner.ndjson",
        [
            {
                "resourceType": "Practitioner",
                "id": "dr1",
                "name": [{"given": ["Ann"], "family": "Lee"}],
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567890"}],
                "gender": "female",
            }
        ],
    )
    write_ndjson(
        export,
        "Location.ndjson",
        [
            {
                "resourceType": "Location",
                "id": "l1",
                "address": {"city": "Leeds"},
                "position": {"latitude": 53.8, "longitude": -1.55},
            }
        ],
    )
    write_ndjson(
        export,
        "Patient.ndjson",
        [
            patient(
                "p1",
                managingOrganization={"reference": "Organization/o1"},
                generalPractitioner=[{"reference": "Practitioner/dr1"}],
                address=[{"line": ["1 High St", "Flat 2"], "city": "York"}],
            )
        ],
    )
    write_ndjson(
        export,
        "Encounter.ndjson",
        [
            encounter(
                "e1",
                "p1",
                serviceProvider={"reference": "Organization/o1"},
                participant=[{"individual": {"reference": "Practitioner/dr1"}}],
            )
        ],
    )
    report = load(export, target)
    assert report.reject_count == 0
    assert rows(
        target,
        """
        SELECT cs.care_site_name, l.city, pr.provider_name, pr.npi, pl.address_1, pl.address_2
        FROM person p JOIN care_site cs USING (care_site_id)
        JOIN location l ON l.location_id = cs.location_id
        JOIN provider pr ON pr.provider_id = p.provider_id
        JOIN location pl ON pl.location_id = p.location_id""",
    ) == [("St Elsewhere", "Boston", "Ann Lee", "1234567890", "1 High St", "Flat 2")]
    assert rows(
        target,
        "SELECT count(*) FROM visit_occurrence v JOIN care_site USING (care_site_id) "
        "JOIN provider USING (provider_id)",
    ) == [(1,)]
    assert rows(
        target, "SELECT city, latitude FROM location WHERE location_source_value = 'l1'"
    ) == [("Leeds", 53.8)]


def test_allergies_are_observations_whatever_the_substance_domain(
    tmp_path: Path, target: CdmTarget
) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    write_ndjson(
        export,
        "AllergyIntolerance.ndjson",
        [
            {
                "resourceType": "AllergyIntolerance",
                "id": "a1",
                "code": coded(RXNORM, "29046"),
                "patient": {"reference": "Patient/p1"},
                "recordedDate": "2020-06-01",
            }
        ],
    )
    load(export, target)
    assert rows(
        target, "SELECT observation_concept_id, observation_source_value FROM observation"
    ) == [(concepts.LISINOPRIL, "29046")]
    assert count(target, "drug_exposure") == 0


def test_medication_statements_become_drug_exposures(tmp_path: Path, target: CdmTarget) -> None:
    export = tmp_path / "export"
    write_ndjson(export, "Patient.ndjson", [patient("p1")])
    statements = [
        {
            "resourceType": "MedicationStatement",
            "id": "ms1",
            "status": "active",
            "medicationCodeableConcept": coded(RXNORM, "6918"),  # metoprolol
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2022-05-01", "end": "2022-08-31"},
        },
        {
            "resourceType": "MedicationStatement",
            "id": "ms2",
            "status": "completed",
            "medicationCodeableConcept": coded(RXNORM, "29046"),  # lisinopril
            "subject": {"reference": "Patient/p1"},
            "dateAsserted": "2023-01-15",
        },
    ]
    write_ndjson(export, "MedicationStatement.ndjson", statements)
    report = load(export, target)
    assert report.reject_count == 0
    assert rows(
        target,
        "SELECT drug_concept_id, drug_source_value, drug_exposure_start_date::VARCHAR, "
        "drug_exposure_end_date::VARCHAR FROM drug_exposure ORDER BY 1",
    ) == [
        (concepts.METOPROLOL, "6918", "2022-05-01", "2022-08-31"),
        (concepts.LISINOPRIL, "29046", "2023-01-15", "2023-01-15"),
    ]
