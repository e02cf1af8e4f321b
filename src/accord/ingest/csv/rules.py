"""The field rules of one described file: which CDM field each column or constant fills.

Part of reading a mapping file (:mod:`accord.ingest.csv.mapping`): a fixed-table file
names fields of its CDM table; a coded file names event fields, which become the
matching column of whichever event table a row is routed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import yaml

from accord.cdm import load_spec
from accord.cdm.spec import BaseType
from accord.ingest.csv.nodes import (
    Entries,
    Problems,
    Scalar,
    check_keys,
    mapping_entries,
    text_value,
    typed_scalar,
)
from accord.ingest.fhir.routing import EVENT_TABLES

Part = Literal["year", "month", "day"]

LOADER_FIELDS: Final = frozenset({"person_id", "concept_id", "source_concept_id", "source_value"})
"""Event fields the loader fills for coded files."""
# Built from the last table to the first, so the first table that has a field gives its type.
EVENT_FIELDS: Final = {
    generic: (table, column)
    for table, layout in reversed(EVENT_TABLES.items())
    for generic, column in layout.columns.items()
    if generic not in LOADER_FIELDS
}
"""Each event field a coded file may set, with one CDM table and column giving its type."""

_RULE_KEYS: Final = {"column", "values", "default", "part"}
_PARTS: Final[dict[str, Part]] = {"year": "year", "month": "month", "day": "day"}


@dataclass(frozen=True)
class ColumnRule:
    """How one CDM (or event) field is filled: from a column, or a constant."""

    field: str
    base_type: BaseType
    line: int
    column: str | None = None
    constant: Scalar = None
    values: tuple[tuple[str, Scalar], ...] | None = None
    default: Scalar = None
    part: Part | None = None


def parse_rules(
    node: yaml.Node,
    entries: Entries,
    table: str | None,
    coded: bool,
    where: str,
    problems: Problems,
) -> tuple[ColumnRule, ...]:
    rules: list[ColumnRule] = []
    for section in ("columns", "constants"):
        if section not in entries:
            continue
        fields = mapping_entries(entries[section][1], f"{where}: {section}", problems)
        for field, (key_node, value_node) in (fields or {}).items():
            base = _field_type(field, table, coded, key_node, f"{where}: {section}", problems)
            if base is None:
                continue
            if section == "constants":
                rules.append(_constant(field, base, value_node, where, problems))
            else:
                rule = _column_rule(field, base, value_node, where, problems)
                if rule is not None:
                    rules.append(rule)
    _check_required(node, table, coded, {r.field for r in rules}, where, problems)
    return tuple(rules)


def _field_type(
    field: str,
    table: str | None,
    coded: bool,
    node: yaml.Node,
    where: str,
    problems: Problems,
) -> BaseType | None:
    spec = load_spec()
    if coded:
        if field not in EVENT_FIELDS:
            reason = "is set by the loader" if field in LOADER_FIELDS else "is not an event field"
            problems.add(node, f"{where}: {field!r} {reason}")
            return None
        owner, column = EVENT_FIELDS[field]
        return spec.table(owner).field(column).base_type
    if table is None:
        return None
    cdm_table = spec.table(table)
    if field not in cdm_table.field_names:
        problems.add(node, f"{where}: {table} has no field {field!r}")
        return None
    if field in (*cdm_table.primary_key, "person_id") or (
        table == "person" and field == "person_source_value"
    ):
        problems.add(node, f"{where}: {field} is set by the loader (ids, or from patient)")
        return None
    return cdm_table.field(field).base_type


def _check_required(
    node: yaml.Node,
    table: str | None,
    coded: bool,
    covered: set[str],
    where: str,
    problems: Problems,
) -> None:
    if coded:
        needed = ["start_date", "type_concept_id"]
    elif table is not None:
        cdm_table = load_spec().table(table)
        loader = {*cdm_table.primary_key, "person_id"}
        needed = [f.name for f in cdm_table.fields if f.required and f.name not in loader]
    else:
        return
    for field in needed:
        if field not in covered:
            problems.add(node, f"{where}: required field {field} has no column or constant")


def _column_rule(
    field: str, base: BaseType, node: yaml.Node, where: str, problems: Problems
) -> ColumnRule | None:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return ColumnRule(field, base, line, column=node.value)
    entries = mapping_entries(node, f"{where}: {field}", problems)
    if entries is None:
        return None
    check_keys(node, entries, _RULE_KEYS, {"column"}, f"{where}: {field}", problems)
    column = text_value(entries, "column", problems)
    part = text_value(entries, "part", problems)
    if part is not None and part not in _PARTS:
        problems.add(entries["part"][1], f"{where}: {field}: part must be year, month or day")
        part = None
    values = None
    if "values" in entries:
        pairs = mapping_entries(entries["values"][1], f"{where}: {field}: values", problems) or {}
        values = tuple(
            (source, typed_scalar(target, base, f"{where}: {field}", problems))
            for source, (_, target) in pairs.items()
        )
    default = None
    if "default" in entries:
        default = typed_scalar(entries["default"][1], base, f"{where}: {field}", problems)
    if column is None:
        return None
    return ColumnRule(
        field,
        base,
        line,
        column=column,
        values=values,
        default=default,
        part=_PARTS.get(part or ""),
    )


def _constant(
    field: str, base: BaseType, node: yaml.Node, where: str, problems: Problems
) -> ColumnRule:
    value = typed_scalar(node, base, f"{where}: constants: {field}", problems)
    return ColumnRule(field, base, node.start_mark.line + 1, constant=value)
