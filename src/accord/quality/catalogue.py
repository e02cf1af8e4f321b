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
    "valid_concept",
    "concept_domain",
    "type",
    "observation_period",
    "source_mapped",
    "range",
    "start_before_end",
    "after_birth",
    "future",
    "after_death",
    "sex",
    "value",
    "before_market",
    "in_visit",
]

KIND_FAMILY: Final[dict[Kind, Family]] = {
    "required": "conformance",
    "primary_key": "conformance",
    "foreign_key": "conformance",
    "concept": "conformance",
    "standard_concept": "conformance",
    "valid_concept": "conformance",
    "concept_domain": "conformance",
    "type": "conformance",
    "observation_period": "completeness",
    "source_mapped": "completeness",
    "range": "plausibility",
    "start_before_end": "plausibility",
    "after_birth": "plausibility",
    "future": "plausibility",
    "after_death": "plausibility",
    "sex": "plausibility",
    "value": "plausibility",
    "before_market": "plausibility",
    "in_visit": "plausibility",
}

# What each kind says about its violating rows, after "{count} of {total} rows in {table}".
_TEMPLATES: Final[dict[Kind, str]] = {
    "required": "have no {field}",
    "primary_key": "repeat a {field} already used by another row",
    "foreign_key": "have a {field} not found in {reference}",
    "concept": "have a {field} that is not in concept (0 is allowed)",
    "standard_concept": "have a {field} that is not a standard concept",
    "valid_concept": "have a {field} that is a deprecated or upgraded concept",
    "concept_domain": "have a {field} whose concept is not in the {domain} domain",
    "type": "have a {field} stored in a column that is not of type {datatype}",
    "observation_period": "have no observation_period",
    "source_mapped": "have a {field} but no {other_field} (0 or missing)",
    "range": "have a {field} outside {low}–{high}",
    "start_before_end": "have {field} after {other_field}",
    "after_birth": "have a {field} in a year before the person's year_of_birth",
    "future": "have a {field} later than the day the checks ran",
    "after_death": "have a {field} more than {grace} days after the person's death_date",
    "sex": "have a {field} specific to the other sex than the person's gender_concept_id",
    "value": "have a {field} outside the plausible range of its measurement and unit",
    "before_market": "have a {field} before its drug's ingredient was first marketed",
    "in_visit": "have a {field} outside the dates of their {other_field}",
}

EARLIEST_YEAR_OF_BIRTH: Final = 1850
# Days an event may follow the recorded death: claims and lab results are often dated a
# little after it (late billing, results filed post mortem), as in OHDSI's DQD.
DEATH_GRACE_DAYS: Final = 60
# Plausible ranges of optional numeric fields, beyond the birth year (which moves).
FIELD_RANGES: Final[dict[tuple[str, str], tuple[int, int]]] = {
    ("drug_exposure", "days_supply"): (1, 365),
    ("drug_exposure", "refills"): (0, 24),
}
# Concept domains whose records plausibility.json lists sex-specific concepts for.
SEX_SPECIFIC_DOMAINS: Final = ("Condition", "Procedure")
MALE: Final = 8507
FEMALE: Final = 8532
VISIT: Final = ForeignKey(table="visit_occurrence", field="visit_occurrence_id")
CONCEPT: Final = ForeignKey(table="concept", field="concept_id")
PERSON: Final = ForeignKey(table="person", field="person_id")


