"""Harmonisation gives the same answer on every engine a member may run.

One synthetic consortium; one member arrives as FHIR R4 ndjson, another as a legacy CSV
extract with ICD-9-CM codes. Each is loaded into DuckDB and into PostgreSQL, and the
scenario count on each target equals the generator's ground truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.ingest import CdmTarget, LoadReport
from accord.ingest.csv import ingest_csv
from accord.ingest.fhir import ingest_fhir
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from accord.synth import ConsortiumManifest, generate_consortium
from accord.synth.export_csv import export_legacy_csv
from accord.synth.export_fhir import export_fhir
from accord.vocab.athena import import_vocabulary
from accord.vocab.starter import starter_directory

NATIONAL_ID = "urn:oid:2.16.840.1.113883.4.1"


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    root = tmp_path_factory.mktemp("members")
    manifest = generate_consortium(root, members=3, persons_per_member=300, seed=21)
    return root, manifest


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CdmTarget]:
    if request.param == "duckdb":
        opened = CdmTarget.open(tmp_path / "member.duckdb", gate=False)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("postgres_schema")
        opened = CdmTarget.open(dsn, schema=schema, gate=False)
    with opened:
        import_vocabulary(
            starter_directory(), opened.connection, opened.dialect, schema=opened.schema
        )
        yield opened


def scenario_count(target: CdmTarget, manifest: ConsortiumManifest) -> int:
    return run_count(
        target.connection, trial_recruitment(manifest.as_of), target.dialect, schema=target.schema
    )


def test_a_fhir_member_counts_the_same_on_every_engine(
    consortium: tuple[Path, ConsortiumManifest], target: CdmTarget, tmp_path: Path
) -> None:
    root, manifest = consortium
    member = manifest.members[0]
    export_fhir(root / member.db_file, tmp_path / "fhir", national_id_system=NATIONAL_ID)
    report = LoadReport(kind="fhir", source="fhir")
    ingest_fhir(tmp_path / "fhir", target, report, national_id_system=NATIONAL_ID)
    assert report.reject_count == 0
    assert report.rows["person"] == member.persons
    assert scenario_count(target, manifest) == member.trial_recruitment


def test_a_legacy_csv_member_counts_the_same_on_every_engine(
    consortium: tuple[Path, ConsortiumManifest], target: CdmTarget, tmp_path: Path
) -> None:
    root, manifest = consortium
    member = manifest.members[1]
    mapping = export_legacy_csv(root / member.db_file, tmp_path / "csv")
    report = LoadReport(kind="csv", source="csv")
    ingest_csv(mapping, target, report)
    assert report.reject_count == 0
    assert report.rows["person"] == member.persons
    assert scenario_count(target, manifest) == member.trial_recruitment
