"""Benchmark: FHIR R4 resources loaded per second from a Bulk Data export into DuckDB.

A synthetic export (Patient, Encounter, Condition, Observation, MedicationRequest,
Procedure, Immunization ndjson) is written to a temporary directory, and a new DuckDB
CDM gets the starter vocabulary; neither is timed. The clock covers ``ingest_fhir`` only:
reading and parsing the files, resolving references, mapping codes, routing rows by
domain and writing them with provenance in one transaction.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.errors import UserError
from accord.ingest import CdmTarget, LoadReport
from accord.ingest.fhir import ingest_fhir
from accord.ingest.fhir.synthetic import write_bulk_export
from accord.vocab import load_starter_vocabulary

SEED = 7


def run(
    persons: int = 20_000, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Load an export of ``persons`` patients and report resources per second."""
    if persons < 1:
        raise UserError(f"persons must be at least 1, got {persons}", hint="ask for more persons")
    with tempfile.TemporaryDirectory(prefix="accord-bench-ingest-") as directory:
        export = Path(directory) / "export"
        written = write_bulk_export(export, persons=persons, seed=SEED)
        report = LoadReport(kind="fhir", source="synthetic bulk export")
        with CdmTarget.open(Path(directory) / "member.duckdb") as target:
            load_starter_vocabulary(target.connection)
            started = time.perf_counter()
            ingest_fhir(export, target, report, progress=progress)
            seconds = time.perf_counter() - started
    resources = sum(written.values())
    return {
        "bench": "ingest",
        "metric": "resources_per_second",
        "value": round(resources / seconds, 1),
        "unit": "resources/s",
        "baseline": None,
        "ratio": None,
        "resources": resources,
        "rows": report.rows_total,
        "seconds": round(seconds, 3),
    }
