"""A member's CDM written out as a FHIR R4 Bulk Data export: :func:`export_fhir`.

A member that arrives with FHIR is simulated by writing a generated member's tables back
out as the resources they would have come from, so the FHIR ingest can be checked against
the generator's ground truth. Each resource is a JSON shape whose leaves are SQL
(:data:`Node`), rendered into one DuckDB query per type: lines are built a column at a
time, ``to_json`` escapes the text, and Python only moves Arrow buffers to the files.

Practitioner and Organization are written too, so events keep their provider and visits
their care site. A Condition carries its billed code (ICD-10-CM, or ICD-9-CM before
October 2015, by the source concept's vocabulary) and its standard SNOMED code as two
codings; systolic and diastolic pressures of the same visit and time become one
blood-pressure panel (LOINC 85354-9) with two components. Codes come from the member's
own CONCEPT table; a vocabulary FHIR has no system URI for (Accord's local concepts) is
written under ``urn:accord:vocabulary:<vocabulary_id>``. The CDM records local times
without a zone while FHIR requires one on a time of day, so ``utc_offset`` follows every
time; a date without a time is written as a date.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np
import pyarrow as pa

from accord.errors import UserError
from accord.synth.export_omop import open_member, staged_files
from accord.vocab import concepts as c
from accord.vocab.systems import FHIR_SYSTEM_VOCABULARIES, LOCAL_SYSTEM_PREFIX

NATIONAL_ID_SYSTEM: Final = "urn:oid:2.16.840.1.113883.4.1"

LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
BLOOD_PRESSURE_PANEL: Final = "85354-9"
RESOURCE_TYPES: Final = (
    "Organization",
    "Practitioner",
    "Patient",
    "Encounter",
    "Condition",
    "MedicationRequest",
    "Procedure",
    "Observation",
)
_BATCH_ROWS: Final = 65_536
_OFFSET: Final = re.compile(r"Z|[+-](0\d|1[0-4]):[0-5]\d")


def export_fhir(
    member_db: Path,
    out_dir: Path,
    *,
    national_id_system: str = NATIONAL_ID_SYSTEM,
    utc_offset: str = "Z",
) -> dict[str, int]:
    """Write the member's CDM as ``<Type>.ndjson`` files in ``out_dir``; returns
    resources per type (a type with none gets no file, as Bulk Data servers do).

    Resource ids are stable: ``pat-<person_id>``, ``enc-<visit_occurrence_id>``,
    ``cond-<condition_occurrence_id>``, ``med-<drug_exposure_id>``,
    ``proc-<procedure_occurrence_id>``, ``obs-<measurement_id>``, ``bp-<measurement_id
    of the systolic reading>``, ``prac-<provider_id>``, ``org-<care_site_id>``. The
    database is opened read-only; files appear in ``out_dir`` only once all are written.

    >>> import tempfile
    >>> from accord.synth import generate_consortium
    >>> root = Path(tempfile.mkdtemp())
    >>> manifest = generate_consortium(root / "c", members=1, persons_per_member=20)
    >>> export_fhir(root / "c" / manifest.members[0].db_file, root / "fhir")["Patient"]
    20
    """
    if not _OFFSET.fullmatch(utc_offset):
        raise UserError(
            f"utc_offset must be Z or +hh:mm / -hh:mm, got {utc_offset!r}",
            hint="give the offset of the member's local times, e.g. +01:00",
        )
    if not national_id_system.strip():
        raise UserError(
            "national_id_system must be a non-empty URI", hint=f"e.g. {NATIONAL_ID_SYSTEM}"
        )
    resources = _Resources(national_id_system, utc_offset)
    written: dict[str, int] = {}
    with (
        open_member(member_db) as con,
        staged_files(out_dir, [f"{kind}.ndjson" for kind in RESOURCE_TYPES]) as staging,
    ):
        for kind in RESOURCE_TYPES:
            reader = con.sql(resources.query(kind)).to_arrow_reader(_BATCH_ROWS)
            written[kind] = _write_lines(reader, staging / f"{kind}.ndjson")
    return written


def _write_lines(reader: pa.RecordBatchReader, path: Path) -> int:
    """Write each batch's newline-terminated ``line`` column straight from its buffer."""
    count = 0
    with path.open("wb") as out:
        for batch in reader:
            lines = batch.column(0)
            if not (pa.types.is_string(lines.type) or pa.types.is_large_string(lines.type)):
                lines = lines.cast(pa.large_string())
            width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
            offsets = np.frombuffer(lines.buffers()[1], dtype=width)[
                lines.offset : lines.offset + len(lines) + 1
            ]
            if len(lines):
                out.write(memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]])
            count += len(lines)
    if not count:
        path.unlink()
    return count


