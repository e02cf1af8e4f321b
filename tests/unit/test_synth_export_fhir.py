"""A generated member exported as FHIR R4 Bulk Data and ingested again keeps its meaning.

The copy is compared with the member database person by person (joined on the national
id, ``person_source_value``) and with the manifest's figures. What FHIR cannot carry, and
is therefore not compared:

* observation_period (FHIR has no such resource), payer_plan_period and cost (the
  exporter writes no Coverage or claims);
* type concepts and visit source values (the ingest records its own: EHR, EHR
  encounter record, ...), and provider and care site source values (resource ids);
* location rows: the ingest writes one location per address it reads, so the member's
  six shared regions come back as one row per person and care site; the places
  themselves (city, state, county, coordinates) are compared per person instead.

A Condition carries both its billed code (ICD-10-CM or ICD-9-CM) and its SNOMED code; the
ingest keeps the billed code as the source value and source concept and maps it to the
standard concept, so conditions come back exactly as the member recorded them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from accord.errors import DataError, UserError
from accord.ingest import CdmTarget, LoadReport
from accord.ingest.fhir import ingest_fhir
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from accord.synth import ConsortiumManifest, MemberManifest, generate_consortium
from accord.synth.export_fhir import export_fhir
from accord.vocab import concepts as c
from accord.vocab import load_starter_vocabulary

PERSONS = 400
NATIONAL_ID = "urn:oid:2.16.840.1.113883.4.1"
KINDS = ("hospital", "clinic", "insurer")


class RoundTrip:
    def __init__(self, member: MemberManifest, export: Path, written: dict[str, int]) -> None:
        self.member = member
        self.export = export
        self.written = written
        self.report: LoadReport
        self.con: duckdb.DuckDBPyConnection

    def one(self, sql: str) -> Any:
        row = self.con.execute(sql).fetchone()
        assert row is not None
        return row[0]

    def both(self, sql: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """``sql`` over the original (schema ``original``) and over the copy (``main``)."""
        return (
            sorted(self.con.execute(sql.format(db="original")).fetchall()),
            sorted(self.con.execute(sql.format(db="main")).fetchall()),
        )

    def resources(self, kind: str) -> list[dict[str, Any]]:
        path = self.export / f"{kind}.ndjson"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    out = tmp_path_factory.mktemp("consortium")
    return out, generate_consortium(out, members=3, persons_per_member=PERSONS, seed=11)


@pytest.fixture(scope="module", params=KINDS)
def trip(
    request: pytest.FixtureRequest,
    consortium: tuple[Path, ConsortiumManifest],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RoundTrip]:
    root, manifest = consortium
    (member,) = [m for m in manifest.members if m.kind == request.param]
    work = tmp_path_factory.mktemp(f"fhir-{request.param}")
    written = export_fhir(root / member.db_file, work / "export", national_id_system=NATIONAL_ID)
    trip = RoundTrip(member, work / "export", written)
    trip.report = LoadReport(kind="fhir", source="export")
    with CdmTarget.open(work / "copy.duckdb") as target:
        load_starter_vocabulary(target.connection)
        ingest_fhir(work / "export", target, trip.report, national_id_system=NATIONAL_ID)
    trip.con = duckdb.connect(str(work / "copy.duckdb"), read_only=True)
    trip.con.execute(f"ATTACH '{root / member.db_file}' AS original (READ_ONLY)")
    yield trip
    trip.con.close()


CARRIED = (
    "person",
    "death",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "provider",
    "care_site",
)


def test_every_resource_is_loaded_and_rows_per_table_match(trip: RoundTrip) -> None:
    assert trip.report.reject_count == 0
    for table in CARRIED:
        assert trip.report.rows[table] == trip.member.rows[table], table
    # FHIR has no observation periods: each person with events gets one, first to last.
    with_events = trip.one(
        "SELECT count(DISTINCT person_id) FROM (SELECT person_id FROM visit_occurrence "
        "UNION ALL SELECT person_id FROM condition_occurrence "
        "UNION ALL SELECT person_id FROM drug_exposure "
        "UNION ALL SELECT person_id FROM procedure_occurrence "
        "UNION ALL SELECT person_id FROM measurement)"
    )
    assert trip.one("SELECT count(*) FROM observation_period") == with_events
    assert trip.report.rows["observation_period"] == with_events
    # One location per address read: every person's and every care site's.
    assert trip.one("SELECT count(*) FROM location") == trip.member.persons + 3
    assert trip.written["Patient"] == trip.member.persons
    assert trip.written["Condition"] == trip.member.rows["condition_occurrence"]
    assert trip.written["MedicationRequest"] == trip.member.rows["drug_exposure"]


def test_persons_keep_national_ids_demographics_deaths_and_places(trip: RoundTrip) -> None:
    original, copy = trip.both(
        "SELECT p.person_source_value, gender_concept_id, year_of_birth, month_of_birth, "
        "day_of_birth, race_concept_id, ethnicity_concept_id, death_date, "
        "l.city, l.state, l.county, l.latitude, l.longitude "
        "FROM {db}.person AS p LEFT JOIN {db}.death USING (person_id) "
        "LEFT JOIN {db}.location AS l USING (location_id)"
    )
    assert copy == original
    assert len({row[0] for row in copy}) == trip.member.persons
    assert trip.one("SELECT count(*) FROM death") == trip.member.deaths


def test_events_match_per_person_and_concept(trip: RoundTrip) -> None:
    for table, concept, when in (
        ("condition_occurrence", "condition_concept_id", "condition_start_date"),
        ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
        ("measurement", "measurement_concept_id", "measurement_date"),
        ("visit_occurrence", "visit_concept_id", "visit_start_date"),
    ):
        original, copy = trip.both(
            f"SELECT p.person_source_value, e.{concept}, e.{when}, count(*) "
            f"FROM {{db}}.{table} AS e JOIN {{db}}.person AS p USING (person_id) "
            "GROUP BY ALL"
        )
        assert copy == original, table


def test_condition_source_values_and_concepts_match_per_person(trip: RoundTrip) -> None:
    original, copy = trip.both(
        "SELECT p.person_source_value, e.condition_concept_id, e.condition_source_value, "
        "e.condition_source_concept_id, e.condition_start_date, count(*) "
        "FROM {db}.condition_occurrence AS e JOIN {db}.person AS p USING (person_id) "
        "GROUP BY ALL"
    )
    assert copy == original
    # The comparison means something only if billed codes are among them.
    assert any(source != concept for _, concept, _, source, _, _ in copy)


def test_values_dates_and_links_survive(trip: RoundTrip) -> None:
    queries = (
        "SELECT measurement_concept_id, unit_concept_id, count(*), sum(value_as_number), "
        "count(visit_occurrence_id), count(provider_id) FROM {db}.measurement GROUP BY ALL",
        "SELECT drug_concept_id, sum(quantity), sum(days_supply), "
        "sum(drug_exposure_end_date - drug_exposure_start_date), count(visit_occurrence_id) "
        "FROM {db}.drug_exposure GROUP BY ALL",
        "SELECT visit_concept_id, sum(visit_end_date - visit_start_date), count(care_site_id), "
        "count(provider_id) FROM {db}.visit_occurrence GROUP BY ALL",
        "SELECT count(visit_occurrence_id), count(provider_id), count(condition_end_date) "
        "FROM {db}.condition_occurrence",
    )
    for sql in queries:
        original, copy = trip.both(sql)
        assert copy == original, sql


def test_procedures_match_local_concepts_included(trip: RoundTrip) -> None:
    """Local concepts travel as urn:accord:vocabulary:<id> and map back to themselves."""
    original, copy = trip.both(
        "SELECT procedure_concept_id, count(*) FROM {db}.procedure_occurrence GROUP BY ALL"
    )
    assert dict(copy) == dict(original)
    assert trip.report.to_json()["unmapped"]["top"] == []


@pytest.mark.parametrize("name", ["hypertension", "type_2_diabetes", "influenza"])
def test_condition_prevalence_matches_the_manifest(trip: RoundTrip, name: str) -> None:
    concept = {"hypertension": c.HYPERTENSION, "type_2_diabetes": c.TYPE_2_DIABETES}.get(
        name, c.INFLUENZA
    )
    persons = trip.one(
        "SELECT count(DISTINCT person_id) FROM condition_occurrence JOIN concept_ancestor "
        f"ON descendant_concept_id = condition_concept_id WHERE ancestor_concept_id = {concept}"
    )
    assert persons == trip.member.conditions[name].persons


def test_drug_exposures_per_ingredient_and_class_match(trip: RoundTrip) -> None:
    original, copy = trip.both(
        "SELECT a.ancestor_concept_id, count(*), count(DISTINCT e.person_id) "
        "FROM {db}.drug_exposure AS e JOIN {db}.concept_ancestor AS a "
        "ON a.descendant_concept_id = e.drug_concept_id GROUP BY ALL"
    )
    assert copy == original
    persons = {ancestor: n for ancestor, _, n in copy}
    for group, concept in {
        "beta_blockers": c.BETA_BLOCKERS,
        "biguanides": c.BIGUANIDES,
        "statins": c.STATINS,
    }.items():
        assert persons.get(concept, 0) == trip.member.drugs[group], group


def test_trial_recruitment_count_matches_the_manifest(
    trip: RoundTrip, consortium: tuple[Path, ConsortiumManifest]
) -> None:
    _, manifest = consortium
    count = run_count(trip.con, trial_recruitment(manifest.as_of), "duckdb")
    assert count == trip.member.trial_recruitment


def test_resources_are_valid_json_with_stable_ids_and_coded_sources(trip: RoundTrip) -> None:
    conditions = trip.resources("Condition")
    assert conditions[0]["id"] == "cond-1"
    systems = {coding["system"] for r in conditions for coding in r["code"]["coding"]}
    assert "http://snomed.info/sct" in systems
    assert systems <= {
        "http://snomed.info/sct",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-9-cm",
    }
    billed, loaded = trip.both(
        "SELECT condition_source_value, condition_source_concept_id, count(*) "
        "FROM {db}.condition_occurrence GROUP BY ALL"
    )
    assert loaded == billed
    written: dict[str, int] = {}
    for resource in conditions:
        source = resource["code"]["coding"][0]["code"]
        written[source] = written.get(source, 0) + 1
    assert sorted(written.items()) == [(value, n) for value, _, n in billed]
    patients = trip.resources("Patient")
    assert {p["identifier"][0]["system"] for p in patients} == {NATIONAL_ID}
    ids = [r["id"] for kind in trip.written for r in trip.resources(kind)]
    assert len(ids) == len(set(ids)) == sum(trip.written.values())


def test_blood_pressure_is_one_panel_with_two_components(trip: RoundTrip) -> None:
    observations = trip.resources("Observation")
    panels = [o for o in observations if o["id"].startswith("bp-")]
    systolic = trip.one(
        f"SELECT count(*) FROM original.measurement WHERE measurement_concept_id = {c.SYSTOLIC_BP}"
    )
    assert len(panels) == systolic
    if not panels:
        assert trip.member.kind == "insurer"
        assert "Observation" not in {p.stem for p in trip.export.iterdir()}
        return
    panel = panels[0]
    assert panel["code"]["coding"] == [{"system": "http://loinc.org", "code": "85354-9"}]
    assert [x["code"]["coding"][0]["code"] for x in panel["component"]] == ["8480-6", "8462-4"]
    assert panel["component"][0]["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert "valueQuantity" not in panel


def test_exporting_twice_gives_the_same_files(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    root, manifest = consortium
    database = root / manifest.members[0].db_file
    export_fhir(database, tmp_path / "a")
    export_fhir(database, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_times_of_day_carry_the_given_offset(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    root, manifest = consortium
    database = tmp_path / "member.duckdb"
    database.write_bytes((root / manifest.members[0].db_file).read_bytes())
    with duckdb.connect(str(database)) as con:
        con.execute(
            "UPDATE visit_occurrence SET visit_start_datetime = TIMESTAMP '2020-03-01 08:30:00' "
            "WHERE visit_occurrence_id = 1"
        )
    export_fhir(database, tmp_path / "out", utc_offset="+01:00")
    first = json.loads((tmp_path / "out" / "Encounter.ndjson").read_text().splitlines()[0])
    assert first["period"]["start"] == "2020-03-01T08:30:00+01:00"


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="utc_offset"):
        export_fhir(tmp_path / "x.duckdb", tmp_path, utc_offset="CET")
    with pytest.raises(UserError, match="national_id_system"):
        export_fhir(tmp_path / "x.duckdb", tmp_path, national_id_system=" ")
    with pytest.raises(DataError, match="does not exist"):
        export_fhir(tmp_path / "missing.duckdb", tmp_path / "out")
