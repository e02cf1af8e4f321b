"""Events to CDM rows: resolve a batch, map its codes, route each row by its concept's domain.

The standard concept's domain decides the table: a Condition coded with a procedure
concept becomes a ``procedure_occurrence`` row, an Observation whose concept is in the
Measurement domain a ``measurement`` row. A code mapping to two concepts gives two rows,
possibly in two tables. An unmapped code (concept 0) keeps its row in the table the
resource type suggests. The source value is the code as recorded (the billed code when
there is one); a billed code that maps to nothing takes its concept from the standard
coding beside it. Everything here works on whole columns; Python loops only over
rejected resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from accord.ingest.fhir.codes import first_concepts, map_codes
from accord.ingest.fhir.contracts import Mapper, Report
from accord.ingest.fhir.dates import parse_fhir_dates
from accord.ingest.fhir.events import Event
from accord.ingest.fhir.references import NOT_FOUND, ReferenceIndex
from accord.ingest.fhir.tables import source_keys
from accord.ingest.fhir.writer import CdmWriter

DOMAIN_TABLES: Final = {
    "Condition": "condition_occurrence",
    "Procedure": "procedure_occurrence",
    "Drug": "drug_exposure",
    "Measurement": "measurement",
    "Observation": "observation",
}
"""The CDM event table of each concept domain; other domains keep the resource's table."""

_COMMON: Final = {
    "person_id": "person_id",
    "visit_occurrence_id": "visit_occurrence_id",
    "provider_id": "provider_id",
}
_VALUES: Final = {
    "value_as_number": "value_as_number",
    "value_as_concept_id": "value_as_concept_id",
    "unit_concept_id": "unit_concept_id",
    "unit_source_value": "unit_source_value",
    "value_source_value": "value_source_value",
}


@dataclass(frozen=True)
class EventTable:
    """Which CDM column of one event table each resolved event column fills."""

    id_column: str
    columns: Mapping[str, str]
    end_required: bool = False


def _event_table(
    table: str,
    prefix: str,
    date: str,
    *,
    end: str | None = None,
    extra: Mapping[str, str] | None = None,
    end_required: bool = False,
) -> EventTable:
    columns = {
        **_COMMON,
        "concept_id": f"{prefix}_concept_id",
        "source_concept_id": f"{prefix}_source_concept_id",
        "source_value": f"{prefix}_source_value",
        "type_concept_id": f"{prefix}_type_concept_id",
        "start_date": f"{date}_date",
        "start_datetime": f"{date}_datetime",
        **(extra or {}),
    }
    if end is not None:
        columns |= {"end_date": f"{end}_date", "end_datetime": f"{end}_datetime"}
    return EventTable(f"{table}_id", columns, end_required)


EVENT_TABLES: Final = {
    "condition_occurrence": _event_table(
        "condition_occurrence", "condition", "condition_start", end="condition_end"
    ),
    "procedure_occurrence": _event_table(
        "procedure_occurrence", "procedure", "procedure", end="procedure_end"
    ),
    "drug_exposure": _event_table(
        "drug_exposure",
        "drug",
        "drug_exposure_start",
        end="drug_exposure_end",
        extra={
            "quantity": "quantity",
            "days_supply": "days_supply",
            "refills": "refills",
            "sig": "sig",
            "lot_number": "lot_number",
        },
        # The CDM requires an end; a single administration ends the day it starts.
        end_required=True,
    ),
    "measurement": _event_table(
        "measurement",
        "measurement",
        "measurement",
        extra={**_VALUES, "range_low": "range_low", "range_high": "range_high"},
    ),
    "observation": _event_table(
        "observation",
        "observation",
        "observation",
        extra={**_VALUES, "value_as_string": "value_as_string"},
    ),
}
"""How resolved event columns fill each CDM event table."""


@dataclass
class EventBatch:
    """The events of one batch of resources from one file."""

    source_file: str
    keys: list[str] = field(default_factory=list)
    """``Type/id`` of each resource, indexed by ``Event.resource``."""
    locators: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class EventContext:
    index: ReferenceIndex
    mapper: Mapper
    report: Report
    writer: CdmWriter


_F: Final = {name: position for position, name in enumerate(Event._fields)}


