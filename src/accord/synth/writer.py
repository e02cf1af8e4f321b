"""Turning a member's arrays into CDM tables and a DuckDB file.

Tables are built as Arrow tables in the exact column order and types of the CDM spec
(``accord.cdm.arrow_schema``), columns the generator does not fill being null, and are
bulk-inserted. The database is written under a hidden partial name and renamed when
complete, so a failure never leaves a half-written member file behind.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from accord.cdm import arrow_schema, create_cdm
from accord.synth.claims import COST_DOMAINS
from accord.synth.diagnoses import SOURCE_CODES
from accord.synth.manifest import year_of
from accord.synth.member import MemberData
from accord.synth.population import NEVER
from accord.synth.profiles import REGIONS
from accord.synth.records import NO_VISIT
from accord.vocab import concepts as c
from accord.vocab.starter import load_starter_vocabulary, starter_tables

Progress = Callable[[int], None]

CARE_SITES = (
    (1, "Inpatient wards", c.INPATIENT_VISIT),
    (2, "Emergency department", c.EMERGENCY_ROOM_VISIT),
    (3, "Outpatient department", c.OUTPATIENT_VISIT),
)
CARE_SITE_OF_VISIT = {concept: site for site, _, concept in CARE_SITES}


def partial_path(path: Path) -> Path:
    """Where a member database is written before it is complete."""
    return path.with_name(f".{path.name}.partial")


def remove_database(path: Path) -> None:
    """Remove a DuckDB file and its write-ahead log, if there."""
    for candidate in (path, path.with_name(path.name + ".wal")):
        candidate.unlink(missing_ok=True)


def write_member(
    path: Path, member: MemberData, progress: Progress | None = None
) -> dict[str, int]:
    """Write one member's CDM database to ``path``; returns the rows written per table.

    ``progress`` is called with the number of tables written so far.
    """
    partial = partial_path(path)
    remove_database(partial)
    rows: dict[str, int] = {}
    con = duckdb.connect(str(partial))
    try:
        create_cdm(con, "duckdb")
        load_starter_vocabulary(con)
        rows.update((name, table.num_rows) for name, table in starter_tables().items())
        for done, (name, table) in enumerate(member_tables(member), start=1):
            view = f"accord_synth_{name}"
            con.register(view, table)
            try:
                con.execute(f"INSERT INTO {name} SELECT * FROM {view}")
            finally:
                con.unregister(view)
            rows[name] = table.num_rows
            if progress is not None:
                progress(done)
        con.close()
        os.replace(partial, path)
    except BaseException:
        con.close()
        remove_database(partial)
        raise
    return rows


MEMBER_TABLES = (
    "location",
    "care_site",
    "provider",
    "person",
    "observation_period",
    "death",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "payer_plan_period",
    "cost",
)
"""The tables ``member_tables`` yields, in order."""


def member_tables(member: MemberData) -> Iterator[tuple[str, pa.Table]]:
    """The member's CDM tables, one at a time so only one is held as Arrow at once."""
    people, events, spec = member.people, member.events, member.spec
    types = spec.profile.types
    size = len(people)
    visits = events.visits
    visit_ids = np.arange(1, len(visits) + 1, dtype=np.int64)

    def visit_id(visit: NDArray[np.int64]) -> pa.Array:
        return _optional(visit + 1, visit != NO_VISIT, pa.int32())

    def provider_of(visit: NDArray[np.int64]) -> pa.Array:
        return _optional(visits.provider[np.maximum(visit, 0)], visit != NO_VISIT, pa.int32())

    yield "location", _locations()
    yield (
        "care_site",
        _table(
            "care_site",
            {
                "care_site_id": np.array([s for s, _, _ in CARE_SITES]),
                "care_site_name": pa.array([n for _, n, _ in CARE_SITES]),
                "place_of_service_concept_id": np.array([p for _, _, p in CARE_SITES]),
                "location_id": np.full(len(CARE_SITES), _home_location(member)),
                "care_site_source_value": pa.array([f"{spec.id}/{s}" for s, _, _ in CARE_SITES]),
            },
        ),
    )
    provider_number = np.arange(1, member.providers + 1)
    yield (
        "provider",
        _table(
            "provider",
            {
                "provider_id": provider_number,
                "provider_name": pa.array(
                    np.strings.add("Clinician ", provider_number.astype(str))
                ),
                "care_site_id": (provider_number - 1) % len(CARE_SITES) + 1,
                "provider_source_value": pa.array(
                    np.strings.add(f"{spec.id}/", np.strings.zfill(provider_number.astype(str), 5))
                ),
            },
        ),
    )
    birth = people.birth.astype("datetime64[D]")
    month = birth.astype("datetime64[M]")
    yield (
        "person",
        _table(
            "person",
            {
                "person_id": np.arange(1, size + 1),
                "gender_concept_id": people.gender,
                "year_of_birth": year_of(people.birth),
                "month_of_birth": month.astype(np.int64) % 12 + 1,
                "day_of_birth": (birth - month.astype("datetime64[D]")).astype(np.int64) + 1,
                "race_concept_id": people.race,
                "ethnicity_concept_id": people.ethnicity,
                "location_id": people.region + 1,
                "person_source_value": pa.array(people.national_id.astype(str)),
                "gender_source_value": _labels(people.gender, {c.MALE: "M", c.FEMALE: "F"}),
            },
        ),
    )
    yield (
        "observation_period",
        _table(
            "observation_period",
            {
                "observation_period_id": np.arange(1, size + 1),
                "person_id": np.arange(1, size + 1),
                "observation_period_start_date": events.periods.start,
                "observation_period_end_date": events.periods.end,
                "period_type_concept_id": np.full(size, types.observation_period),
            },
        ),
    )
    dead = np.flatnonzero(people.death != NEVER)
    yield (
        "death",
        _table(
            "death",
            {
                "person_id": dead + 1,
                "death_date": people.death[dead],
                "death_type_concept_id": np.full(len(dead), types.death),
            },
        ),
    )
    care_site = np.select(
        [visits.concept == concept for concept in CARE_SITE_OF_VISIT],
        list(CARE_SITE_OF_VISIT.values()),
    )
    yield (
        "visit_occurrence",
        _table(
            "visit_occurrence",
            {
                "visit_occurrence_id": visit_ids,
                "person_id": visits.person + 1,
                "visit_concept_id": visits.concept,
                "visit_start_date": visits.start,
                "visit_end_date": visits.end,
                "visit_type_concept_id": np.full(len(visits), types.visit),
                "provider_id": visits.provider,
                "care_site_id": care_site,
                "visit_source_value": _labels(visits.concept, concept_codes()),
            },
        ),
    )
    conditions = events.conditions
    yield (
        "condition_occurrence",
        _table(
            "condition_occurrence",
            {
                "condition_occurrence_id": np.arange(1, len(conditions) + 1),
                "person_id": conditions.person + 1,
                "condition_concept_id": conditions.concept,
                "condition_start_date": conditions.date,
                "condition_type_concept_id": np.full(len(conditions), types.condition),
                "provider_id": provider_of(conditions.visit),
                "visit_occurrence_id": visit_id(conditions.visit),
                "condition_source_value": _labels(conditions.source_concept, SOURCE_CODES),
                "condition_source_concept_id": conditions.source_concept,
            },
        ),
    )
    drugs = events.drugs
    yield (
        "drug_exposure",
        _table(
            "drug_exposure",
            {
                "drug_exposure_id": np.arange(1, len(drugs) + 1),
                "person_id": drugs.person + 1,
                "drug_concept_id": drugs.concept,
                "drug_exposure_start_date": drugs.start,
                "drug_exposure_end_date": drugs.end,
                "drug_type_concept_id": np.full(len(drugs), types.drug),
                "quantity": drugs.days_supply.astype(np.float64),
                "days_supply": drugs.days_supply,
                "provider_id": provider_of(drugs.visit),
                "visit_occurrence_id": visit_id(drugs.visit),
                "drug_source_value": _labels(drugs.concept, concept_codes()),
                "drug_source_concept_id": drugs.concept,
            },
        ),
    )
    procedures = events.procedures
    yield (
        "procedure_occurrence",
        _table(
            "procedure_occurrence",
            {
                "procedure_occurrence_id": np.arange(1, len(procedures) + 1),
                "person_id": procedures.person + 1,
                "procedure_concept_id": procedures.concept,
                "procedure_date": procedures.date,
                "procedure_type_concept_id": np.full(len(procedures), types.procedure),
                "provider_id": procedures.provider,
                "visit_occurrence_id": visit_id(procedures.visit),
                "procedure_source_value": _labels(procedures.concept, concept_codes()),
                "procedure_source_concept_id": procedures.concept,
            },
        ),
    )
    measurements = events.measurements
    yield (
        "measurement",
        _table(
            "measurement",
            {
                "measurement_id": np.arange(1, len(measurements) + 1),
                "person_id": measurements.person + 1,
                "measurement_concept_id": measurements.concept,
                "measurement_date": measurements.date,
                "measurement_type_concept_id": np.where(
                    measurements.lab, types.lab, types.measurement
                ),
                "value_as_number": measurements.value,
                "unit_concept_id": measurements.unit,
                "provider_id": provider_of(measurements.visit),
                "visit_occurrence_id": visit_id(measurements.visit),
                "measurement_source_value": _labels(measurements.concept, concept_codes()),
                "measurement_source_concept_id": measurements.concept,
                "unit_source_value": _labels(measurements.unit, concept_codes()),
            },
        ),
    )
    yield from _claims_tables(member)


