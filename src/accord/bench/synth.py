"""Benchmark: synthetic patients generated per second, end to end into DuckDB.

The clock covers everything ``generate_consortium`` does: drawing the population,
creating each member's CDM tables, loading the starter vocabulary, writing the clinical
tables and the manifest. The consortium goes to a temporary directory removed afterwards.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.errors import UserError
from accord.synth import generate_consortium

MEMBERS = 4


def run(
    persons: int = 200_000, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Generate ``persons`` patients across four members and report patients per second."""
    if persons < MEMBERS:
        raise UserError(
            f"persons must be at least {MEMBERS}, got {persons}", hint="ask for more persons"
        )
    per_member = persons // MEMBERS
    with tempfile.TemporaryDirectory(prefix="accord-bench-synth-") as directory:
        started = time.perf_counter()
        manifest = generate_consortium(
            Path(directory) / "consortium",
            members=MEMBERS,
            persons_per_member=per_member,
            progress=progress,
        )
        seconds = time.perf_counter() - started
    generated = sum(member.persons for member in manifest.members)
    rows = sum(sum(member.rows.values()) for member in manifest.members)
    return {
        "bench": "synth",
        "metric": "patients_per_second",
        "value": round(generated / seconds, 1),
        "unit": "patients/s",
        "baseline": None,
        "ratio": None,
        "persons": generated,
        "rows": rows,
        "seconds": round(seconds, 3),
    }