@dataclass(frozen=True)
class Sql:
    """An SQL expression giving JSON text, or NULL to leave the element out."""

    expr: str


@dataclass(frozen=True)
class When:
    """``node`` only where the SQL ``condition`` holds."""

    condition: str
    node: Node


Node: TypeAlias = "str | Sql | When | Mapping[str, Node] | Sequence[Node]"
"""A JSON shape whose leaves are SQL: a ``str`` is a constant string; an object or array
whose members are all NULL is left out, so absent CDM values leave no empty elements."""


def _render(node: Node) -> str:
    """The SQL expression writing ``node`` as JSON text."""
    if isinstance(node, Sql):
        return node.expr
    if isinstance(node, str):
        return _literal(json.dumps(node))
    if isinstance(node, When):
        return f"CASE WHEN {node.condition} THEN {_render(node.node)} END"
    if isinstance(node, Mapping):
        members = ", ".join(f"'{json.dumps(k)}:' || {_render(v)}" for k, v in node.items())
        return f"('{{' || nullif(concat_ws(',', {members}), '') || '}}')"
    items = ", ".join(_render(item) for item in node)
    return f"('[' || nullif(concat_ws(',', {items}), '') || ']')"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _text(expr: str) -> Sql:
    return Sql(f"to_json(CAST({expr} AS VARCHAR))::VARCHAR")


def _number(expr: str) -> Sql:
    # NaN and infinities have no JSON spelling, so they are left out like nulls.
    return Sql(f"CASE WHEN isfinite(CAST({expr} AS DOUBLE)) THEN CAST({expr} AS VARCHAR) END")


def _reference(kind: str, prefix: str, id_expr: str) -> Sql:
    return Sql(f"""('{{"reference":"{kind}/{prefix}-' || {id_expr} || '"}}')""")


def _coding(alias: str) -> Sql:
    """The coding of a ``codes`` row joined as ``alias``; NULL when none matched."""
    return Sql(f"""('{{"system":' || {alias}.system || ',"code":' || {alias}.code || '}}')""")


def _codeable(*codings: Node) -> Node:
    return {"coding": list(codings)}


def _case(expr: str, table: dict[int, str]) -> Sql:
    """A fixed concept-to-code table; NULL for concepts it does not name."""
    arms = " ".join(f"WHEN {key} THEN {_render(value)}" for key, value in table.items())
    return Sql(f"CASE {expr} {arms} END")


def _category(code: Node) -> Node:
    return [_codeable({"system": f"{_HL7}/observation-category", "code": code})]


def _omb(kind: str, code: Sql) -> Node:
    coding: Node = {"system": "urn:oid:2.16.840.1.113883.6.238", "code": code}
    extension: Node = {"url": "ombCategory", "valueCoding": coding}
    return When(f"{code.expr} IS NOT NULL", {"url": _US_CORE + kind, "extension": [extension]})