def load_events(batch: EventBatch, context: EventContext) -> dict[str, int]:
    """Resolve, map, route and append one batch; returns rows offered per table."""
    if not batch.events:
        return {}
    columns = list(zip(*batch.events, strict=True))
    resource = np.asarray(columns[_F["resource"]], dtype=np.int64)
    frame = _resolve(batch, columns, resource, context)
    if frame is None:
        return {}
    kept, kept_resource = frame
    mapped = map_codes(
        context.mapper,
        context.report,
        kept.column("vocabulary"),
        kept.column("code"),
        kept.column("known"),
        standard_vocabularies=kept.column("standard_vocabulary"),
        standard_codes=kept.column("standard_code"),
    )
    values = map_codes(
        context.mapper,
        context.report,
        kept.column("value_vocabulary"),
        kept.column("value_code"),
        kept.column("value_known"),
    )
    units = map_codes(
        context.mapper,
        context.report,
        pa.repeat(pa.scalar("UCUM"), kept.num_rows),
        kept.column("unit"),
        pc.is_valid(kept.column("unit")),
    )
    kept = kept.append_column("value_concept", first_concepts(values, kept.num_rows))
    kept = kept.append_column(
        "unit_concept_id", pc.fill_null(first_concepts(units, kept.num_rows), 0)
    )
    rows = mapped.column("row")
    expanded = kept.take(rows)
    row_resource = kept_resource[rows.to_numpy()]
    value_concept = pc.coalesce(
        expanded.column("value_concept"), mapped.column("value_as_concept_id")
    )
    target = _route(mapped, expanded)
    keys = source_keys(pa.array(batch.keys).take(pa.array(row_resource)), _ordinal(row_resource))
    locators = pa.array(batch.locators).take(pa.array(row_resource))
    generic: dict[str, Any] = {
        "person_id": expanded.column("person_id"),
        "visit_occurrence_id": expanded.column("visit_occurrence_id"),
        "provider_id": expanded.column("provider_id"),
        "concept_id": mapped.column("concept_id"),
        "source_concept_id": mapped.column("source_concept_id"),
        "source_value": expanded.column("code"),
        "type_concept_id": expanded.column("type_concept_id"),
        "start_date": expanded.column("start_date"),
        "start_datetime": expanded.column("start_datetime"),
        "end_date": expanded.column("end_date"),
        "end_datetime": expanded.column("end_datetime"),
        "value_as_number": expanded.column("value_number"),
        "value_as_concept_id": value_concept,
        "value_as_string": expanded.column("value_string"),
        "value_source_value": pc.coalesce(
            expanded.column("value_code"), expanded.column("value_string")
        ),
        "unit_concept_id": expanded.column("unit_concept_id"),
        "unit_source_value": expanded.column("unit"),
        "range_low": expanded.column("range_low"),
        "range_high": expanded.column("range_high"),
        "quantity": expanded.column("quantity"),
        "days_supply": expanded.column("days_supply"),
        "refills": expanded.column("refills"),
        "sig": expanded.column("sig"),
        "lot_number": expanded.column("lot_number"),
    }
    offered: dict[str, int] = {}
    for table in pc.unique(target).to_pylist():
        layout = EVENT_TABLES[table]
        selected = pc.equal(target, table)
        picked = {
            cdm: _as_array(generic[name]).filter(selected) for name, cdm in layout.columns.items()
        }
        if layout.end_required:
            end_column = layout.columns["end_date"]
            start_column = layout.columns["start_date"]
            picked[end_column] = pc.coalesce(picked[end_column], picked[start_column])
        context.writer.write(
            table,
            picked,
            keys=keys.filter(selected),
            locators=locators.filter(selected),
            source_file=batch.source_file,
            id_column=layout.id_column,
        )
        offered[table] = int(pc.sum(selected).as_py() or 0)
    return offered


