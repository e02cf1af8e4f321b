"""Synthetic FHIR R4 Bulk Data exports, for tests and benchmarks.

Writes Patient, Encounter, Condition, Observation (blood pressure panels with systolic
and diastolic components, BMI, HbA1c), MedicationRequest, Procedure and Immunization
ndjson, coded with ICD-10-CM, SNOMED, RxNorm and LOINC codes of the starter vocabulary
(vaccines carry CVX codes, which the starter vocabulary does not hold, so they load
unmapped). Lines are built a column at a time with Arrow string kernels and written
straight from Arrow's buffers, so a million resources take seconds.

>>> import tempfile
>>> counts = write_bulk_export(Path(tempfile.mkdtemp()), persons=10, seed=1)
>>> counts["Patient"]
10
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX: Final = "http://hl7.org/fhir/sid/cvx"
UCUM: Final = "http://unitsofmeasure.org"

CONDITIONS: Final = (
    (ICD10CM, "I10"),
    (ICD10CM, "E11.9"),
    (ICD10CM, "J11.1"),
    (ICD10CM, "J45.909"),
    (ICD10CM, "E78.5"),
    (ICD10CM, "J20.9"),
    (ICD10CM, "J44.9"),
    (ICD10CM, "F32.9"),
    (ICD10CM, "M17.10"),
    (SNOMED, "59621000"),
    (SNOMED, "44054006"),
    (SNOMED, "195967001"),
    (SNOMED, "55822004"),
)
DRUGS: Final = ("6918", "29046", "1202", "17767", "35296", "6809", "83367", "260101", "3827")
PROCEDURES: Final = ("29303009", "162673000")
VACCINES: Final = ("140", "208", "113")
CLASSES: Final = ("AMB", "EMER", "IMP")
CLASS_WEIGHTS: Final = (0.8, 0.1, 0.1)
CITIES: Final = (
    ("Boston", "MA", "02118"),
    ("Worcester", "MA", "01608"),
    ("Hartford", "CT", "06103"),
)
EPOCH: Final = np.datetime64("2015-01-01T00:00:00", "s")
SPAN_SECONDS: Final = 10 * 365 * 86_400

Part: TypeAlias = str | pa.Array


def write_bulk_export(
    directory: Path, persons: int, seed: int, *, lines_per_file: int = 100_000
) -> dict[str, int]:
    """Write a Bulk Data export of ``persons`` people to ``directory``.

    Returns the number of resources written per type. A type with more than
    ``lines_per_file`` resources is split into ``Type.000.ndjson``, ``Type.001.ndjson``...
    as Bulk Data servers do. The same seed writes the same export.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    people = _patients(rng, persons)
    visits = _encounters(rng, people)
    written: dict[str, int] = {}
    for kind, lines in (
        ("Patient", people.lines),
        ("Encounter", visits.lines),
        ("Condition", _conditions(rng, people, visits)),
        ("Observation", _observations(rng, visits)),
        ("MedicationRequest", _medications(rng, people, visits)),
        ("Procedure", _procedures(rng, visits)),
        ("Immunization", _immunizations(rng, people, visits)),
    ):
        _write(directory, kind, lines, lines_per_file)
        written[kind] = len(lines)
    return written


class _People:
    def __init__(self, ids: pa.Array, lines: pa.Array) -> None:
        self.ids = ids
        self.lines = lines


class _Visits:
    def __init__(
        self,
        ids: pa.Array,
        person: NDArray[np.int64],
        start: NDArray[np.datetime64],
        lines: pa.Array,
    ) -> None:
        self.ids = ids
        self.person = person
        self.start = start
        self.lines = lines
        # Encounters are grouped by person (np.repeat), so each person's are one run.
        self.count = np.bincount(person)
        self.first = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)

    def pick(self, rng: np.random.Generator, owners: NDArray[np.int64]) -> NDArray[np.int64]:
        """A random encounter of each owner (every person has at least one)."""
        return self.first[owners] + (rng.random(len(owners)) * self.count[owners]).astype(np.int64)


def _join(*parts: Part) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _text(values: NDArray[Any]) -> pa.Array:
    return pa.array(values.astype(str))


def _choice(rng: np.random.Generator, options: tuple[str, ...], n: int) -> pa.Array:
    return pa.array(np.asarray(options)[rng.integers(0, len(options), n)])


def _instant(stamps: NDArray[np.datetime64]) -> pa.Array:
    return pa.array(np.char.add(np.datetime_as_string(stamps, unit="s"), "-05:00"))


def _ids(prefix: str, seed_tag: str, n: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, seed_tag, _text(np.arange(n)), "-")


