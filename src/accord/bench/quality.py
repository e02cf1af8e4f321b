"""Benchmark: the whole quality catalogue on one large member, in DuckDB.

A one-member synthetic consortium is generated first (not timed), with defects planted
in 0.1% of the eligible rows so that the failed checks' example ids are looked up too.
The clock covers :func:`accord.quality.gate.judge`: the full catalogue generated from the
CDM spec, as a steward's ``accord quality run`` executes it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from accord.errors import UserError
from accord.quality import default_catalogue
from accord.quality.gate import judge
from accord.synth import generate_consortium


def run(
    persons: int = 1_000_000, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Run every check on a ``persons``-person member and report checks per second."""
    if persons < 1:
        raise UserError(f"persons must be at least 1, got {persons}")
    with tempfile.TemporaryDirectory(prefix="accord-bench-quality-") as directory:
        manifest = generate_consortium(
            Path(directory) / "consortium",
            members=1,
            persons_per_member=persons,
            progress=progress,
            defects=0.001,
        )
        member = manifest.members[0]
        path = Path(directory) / "consortium" / member.db_file
        checks = default_catalogue()
        with duckdb.connect(str(path), read_only=True) as connection:
            started = time.perf_counter()
            verdict = judge(connection, "duckdb", kind="bench", source="accord bench quality")
            seconds = time.perf_counter() - started
        results = verdict.report["results"]
        if progress is not None:
            progress("quality checks", len(results), len(checks))
    rows = sum(member.rows.values())
    return {
        "bench": "quality",
        "metric": "checks_per_second",
        "value": round(len(results) / seconds, 1),
        "unit": "checks/s",
        "baseline": None,
        "ratio": None,
        "checks": len(results),
        "persons": member.persons,
        "rows": rows,
        "seconds": round(seconds, 3),
        "failed": verdict.report["counts"]["fail"],
        "planted_defects": sum(member.planted_defects.values()),
        "decision": verdict.decision,
    }
