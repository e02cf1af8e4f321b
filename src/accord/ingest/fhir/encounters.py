"""Encounter to ``visit_occurrence``: the visit every other record of a stay points at.

The visit concept comes from ``Encounter.class`` (HL7 v3 ActCode); the visit's dates
from ``Encounter.period``, its end falling back to its start, as the CDM requires both.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accord.ingest.fhir.codes import concept_lookup
from accord.ingest.fhir.dates import parse_fhir_dates
from accord.ingest.fhir.elements import (
    Rejected,
    first,
    period_end,
    period_start,
    reference,
    status_code,
    text,
)
from accord.ingest.fhir.entities import ROW
from accord.ingest.fhir.pending import Pending
from accord.ingest.fhir.references import NOT_FOUND, ReferenceIndex
from accord.ingest.fhir.tables import constant, source_keys
from accord.ingest.fhir.writer import CdmWriter
from accord.vocab import concepts

VISIT_CONCEPTS: Final = {
    "AMB": concepts.OUTPATIENT_VISIT,
    "IMP": concepts.INPATIENT_VISIT,
    "ACUTE": concepts.INPATIENT_VISIT,
    "NONAC": concepts.INPATIENT_VISIT,
    "EMER": concepts.EMERGENCY_ROOM_VISIT,
}
"""Encounter.class codes to visit concepts; other classes keep their code, concept 0."""

_VOID: Final = frozenset({"entered-in-error", "cancelled"})


def encounter(resource: dict[str, Any]) -> tuple[Any, ...]:
    status = text(resource.get("status"))
    if status in _VOID:
        raise Rejected(f"Encounter.status is {status}: not a visit that took place", status)
    subject = reference(resource.get("subject"))
    if subject is None:
        raise Rejected("Encounter.subject is missing or has no reference")
    period = resource.get("period")
    start = period_start(period)
    if start is None:
        raise Rejected("Encounter.period.start is missing; a visit start date is required")
    kind = resource.get("class")
    participant = first(resource.get("participant"))
    hospitalization = resource.get("hospitalization")
    stay = hospitalization if isinstance(hospitalization, dict) else {}
    return (
        subject,
        text(kind.get("code")) if isinstance(kind, dict) else None,
        start,
        period_end(period),
        reference(resource.get("serviceProvider")),
        reference(participant.get("individual")) if isinstance(participant, dict) else None,
        status_code(stay.get("admitSource")),
        status_code(stay.get("dischargeDisposition")),
    )


def write_encounters(
    pending: Pending, writer: CdmWriter, index: ReferenceIndex, reject: Any
) -> None:
    """Visit rows; Encounters of unknown Patients or with bad dates go to ``reject``."""
    for file, group in pending.by_file():
        person = index.resolve("Patient", [row[0] for row in group.rows])
        start = parse_fhir_dates(group.column(2, pa.string()))
        end = parse_fhir_dates(group.column(3, pa.string()))
        bad_start = start.invalid.to_numpy(zero_copy_only=False)
        bad_end = end.invalid.to_numpy(zero_copy_only=False)
        problems = (
            (
                person == NOT_FOUND,
                0,
                "Encounter: the referenced Patient is not in this export or an earlier load",
            ),
            (bad_start, 2, "Encounter.period.start is not a FHIR date"),
            (bad_end, 3, "Encounter.period.end is not a FHIR date"),
        )
        rejected = np.zeros(len(group), dtype=bool)
        for mask, field, reason in problems:
            for position in np.flatnonzero(mask & ~rejected):
                rejected[position] = True
                reject(file, group.locators[position], reason, group.rows[position][field])
        keep = np.flatnonzero(~rejected)
        if not len(keep):
            continue
        take = pa.array(keep)
        rows = [group.rows[i] for i in keep]
        keys = [group.keys[i] for i in keep]
        kind = pa.array([row[1] for row in rows], pa.string())
        start_date = start.date.take(take)
        ids = writer.write(
            "visit_occurrence",
            {
                "person_id": pa.array(person[keep]),
                "visit_concept_id": concept_lookup(VISIT_CONCEPTS, kind),
                "visit_source_value": kind,
                "visit_start_date": start_date,
                "visit_start_datetime": start.datetime.take(take),
                "visit_end_date": pc.coalesce(end.date.take(take), start_date),
                "visit_end_datetime": end.datetime.take(take),
                "visit_type_concept_id": constant(
                    concepts.EHR_ENCOUNTER_RECORD, len(keep), pa.int32()
                ),
                "care_site_id": _ids(index.resolve("Organization", [r[4] for r in rows])),
                "provider_id": _ids(index.resolve("Practitioner", [r[5] for r in rows])),
                "admitted_from_source_value": pa.array([r[6] for r in rows], pa.string()),
                "discharged_to_source_value": pa.array([r[7] for r in rows], pa.string()),
            },
            keys=source_keys(["fhir:" + key for key in keys], ROW),
            locators=group.locator_array().take(take),
            source_file=file,
            id_column="visit_occurrence_id",
            keep_existing_ids=True,
        )
        index.add("Encounter", keys, ids, [group.aliases[i] for i in keep])


def _ids(values: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(values, mask=values == NOT_FOUND)
