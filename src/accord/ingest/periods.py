"""Observation periods derived from the events of a load, for sources that record none.

OMOP analyses count time at risk inside a person's observation periods, and the quality
gate flags a person without one. FHIR servers and most CSV extracts have no such notion,
so, as OHDSI's own FHIR and Synthea conversions do, a load from them gives each person
who has events but no observation period one period from their first event to their
last. A person who already has a period keeps it: a later load does not stretch it.

>>> import tempfile, pyarrow as pa
>>> from pathlib import Path
>>> from accord.ingest import CdmTarget, LoadReport
>>> target = CdmTarget.open(Path(tempfile.mkdtemp()) / "m.duckdb", gate=False)
>>> with target.load(LoadReport(kind="example", source="doctest")) as load:
...     _ = load.append("person", pa.table({"person_id": [1], "gender_concept_id": [0],
...         "year_of_birth": [1970], "race_concept_id": [0], "ethnicity_concept_id": [0]}),
...         source_keys=pa.array(["p:1"]), source_file="x", locators=pa.array(["1"]),
...         mapping_version="none")
...     _ = load.append("condition_occurrence", pa.table({"condition_occurrence_id": [1, 2],
...         "person_id": [1, 1], "condition_concept_id": [0, 0],
...         "condition_start_date": pa.array([18000, 18400], pa.date32()),
...         "condition_type_concept_id": [32817, 32817]}),
...         source_keys=pa.array(["c:1", "c:2"]), source_file="x",
...         locators=pa.array(["1", "2"]), mapping_version="none")
...     derive_observation_periods(target, load)
1
>>> target.fetch("SELECT observation_period_start_date, observation_period_end_date "
...              "FROM observation_period")
[(datetime.date(2019, 4, 14), datetime.date(2020, 5, 18))]
>>> target.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
import pyarrow as pa

from accord.ingest.provenance import SqlNames

if TYPE_CHECKING:
    from accord.ingest.load import Load
    from accord.ingest.target import CdmTarget

EHR: Final = 32817
"""Type concept "EHR": the period was derived from the record of care."""

EVENT_DATES: Final = (
    ("visit_occurrence", "visit_start_date", "visit_end_date"),
    ("condition_occurrence", "condition_start_date", "condition_end_date"),
    ("drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"),
    ("procedure_occurrence", "procedure_date", None),
    ("measurement", "measurement_date", None),
    ("observation", "observation_date", None),
)
"""The tables that record care, with each row's first and last day."""

SOURCE_FILE: Final = "derived from the events of the load"


def derive_observation_periods(target: CdmTarget, load: Load) -> int:
    """Give every person with events but no observation period one; returns how many."""
    rows = target.fetch(_spans_sql(target.names))
    if not rows:
        return 0
    people = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    periods = pa.table(
        {
            "observation_period_id": load.allocate_ids("observation_period", len(rows)),
            "person_id": people,
            "observation_period_start_date": pa.array([row[1] for row in rows], pa.date32()),
            "observation_period_end_date": pa.array([row[2] for row in rows], pa.date32()),
            "period_type_concept_id": np.full(len(rows), EHR, dtype=np.int64),
        }
    )
    inserted = load.append(
        "observation_period",
        periods,
        source_keys=pa.array([f"derived:observation_period:person:{p}" for p in people]),
        source_file=SOURCE_FILE,
        locators=pa.array([f"person {p}" for p in people]),
        mapping_version="first to last event",
    )
    persons = f"{inserted:,} person" + ("" if inserted == 1 else "s")
    load.report.note(f"observation periods derived from first to last event for {persons}")
    return inserted


def _spans_sql(names: SqlNames) -> str:
    """Per person with events and no observation period: first and last event day."""
    col = names.column
    spans = []
    for table, start, end in EVENT_DATES:
        last = (
            f"CASE WHEN {col(end)} > {col(start)} THEN {col(end)} ELSE {col(start)} END"
            if end
            else col(start)
        )
        spans.append(
            f"SELECT {col('person_id')} AS pid, {col(start)} AS first_day, {last} AS last_day "
            f"FROM {names.table(table)}"
        )
    return (
        f"SELECT e.pid, min(e.first_day), max(e.last_day) FROM ({' UNION ALL '.join(spans)}) "
        f"AS e WHERE EXISTS (SELECT 1 FROM {names.table('person')} AS p "
        f"WHERE p.{col('person_id')} = e.pid) "
        f"AND NOT EXISTS (SELECT 1 FROM {names.table('observation_period')} AS o "
        f"WHERE o.{col('person_id')} = e.pid) "
        "GROUP BY e.pid ORDER BY e.pid"
    )