@dataclass(frozen=True)
class Check:
    """One data quality check on one table (and usually one field).

    ``threshold`` is the percentage of violating rows tolerated before the check fails.
    ``gate`` names a field that, when null in every row, makes the check not applicable
    (an optional field nobody fills in says nothing about conformance).
    ``other_field``, ``reference``, ``bounds``, ``domain`` and ``datatype`` carry what
    some kinds need: the end date of a pair (or the concept or visit a row is judged
    by), the table a key refers to, a plausible range, the concept domain a field
    expects, the CDM datatype a column should have.
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
    domain: str | None = None
    datatype: str | None = None

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
            "concept_domain": self.domain,
            "type": self.datatype,
            "in_visit": self.other_field,
            "before_market": self.other_field,
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
            domain=self.domain,
            datatype=self.datatype,
            grace=DEATH_GRACE_DAYS,
        )
        return "{count:,} of {total:,} rows in " + self.table + " " + tail

    def sentence(self, *, count: int, total: int) -> str:
        return self.template.format(count=count, total=total)


def build_catalogue(spec: CdmSpec | None = None, *, today: date | None = None) -> tuple[Check, ...]:
    """Every check the specification implies, conformance first, in table order.

    ``today`` fixes the upper bound of plausible years of birth (next year). Checks for
    dates in the future compare with the day they run (see :func:`~accord.quality.run_checks`).
    """
    spec = spec or load_spec()
    next_year = (today or date.today()).year + 1
    checks: list[Check] = []
    tables = tuple(spec.tables.values())
    for table in tables:
        checks.extend(_conformance(spec, table))
    for table in tables:
        checks.extend(_types(table))
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
            checks.append(Check("valid_concept", table.name, f.name, "convention", 0.0, gate=gate))
            # The specification names a domain only where the CDM fixes one (never for
            # observation_concept_id or value_as_concept_id, which take any domain), so a
            # field without fk_domain is left alone rather than guessed at.
            if f.fk_domain is not None and not f.name.endswith("_source_concept_id"):
                checks.append(
                    Check(
                        "concept_domain",
                        table.name,
                        f.name,
                        "convention",
                        0.0,
                        gate=gate,
                        domain=f.fk_domain,
                    )
                )
        elif _is_data_table(spec.table(key.table)):
            checks.append(
                Check("foreign_key", table.name, f.name, "fatal", 0.0, gate=gate, reference=key)
            )
    return checks


def _types(table: Table) -> list[Check]:
    """One check per column that its declared type can hold the CDM's datatype."""
    return [
        Check("type", table.name, f.name, "fatal", 0.0, datatype=f.base_type) for f in table.fields
    ]


def _completeness(table: Table) -> list[Check]:
    checks: list[Check] = []
    if table.name == "person":
        checks.append(Check("observation_period", "person", "person_id", "convention", 0.0))
    # Patient-level tables only: health-system and cost tables carry names (payers,
    # plans, specialties) that often have no standard concept at all, so an unmapped
    # source value there says little about the mapping of the clinical data.
    if table.category != "clinical":
        return checks
    concept_fields = {f.name for f, key in table.references() if key == CONCEPT}
    for f in table.fields:
        if not f.name.endswith("_source_value"):
            continue
        # Like DQD's sourceValueCompleteness: a source value whose standard concept is
        # missing. value_source_value is mapped to value_as_concept_id.
        stem = f.name.removesuffix("_source_value")
        concept = "value_as_concept_id" if stem == "value" else f"{stem}_concept_id"
        if concept in concept_fields:
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
    for f in table.fields:
        bounds = FIELD_RANGES.get((table.name, f.name))
        if bounds is not None:
            checks.append(
                Check(
                    "range",
                    table.name,
                    f.name,
                    "convention",
                    0.0,
                    gate=_gate(table, f.name),
                    bounds=bounds,
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
    if table.category == "clinical":
        checks.extend(
            Check("future", table.name, f.name, "convention", 0.0, gate=_gate(table, f.name))
            for f in table.fields
            if f.base_type == "date"
        )
    if event_date is not None:
        checks.append(Check("after_death", table.name, event_date, "convention", 0.0))
    checks.extend(_concept_plausibility(table, event_date))
    visit = next(
        (f for f, key in table.references() if key == VISIT and f.name == VISIT.field), None
    )
    if event_date is not None and visit is not None:
        checks.append(
            Check(
                "in_visit",
                table.name,
                event_date,
                "characterisation",
                5.0,
                gate=_gate(table, visit.name),
                other_field=visit.name,
            )
        )
    return checks


def _concept_plausibility(table: Table, event_date: str | None) -> list[Check]:
    """Checks that judge a record by its concept, found from the field's fk_domain."""
    checks: list[Check] = []
    if event_date is None:
        return checks
    for f, key in table.references():
        # The event's own concept: the one required concept field of a record's domain.
        if key != CONCEPT or not f.required:
            continue
        if f.fk_domain in SEX_SPECIFIC_DOMAINS:
            checks.append(Check("sex", table.name, f.name, "convention", 0.0))
        if f.fk_domain == "Measurement" and {"value_as_number", "unit_concept_id"} <= set(
            table.field_names
        ):
            checks.append(
                Check(
                    "value",
                    table.name,
                    "value_as_number",
                    "convention",
                    0.0,
                    gate=_gate(table, "value_as_number"),
                    other_field=f.name,
                )
            )
        if f.fk_domain == "Drug":
            checks.append(
                Check(
                    "before_market",
                    table.name,
                    event_date,
                    "convention",
                    0.0,
                    other_field=f.name,
                )
            )
    return checks


def _event_date(table: Table) -> str | None:
    """The date a clinical event table's rows happen on: its first required date field."""
    if table.name not in CLINICAL_TABLES or table.name == "person":
        return None
    if not any(key == PERSON for _, key in table.references()):
        return None
    return next((f.name for f in table.fields if f.required and f.base_type == "date"), None)
