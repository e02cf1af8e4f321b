"""Claim to a ``visit_occurrence`` and the conditions and procedures billed on it.

An insurer's Claim is one visit of type Claim (32810): its dates from
``Claim.billablePeriod``, else the day it was ``created``; its concept from the CMS place
of service of its items when that says which kind of visit it was, else outpatient. Its
diagnoses and items are events (:func:`accord.ingest.fhir.events.claim`) routed by their
concept's domain like any other, each pointing at the Claim's visit.

Claims are read with the resources others refer to, so a Claim rejected for its Patient,
its dates or its codes leaves neither a visit nor events behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accord.ingest.fhir import events
from accord.ingest.fhir.codes import CodingChooser
from accord.ingest.fhir.dates import parse_fhir_dates
from accord.ingest.fhir.elements import period_end, period_start, reference, status_code, text
from accord.ingest.fhir.entities import ROW
from accord.ingest.fhir.events import Event
from accord.ingest.fhir.pending import Pending
from accord.ingest.fhir.references import NOT_FOUND
from accord.ingest.fhir.routing import EventBatch, EventContext, load_events
from accord.ingest.fhir.tables import constant, source_keys
from accord.vocab import concepts

PLACE_OF_SERVICE_VISITS: Final = {
    "11": concepts.OUTPATIENT_VISIT,
    "22": concepts.OUTPATIENT_VISIT,
    "21": concepts.INPATIENT_VISIT,
    "23": concepts.EMERGENCY_ROOM_VISIT,
}
"""CMS place of service codes (office, outpatient and inpatient hospital, emergency room)
that name a kind of visit; a Claim with none of them is an outpatient visit."""

Reject = Callable[[str, str, str, str | None], None]


def claim(resource: dict[str, Any], chooser: CodingChooser) -> tuple[Any, ...]:
    """The visit of a Claim and its events; raises ``Rejected`` like the extractors."""
    billed = events.claim(resource, 0, chooser)  # checks status, patient and start
    places = [
        status_code(item.get("locationCodeableConcept"))
        for item in resource.get("item") or ()
        if isinstance(item, dict)
    ]
    place = next((p for p in places if p in PLACE_OF_SERVICE_VISITS), None)
    period = resource.get("billablePeriod")
    return (
        reference(resource.get("patient")),
        PLACE_OF_SERVICE_VISITS.get(place or "", concepts.OUTPATIENT_VISIT),
        place or status_code(resource.get("type")),
        period_start(period) or text(resource.get("created")),
        period_end(period),
        reference(resource.get("provider")),
        billed,
    )


def write_claims(pending: Pending, context: EventContext, reject: Reject) -> None:
    """Visit rows, then the events billed on them; bad Claims go wholly to ``reject``."""
    index = context.index
    for file, group in pending.by_file():
        person = index.resolve("Patient", [row[0] for row in group.rows])
        start = parse_fhir_dates(group.column(3, pa.string()))
        end = parse_fhir_dates(group.column(4, pa.string()))
        billed: list[Event] = [e for row in group.rows for e in row[6]]
        owner = np.fromiter(
            (position for position, row in enumerate(group.rows) for _ in row[6]),
            dtype=np.int64,
            count=len(billed),
        )
        served = parse_fhir_dates(pa.array([e.start for e in billed], pa.string()))
        bad_served = np.zeros(len(group), dtype=bool)
        bad_served[owner[_mask(served.invalid)]] = True
        problems = (
            (
                person == NOT_FOUND,
                0,
                "Claim: the referenced Patient is not in this export or an earlier load",
            ),
            (_mask(start.invalid), 3, "Claim: the start date is not a FHIR date"),
            (_mask(end.invalid), 4, "Claim: the end date is not a FHIR date"),
            (bad_served, None, "Claim.item: the serviced date is not a FHIR date"),
        )
        rejected = np.zeros(len(group), dtype=bool)
        for mask, field, reason in problems:
            for position in np.flatnonzero(mask & ~rejected):
                rejected[position] = True
                value = group.rows[position][field] if field is not None else None
                reject(file, group.locators[position], reason, value)
        keep = np.flatnonzero(~rejected)
        if not len(keep):
            continue
        take = pa.array(keep)
        rows = [group.rows[i] for i in keep]
        keys = [group.keys[i] for i in keep]
        start_date = start.date.take(take)
        ids = context.writer.write(
            "visit_occurrence",
            {
                "person_id": pa.array(person[keep]),
                "visit_concept_id": pa.array([r[1] for r in rows], pa.int32()),
                "visit_source_value": pa.array([r[2] for r in rows], pa.string()),
                "visit_start_date": start_date,
                "visit_start_datetime": start.datetime.take(take),
                "visit_end_date": pc.coalesce(end.date.take(take), start_date),
                "visit_end_datetime": end.datetime.take(take),
                "visit_type_concept_id": constant(concepts.CLAIM, len(keep), pa.int32()),
                "provider_id": _ids(index.resolve("Practitioner", [r[5] for r in rows])),
            },
            keys=source_keys(["fhir:" + key for key in keys], ROW),
            locators=group.locator_array().take(take),
            source_file=file,
            id_column="visit_occurrence_id",
            keep_existing_ids=True,
        )
        # The Claim is its events' encounter: they find its visit by the Claim's key.
        index.add("Encounter", keys, ids)
        batch = EventBatch(file, ["fhir:" + key for key in keys], [group.locators[i] for i in keep])
        for ordinal, (key, row) in enumerate(zip(keys, rows, strict=True)):
            batch.events.extend(e._replace(resource=ordinal, encounter=key) for e in row[6])
        load_events(batch, context)


def _mask(values: pa.Array) -> np.ndarray[Any, Any]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _ids(values: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(values, mask=values == NOT_FOUND)
