"""Benchmark: the trial-recruitment count end to end, against the same SQL on pooled data.

Five members of 200,000 persons each run as real node processes beside a hub; the clock
covers ``Client.run``: the signed task, its push to every node, each node's quality-gate
check and count, disclosure, HPKE sealing, the hub's checks and the researcher's
long-poll. The baseline, measured in the same run, is the same compiled SQL on one DuckDB
holding every member's rows (what a pooled data warehouse would do, with none of the
federation). Both are the median of several runs after a warm-up.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from accord.bench.running import Running, running_consortium
from accord.cdm import load_spec
from accord.errors import UserError
from accord.query import compile_query
from accord.query.scenarios import trial_recruitment

MEMBERS = 5
RUNS = 7
TABLES = ("person", "condition_occurrence", "drug_exposure")
PERSON_ID_STRIDE = 1_000_000_000


def run(
    persons: int = 200_000, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Time the federated count and the pooled baseline; report both and their ratio."""
    if persons < 100:
        raise UserError(f"persons must be at least 100, got {persons}")
    with running_consortium(members=MEMBERS, persons=persons, progress=progress) as running:
        query = trial_recruitment(running.manifest.as_of)
        running.client.run(query, timeout=120)  # warm-up: connections, caches
        federated: list[float] = []
        total = None
        for index in range(RUNS):
            started = time.perf_counter()
            result = running.client.run(query, timeout=120)
            federated.append(time.perf_counter() - started)
            if not result.done or result.total is None:
                raise UserError("the federated count did not complete at every member")
            total = result.total.display
            if progress is not None:
                progress("federated counts", index + 1, RUNS)
        pooled, pooled_count = _pooled(running, compile_query(query, "duckdb"), progress)
    federated_s = statistics.median(federated)
    pooled_s = statistics.median(pooled)
    return {
        "bench": "federated-count",
        "metric": "median_seconds",
        "value": round(federated_s, 4),
        "unit": "s",
        "baseline": round(pooled_s, 4),
        "ratio": round(federated_s / pooled_s, 2),
        "target": "ratio <= 1.5",
        "members": MEMBERS,
        "persons": persons * MEMBERS,
        "released_total": total,
        "pooled_count": pooled_count,
        "runs": RUNS,
    }


def _pooled(
    running: Running, sql: str, progress: Callable[[str, int, int], None] | None
) -> tuple[list[float], int]:
    """The baseline: every member's rows in one DuckDB file, the same SQL run on it."""
    with tempfile.TemporaryDirectory(prefix="accord-bench-pooled-") as directory:
        path = Path(directory) / "pooled.duckdb"
        with duckdb.connect(str(path)) as pooled:
            names = [m.id for m in running.manifest.members]
            for index, member in enumerate(names):
                pooled.execute(
                    f"ATTACH '{running.member_database(member)}' AS m{index} (READ_ONLY)"
                )
            for table in TABLES:
                # Each member numbers its persons from 1: shift them apart, as a pooled
                # warehouse must, so that no two members' persons become one.
                fields = load_spec().table(table).field_names
                union = " UNION ALL ".join(
                    "SELECT "
                    + ", ".join(
                        f"person_id + {PERSON_ID_STRIDE * i} AS person_id"
                        if field == "person_id"
                        else field
                        for field in fields
                    )
                    + f" FROM m{i}.{table}"
                    for i in range(len(names))
                )
                pooled.execute(f"CREATE TABLE {table} AS {union}")
            pooled.execute("CREATE TABLE concept_ancestor AS SELECT * FROM m0.concept_ancestor")
            for index in range(len(names)):
                pooled.execute(f"DETACH m{index}")
            row = pooled.execute(sql).fetchone()  # warm-up
            count = int(row[0]) if row else 0
            seconds = []
            for index in range(RUNS):
                started = time.perf_counter()
                pooled.execute(sql).fetchone()
                seconds.append(time.perf_counter() - started)
                if progress is not None:
                    progress("pooled counts", index + 1, RUNS)
    return seconds, count