def _patients(rng: np.random.Generator, n: int) -> _People:
    tag = f"{rng.integers(1 << 30):x}"
    ids = _ids("pat", tag, n)
    birth = np.datetime64("1930-01-01") + rng.integers(0, 90 * 365, n).astype("timedelta64[D]")
    city = rng.integers(0, len(CITIES), n)
    cities = np.asarray(CITIES)
    dead = rng.random(n) < 0.02
    death = np.where(
        dead,
        np.char.add(
            ',"deceasedDateTime":"',
            np.char.add(
                np.datetime_as_string(
                    EPOCH + rng.integers(0, SPAN_SECONDS, n).astype("timedelta64[s]"), unit="s"
                ),
                '-05:00"',
            ),
        ),
        "",
    )
    race = np.asarray(["2106-3", "2054-5", "2028-9"])[rng.integers(0, 3, n)]
    lines = _join(
        '{"resourceType":"Patient","id":"',
        ids,
        '","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",'
        '"extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238",'
        '"code":"',
        pa.array(race),
        '"}}]}],"identifier":[{"system":"urn:example:national-id","value":"N',
        _text(rng.integers(10**8, 10**9, n)),
        '"}],"name":[{"family":"Synthetic","given":["Person"]}],"gender":"',
        _choice(rng, ("female", "male"), n),
        '","birthDate":"',
        pa.array(np.datetime_as_string(birth, unit="D")),
        '"',
        pa.array(death),
        ',"address":[{"line":["',
        _text(rng.integers(1, 999, n)),
        ' Main Street"],"city":"',
        pa.array(cities[city, 0]),
        '","state":"',
        pa.array(cities[city, 1]),
        '","postalCode":"',
        pa.array(cities[city, 2]),
        '","country":"US"}]}',
    )
    return _People(ids, lines)


def _encounters(rng: np.random.Generator, people: _People) -> _Visits:
    per_person = 1 + rng.poisson(4, len(people.ids))
    person = np.repeat(np.arange(len(people.ids)), per_person)
    n = len(person)
    tag = f"{rng.integers(1 << 30):x}"
    ids = _ids("enc", tag, n)
    start = EPOCH + rng.integers(0, SPAN_SECONDS, n).astype("timedelta64[s]")
    kind = rng.choice(len(CLASSES), n, p=CLASS_WEIGHTS)
    hours = np.where(kind == 2, rng.integers(24, 240, n), rng.integers(1, 4, n))
    end = start + (hours * 3600).astype("timedelta64[s]")
    lines = _join(
        '{"resourceType":"Encounter","id":"',
        ids,
        '","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode",'
        '"code":"',
        pa.array(np.asarray(CLASSES)[kind]),
        '"},"subject":{"reference":"Patient/',
        people.ids.take(pa.array(person)),
        '"},"period":{"start":"',
        _instant(start),
        '","end":"',
        _instant(end),
        '"}}',
    )
    return _Visits(ids, person, start, lines)


def _context(visits: _Visits, visit: NDArray[np.int64], people_ids: pa.Array) -> list[Part]:
    return [
        '"subject":{"reference":"Patient/',
        people_ids,
        '"},"encounter":{"reference":"Encounter/',
        visits.ids.take(pa.array(visit)),
        '"}',
    ]


def _conditions(rng: np.random.Generator, people: _People, visits: _Visits) -> pa.Array:
    owners = np.repeat(np.arange(len(people.ids)), rng.poisson(2, len(people.ids)))
    visit = visits.pick(rng, owners)
    n = len(owners)
    chosen = rng.integers(0, len(CONDITIONS), n)
    systems = np.asarray([system for system, _ in CONDITIONS])[chosen]
    codes = np.asarray([code for _, code in CONDITIONS])[chosen]
    return _join(
        '{"resourceType":"Condition","id":"',
        _ids("con", f"{rng.integers(1 << 30):x}", n),
        '","clinicalStatus":{"coding":[{"system":'
        '"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},'
        '"code":{"coding":[{"system":"',
        pa.array(systems),
        '","code":"',
        pa.array(codes),
        '"}]},',
        *_context(visits, visit, people.ids.take(pa.array(owners))),
        ',"onsetDateTime":"',
        _instant(visits.start[visit]),
        '"}',
    )


def _observations(rng: np.random.Generator, visits: _Visits) -> pa.Array:
    n = len(visits.ids)
    people_ids = _owner_ids(visits)
    visit = np.arange(n)
    context = _context(visits, visit, people_ids)
    when = _instant(visits.start)
    systolic = _text(rng.normal(128, 15, n).round().astype(np.int64))
    diastolic = _text(rng.normal(82, 10, n).round().astype(np.int64))
    pressure = _join(
        '{"resourceType":"Observation","id":"',
        _ids("bp", f"{rng.integers(1 << 30):x}", n),
        '","status":"final","category":[{"coding":[{"system":'
        '"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],'
        f'"code":{{"coding":[{{"system":"{LOINC}","code":"85354-9"}}]}},',
        *context,
        ',"effectiveDateTime":"',
        when,
        f'","component":[{{"code":{{"coding":[{{"system":"{LOINC}","code":"8480-6"}}]}},'
        '"valueQuantity":{"value":',
        systolic,
        f',"unit":"mmHg","system":"{UCUM}","code":"mm[Hg]"}}}},'
        f'{{"code":{{"coding":[{{"system":"{LOINC}","code":"8462-4"}}]}},'
        '"valueQuantity":{"value":',
        diastolic,
        f',"unit":"mmHg","system":"{UCUM}","code":"mm[Hg]"}}}}]}}',
    )
    bmi = _single(rng, visits, visit, "bmi", "vital-signs", "39156-5", 27, 5, "kg/m2", 0.5)
    a1c = _single(rng, visits, visit, "a1c", "laboratory", "4548-4", 6.2, 1.1, "%", 0.2)
    return pa.concat_arrays([pressure, bmi, a1c])