def _claims_tables(member: MemberData) -> Iterator[tuple[str, pa.Table]]:
    size = len(member.people)
    periods = member.events.periods
    claims = member.costs is not None
    plan = np.arange(size) if claims else np.zeros(0, np.int64)
    # Every third person (by a fixed rule, so the seed's draws are not disturbed) holds
    # the richer plan.
    plus_plan = np.where(member.consortium_index[plan] % 3 == 0, 1, 0)
    yield (
        "payer_plan_period",
        _table(
            "payer_plan_period",
            {
                "payer_plan_period_id": plan + 1,
                "person_id": plan + 1,
                "payer_plan_period_start_date": periods.start[plan],
                "payer_plan_period_end_date": periods.end[plan],
                "payer_source_value": pa.array(np.full(len(plan), member.spec.id)),
                "plan_source_value": _labels(plus_plan, {0: "STANDARD", 1: "PLUS"}),
            },
        ),
    )
    costs = member.costs
    if costs is None:
        yield "cost", arrow_schema("cost").empty_table()
        return
    paid_by_patient = np.round(costs.charge - costs.paid_by_payer, 2)
    yield (
        "cost",
        _table(
            "cost",
            {
                "cost_id": np.arange(1, len(costs.event) + 1),
                "cost_event_id": costs.event + 1,
                "cost_domain_id": _labels(costs.domain, dict(enumerate(COST_DOMAINS))),
                "cost_type_concept_id": np.full(len(costs.event), c.CLAIM),
                "currency_concept_id": np.full(len(costs.event), c.US_DOLLAR),
                "total_charge": costs.charge,
                "total_cost": costs.charge,
                "total_paid": costs.charge,
                "paid_by_payer": costs.paid_by_payer,
                "paid_by_patient": paid_by_patient,
                "payer_plan_period_id": costs.person + 1,
            },
        ),
    )


