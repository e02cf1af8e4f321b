"""The catalogue of data quality checks, generated from the CDM specification.

Checks follow Kahn's framework (conformance, completeness, plausibility). None is listed
by hand per table: each rule below walks :func:`accord.cdm.load_spec` and makes one check
per field or table it applies to, so a new field in the specification gets its checks
without a change here. A check is data (what to test, on which table and field); the SQL
that tests it is built in :mod:`accord.quality.run`.

>>> checks = {c.id: c for c in build_catalogue()}
>>> check = checks["conformance.required.person.gender_concept_id"]
>>> check.severity, check.threshold
('fatal', 0.0)
>>> check.sentence(count=3, total=1200)
'3 of 1,200 rows in person have no gender_concept_id'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, get_args

from accord.cdm import CLINICAL_TABLES, CdmSpec, ForeignKey, Table, load_spec
from accord.errors import DataError

Family = Literal["conformance", "completeness", "plausibility"]
Severity = Literal["fatal", "convention", "characterisation"]
Kind = Literal[
    "required",
    "primary_key",
    "foreign_key",
    "concept",
    "standard_concept",
    "observation_period",
    "source_mapped",
    "range",
    "start_before_end",
    "after_birth",
]

KIND_FAMILY: Final[dict[Kind, Family]] = {
    "required": "conformance",
    "primary_key": "conformance",
    "foreign_key": "conformance",
    "concept": "conformance",
    "standard_concept": "conformance",
    "observation_period": "completeness",
    "source_mapped": "completeness",
    "range": "plausibility",
    "start_before_end": "plausibility",
    "after_birth": "plausibility",
}

# What each kind says about its violating rows, after "{count} of {total} rows in {table}".
_TEMPLATES: Final[dict[Kind, str]] = {
    "required": "have no {field}",
    "primary_key": "repeat a {field} already used by another row",
    "foreign_key": "have a {field} not found in {reference}",
    "concept": "have a {field} that is not in concept (0 is allowed)",
    "standard_concept": "have a {field} that is not a standard concept",
    "observation_period": "have no observation_period",
    "source_mapped": "have a {field} but no {other_field}",
    "range": "have a {field} outside {low}–{high}",
    "start_before_end": "have {field} after {other_field}",
    "after_birth": "have a {field} in a year before the person's year_of_birth",
}

EARLIEST_YEAR_OF_BIRTH: Final = 1850
CONCEPT: Final = ForeignKey(table="concept", field="concept_id")
PERSON: Final = ForeignKey(table="person", field="person_id")


@dataclass(frozen=True)
class Check:
    """One data quality check on one table (and usually one field).

    ``threshold`` is the percentage of violating rows tolerated before the check fails.
    ``gate`` names a field that, when null in every row, makes the check not applicable
    (an optional field nobody fills in says nothing about conformance).
    ``other_field``, ``reference`` and ``bounds`` carry what some kinds need: the end date
    of a pair, the table a key refers to, a plausible range.
    """

    kind: Kind
    table: str
    field: str
    severity: Severity
    threshold: float
    gate: str | None = None
    other_field: str | None = None
    reference: ForeignKey | None = None
    bounds: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_FAMILY:
            raise DataError(
                f"unknown check kind {self.kind!r}",
                hint=f"expected one of {', '.join(KIND_FAMILY)}",
            )
        if self.severity not in get_args(Severity):
            raise DataError(
                f"check {self.id} has unknown severity {self.severity!r}",
                hint=f"expected one of {', '.join(get_args(Severity))}",
            )
        if not 0 <= self.threshold <= 100:
            raise DataError(
                f"check {self.id} has threshold {self.threshold!r}",
                hint="a threshold is a percentage of rows, from 0 to 100",
            )
        needs = {
            "foreign_key": self.reference,
            "source_mapped": self.other_field,
            "start_before_end": self.other_field,
            "range": self.bounds,
        }
        if self.kind in needs and needs[self.kind] is None:
            raise DataError(f"check {self.id} of kind {self.kind!r} is missing its parameters")

    @property
    def family(self) -> Family:
        return KIND_FAMILY[self.kind]

    @property
    def id(self) -> str:
        """Stable identifier, e.g. ``conformance.required.person.gender_concept_id``."""
        return f"{self.family}.{self.kind}.{self.table}.{self.field}"

    @property
    def template(self) -> str:
        """The plain-language sentence, with ``{count:,}`` and ``{total:,}`` to fill in."""
        low, high = self.bounds or (0, 0)
        tail = _TEMPLATES[self.kind].format(
            field=self.field,
            other_field=self.other_field,
            reference=self.reference.table if self.reference else None,
            low=low,
            high=high,
        )
        return "{count:,} of {total:,} rows in " + self.table + " " + tail

    def sentence(self, *, count: int, total: int) -> str:
        return self.template.format(count=count, total=total)


def build_catalogue(spec: CdmSpec | None = None, *, today: date | None = None) -> tuple[Check, ...]:
    """Every check the specification implies, conformance first, in table order.

    ``today`` fixes the upper bound of plausible years of birth (next year).
    """
    spec = spec or load_spec()
    next_year = (today or date.today()).year + 1
    checks: list[Check] = []
    tables = tuple(spec.tables.values())
    for table in tables:
        checks.extend(_conformance(spec, table))
    for table in tables:
        checks.extend(_completeness(table))
    for table in tables:
        checks.extend(_plausibility(table, next_year))
    return tuple(checks)


@functools.cache
def default_catalogue() -> tuple[Check, ...]:
    """The catalogue for the shipped specification (built once per process)."""
    return build_catalogue()


def _gate(table: Table, name: str) -> str | None:
    return None if table.field(name).required else name


def _is_data_table(table: Table) -> bool:
    # Vocabulary tables describe concepts; their own references are Athena's business.
    return table.category != "vocabulary"


def _conformance(spec: CdmSpec, table: Table) -> list[Check]:
    checks = [
        Check("required", table.name, f.name, "fatal", 0.0) for f in table.fields if f.required
    ]
    if table.primary_key:
        checks.append(Check("primary_key", table.name, table.primary_key[0], "fatal", 0.0))
    if not _is_data_table(table):
        return checks
    for f, key in table.references():
        gate = _gate(table, f.name)
        if key == CONCEPT:
            checks.append(Check("concept", table.name, f.name, "fatal", 0.0, gate=gate))
            if not f.name.endswith("_source_concept_id"):
                checks.append(
                    Check("standard_concept", table.name, f.name, "convention", 0.0, gate=gate)
                )
        elif _is_data_table(spec.table(key.table)):
            checks.append(
                Check("foreign_key", table.name, f.name, "fatal", 0.0, gate=gate, reference=key)
            )
    return checks


def _completeness(table: Table) -> list[Check]:
    checks: list[Check] = []
    if table.name == "person":
        checks.append(Check("observation_period", "person", "person_id", "convention", 0.0))
    if not _is_data_table(table):
        return checks
    for f in table.fields:
        if not f.name.endswith("_source_value"):
            continue
        concept = f.name.removesuffix("_source_value") + "_source_concept_id"
        if concept in table.field_names:
            checks.append(
                Check(
                    "source_mapped",
                    table.name,
                    f.name,
                    "characterisation",
                    50.0,
                    gate=f.name,
                    other_field=concept,
                )
            )
    return checks


def _plausibility(table: Table, next_year: int) -> list[Check]:
    checks: list[Check] = []
    if table.name == "person":
        checks.append(
            Check(
                "range",
                "person",
                "year_of_birth",
                "convention",
                0.0,
                bounds=(EARLIEST_YEAR_OF_BIRTH, next_year),
            )
        )
    for end in (f for f in table.fields if f.name.endswith("_end_date")):
        stem = end.name.removesuffix("_end_date")
        start = next(
            (s for s in (f"{stem}_start_date", f"{stem}_date") if s in table.field_names), None
        )
        if start is not None:
            checks.append(
                Check(
                    "start_before_end",
                    table.name,
                    start,
                    "convention",
                    0.0,
                    gate=_gate(table, end.name),
                    other_field=end.name,
                )
            )
    event_date = _event_date(table)
    if event_date is not None:
        checks.append(Check("after_birth", table.name, event_date, "convention", 0.0))
    return checks


def _event_date(table: Table) -> str | None:
    """The date a clinical event table's rows happen on: its first required date field."""
    if table.name not in CLINICAL_TABLES or table.name == "person":
        return None
    if not any(key == PERSON for _, key in table.references()):
        return None
    return next((f.name for f in table.fields if f.required and f.base_type == "date"), None)
