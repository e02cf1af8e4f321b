"""A generated member exported as a legacy CSV extract and loaded back gives the same answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest

from accord.ingest import CdmTarget, LoadReport
from accord.ingest.csv import ingest_csv
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from accord.synth import ConsortiumManifest, MemberManifest, generate_consortium
from accord.synth.export_csv import SUMMARY_FILE, export_legacy_csv
from accord.vocab import concepts, load_starter_vocabulary


@dataclass(frozen=True)
class RoundTrip:
    manifest: ConsortiumManifest
    member: MemberManifest
    original: duckdb.DuckDBPyConnection
    loaded: CdmTarget
    report: LoadReport
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def trip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    folder = tmp_path_factory.mktemp("roundtrip")
    manifest = generate_consortium(folder / "consortium", members=2, persons_per_member=500)
    member = manifest.members[0]
    mapping = export_legacy_csv(folder / "consortium" / member.db_file, folder / "legacy")
    target = CdmTarget.open(folder / "loaded.duckdb")
    load_starter_vocabulary(target.connection)
    report = LoadReport(kind="csv", source=mapping.name)
    ingest_csv(mapping, target, report)
    original = duckdb.connect(str(folder / "consortium" / member.db_file), read_only=True)
    summary = json.loads((mapping.parent / SUMMARY_FILE).read_text(encoding="utf-8"))
    yield RoundTrip(manifest, member, original, target, report, summary)
    original.close()
    target.close()


def counts(connection: Any, sql: str) -> dict[int, int]:
    return {int(key): int(n) for key, n in connection.execute(sql).fetchall()}


def test_everything_exported_is_loaded(trip: RoundTrip) -> None:
    assert trip.report.reject_count == 0
    assert trip.report.unmapped_codes == {}
    assert trip.report.rows["person"] == trip.member.persons
    # Influenza recorded as J11.1 has no ICD-9-CM code for the same concept.
    assert trip.summary["diagnoses_in_icd10"] > 0
    assert trip.summary["dropped_conditions_by_concept"] == {}
    assert trip.summary["dropped_drugs_by_concept"] == {}


def test_persons_are_the_same(trip: RoundTrip) -> None:
    sql = (
        "SELECT person_source_value, gender_concept_id, year_of_birth, month_of_birth, "
        "day_of_birth FROM person ORDER BY 1"
    )
    assert trip.loaded.connection.execute(sql).fetchall() == trip.original.execute(sql).fetchall()


def test_conditions_per_standard_concept_are_the_same(trip: RoundTrip) -> None:
    sql = "SELECT condition_concept_id, count(*) FROM condition_occurrence GROUP BY 1"
    expected = counts(trip.original, sql)
    for concept, dropped in trip.summary["dropped_conditions_by_concept"].items():
        expected[int(concept)] -= dropped
    loaded = counts(trip.loaded.connection, sql)
    assert loaded == expected
    hypertension, diabetes = concepts.HYPERTENSION, 4230254
    influenza, influenzal_infection = concepts.INFLUENZA, 4183609
    assert all(loaded[c] > 0 for c in (hypertension, diabetes, influenza, influenzal_infection))


def test_conditions_keep_person_and_date(trip: RoundTrip) -> None:
    sql = (
        "SELECT p.person_source_value, condition_concept_id, condition_start_date, "
        "condition_end_date, count(*) FROM condition_occurrence "
        "JOIN person p USING (person_id) GROUP BY ALL ORDER BY ALL"
    )
    assert trip.loaded.connection.execute(sql).fetchall() == trip.original.execute(sql).fetchall()


def test_drug_exposures_per_ingredient_are_the_same(trip: RoundTrip) -> None:
    sql = "SELECT drug_concept_id, count(*) FROM drug_exposure GROUP BY 1"
    assert counts(trip.loaded.connection, sql) == counts(trip.original, sql)
    detail = (
        "SELECT p.person_source_value, drug_concept_id, drug_exposure_start_date, "
        "drug_exposure_end_date, days_supply, quantity FROM drug_exposure "
        "JOIN person p USING (person_id) ORDER BY ALL"
    )
    assert (
        trip.loaded.connection.execute(detail).fetchall()
        == trip.original.execute(detail).fetchall()
    )


def test_trial_recruitment_matches_the_manifest(trip: RoundTrip) -> None:
    query = trial_recruitment(trip.manifest.as_of)
    assert run_count(trip.loaded.connection, query, "duckdb") == trip.member.trial_recruitment
    assert trip.member.trial_recruitment > 0