def _home_location(member: MemberData) -> int:
    home = member.spec.profile.home_region
    return (home if home >= 0 else 0) + 1


def _locations() -> pa.Table:
    return _table(
        "location",
        {
            "location_id": np.arange(1, len(REGIONS) + 1),
            "city": pa.array([r.name for r in REGIONS]),
            "state": pa.array([r.state for r in REGIONS]),
            "county": pa.array([r.name for r in REGIONS]),
            "location_source_value": pa.array([r.code for r in REGIONS]),
            "latitude": np.array([r.latitude for r in REGIONS]),
            "longitude": np.array([r.longitude for r in REGIONS]),
        },
    )


@functools.cache
def concept_codes() -> dict[int, str]:
    """Concept id to concept code, from the starter vocabulary."""
    concept = starter_tables()["concept"]
    ids = concept.column("concept_id").to_pylist()
    codes = concept.column("concept_code").to_pylist()
    return dict(zip(ids, codes, strict=True))


def _labels(values: NDArray[Any], labels: dict[int, str]) -> pa.Array:
    """Strings for integer codes, via a dictionary array of the (few) distinct labels."""
    keys = np.array(sorted(labels), dtype=np.int64)
    index = np.searchsorted(keys, values)
    if len(values) and (index.max() >= len(keys) or (keys[index] != values).any()):
        raise ValueError(f"codes without a label: {sorted(set(np.unique(values)) - set(labels))}")
    dictionary = pa.array([labels[int(key)] for key in keys], type=pa.string())
    encoded = pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), dictionary)
    return encoded.cast(pa.string())


def _optional(values: NDArray[Any], present: NDArray[np.bool_], kind: pa.DataType) -> pa.Array:
    return pa.array(values.astype(kind.to_pandas_dtype()), mask=~present, type=kind)


def _table(name: str, columns: dict[str, Any]) -> pa.Table:
    """An Arrow table shaped exactly like CDM table ``name``; absent columns are null."""
    schema = arrow_schema(name)
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise ValueError(f"{name} has no columns {sorted(unknown)}")
    size = len(next(iter(columns.values())))
    arrays = []
    for column in schema:
        value = columns.get(column.name)
        if value is None:
            if not column.nullable:
                raise ValueError(f"{name}.{column.name} is required but was not generated")
            arrays.append(pa.nulls(size, column.type))
        else:
            arrays.append(_arrow(value, column.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow(value: Any, kind: pa.DataType) -> pa.Array:
    if isinstance(value, pa.Array):
        return value if value.type == kind else value.cast(kind)
    array = np.asarray(value)
    if pa.types.is_date32(kind):
        return pa.array(array.astype(np.int32)).cast(kind)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return pa.array(array.astype(kind.to_pandas_dtype()), type=kind)
    return pa.array(array).cast(kind)
