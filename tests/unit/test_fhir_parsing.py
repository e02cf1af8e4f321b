"""FHIR parsing on its own: dates, references, codings, files and extractors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from accord.errors import DataError
from accord.ingest.fhir.codes import CodingChooser
from accord.ingest.fhir.dates import parse_fhir_dates
from accord.ingest.fhir.elements import Rejected, reference
from accord.ingest.fhir.events import EXTRACTORS
from accord.ingest.fhir.files import discover, read_batches
from accord.vocab.systems import vocabulary_for_system
from fhir_examples import BLOOD_PRESSURE

CHOOSER = CodingChooser(vocabulary_for_system)


@pytest.mark.parametrize(
    ("value", "date", "moment"),
    [
        ("2019", "2019-01-01", None),
        ("2019-03", "2019-03-01", None),
        ("2019-03-04", "2019-03-04", None),
        ("2019-03-04T23:30:00-05:00", "2019-03-04", "2019-03-04 23:30:00"),
        ("2019-03-04T10:11:12.5+02:00", "2019-03-04", "2019-03-04 10:11:12.500000"),
        ("2011-06-09T00:22:10.123456789Z", "2011-06-09", "2011-06-09 00:22:10.123456"),
        ("2020-01-01T10:00Z", "2020-01-01", "2020-01-01 10:00:00"),
    ],
)
def test_fhir_dates_parse_to_the_first_day_and_keep_local_time(
    value: str, date: str, moment: str | None
) -> None:
    parsed = parse_fhir_dates(pa.array([value]))
    assert str(parsed.date[0].as_py()) == date
    shown = parsed.datetime[0].as_py()
    assert (str(shown) if shown is not None else None) == moment
    assert parsed.invalid.to_pylist() == [False]


@pytest.mark.parametrize(
    "value", ["soon", "2019-02-30", "2019-13", "19-03-04", "2019-01-01T10:10:60Z"]
)
def test_impossible_dates_are_invalid(value: str) -> None:
    parsed = parse_fhir_dates(pa.array([value]))
    assert parsed.invalid.to_pylist() == [True]
    assert parsed.date[0].as_py() is None


def test_a_missing_date_is_null_not_invalid() -> None:
    parsed = parse_fhir_dates(pa.array([None], pa.string()))
    assert parsed.invalid.to_pylist() == [False]
    assert parsed.date.to_pylist() == [None]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("Patient/1", "Patient/1"),
        ("https://fhir.example.org/r4/Patient/1", "Patient/1"),
        ("Patient/1/_history/3", "Patient/1"),
        ("urn:uuid:0f1e", "urn:uuid:0f1e"),
    ],
)
def test_references_are_cut_to_type_and_id(ref: str, expected: str) -> None:
    assert reference({"reference": ref}) == expected


def test_a_logical_reference_without_a_target_is_none() -> None:
    assert reference({"identifier": {"value": "x"}}) is None


def codings(*pairs: tuple[str | None, str]) -> dict[str, Any]:
    return {"coding": [{"system": s, "code": c} if s else {"code": c} for s, c in pairs]}


def test_a_standard_vocabulary_wins_over_an_earlier_billing_code() -> None:
    chosen = CHOOSER.choose(
        codings(
            ("http://hl7.org/fhir/sid/icd-10-cm", "I10"), ("http://snomed.info/sct", "59621000")
        )
    )
    assert chosen is not None
    assert (chosen.vocabulary, chosen.code, chosen.known) == ("SNOMED", "59621000", True)


def test_a_known_system_wins_over_an_earlier_unknown_one() -> None:
    chosen = CHOOSER.choose(
        codings(("urn:local", "7"), ("http://hl7.org/fhir/sid/icd-10-cm", "I10"))
    )
    assert chosen is not None
    assert chosen.vocabulary == "ICD10CM"


def test_an_unknown_system_is_kept_for_the_source_value() -> None:
    chosen = CHOOSER.choose(codings(("urn:local", "7")))
    assert chosen is not None
    assert (chosen.vocabulary, chosen.code, chosen.known) == ("urn:local", "7", False)


def test_a_concept_without_codes_gives_nothing() -> None:
    assert CHOOSER.choose({"text": "headache"}) is None


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_all(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    rejects: list[tuple[str, str]] = []
    found: list[str] = []
    for source in discover(path):
        for batch in read_batches(source, lambda loc, why, _: rejects.append((loc, why))):
            found += [f"{source.label}:{raw.locator}" for raw in batch]
    return found, rejects


def test_split_ndjson_files_announce_their_type(tmp_path: Path) -> None:
    for name in ("Patient.ndjson", "Patient.000.ndjson", "Observation.1.ndjson", "data.ndjson"):
        write_lines(tmp_path / name, ['{"resourceType":"Patient","id":"1"}'])
    with gzip.open(tmp_path / "Condition.002.ndjson.gz", "wt", encoding="utf-8") as out:
        out.write('{"resourceType":"Condition","id":"1"}\n')
    kinds = {source.label: source.resource_type for source in discover(tmp_path)}
    assert kinds == {
        "Condition.002.ndjson.gz": "Condition",
        "Observation.1.ndjson": "Observation",
        "Patient.000.ndjson": "Patient",
        "Patient.ndjson": "Patient",
        "data.ndjson": None,
    }
    found, _ = read_all(tmp_path / "Condition.002.ndjson.gz")
    assert found == ["Condition.002.ndjson.gz:line 1"]


def test_bad_lines_are_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "Patient.ndjson",
        [
            '{"resourceType":"Patient","id":"1"}',
            "{not json",
            "",
            "[1, 2]",
            '{"resourceType":"Patient","id":"2"}',
        ],
    )
    found, rejects = read_all(tmp_path)
    assert found == ["Patient.ndjson:line 1", "Patient.ndjson:line 5"]
    assert rejects == [
        ("line 2", "malformed JSON"),
        ("line 4", "not a FHIR resource: no resourceType"),
    ]


def test_a_utf16_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_text('{"resourceType":"Patient"}\n', encoding="utf-16")
    with pytest.raises(DataError, match=r"Patient\.ndjson is not UTF-8"):
        read_all(tmp_path)


def test_latin1_bytes_are_a_data_error_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_bytes(
        b'{"resourceType":"Patient","id":"1"}\n{"resourceType":"Patient","name":"Jos\xe9"}\n'
    )
    with pytest.raises(DataError, match=r"Patient\.ndjson is not UTF-8 \(line 2\)"):
        read_all(tmp_path)


def test_a_broken_gzip_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"cannot read FHIR file Patient\.ndjson\.gz"):
        read_all(tmp_path)


def test_a_bundle_that_is_not_json_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_text('{"resourceType": "Bundle", ', encoding="utf-8")
    with pytest.raises(DataError, match=r"bundle\.json is not valid JSON"):
        read_all(tmp_path)


def test_a_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nowhere")


def test_bundle_entries_without_resources_are_rejected(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/2"}},
        ],
    }
    (tmp_path / "b.json").write_text(json.dumps(bundle), encoding="utf-8")
    found, rejects = read_all(tmp_path)
    assert found == ["b.json:entry[0]"]
    assert rejects == [("entry[1]", "a DELETE entry carries no resource to load")]


def test_a_blood_pressure_panel_gives_one_event_per_component() -> None:
    events = EXTRACTORS["Observation"](BLOOD_PRESSURE, 0, CHOOSER)
    assert [(e.code.code, e.value_number, e.unit) for e in events] == [
        ("8480-6", 120.0, "mm[Hg]"),
        ("8462-4", 80.0, "mm[Hg]"),
    ]
    assert {e.default_table for e in events} == {"measurement"}


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (
            {
                "resourceType": "Condition",
                "id": "c",
                "code": codings(("http://snomed.info/sct", "1")),
            },
            "Condition.subject is missing or has no reference",
        ),
        (
            {
                "resourceType": "Condition",
                "id": "c",
                "subject": {"reference": "Patient/1"},
                "onsetDateTime": "2020",
            },
            "Condition.code is missing or has no coding",
        ),
        (
            {
                "resourceType": "Condition",
                "id": "c",
                "subject": {"reference": "Patient/1"},
                "code": codings(("http://snomed.info/sct", "1")),
            },
            "Condition has no onset[x] or recordedDate; a start date is required",
        ),
        (
            {
                "resourceType": "Immunization",
                "id": "i",
                "status": "not-done",
                "vaccineCode": codings(("http://hl7.org/fhir/sid/cvx", "140")),
                "patient": {"reference": "Patient/1"},
                "occurrenceDateTime": "2020",
            },
            "Immunization.status is not-done: not a record of care",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "id": "m",
                "subject": {"reference": "Patient/1"},
                "authoredOn": "2020",
                "medicationReference": {"reference": "Medication/9"},
            },
            "MedicationRequest.medication[x] has no coding (a reference to a separate "
            "Medication resource is not followed yet)",
        ),
    ],
)
def test_resources_missing_required_elements_are_rejected(
    resource: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        EXTRACTORS[resource["resourceType"]](resource, 0, CHOOSER)
    assert caught.value.reason == reason


def test_a_contained_medication_supplies_the_drug_code() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "id": "m",
        "subject": {"reference": "Patient/1"},
        "authoredOn": "2020-01-02",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": codings(("http://www.nlm.nih.gov/research/umls/rxnorm", "6809")),
            }
        ],
        "medicationReference": {"reference": "#med"},
    }
    (event,) = EXTRACTORS["MedicationRequest"](request, 0, CHOOSER)
    assert (event.code.vocabulary, event.code.code) == ("RxNorm", "6809")