def _address(loc: str) -> Node:
    geo = [
        When(f"{loc}.{axis} IS NOT NULL", {"url": axis, "valueDecimal": _number(f"{loc}.{axis}")})
        for axis in ("latitude", "longitude")
    ]
    return {
        "line": [_text(f"{loc}.address_1"), _text(f"{loc}.address_2")],
        "city": _text(f"{loc}.city"),
        "district": _text(f"{loc}.county"),
        "state": _text(f"{loc}.state"),
        "postalCode": _text(f"{loc}.zip"),
        "country": _text(f"{loc}.country_source_value"),
        "extension": [When(f"{loc}.latitude IS NOT NULL OR {loc}.longitude IS NOT NULL", {
            "url": "http://hl7.org/fhir/StructureDefinition/geolocation", "extension": geo
        })],
    }  # fmt: skip


def _quantity(row: str, unit: str) -> dict[str, Node]:
    """valueQuantity (UCUM when the unit concept is) and referenceRange of a measurement."""
    ucum = f"{unit}.vocabulary_id = 'UCUM'"
    return {
        "valueQuantity": When(f"{row}.value_as_number IS NOT NULL", {
            "value": _number(f"{row}.value_as_number"),
            "unit": Sql(f"coalesce({unit}.code, {_text(row + '.unit_source_value').expr})"),
            "system": When(ucum, UCUM),
            "code": When(ucum, Sql(f"{unit}.code")),
        }),
        "referenceRange": [{
            "low": {"value": _number(f"{row}.range_low")},
            "high": {"value": _number(f"{row}.range_high")},
        }],
    }  # fmt: skip


_HL7: Final = "http://terminology.hl7.org/CodeSystem"
_US_CORE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-"
_GENDERS: Final = {c.MALE: "male", c.FEMALE: "female"}
_RACES: Final = {c.WHITE: "2106-3", c.BLACK_OR_AFRICAN_AMERICAN: "2054-5", c.ASIAN: "2028-9"}
_ETHNICITIES: Final = {c.HISPANIC_OR_LATINO: "2135-2", c.NOT_HISPANIC_OR_LATINO: "2186-5"}
_CLASSES: Final = {
    c.INPATIENT_VISIT: "IMP", c.OUTPATIENT_VISIT: "AMB", c.EMERGENCY_ROOM_VISIT: "EMER"
}  # fmt: skip
_FHIR_SYSTEMS: Final = {vocabulary: uri for uri, vocabulary in FHIR_SYSTEM_VOCABULARIES.items()}
_SYSTEMS: Final = ", ".join(
    f"({_literal(vocabulary)}, {_literal(uri)})" for vocabulary, uri in _FHIR_SYSTEMS.items()
)
_CODES: Final = f"""
WITH systems(vocabulary_id, system) AS (VALUES {_SYSTEMS}),
codes AS (
    SELECT k.concept_id, k.vocabulary_id, to_json(k.concept_code)::VARCHAR AS code,
        to_json(coalesce(s.system, '{LOCAL_SYSTEM_PREFIX}' || k.vocabulary_id))::VARCHAR AS system
    FROM concept AS k LEFT JOIN systems AS s USING (vocabulary_id)
    WHERE k.concept_id <> 0
)"""
"""Every concept's FHIR coding, put in front of each query."""
_DEATHS: Final = """(
    SELECT person_id, min(death_date) AS death_date, min(death_datetime) AS death_datetime
    FROM death GROUP BY person_id
)"""
_PAIRS: Final = f"""
, pressures AS (
    SELECT measurement_id, measurement_concept_id, person_id, visit_occurrence_id,
        measurement_date, measurement_datetime,
        row_number() OVER (
            PARTITION BY person_id, visit_occurrence_id, measurement_date, measurement_datetime,
                measurement_concept_id
            ORDER BY measurement_id
        ) AS nth
    FROM measurement WHERE measurement_concept_id IN ({c.SYSTOLIC_BP}, {c.DIASTOLIC_BP})
), pairs AS (
    SELECT s.measurement_id AS systolic, d.measurement_id AS diastolic
    FROM pressures AS s JOIN pressures AS d
        ON s.measurement_concept_id = {c.SYSTOLIC_BP}
        AND d.measurement_concept_id = {c.DIASTOLIC_BP}
        AND s.person_id = d.person_id AND s.measurement_date = d.measurement_date
        AND s.visit_occurrence_id IS NOT DISTINCT FROM d.visit_occurrence_id
        AND s.measurement_datetime IS NOT DISTINCT FROM d.measurement_datetime AND s.nth = d.nth
), paired AS (SELECT systolic AS measurement_id FROM pairs UNION ALL SELECT diastolic FROM pairs)"""
"""Systolic and diastolic readings of the same person, visit and time, matched in order."""


