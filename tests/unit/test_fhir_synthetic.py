"""The synthetic FHIR export: deterministic, valid JSON, starter codes, loads cleanly."""

from __future__ import annotations

import json
from pathlib import Path

from accord.bench import ingest as bench_ingest
from accord.ingest import CdmTarget, LoadReport
from accord.ingest.fhir import ingest_fhir
from accord.ingest.fhir.synthetic import write_bulk_export
from accord.vocab import load_starter_vocabulary


def test_same_seed_same_export(tmp_path: Path) -> None:
    first = write_bulk_export(tmp_path / "a", persons=50, seed=3)
    second = write_bulk_export(tmp_path / "b", persons=50, seed=3)
    assert first == second
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


def test_every_line_is_a_resource_of_its_file_type(tmp_path: Path) -> None:
    counts = write_bulk_export(tmp_path, persons=40, seed=5, lines_per_file=50)
    seen: dict[str, int] = {}
    for path in tmp_path.iterdir():
        kind = path.name.split(".", 1)[0]
        for line in path.read_text(encoding="utf-8").splitlines():
            assert json.loads(line)["resourceType"] == kind
            seen[kind] = seen.get(kind, 0) + 1
    assert seen == counts
    assert (tmp_path / "Observation.000.ndjson").exists()
    assert counts["Patient"] == 40


def test_a_synthetic_export_loads_without_rejects_and_reloads_to_nothing(tmp_path: Path) -> None:
    counts = write_bulk_export(tmp_path / "export", persons=200, seed=11, lines_per_file=300)
    target = CdmTarget.open(tmp_path / "m.duckdb")
    load_starter_vocabulary(target.connection)
    seen: list[tuple[str, int, int]] = []
    report = LoadReport(kind="fhir", source="export")
    ingest_fhir(tmp_path / "export", target, report, progress=lambda *told: seen.append(told))
    assert report.reject_count == 0
    assert report.rows["person"] == counts["Patient"]
    assert report.rows["visit_occurrence"] == counts["Encounter"]
    assert report.rows["condition_occurrence"] == counts["Condition"]
    assert report.rows["procedure_occurrence"] == counts["Procedure"]
    # Vaccines are CVX codes, which the starter vocabulary lacks: the only unmapped codes.
    assert {vocabulary for vocabulary, _ in report.unmapped_codes} == {"CVX"}
    assert seen
    assert seen[-1][1] == seen[-1][2]
    unmapped = target.connection.execute(
        "SELECT count(*) FROM measurement WHERE measurement_concept_id = 0"
    ).fetchone()
    assert unmapped == (0,)
    again = LoadReport(kind="fhir", source="export")
    ingest_fhir(tmp_path / "export", target, again)
    assert again.rows_total == 0
    target.close()


def test_bench_reports_resources_per_second(tmp_path: Path) -> None:
    result = bench_ingest.run(persons=30)
    written = write_bulk_export(tmp_path, persons=30, seed=bench_ingest.SEED)
    assert result["bench"] == "ingest"
    assert result["metric"] == "resources_per_second"
    assert result["unit"] == "resources/s"
    assert result["resources"] == sum(written.values())
    # Every resource gives at least one row; a blood pressure panel gives two.
    assert result["rows"] > result["resources"]
    assert result["value"] > 0
    assert result["seconds"] > 0
    assert result["baseline"] is None
    assert result["ratio"] is None


def test_every_resource_of_an_export_is_loaded_or_rejected_with_a_reason(tmp_path: Path) -> None:
    """Every line of a Bulk Data export is accounted for: in the CDM, or in the rejects."""
    export = tmp_path / "export"
    counts = write_bulk_export(export, persons=120, seed=17, lines_per_file=400)
    # Spoil a few lines, as real exports have them: a void status, a dangling reference,
    # broken JSON. Each must show up as a reject, never vanish.
    spoiled = {"Condition": 0, "Immunization": 0, "Procedure": 0}
    for kind in spoiled:
        path = sorted(export.glob(f"{kind}*.ndjson"))[0]
        lines = path.read_text(encoding="utf-8").splitlines()
        first = json.loads(lines[0])
        first["subject" if kind != "Immunization" else "patient"] = {"reference": "Patient/x"}
        lines[0] = json.dumps(first)
        lines[1] = lines[1][: len(lines[1]) // 2]  # truncated JSON
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        spoiled[kind] = 2
    target = CdmTarget.open(tmp_path / "m.duckdb")
    load_starter_vocabulary(target.connection)
    report = LoadReport(kind="fhir", source=str(export), rejects_path=tmp_path / "rejects.ndjson")
    ingest_fhir(export, target, report)
    rejects = [json.loads(line) for line in (tmp_path / "rejects.ndjson").read_text().splitlines()]
    rejected: dict[str, int] = {}
    for reject in rejects:
        kind = reject["source"].split(".", 1)[0]
        rejected[kind] = rejected.get(kind, 0) + 1
        assert reject["reason"]
    loaded = dict(
        target.connection.execute(
            "SELECT split_part(split_part(source_key, ':', 2), '/', 1) AS kind, "
            "count(DISTINCT split_part(source_key, '#', 1)) "
            "FROM accord_provenance WHERE source_key LIKE 'fhir:%' GROUP BY kind"
        ).fetchall()
    )
    for kind in (
        "Patient",
        "Encounter",
        "Condition",
        "Procedure",
        "MedicationRequest",
        "Immunization",
    ):
        assert loaded.get(kind, 0) + rejected.get(kind, 0) == counts[kind], kind
        assert rejected.get(kind, 0) == spoiled.get(kind, 0), kind
    assert report.to_json()["unmapped"]["total"] > 0  # the starter vocabulary lacks CVX
    target.close()
