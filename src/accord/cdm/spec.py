"""The OMOP Common Data Model v5.4 as typed, validated data.

The specification lives in ``omop_cdm_v5_4.json`` next to this module, written from the
OHDSI CommonDataModel field- and table-level CSV files. Everything that needs to know the
shape of the CDM (DDL, Arrow schemas, the synthetic generator, the quality gate) reads it
through :func:`load_spec` rather than hard-coding columns.

>>> spec = load_spec()
>>> spec.table("person").primary_key
('person_id',)
>>> spec.table("person").field("gender_concept_id").foreign_key
ForeignKey(table='concept', field='concept_id')
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from importlib import resources
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar, cast, get_args

from accord.errors import DataError

BaseType = Literal["integer", "bigint", "float", "date", "datetime", "varchar"]
Category = Literal["clinical", "health_system", "health_economics", "vocabulary"]

SPEC_RESOURCE: Final = "omop_cdm_v5_4.json"

_T = TypeVar("_T")

# Person-level event data, in the order the specification lists it.
CLINICAL_TABLES: Final[tuple[str, ...]] = (
    "person",
    "observation_period",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
)
HEALTH_SYSTEM_TABLES: Final[tuple[str, ...]] = ("location", "care_site", "provider")
HEALTH_ECONOMICS_TABLES: Final[tuple[str, ...]] = ("payer_plan_period", "cost")
VOCABULARY_TABLES: Final[tuple[str, ...]] = (
    "concept",
    "vocabulary",
    "domain",
    "concept_class",
    "concept_relationship",
    "relationship",
    "concept_ancestor",
)

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DATATYPE = re.compile(r"(integer|bigint|float|date|datetime)|varchar\(([1-9][0-9]*|MAX)\)")


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(
            f"invalid {kind} name {name!r} in the OMOP CDM specification",
            hint="names are lower-case letters, digits and underscores, starting with a letter",
        )


class UnknownTableError(DataError, KeyError):
    """A table name that is not in the specification; also a ``KeyError`` for lookups."""


class UnknownFieldError(DataError, KeyError):
    """A field name that is not in its table; also a ``KeyError`` for lookups."""


@dataclass(frozen=True)
class ForeignKey:
    """The table and field a column refers to."""

    table: str
    field: str

    def __post_init__(self) -> None:
        _check_name("foreign key table", self.table)
        _check_name("foreign key field", self.field)

    def __str__(self) -> str:
        return f"{self.table}.{self.field}"


@dataclass(frozen=True)
class Field:
    """One column of a CDM table.

    ``datatype`` is the CDM's own type name: ``integer``, ``bigint``, ``float``, ``date``,
    ``datetime``, ``varchar(n)`` or ``varchar(MAX)``.
    """

    name: str
    datatype: str
    required: bool
    description: str
    primary_key: bool = False
    foreign_key: ForeignKey | None = None
    fk_domain: str | None = None

    def __post_init__(self) -> None:
        _check_name("field", self.name)
        if not isinstance(self.datatype, str) or not _DATATYPE.fullmatch(self.datatype):
            raise DataError(
                f"field {self.name!r} has unknown CDM datatype {self.datatype!r}",
                hint="expected integer, bigint, float, date, datetime, varchar(n) or varchar(MAX)",
            )
        if self.primary_key and not self.required:
            raise DataError(f"primary key field {self.name!r} must be required")
        if self.fk_domain is not None and self.foreign_key is None:
            raise DataError(
                f"field {self.name!r} names the concept domain {self.fk_domain!r} "
                "but has no foreign key"
            )
        if not self.description.strip() or "\n" in self.description:
            raise DataError(f"field {self.name!r} needs a one-line description")

    @property
    def base_type(self) -> BaseType:
        """The datatype without its length: ``varchar(50)`` gives ``varchar``."""
        base = self.datatype.split("(", 1)[0]
        return cast(BaseType, base)

    @property
    def max_length(self) -> int | None:
        """The length of a ``varchar(n)``; ``None`` for ``varchar(MAX)`` and other types."""
        match = _DATATYPE.fullmatch(self.datatype)
        length = match.group(2) if match else None
        return int(length) if length and length != "MAX" else None


@dataclass(frozen=True)
class Table:
    """One CDM table: its fields in specification order and its primary key."""

    name: str
    category: Category
    description: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    required: bool = False

    def __post_init__(self) -> None:
        _check_name("table", self.name)
        if self.category not in get_args(Category):
            raise DataError(
                f"table {self.name!r} has unknown category {self.category!r}",
                hint=f"expected one of {', '.join(get_args(Category))}",
            )
        if not self.fields:
            raise DataError(f"table {self.name!r} has no fields")
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"table {self.name!r} repeats fields: {', '.join(duplicates)}")
        flagged = tuple(f.name for f in self.fields if f.primary_key)
        if self.primary_key != flagged:
            raise DataError(
                f"table {self.name!r} declares primary key {list(self.primary_key)} "
                f"but its fields flag {list(flagged)}",
                hint="list the primary key fields in field order and flag each of them",
            )

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field names in specification order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        """The field called ``name``; raises :class:`UnknownFieldError` if there is none."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise UnknownFieldError(
            f"table {self.name!r} has no field {name!r}",
            hint=f"fields are: {', '.join(self.field_names)}",
        )

    def references(self) -> tuple[tuple[Field, ForeignKey], ...]:
        """Each field that has a foreign key, with the key, in field order."""
        return tuple((f, f.foreign_key) for f in self.fields if f.foreign_key is not None)


