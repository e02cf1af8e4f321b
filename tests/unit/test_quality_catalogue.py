"""The check catalogue is generated from the CDM spec and covers all of it."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from accord.cdm import load_spec
from accord.errors import DataError
from accord.quality import Check, build_catalogue, default_catalogue

SPEC = load_spec()
DATA_TABLES = [t for t in SPEC.tables.values() if t.category != "vocabulary"]


def kinds() -> Counter[str]:
    return Counter(check.kind for check in default_catalogue())


def ids_of(kind: str) -> set[str]:
    return {c.id for c in default_catalogue() if c.kind == kind}


def test_every_required_field_has_a_required_check() -> None:
    expected = {
        f"conformance.required.{t.name}.{f.name}"
        for t in SPEC.tables.values()
        for f in t.fields
        if f.required
    }
    assert ids_of("required") == expected


def test_every_primary_key_has_a_uniqueness_check() -> None:
    keyed = [t for t in SPEC.tables.values() if t.primary_key]
    # Every key in v5.4 is one column; a composite key would need its own rule.
    assert all(len(t.primary_key) == 1 for t in keyed)
    assert ids_of("primary_key") == {
        f"conformance.primary_key.{t.name}.{t.primary_key[0]}" for t in keyed
    }


def test_every_reference_between_data_tables_has_a_foreign_key_check() -> None:
    expected = {
        f"conformance.foreign_key.{t.name}.{f.name}"
        for t in DATA_TABLES
        for f, key in t.references()
        if SPEC.table(key.table).category != "vocabulary"
    }
    assert ids_of("foreign_key") == expected
    assert len(expected) > 30


def test_every_concept_field_has_concept_checks_and_standard_ones_exclude_source_fields() -> None:
    concept_fields = {
        (t.name, f.name) for t in DATA_TABLES for f, key in t.references() if key.table == "concept"
    }
    assert ids_of("concept") == {f"conformance.concept.{t}.{f}" for t, f in concept_fields}
    assert ids_of("standard_concept") == {
        f"conformance.standard_concept.{t}.{f}"
        for t, f in concept_fields
        if not f.endswith("_source_concept_id")
    }


def test_concept_fields_are_checked_for_validity_and_for_their_domain() -> None:
    concept_fields = [
        (t.name, f) for t in DATA_TABLES for f, key in t.references() if key.table == "concept"
    ]
    assert ids_of("valid_concept") == {
        f"conformance.valid_concept.{t}.{f.name}" for t, f in concept_fields
    }
    domains = {c.id: c.domain for c in default_catalogue() if c.kind == "concept_domain"}
    assert domains == {
        f"conformance.concept_domain.{t}.{f.name}": f.fk_domain
        for t, f in concept_fields
        if f.fk_domain and not f.name.endswith("_source_concept_id")
    }
    assert domains["conformance.concept_domain.person.gender_concept_id"] == "Gender"
    assert domains["conformance.concept_domain.measurement.unit_concept_id"] == "Unit"


def test_every_column_of_every_table_has_a_fatal_type_check() -> None:
    types = {c.id: c for c in default_catalogue() if c.kind == "type"}
    assert set(types) == {
        f"conformance.type.{t.name}.{f.name}" for t in SPEC.tables.values() for f in t.fields
    }
    assert {(c.severity, c.threshold) for c in types.values()} == {("fatal", 0.0)}
    assert types["conformance.type.person.year_of_birth"].datatype == "integer"


def test_source_values_pair_with_their_standard_concept() -> None:
    pairs = {
        (c.table, c.field): c.other_field for c in default_catalogue() if c.kind == "source_mapped"
    }
    assert pairs[("condition_occurrence", "condition_source_value")] == "condition_concept_id"
    assert pairs[("measurement", "value_source_value")] == "value_as_concept_id"
    assert pairs[("measurement", "unit_source_value")] == "unit_concept_id"
    assert ("drug_exposure", "dose_unit_source_value") not in pairs  # no dose_unit_concept_id
    assert ("person", "person_source_value") not in pairs
    assert {SPEC.table(t).category for t, _ in pairs} == {"clinical"}


def test_plausibility_checks_have_the_agreed_ids() -> None:
    ids = {c.id for c in default_catalogue()}
    assert {
        "plausibility.sex.condition_occurrence.condition_concept_id",
        "plausibility.sex.procedure_occurrence.procedure_concept_id",
        "plausibility.value.measurement.value_as_number",
        "plausibility.before_market.drug_exposure.drug_exposure_start_date",
        "plausibility.range.drug_exposure.days_supply",
        "plausibility.range.drug_exposure.refills",
        "plausibility.future.death.death_date",
        "plausibility.future.drug_exposure.drug_exposure_end_date",
        "plausibility.after_death.condition_occurrence.condition_start_date",
        "plausibility.in_visit.drug_exposure.drug_exposure_start_date",
    } <= ids
    dated = {(c.table, c.field) for c in default_catalogue() if c.kind == "after_birth"}
    assert {(c.table, c.field) for c in default_catalogue() if c.kind == "after_death"} == dated
    future = {(c.table, c.field) for c in default_catalogue() if c.kind == "future"}
    assert future == {
        (t.name, f.name)
        for t in SPEC.tables.values()
        if t.category == "clinical"
        for f in t.fields
        if f.base_type == "date"
    }
    assert ("person", "birth_datetime") not in future
    in_visit = {c.table: c for c in default_catalogue() if c.kind == "in_visit"}
    assert "visit_occurrence" not in in_visit
    assert {c.field for c in in_visit.values()} <= {f for _, f in dated}
    assert {(c.severity, c.threshold) for c in in_visit.values()} == {("characterisation", 5.0)}


def test_the_catalogue_size() -> None:
    # A change here means the specification or a rule changed: say so in the changelog.
    assert len(default_catalogue()) == 708


def test_ids_are_unique_and_name_their_family() -> None:
    checks = default_catalogue()
    assert len({c.id for c in checks}) == len(checks)
    assert all(c.id.startswith(f"{c.family}.{c.kind}.{c.table}.") for c in checks)
    assert {c.family for c in checks} == {"conformance", "completeness", "plausibility"}


def test_fatal_conformance_tolerates_nothing() -> None:
    fatal = [c for c in default_catalogue() if c.severity == "fatal"]
    assert fatal
    assert all(c.family == "conformance" and c.threshold == 0 for c in fatal)


def test_start_and_end_pairs_come_from_field_names() -> None:
    pairs = {
        (c.table, c.field, c.other_field)
        for c in default_catalogue()
        if c.kind == "start_before_end"
    }
    assert ("drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date") in pairs
    assert ("procedure_occurrence", "procedure_date", "procedure_end_date") in pairs
    assert all(table in SPEC.tables for table, _, _ in pairs)


def test_event_tables_are_checked_against_birth() -> None:
    tables = {c.table for c in default_catalogue() if c.kind == "after_birth"}
    assert {"condition_occurrence", "drug_exposure", "measurement", "death"} <= tables
    assert "person" not in tables


def test_year_of_birth_upper_bound_is_next_year() -> None:
    (check,) = [
        c
        for c in build_catalogue(today=date(2030, 6, 1))
        if c.kind == "range" and c.table == "person"
    ]
    assert check.bounds == (1850, 2031)
    assert check.sentence(count=7, total=1000) == (
        "7 of 1,000 rows in person have a year_of_birth outside 1850–2031"
    )


def test_sentences_read_plainly() -> None:
    checks = {c.id: c for c in default_catalogue()}
    orphan = checks["conformance.foreign_key.condition_occurrence.person_id"]
    assert orphan.sentence(count=5, total=12345) == (
        "5 of 12,345 rows in condition_occurrence have a person_id not found in person"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"severity": "awful"}, "unknown severity"),
        ({"threshold": 101.0}, "threshold"),
        ({"kind": "foreign_key"}, "missing its parameters"),
    ],
)
def test_a_malformed_check_is_refused_when_built(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "kind": "required",
        "table": "person",
        "field": "person_id",
        "severity": "fatal",
        "threshold": 0.0,
        **change,
    }
    with pytest.raises(DataError, match=message):
        Check(**arguments)  # type: ignore[arg-type]