class _Resources:
    """Each resource type's query: one ``line`` column, in id order."""

    def __init__(self, national_id_system: str, utc_offset: str) -> None:
        self.national_id_system = national_id_system
        self.utc_offset = utc_offset

    def query(self, kind: str) -> str:
        build: Callable[[], str] = getattr(self, kind.lower())
        return _CODES + build()

    def when(self, date: str, moment: str) -> Sql:
        """A FHIR dateTime: the CDM datetime with the offset, else the date alone."""
        stamp = f"strftime({moment}, '%Y-%m-%dT%H:%M:%S') || {_literal(self.utc_offset)}"
        return Sql(f"""coalesce('"' || {stamp} || '"', '"' || CAST({date} AS VARCHAR) || '"')""")

    def period(self, start: tuple[str, str], end: tuple[str, str]) -> Node:
        return {"start": self.when(*start), "end": self.when(*end)}

    @staticmethod
    def select(kind: str, prefix: str, row_id: str, body: dict[str, Node], rest: str) -> str:
        node = {"resourceType": kind, "id": Sql(f"""'"{prefix}-' || {row_id} || '"'"""), **body}
        return f"SELECT {_render(node)} || chr(10) AS line {rest}"

    @staticmethod
    def context(performer: str, reference: Node) -> dict[str, Node]:
        """Subject, encounter and performer of the event row aliased ``x``."""
        return {
            "subject": _reference("Patient", "pat", "x.person_id"),
            "encounter": _reference("Encounter", "enc", "x.visit_occurrence_id"),
            performer: When("x.provider_id IS NOT NULL", reference),
        }

    def organization(self) -> str:
        body: dict[str, Node] = {"name": _text("s.care_site_name"), "address": [_address("l")]}
        return self.select("Organization", "org", "s.care_site_id", body, """
            FROM care_site AS s LEFT JOIN location AS l USING (location_id)
            ORDER BY s.care_site_id""")  # fmt: skip

    def practitioner(self) -> str:
        npi: Node = {"system": "http://hl7.org/fhir/sid/us-npi", "value": _text("p.npi")}
        return self.select("Practitioner", "prac", "p.provider_id", {
            "identifier": [When("p.npi IS NOT NULL", npi)],
            "name": [{"text": _text("p.provider_name")}],
            "gender": _case("p.gender_concept_id", _GENDERS),
            "birthDate": _text("lpad(CAST(p.year_of_birth AS VARCHAR), 4, '0')"),
        }, "FROM provider AS p ORDER BY p.provider_id")  # fmt: skip

    def patient(self) -> str:
        def part(column: str, width: int) -> str:
            return f"lpad(CAST(p.{column} AS VARCHAR), {width}, '0')"

        day = f"coalesce('-' || {part('day_of_birth', 2)}, '')"
        month = f"coalesce('-' || {part('month_of_birth', 2)} || {day}, '')"
        national_id = _text("p.person_source_value")
        identifier: Node = {"system": self.national_id_system, "value": national_id}
        gender = _case("p.gender_concept_id", _GENDERS)
        return self.select("Patient", "pat", "p.person_id", {
            "extension": [
                _omb("race", _case("p.race_concept_id", _RACES)),
                _omb("ethnicity", _case("p.ethnicity_concept_id", _ETHNICITIES)),
            ],
            "identifier": [When("p.person_source_value IS NOT NULL", identifier)],
            "gender": Sql(f"coalesce({gender.expr}, {_render('unknown')})"),
            "birthDate": _text(f"{part('year_of_birth', 4)} || {month}"),
            "deceasedDateTime": self.when("d.death_date", "d.death_datetime"),
            "address": [_address("l")],
            "managingOrganization": _reference("Organization", "org", "p.care_site_id"),
            "generalPractitioner": [_reference("Practitioner", "prac", "p.provider_id")],
        }, f"""
            FROM person AS p LEFT JOIN location AS l USING (location_id)
            LEFT JOIN {_DEATHS} AS d USING (person_id)
            ORDER BY p.person_id""")  # fmt: skip

    def encounter(self) -> str:
        visit_class = _case("v.visit_concept_id", _CLASSES)
        act_code: Node = {"system": f"{_HL7}/v3-ActCode", "code": visit_class}
        known = ", ".join(str(concept) for concept in _CLASSES)
        individual: Node = {"individual": _reference("Practitioner", "prac", "v.provider_id")}
        return self.select("Encounter", "enc", "v.visit_occurrence_id", {
            "status": "finished",
            "class": Sql(f"CASE WHEN v.visit_concept_id IN ({known}) THEN {_render(act_code)} "
                         f"ELSE {_coding('k').expr} END"),
            "subject": _reference("Patient", "pat", "v.person_id"),
            "participant": [When("v.provider_id IS NOT NULL", individual)],
            "period": self.period(("v.visit_start_date", "v.visit_start_datetime"),
                                  ("v.visit_end_date", "v.visit_end_datetime")),
            "serviceProvider": _reference("Organization", "org", "v.care_site_id"),
        }, """
            FROM visit_occurrence AS v LEFT JOIN codes AS k ON k.concept_id = v.visit_concept_id
            ORDER BY v.visit_occurrence_id""")  # fmt: skip

    def condition(self) -> str:
        # The billed code first, as a reader expects; a source code whose source concept
        # is unknown is taken for ICD-10-CM, the code system US members bill in.
        icd10 = _render(_FHIR_SYSTEMS["ICD10CM"])
        source = When(
            "x.condition_source_value IS NOT NULL AND "
            "x.condition_source_concept_id IS DISTINCT FROM x.condition_concept_id",
            {"system": Sql(f"coalesce(src.system, {icd10})"),
             "code": _text("x.condition_source_value")},
        )  # fmt: skip
        resolved = _codeable({"system": f"{_HL7}/condition-clinical", "code": "resolved"})
        asserter = _reference("Practitioner", "prac", "x.provider_id")
        return self.select("Condition", "cond", "x.condition_occurrence_id", {
            "clinicalStatus": When("x.condition_end_date IS NOT NULL", resolved),
            "category": _category("encounter-diagnosis"),
            "code": _codeable(source, _coding("k")),
            **self.context("asserter", asserter),
            "onsetDateTime": self.when("x.condition_start_date", "x.condition_start_datetime"),
            "abatementDateTime": self.when("x.condition_end_date", "x.condition_end_datetime"),
        }, """
            FROM condition_occurrence AS x
            LEFT JOIN codes AS k ON k.concept_id = x.condition_concept_id
            LEFT JOIN codes AS src ON src.concept_id = x.condition_source_concept_id
            ORDER BY x.condition_occurrence_id""")  # fmt: skip

    def medicationrequest(self) -> str:
        start = ("x.drug_exposure_start_date", "x.drug_exposure_start_datetime")
        end = ("x.drug_exposure_end_date", "x.drug_exposure_end_datetime")
        days = Sql("CAST(x.days_supply AS VARCHAR)")
        supply: Node = {"value": days, "unit": "days", "system": UCUM, "code": "d"}
        return self.select("MedicationRequest", "med", "x.drug_exposure_id", {
            "status": "completed",
            "intent": "order",
            "medicationCodeableConcept": _codeable(_coding("k")),
            **self.context("requester", _reference("Practitioner", "prac", "x.provider_id")),
            "authoredOn": self.when(*start),
            "dosageInstruction": [{"text": _text("x.sig")}],
            "dispenseRequest": {
                "validityPeriod": self.period(start, end),
                "numberOfRepeatsAllowed": Sql("CAST(x.refills AS VARCHAR)"),
                "quantity": {"value": _number("x.quantity")},
                "expectedSupplyDuration": When("x.days_supply IS NOT NULL", supply),
            },
        }, """
            FROM drug_exposure AS x LEFT JOIN codes AS k ON k.concept_id = x.drug_concept_id
            ORDER BY x.drug_exposure_id""")  # fmt: skip

    def procedure(self) -> str:
        start = ("x.procedure_date", "x.procedure_datetime")
        end = ("x.procedure_end_date", "x.procedure_end_datetime")
        actor = [{"actor": _reference("Practitioner", "prac", "x.provider_id")}]
        return self.select("Procedure", "proc", "x.procedure_occurrence_id", {
            "status": "completed",
            "code": _codeable(_coding("k")),
            **self.context("performer", actor),
            "performedDateTime": When("x.procedure_end_date IS NULL", self.when(*start)),
            "performedPeriod": When("x.procedure_end_date IS NOT NULL", self.period(start, end)),
        }, """
            FROM procedure_occurrence AS x
            LEFT JOIN codes AS k ON k.concept_id = x.procedure_concept_id
            ORDER BY x.procedure_occurrence_id""")  # fmt: skip

    def observation(self) -> str:
        def reading(category: Node, values: dict[str, Node]) -> dict[str, Node]:
            return {
                "status": "final",
                "category": _category(category),
                **values,
                **self.context("performer", [_reference("Practitioner", "prac", "x.provider_id")]),
                "effectiveDateTime": self.when("x.measurement_date", "x.measurement_datetime"),
            }

        panel = reading("vital-signs", {
            "code": _codeable({"system": LOINC, "code": BLOOD_PRESSURE_PANEL}),
            "component": [
                {"code": _codeable(_coding("ks")), **_quantity("x", "us")},
                {"code": _codeable(_coding("kd")), **_quantity("y", "ud")},
            ],
        })  # fmt: skip
        # Vital signs unless recorded as a lab result: either keeps the row a measurement.
        category = Sql(
            f"CASE WHEN x.measurement_type_concept_id = {c.LAB} "
            f"THEN {_render('laboratory')} ELSE {_render('vital-signs')} END"
        )
        single = reading(category, {"code": _codeable(_coding("k")), **_quantity("x", "u")})
        panels = self.select("Observation", "bp", "x.measurement_id", panel, """,
            x.measurement_id AS sort_key FROM pairs
            JOIN measurement AS x ON x.measurement_id = pairs.systolic
            JOIN measurement AS y ON y.measurement_id = pairs.diastolic
            LEFT JOIN codes AS ks ON ks.concept_id = x.measurement_concept_id
            LEFT JOIN codes AS kd ON kd.concept_id = y.measurement_concept_id
            LEFT JOIN codes AS us ON us.concept_id = x.unit_concept_id
            LEFT JOIN codes AS ud ON ud.concept_id = y.unit_concept_id""")  # fmt: skip
        singles = self.select("Observation", "obs", "x.measurement_id", single, """,
            x.measurement_id AS sort_key FROM measurement AS x
            ANTI JOIN paired USING (measurement_id)
            LEFT JOIN codes AS k ON k.concept_id = x.measurement_concept_id
            LEFT JOIN codes AS u ON u.concept_id = x.unit_concept_id""")  # fmt: skip
        return f"{_PAIRS} SELECT line FROM ({panels} UNION ALL {singles}) ORDER BY sort_key"
