"""``Load.existing_ids`` and the FHIR increments that rely on it, on every engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from accord.ingest import CdmTarget, Load, LoadReport
from accord.ingest.fhir import ingest_fhir


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CdmTarget]:
    """An empty CDM target on one engine; PostgreSQL gets a schema of its own per test."""
    if request.param == "duckdb":
        opened = CdmTarget.open(tmp_path / "member.duckdb", gate=False)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        opened = CdmTarget.open(dsn, schema=request.getfixturevalue("postgres_schema"), gate=False)
    try:
        yield opened
    finally:
        opened.close()


def report() -> LoadReport:
    return LoadReport(kind="test", source="spec test")


def append_locations(load: Load, keys: list[str]) -> list[int]:
    ids = load.allocate_ids("location", len(keys))
    load.append(
        "location",
        pa.table({"location_id": ids, "city": [f"city of {k}" for k in keys]}),
        source_keys=pa.array(keys),
        source_file="locations.csv",
        locators=pa.array([f"line {i + 2}" for i in range(len(keys))]),
        mapping_version="test-1",
    )
    return [int(i) for i in ids]


def test_ids_of_earlier_and_current_loads_and_nulls_for_new_keys(target: CdmTarget) -> None:
    with target.load(report()) as load:
        assert append_locations(load, ["t:a", "t:b"]) == [1, 2]
    with target.load(report()) as load:
        assert append_locations(load, ["t:c"]) == [3]
        found = load.existing_ids("location", pa.array(["t:b", "t:c", "t:never", "t:b", "t:a"]))
        assert found.type == pa.int64()
        assert found.to_pylist() == [2, 3, None, 2, 1]
        # Keys are per table: a location's key names no person.
        assert load.existing_ids("person", pa.array(["t:a"])).to_pylist() == [None]
        empty = load.existing_ids("location", pa.array([], pa.string()))
        assert empty.type == pa.int64()
        assert len(empty) == 0


def test_keys_may_come_chunked_and_bad_keys_are_refused(target: CdmTarget) -> None:
    with target.load(report()) as load:
        append_locations(load, ["t:a", "t:b"])
        chunked = pa.chunked_array([["t:b"], ["t:x", "t:a"]])
        assert load.existing_ids("location", chunked).to_pylist() == [2, None, 1]
        with pytest.raises(ValueError, match="1 null entries"):
            load.existing_ids("location", pa.array(["t:a", None]))
        with pytest.raises(KeyError):
            load.existing_ids("no_such_table", pa.array(["t:a"]))
    with pytest.raises(RuntimeError, match="this load has ended"):
        load.existing_ids("location", pa.array(["t:a"]))


def write_ndjson(directory: Path, name: str, resources: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(resource) + "\n" for resource in resources)
    (directory / name).write_text(text, encoding="utf-8")


def condition(cid: str, pid: str, eid: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]},
        "onsetDateTime": "2021-02-03",
    }


def test_a_fhir_increment_refers_to_people_and_visits_of_an_earlier_load(
    target: CdmTarget, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    patients = [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-05-06"}
        for pid in ("p1", "p2")
    ]
    write_ndjson(first, "Patient.ndjson", patients)
    write_ndjson(
        first,
        "Encounter.ndjson",
        [
            {
                "resourceType": "Encounter",
                "id": "e2",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": "Patient/p2"},
                "period": {"start": "2021-02-03T09:00:00Z", "end": "2021-02-03T10:00:00Z"},
            }
        ],
    )
    ingest_fhir(first, target, LoadReport(kind="fhir", source="first"))
    increment = tmp_path / "increment"
    write_ndjson(increment, "Condition.ndjson", [condition("c1", "p2", "e2")])
    later = LoadReport(kind="fhir", source="increment")
    ingest_fhir(increment, target, later)
    assert later.to_json()["rejects"]["count"] == 0
    assert dict(later.rows) == {"condition_occurrence": 1}
    got = target.connection.execute(
        "SELECT p.person_source_value, v.visit_source_value IS NOT NULL "
        "FROM condition_occurrence c JOIN person p ON p.person_id = c.person_id "
        "JOIN visit_occurrence v ON v.visit_occurrence_id = c.visit_occurrence_id"
    ).fetchall()
    assert [tuple(row) for row in got] == [("p2", True)]