def _owner_ids(visits: _Visits) -> pa.Array:
    # Encounter lines name their Patient; the id is the text between the fixed markers.
    subject = pc.extract_regex(visits.lines, r'"Patient/(?P<id>[^"]+)"')
    return pc.struct_field(subject, "id")


def _single(
    rng: np.random.Generator,
    visits: _Visits,
    visit: NDArray[np.int64],
    prefix: str,
    category: str,
    code: str,
    mean: float,
    spread: float,
    unit: str,
    share: float,
) -> pa.Array:
    chosen = visit[rng.random(len(visit)) < share]
    n = len(chosen)
    values = _text(rng.normal(mean, spread, n).round(1))
    return _join(
        '{"resourceType":"Observation","id":"',
        _ids(prefix, f"{rng.integers(1 << 30):x}", n),
        '","status":"final","category":[{"coding":[{"system":'
        f'"http://terminology.hl7.org/CodeSystem/observation-category","code":"{category}"}}]}}],'
        f'"code":{{"coding":[{{"system":"{LOINC}","code":"{code}"}}]}},',
        *_context(visits, chosen, _owner_ids(visits).take(pa.array(chosen))),
        ',"effectiveDateTime":"',
        _instant(visits.start[chosen]),
        '","valueQuantity":{"value":',
        values,
        f',"unit":"{unit}","system":"{UCUM}","code":"{unit}"}}}}',
    )


def _medications(rng: np.random.Generator, people: _People, visits: _Visits) -> pa.Array:
    owners = np.repeat(np.arange(len(people.ids)), rng.poisson(1.5, len(people.ids)))
    visit = visits.pick(rng, owners)
    n = len(owners)
    return _join(
        '{"resourceType":"MedicationRequest","id":"',
        _ids("med", f"{rng.integers(1 << 30):x}", n),
        '","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"',
        RXNORM,
        '","code":"',
        _choice(rng, DRUGS, n),
        '"}]},',
        *_context(visits, visit, people.ids.take(pa.array(owners))),
        ',"authoredOn":"',
        _instant(visits.start[visit]),
        '","dispenseRequest":{"quantity":{"value":',
        _text(rng.integers(1, 4, n) * 30),
        # R4's Duration invariant drt-1: a coded duration SHALL name UCUM as its system.
        '},"expectedSupplyDuration":{"value":30,"unit":"days",'
        f'"system":"{UCUM}","code":"d"}}}}}}',
    )


def _procedures(rng: np.random.Generator, visits: _Visits) -> pa.Array:
    visit = np.flatnonzero(rng.random(len(visits.ids)) < 0.3)
    n = len(visit)
    return _join(
        '{"resourceType":"Procedure","id":"',
        _ids("proc", f"{rng.integers(1 << 30):x}", n),
        f'","status":"completed","code":{{"coding":[{{"system":"{SNOMED}","code":"',
        _choice(rng, PROCEDURES, n),
        '"}]},',
        *_context(visits, visit, _owner_ids(visits).take(pa.array(visit))),
        ',"performedDateTime":"',
        _instant(visits.start[visit]),
        '"}',
    )


def _immunizations(rng: np.random.Generator, people: _People, visits: _Visits) -> pa.Array:
    owners = np.repeat(np.arange(len(people.ids)), rng.poisson(1, len(people.ids)))
    visit = visits.pick(rng, owners)
    n = len(owners)
    return _join(
        '{"resourceType":"Immunization","id":"',
        _ids("imm", f"{rng.integers(1 << 30):x}", n),
        f'","status":"completed","vaccineCode":{{"coding":[{{"system":"{CVX}","code":"',
        _choice(rng, VACCINES, n),
        '"}]},"patient":{"reference":"Patient/',
        people.ids.take(pa.array(owners)),
        '"},"encounter":{"reference":"Encounter/',
        visits.ids.take(pa.array(visit)),
        '"},"occurrenceDateTime":"',
        _instant(visits.start[visit]),
        '","lotNumber":"L',
        _text(rng.integers(1000, 9999, n)),
        '"}',
    )


def _write(directory: Path, kind: str, lines: pa.Array, lines_per_file: int) -> None:
    chunks = max(1, -(-len(lines) // lines_per_file))
    for chunk in range(chunks):
        name = f"{kind}.ndjson" if chunks == 1 else f"{kind}.{chunk:03d}.ndjson"
        part = lines.slice(chunk * lines_per_file, lines_per_file)
        # One newline-terminated string per line; Arrow's data buffer is then the file.
        joined = pc.binary_join_element_wise(part, "\n", "")
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)[
            joined.offset : joined.offset + len(joined) + 1
        ]
        data = joined.buffers()[2]
        with (directory / name).open("wb") as out:
            if len(joined):
                out.write(memoryview(data)[offsets[0] : offsets[-1]])
