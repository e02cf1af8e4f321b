"""People and places: Patient, Practitioner, Organization and Location.

Each extractor turns one resource into a row tuple for :class:`Pending`; each writer turns
the gathered rows of a type into CDM rows in bulk and registers their ids for the
references still to come. Source keys number what one resource produces: ``#0`` is the
resource's own row, ``#1`` the location made from its address, ``#2`` a Patient's death.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accord.ingest.fhir.codes import concept_lookup
from accord.ingest.fhir.dates import parse_fhir_dates
from accord.ingest.fhir.elements import Rejected, first, number, reference, text
from accord.ingest.fhir.pending import Pending
from accord.ingest.fhir.references import NOT_FOUND, ReferenceIndex
from accord.ingest.fhir.tables import constant, source_keys
from accord.ingest.fhir.writer import CdmWriter
from accord.vocab import concepts

ROW: Final = 0
ADDRESS: Final = 1
DEATH: Final = 2

GENDERS: Final = {"male": concepts.MALE, "female": concepts.FEMALE}
# US Core race and ethnicity extensions carry OMB categories (CDC Race & Ethnicity codes).
RACES: Final = {
    "2106-3": concepts.WHITE,
    "2054-5": concepts.BLACK_OR_AFRICAN_AMERICAN,
    "2028-9": concepts.ASIAN,
}
ETHNICITIES: Final = {
    "2135-2": concepts.HISPANIC_OR_LATINO,
    "2186-5": concepts.NOT_HISPANIC_OR_LATINO,
}
US_CORE_RACE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
GEOLOCATION: Final = "http://hl7.org/fhir/StructureDefinition/geolocation"
NPI_SYSTEM: Final = "http://hl7.org/fhir/sid/us-npi"

Address = tuple[Any, ...]
_ADDRESS_COLUMNS: Final = (
    "address_1",
    "address_2",
    "city",
    "state",
    "zip",
    "county",
    "country_source_value",
    "latitude",
    "longitude",
)


def _extension(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [
        item
        for item in resource.get("extension") or ()
        if isinstance(item, dict) and item.get("url") == url
    ]


def _omb_code(resource: dict[str, Any], url: str) -> str | None:
    for outer in _extension(resource, url):
        for inner in _extension(outer, "ombCategory"):
            coding = inner.get("valueCoding")
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return None


def address(value: Any, position: Any = None) -> Address | None:
    """The CDM location fields of a FHIR Address (and a Location's position)."""
    if not isinstance(value, dict):
        return None
    lines = [line for line in value.get("line") or () if isinstance(line, str)]
    state = text(value.get("state"))
    postal = text(value.get("postalCode"))
    latitude = longitude = None
    for geo in _extension(value, GEOLOCATION):
        for part in geo.get("extension") or ():
            if isinstance(part, dict) and part.get("url") == "latitude":
                latitude = number(part.get("valueDecimal"))
            elif isinstance(part, dict) and part.get("url") == "longitude":
                longitude = number(part.get("valueDecimal"))
    if isinstance(position, dict):
        latitude = number(position.get("latitude"))
        longitude = number(position.get("longitude"))
    return (
        lines[0] if lines else None,
        ", ".join(lines[1:]) or None,
        text(value.get("city")),
        # The CDM holds a two-letter state code; a spelt-out state would be cut short.
        state if state is not None and len(state) <= 2 else None,
        postal.replace("-", "").replace(" ", "") if postal else None,
        text(value.get("district")),
        text(value.get("country")),
        latitude,
        longitude,
    )


def _human_name(value: Any) -> str | None:
    name = first(value)
    if not isinstance(name, dict):
        return None
    if text(name.get("text")):
        return text(name.get("text"))
    parts = [part for part in name.get("given") or () if isinstance(part, str)]
    family = name.get("family")
    if isinstance(family, str):
        parts.append(family)
    return " ".join(parts) or None


def _identifier(resource: dict[str, Any], system: str | None) -> str | None:
    if system is None:
        return None
    for identifier in resource.get("identifier") or ():
        if isinstance(identifier, dict) and identifier.get("system") == system:
            return text(identifier.get("value"))
    return None


def location(resource: dict[str, Any]) -> tuple[Any, ...]:
    return (address(resource.get("address"), resource.get("position")),)


def organization(resource: dict[str, Any]) -> tuple[Any, ...]:
    kind = first(resource.get("type"))
    coding = first(kind.get("coding")) if isinstance(kind, dict) else None
    return (
        text(resource.get("name")),
        text(coding.get("code")) if isinstance(coding, dict) else None,
        address(first(resource.get("address"))),
    )


def practitioner(resource: dict[str, Any]) -> tuple[Any, ...]:
    return (
        _human_name(resource.get("name")),
        _identifier(resource, NPI_SYSTEM),
        text(resource.get("gender")),
        text(resource.get("birthDate")),
    )


def patient(resource: dict[str, Any], national_id_system: str | None) -> tuple[Any, ...]:
    birth = text(resource.get("birthDate"))
    if birth is None:
        raise Rejected("Patient.birthDate is missing; the CDM requires a year of birth")
    deceased_at = text(resource.get("deceasedDateTime"))
    return (
        text(resource.get("gender")),
        birth,
        _omb_code(resource, US_CORE_RACE),
        _omb_code(resource, US_CORE_ETHNICITY),
        _identifier(resource, national_id_system) or text(resource.get("id")),
        address(first(resource.get("address"))),
        deceased_at,
        deceased_at is None and resource.get("deceasedBoolean") is True,
        reference(resource.get("managingOrganization")),
        reference(first(resource.get("generalPractitioner"))),
    )


def _ids(values: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(values, mask=values == NOT_FOUND)


def _resource_ids(pending: Pending) -> pa.Array:
    return pa.array([key.split("/", 1)[1] for key in pending.keys], pa.string())


def write_addresses(
    pending: Pending, addresses: Sequence[Address | None], writer: CdmWriter, file: str
) -> pa.Array:
    """Location rows for the resources that have an address; their ids, null elsewhere."""
    present = np.fromiter((a is not None for a in addresses), dtype=bool, count=len(addresses))
    ids = np.full(len(addresses), NOT_FOUND, dtype=np.int64)
    if present.any():
        chosen = [a for a in addresses if a is not None]
        columns = {
            name: pa.array([a[i] for a in chosen]) for i, name in enumerate(_ADDRESS_COLUMNS)
        }
        where = pa.array(np.flatnonzero(present))
        ids[present] = writer.write(
            "location",
            columns,
            keys=source_keys(pa.array(pending.keys).take(where), ADDRESS).cast(pa.string()),
            locators=pending.locator_array().take(where),
            source_file=file,
            id_column="location_id",
            keep_existing_ids=True,
        )
    return _ids(ids)


def write_locations(pending: Pending, writer: CdmWriter, index: ReferenceIndex) -> None:
    for file, group in pending.by_file():
        columns: dict[str, Any] = {
            name: pa.array([row[0][i] if row[0] else None for row in group.rows])
            for i, name in enumerate(_ADDRESS_COLUMNS)
        }
        columns["location_source_value"] = _resource_ids(group)
        ids = writer.write(
            "location",
            columns,
            keys=source_keys(["fhir:" + key for key in group.keys], ROW),
            locators=group.locator_array(),
            source_file=file,
            id_column="location_id",
            keep_existing_ids=True,
        )
        index.add("Location", group.keys, ids, group.aliases)


def write_organizations(pending: Pending, writer: CdmWriter, index: ReferenceIndex) -> None:
    for file, group in pending.by_file():
        prefixed = _prefixed(group)
        location_ids = write_addresses(prefixed, [row[2] for row in group.rows], writer, file)
        ids = writer.write(
            "care_site",
            {
                "care_site_name": group.column(0, pa.string()),
                "place_of_service_source_value": group.column(1, pa.string()),
                "location_id": location_ids,
                "care_site_source_value": _resource_ids(group),
            },
            keys=source_keys(prefixed.keys, ROW),
            locators=group.locator_array(),
            source_file=file,
            id_column="care_site_id",
            keep_existing_ids=True,
        )
        index.add("Organization", group.keys, ids, group.aliases)


def write_practitioners(pending: Pending, writer: CdmWriter, index: ReferenceIndex) -> None:
    for file, group in pending.by_file():
        gender = group.column(2, pa.string())
        born = parse_fhir_dates(group.column(3, pa.string()))
        ids = writer.write(
            "provider",
            {
                "provider_name": group.column(0, pa.string()),
                "npi": group.column(1, pa.string()),
                "gender_concept_id": concept_lookup(GENDERS, gender),
                "gender_source_value": gender,
                "year_of_birth": pc.year(born.date),
                "provider_source_value": _resource_ids(group),
            },
            keys=source_keys(_prefixed(group).keys, ROW),
            locators=group.locator_array(),
            source_file=file,
            id_column="provider_id",
            keep_existing_ids=True,
        )
        index.add("Practitioner", group.keys, ids, group.aliases)


def _prefixed(group: Pending) -> Pending:
    """The group with ``fhir:``-prefixed keys, as source keys are written."""
    keys = ["fhir:" + key for key in group.keys]
    return Pending(group.files, group.locators, keys, group.aliases, group.rows)


def write_patients(pending: Pending, writer: CdmWriter, index: ReferenceIndex, reject: Any) -> None:
    """Person, location and death rows; ``reject(file, locator, reason, value)``."""
    for file, group in pending.by_file():
        bad_birth = _mask(parse_fhir_dates(group.column(1, pa.string())).invalid)
        bad_death = _mask(parse_fhir_dates(group.column(6, pa.string())).invalid)
        bad = bad_birth | bad_death
        for position in np.flatnonzero(bad):
            element, field = ("birthDate", 1) if bad_birth[position] else ("deceasedDateTime", 6)
            value = group.rows[position][field]
            reject(file, group.locators[position], f"Patient.{element} is not a FHIR date", value)
        for position in np.flatnonzero(~bad):
            if group.rows[position][7]:
                reject(
                    file,
                    group.locators[position],
                    "Patient.deceasedBoolean without a date: person kept, no death row "
                    "(the CDM requires a death date)",
                    None,
                )
        kept = group.subset(np.flatnonzero(~bad)) if bad.any() else group
        if len(kept):
            _write_people(kept, file, writer, index)


def _mask(values: pa.Array) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _write_people(group: Pending, file: str, writer: CdmWriter, index: ReferenceIndex) -> None:
    born = parse_fhir_dates(group.column(1, pa.string()))
    died = parse_fhir_dates(group.column(6, pa.string()))
    prefixed = _prefixed(group)
    birth_text = group.column(1, pa.string())
    length = pc.utf8_length(pc.utf8_trim_whitespace(birth_text))
    gender = group.column(0, pa.string())
    race = group.column(2, pa.string())
    ethnicity = group.column(3, pa.string())
    location_ids = write_addresses(prefixed, [row[5] for row in group.rows], writer, file)
    organization_refs = [row[8] for row in group.rows]
    practitioner_refs = [row[9] for row in group.rows]
    ids = writer.write(
        "person",
        {
            "gender_concept_id": concept_lookup(GENDERS, gender),
            "gender_source_value": gender,
            "year_of_birth": pc.year(born.date),
            # A partial birthDate ("1970", "1970-03") leaves month and day unknown.
            "month_of_birth": pc.if_else(pc.greater_equal(length, 7), pc.month(born.date), None),
            "day_of_birth": pc.if_else(pc.greater_equal(length, 10), pc.day(born.date), None),
            "birth_datetime": born.datetime,
            "race_concept_id": concept_lookup(RACES, race),
            "race_source_value": race,
            "ethnicity_concept_id": concept_lookup(ETHNICITIES, ethnicity),
            "ethnicity_source_value": ethnicity,
            "person_source_value": group.column(4, pa.string()),
            "location_id": location_ids,
            "care_site_id": _ids(index.resolve("Organization", organization_refs)),
            "provider_id": _ids(index.resolve("Practitioner", practitioner_refs)),
        },
        keys=source_keys(prefixed.keys, ROW),
        locators=group.locator_array(),
        source_file=file,
        id_column="person_id",
        keep_existing_ids=True,
    )
    index.add("Patient", group.keys, ids, group.aliases)
    dead = pc.is_valid(died.date)
    if pc.any(dead).as_py():
        where = pa.array(np.flatnonzero(dead.to_numpy(zero_copy_only=False)))
        n = len(where)
        writer.write(
            "death",
            {
                "person_id": pa.array(ids).take(where),
                "death_date": died.date.take(where),
                "death_datetime": died.datetime.take(where),
                "death_type_concept_id": constant(concepts.EHR, n, pa.int32()),
            },
            keys=source_keys(pa.array(prefixed.keys).take(where), DEATH),
            locators=group.locator_array().take(where),
            source_file=file,
            id_column=None,
        )