def _as_array(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _ids(values: NDArray[np.int64]) -> pa.Array:
    return pa.array(values, mask=values == NOT_FOUND)


def _mask(values: pa.Array) -> NDArray[np.bool_]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


_UNKNOWN_PATIENT: Final = "the referenced Patient is not in this export or an earlier load"


def _resolve(
    batch: EventBatch,
    columns: list[tuple[Any, ...]],
    resource: NDArray[np.int64],
    context: EventContext,
) -> tuple[pa.Table, NDArray[np.int64]] | None:
    """Dates and references of every event; rejects resources that cannot be placed."""
    person = context.index.resolve("Patient", columns[_F["subject"]])
    start = parse_fhir_dates(pa.array(columns[_F["start"]], pa.string()))
    end = parse_fhir_dates(pa.array(columns[_F["end"]], pa.string()))
    problems = [
        (person == NOT_FOUND, "subject", _UNKNOWN_PATIENT),
        (_mask(start.invalid), "start", "the start date is not a FHIR date"),
        (_mask(end.invalid), "end", "the end date is not a FHIR date"),
    ]
    rejected = np.zeros(len(batch.keys), dtype=bool)
    for mask, element, reason in problems:
        if not mask.any():
            continue
        for event in np.flatnonzero(mask):
            owner = int(resource[event])
            if rejected[owner]:
                continue
            rejected[owner] = True
            resource_type = batch.keys[owner].split("/", 1)[0].removeprefix("fhir:")
            context.report.reject(
                batch.source_file,
                batch.locators[owner],
                f"{resource_type}: {reason}",
                value=str(columns[_F[element]][event]),
            )
    keep = ~rejected[resource]
    if not keep.any():
        return None
    index = context.index
    codes = columns[_F["code"]]
    value_codes = columns[_F["value_code"]]
    table = pa.table(
        {
            "person_id": _ids(person),
            "visit_occurrence_id": _ids(index.resolve("Encounter", columns[_F["encounter"]])),
            "provider_id": _ids(index.resolve("Practitioner", columns[_F["performer"]])),
            "start_date": start.date,
            "start_datetime": start.datetime,
            "end_date": end.date,
            "end_datetime": end.datetime,
            "vocabulary": pa.array([c.vocabulary for c in codes], pa.string()),
            "code": pa.array([c.code for c in codes], pa.string()),
            "known": pa.array([c.known for c in codes], pa.bool_()),
            "standard_vocabulary": pa.array(
                [c.standard and c.standard.vocabulary for c in codes], pa.string()
            ),
            "standard_code": pa.array([c.standard and c.standard.code for c in codes], pa.string()),
            "value_vocabulary": pa.array([c and c.vocabulary for c in value_codes], pa.string()),
            "value_code": pa.array([c and c.code for c in value_codes], pa.string()),
            "value_known": pa.array([c is not None and c.known for c in value_codes], pa.bool_()),
            "type_concept_id": pa.array(columns[_F["type_concept_id"]], pa.int32()),
            "default_table": pa.array(columns[_F["default_table"]], pa.string()),
            "routed": pa.array(columns[_F["routed"]], pa.bool_()),
            "value_number": pa.array(columns[_F["value_number"]], pa.float64()),
            "unit": pa.array(columns[_F["unit"]], pa.string()),
            "value_string": pa.array(columns[_F["value_string"]], pa.string()),
            "range_low": pa.array(columns[_F["range_low"]], pa.float64()),
            "range_high": pa.array(columns[_F["range_high"]], pa.float64()),
            "quantity": pa.array(columns[_F["quantity"]], pa.float64()),
            "days_supply": pa.array(columns[_F["days_supply"]], pa.int64()),
            "refills": pa.array(columns[_F["refills"]], pa.int64()),
            "sig": pa.array(columns[_F["sig"]], pa.string()),
            "lot_number": pa.array(columns[_F["lot_number"]], pa.string()),
        }
    )
    if keep.all():
        return table, resource
    return table.filter(pa.array(keep)), resource[keep]


def _route(mapped: pa.Table, expanded: pa.Table) -> pa.Array:
    """The table of each mapped row: its concept's domain, else the resource's default."""
    domain = mapped.column("domain_id").combine_chunks()
    encoded = pc.dictionary_encode(domain)
    by_domain = pa.array(
        [DOMAIN_TABLES.get(d) for d in encoded.dictionary.to_pylist()], pa.string()
    ).take(encoded.indices)
    routable = pc.and_(
        expanded.column("routed").combine_chunks(),
        pc.not_equal(mapped.column("concept_id").combine_chunks(), 0),
    )
    routed = pc.if_else(routable, by_domain, pa.scalar(None, pa.string()))
    return pc.coalesce(routed, expanded.column("default_table").combine_chunks())


def _ordinal(resource: NDArray[np.int64]) -> pa.Array:
    """Number the rows of each resource 0, 1, 2... (rows of a resource are adjacent)."""
    n = len(resource)
    position = np.arange(n, dtype=np.int64)
    starts = np.ones(n, dtype=bool)
    starts[1:] = resource[1:] != resource[:-1]
    group_start = np.maximum.accumulate(np.where(starts, position, 0))
    return pa.array(position - group_start)
