"""Benchmark: the round trip of a trivial task across three members.

The task is a count with no criteria on small members, so the figure is the platform's
own cost: signing and checking envelopes, pushing the task over each node's WebSocket,
the node's quality-gate check and a one-row query, HPKE sealing, the hub's checks and the
researcher's long-poll. Measured from ``Client.run`` (submit and wait), after warm-up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from accord.bench.running import running_consortium
from accord.errors import UserError
from accord.query import cohort, count_persons

MEMBERS = 3
PERSONS = 1_000
WARM_UP = 5


def run(
    rounds: int = 100, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Time ``rounds`` trivial tasks; report the median and the 95th percentile."""
    if rounds < 10:
        raise UserError(f"rounds must be at least 10, got {rounds}")
    with running_consortium(members=MEMBERS, persons=PERSONS, progress=progress) as running:
        task = count_persons(cohort(as_of=running.manifest.as_of))
        for _ in range(WARM_UP):
            running.client.run(task, timeout=30)
        seconds: list[float] = []
        for index in range(rounds):
            started = time.perf_counter()
            result = running.client.run(task, timeout=30)
            seconds.append(time.perf_counter() - started)
            if not result.done or any(m.status != "done" for m in result.members):
                raise UserError("a trivial task did not complete at every member")
            if progress is not None:
                progress("round trips", index + 1, rounds)
    milliseconds = sorted(1000 * s for s in seconds)
    return {
        "bench": "task-overhead",
        "metric": "median_round_trip",
        "value": round(statistics.median(milliseconds), 1),
        "unit": "ms",
        "baseline": None,
        "ratio": None,
        "target": "median <= 50 ms",
        "p95_ms": round(milliseconds[int(0.95 * (len(milliseconds) - 1))], 1),
        "min_ms": round(milliseconds[0], 1),
        "rounds": rounds,
        "members": MEMBERS,
    }