@dataclass(frozen=True)
class CdmSpec:
    """A whole CDM version: tables by name, in specification order."""

    version: str
    tables: Mapping[str, Table] = dataclass_field(hash=False)

    def __post_init__(self) -> None:
        for key, table in self.tables.items():
            if key != table.name:
                raise DataError(f"table {table.name!r} is filed under the name {key!r}")
        # Read-only, so the cached instance shared by every caller cannot be changed.
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))
        validate_references(self.tables.values())

    def table(self, name: str) -> Table:
        """The table called ``name``; raises :class:`UnknownTableError` if there is none."""
        try:
            return self.tables[name]
        except KeyError:
            raise UnknownTableError(
                f"unknown OMOP CDM {self.version} table {name!r}",
                hint=f"valid tables are: {', '.join(self.tables)}",
            ) from None

    def tables_in(self, category: Category) -> tuple[Table, ...]:
        """The tables of one category, in specification order."""
        return tuple(t for t in self.tables.values() if t.category == category)


def validate_references(tables: Iterable[Table]) -> None:
    """Check every foreign key points at the primary key of a known table, with its type.

    All problems are reported together so a broken specification is fixed in one pass.
    """
    by_name = {t.name: t for t in tables}
    problems: list[str] = []
    for table in by_name.values():
        for source, key in table.references():
            where = f"{table.name}.{source.name} -> {key}"
            target = by_name.get(key.table)
            if target is None:
                problems.append(f"{where}: no table {key.table!r}")
                continue
            if key.field not in target.field_names:
                problems.append(f"{where}: table {key.table!r} has no field {key.field!r}")
                continue
            if target.primary_key != (key.field,):
                problems.append(f"{where}: {key} is not the primary key of {key.table!r}")
            target_type = target.field(key.field).datatype
            if target_type != source.datatype:
                problems.append(f"{where}: {source.datatype} does not match {target_type}")
    if problems:
        raise DataError(
            "the OMOP CDM specification has broken foreign keys: " + "; ".join(problems)
        )


def parse_spec(document: Mapping[str, Any]) -> CdmSpec:
    """Build a :class:`CdmSpec` from the JSON document's parsed form."""
    version = _get(document, "cdm_version", str, "the specification")
    tables = [_parse_table(raw) for raw in _get(document, "tables", list, "the specification")]
    names = [t.name for t in tables]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"the specification repeats tables: {', '.join(duplicates)}")
    return CdmSpec(version=version, tables={t.name: t for t in tables})


@functools.cache
def load_spec() -> CdmSpec:
    """The OMOP CDM v5.4 specification shipped with Accord (read once, then cached)."""
    text = resources.files("accord.cdm").joinpath(SPEC_RESOURCE).read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{SPEC_RESOURCE} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DataError(f"{SPEC_RESOURCE} must hold a JSON object")
    return parse_spec(document)


def _get(raw: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
    if not isinstance(raw, Mapping):
        raise DataError(f"{where} must be a JSON object, not {type(raw).__name__}")
    if key not in raw:
        raise DataError(f"{where} is missing {key!r}")
    value = raw[key]
    # bool is an int subclass; a JSON true must not pass for a number or vice versa.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DataError(
            f"{where} has {key!r} = {value!r}; expected a JSON {kind.__name__}",
        )
    return value


def _parse_table(raw: Mapping[str, Any]) -> Table:
    name = _get(raw, "name", str, "a table entry")
    where = f"table {name!r}"
    fields = tuple(_parse_field(f, where) for f in _get(raw, "fields", list, where))
    primary_key = _get(raw, "primary_key", list, where)
    return Table(
        name=name,
        category=cast(Category, _get(raw, "category", str, where)),
        description=_get(raw, "description", str, where),
        fields=fields,
        primary_key=tuple(primary_key),
        required=_get(raw, "required", bool, where),
    )


def _parse_field(raw: Mapping[str, Any], table_where: str) -> Field:
    name = _get(raw, "name", str, f"a field of {table_where}")
    where = f"{table_where} field {name!r}"
    foreign_key: ForeignKey | None = None
    if raw.get("foreign_key") is not None:
        fk = _get(raw, "foreign_key", dict, where)
        foreign_key = ForeignKey(
            table=_get(fk, "table", str, f"{where} foreign key"),
            field=_get(fk, "field", str, f"{where} foreign key"),
        )
    fk_domain = raw.get("fk_domain")
    if fk_domain is not None and not isinstance(fk_domain, str):
        raise DataError(f"{where} has fk_domain = {fk_domain!r}; expected a string or null")
    return Field(
        name=name,
        datatype=_get(raw, "datatype", str, where),
        required=_get(raw, "required", bool, where),
        description=_get(raw, "description", str, where),
        primary_key=_get(raw, "primary_key", bool, where),
        foreign_key=foreign_key,
        fk_domain=fk_domain,
    )
