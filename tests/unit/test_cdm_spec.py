"""The OMOP CDM v5.4 specification as data: facts checked against the published spec."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from accord.cdm import (
    CLINICAL_TABLES,
    HEALTH_ECONOMICS_TABLES,
    HEALTH_SYSTEM_TABLES,
    VOCABULARY_TABLES,
    CdmSpec,
    Field,
    ForeignKey,
    Table,
    UnknownFieldError,
    UnknownTableError,
    load_spec,
    validate_references,
)
from accord.cdm.spec import parse_spec
from accord.errors import DataError

# Field counts of OMOP_CDMv5.4_Field_Level.csv.
FIELD_COUNTS = {
    "person": 18,
    "observation_period": 5,
    "visit_occurrence": 17,
    "visit_detail": 19,
    "condition_occurrence": 16,
    "drug_exposure": 23,
    "procedure_occurrence": 16,
    "measurement": 23,
    "observation": 21,
    "death": 7,
    "location": 12,
    "care_site": 6,
    "provider": 13,
    "payer_plan_period": 17,
    "cost": 22,
    "concept": 10,
    "vocabulary": 5,
    "domain": 3,
    "concept_class": 3,
    "concept_relationship": 6,
    "relationship": 6,
    "concept_ancestor": 4,
}

PRIMARY_KEYS = {
    "person": ("person_id",),
    "observation_period": ("observation_period_id",),
    "visit_occurrence": ("visit_occurrence_id",),
    "drug_exposure": ("drug_exposure_id",),
    "measurement": ("measurement_id",),
    "death": ("person_id",),
    "cost": ("cost_id",),
    "concept": ("concept_id",),
    "vocabulary": ("vocabulary_id",),
    "domain": ("domain_id",),
    "concept_relationship": (),
    "concept_ancestor": (),
}


def spec_document() -> dict[str, Any]:
    text = resources.files("accord.cdm").joinpath("omop_cdm_v5_4.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def test_version_is_5_4() -> None:
    assert load_spec().version == "5.4"
    assert spec_document()["cdm_version"] == "5.4"


def test_every_table_is_present_in_spec_order() -> None:
    assert tuple(load_spec().tables) == tuple(FIELD_COUNTS)


@pytest.mark.parametrize(("table", "count"), FIELD_COUNTS.items())
def test_field_counts_match_the_spec(table: str, count: int) -> None:
    assert len(load_spec().table(table).fields) == count


@pytest.mark.parametrize(("table", "key"), PRIMARY_KEYS.items())
def test_primary_keys(table: str, key: tuple[str, ...]) -> None:
    assert load_spec().table(table).primary_key == key


def test_person_fields_in_spec_order() -> None:
    assert load_spec().table("person").field_names == (
        "person_id",
        "gender_concept_id",
        "year_of_birth",
        "month_of_birth",
        "day_of_birth",
        "birth_datetime",
        "race_concept_id",
        "ethnicity_concept_id",
        "location_id",
        "provider_id",
        "care_site_id",
        "person_source_value",
        "gender_source_value",
        "gender_source_concept_id",
        "race_source_value",
        "race_source_concept_id",
        "ethnicity_source_value",
        "ethnicity_source_concept_id",
    )


def test_person_required_fields() -> None:
    person = load_spec().table("person")
    required = {f.name for f in person.fields if f.required}
    assert required == {
        "person_id",
        "gender_concept_id",
        "year_of_birth",
        "race_concept_id",
        "ethnicity_concept_id",
    }


def test_measurement_has_the_5_4_fields() -> None:
    measurement = load_spec().table("measurement")
    assert measurement.field("unit_source_concept_id").foreign_key == ForeignKey(
        "concept", "concept_id"
    )
    event = measurement.field("measurement_event_id")
    assert event.datatype == "integer"
    # The linked record may live in any table, so the spec gives no foreign key.
    assert event.foreign_key is None
    assert measurement.field("meas_event_field_concept_id").foreign_key is not None
    assert measurement.field("measurement_time").datatype == "varchar(10)"
    assert measurement.field("value_as_number").datatype == "float"
    assert measurement.field("unit_concept_id").fk_domain == "Unit"


def test_drug_exposure_supply_fields() -> None:
    drug = load_spec().table("drug_exposure")
    assert drug.field("days_supply").datatype == "integer"
    assert drug.field("refills").datatype == "integer"
    assert drug.field("quantity").datatype == "float"
    assert drug.field("sig").datatype == "varchar(MAX)"
    assert drug.field("drug_exposure_end_date").required
    assert not drug.field("days_supply").required
    assert drug.field("route_concept_id").fk_domain == "Route"


def test_visit_occurrence_uses_the_5_4_admission_names() -> None:
    visit = load_spec().table("visit_occurrence")
    for name in ("admitted_from_concept_id", "discharged_to_concept_id"):
        assert visit.field(name).fk_domain == "Visit"
        assert visit.field(name).foreign_key == ForeignKey("concept", "concept_id")
    # v5.3 names that 5.4 replaced.
    for old in ("admitting_source_concept_id", "discharge_to_concept_id"):
        assert old not in visit.field_names
    assert visit.field("preceding_visit_occurrence_id").foreign_key == ForeignKey(
        "visit_occurrence", "visit_occurrence_id"
    )


@pytest.mark.parametrize(
    ("table", "field", "domain"),
    [
        ("person", "gender_concept_id", "Gender"),
        ("person", "race_concept_id", "Race"),
        ("person", "ethnicity_concept_id", "Ethnicity"),
        ("condition_occurrence", "condition_concept_id", "Condition"),
        ("condition_occurrence", "condition_status_concept_id", "Condition Status"),
        ("drug_exposure", "drug_concept_id", "Drug"),
        ("procedure_occurrence", "procedure_type_concept_id", "Type Concept"),
        ("observation_period", "period_type_concept_id", "Type Concept"),
        ("provider", "gender_concept_id", "Gender"),
        ("observation", "observation_concept_id", None),
    ],
)
def test_concept_domains(table: str, field: str, domain: str | None) -> None:
    assert load_spec().table(table).field(field).fk_domain == domain


@pytest.mark.parametrize(
    ("table", "field", "target"),
    [
        ("person", "location_id", ForeignKey("location", "location_id")),
        ("person", "care_site_id", ForeignKey("care_site", "care_site_id")),
        ("care_site", "location_id", ForeignKey("location", "location_id")),
        ("provider", "care_site_id", ForeignKey("care_site", "care_site_id")),
        ("death", "person_id", ForeignKey("person", "person_id")),
        ("cost", "cost_domain_id", ForeignKey("domain", "domain_id")),
        ("concept", "domain_id", ForeignKey("domain", "domain_id")),
        ("concept", "vocabulary_id", ForeignKey("vocabulary", "vocabulary_id")),
        ("concept", "concept_class_id", ForeignKey("concept_class", "concept_class_id")),
        ("concept_relationship", "relationship_id", ForeignKey("relationship", "relationship_id")),
        ("concept_ancestor", "descendant_concept_id", ForeignKey("concept", "concept_id")),
        ("condition_occurrence", "visit_detail_id", ForeignKey("visit_detail", "visit_detail_id")),
    ],
)
def test_foreign_keys(table: str, field: str, target: ForeignKey) -> None:
    assert load_spec().table(table).field(field).foreign_key == target


def test_fields_without_foreign_keys_in_the_spec() -> None:
    cost = load_spec().table("cost")
    assert cost.field("cost_event_id").foreign_key is None
    assert cost.field("payer_plan_period_id").foreign_key is None


def test_every_foreign_key_resolves_to_a_primary_key_of_the_same_type() -> None:
    spec = load_spec()
    references = [(t, f, k) for t in spec.tables.values() for f, k in t.references()]
    assert len(references) > 100
    for table, source, key in references:
        target = spec.table(key.table)
        assert target.primary_key == (key.field,), f"{table.name}.{source.name}"
        assert target.field(key.field).datatype == source.datatype


def test_datatypes_are_cdm_types() -> None:
    datatypes = {f.datatype for t in load_spec().tables.values() for f in t.fields}
    assert {"integer", "float", "date", "datetime", "varchar(50)", "varchar(MAX)"} <= datatypes
    assert all(d.islower() or d.endswith("(MAX)") for d in datatypes)


def test_every_field_has_a_one_line_description() -> None:
    for table in load_spec().tables.values():
        assert table.description
        for field in table.fields:
            assert field.description.strip()
            assert "\n" not in field.description


def test_table_groups_partition_the_spec() -> None:
    spec = load_spec()
    groups = {
        "clinical": CLINICAL_TABLES,
        "health_system": HEALTH_SYSTEM_TABLES,
        "health_economics": HEALTH_ECONOMICS_TABLES,
        "vocabulary": VOCABULARY_TABLES,
    }
    for category, names in groups.items():
        assert names == tuple(t.name for t in spec.tables_in(category))  # type: ignore[arg-type]
    assert sorted(sum(groups.values(), ())) == sorted(spec.tables)


def test_required_tables() -> None:
    required = {t.name for t in load_spec().tables.values() if t.required}
    assert required == {"person", "observation_period"}


def test_load_spec_is_cached_and_read_only() -> None:
    spec = load_spec()
    assert load_spec() is spec
    with pytest.raises(TypeError):
        spec.tables["person"] = spec.table("death")  # type: ignore[index]


def test_unknown_table_names_the_valid_ones() -> None:
    with pytest.raises(UnknownTableError) as info:
        load_spec().table("patient")
    assert isinstance(info.value, DataError)
    assert isinstance(info.value, KeyError)
    assert "'patient'" in str(info.value)
    assert "person" in str(info.value)
    assert "concept_ancestor" in str(info.value)


def test_unknown_field_names_the_valid_ones() -> None:
    with pytest.raises(UnknownFieldError, match="year_of_birth"):
        load_spec().table("person").field("birth_year")


def test_field_type_helpers() -> None:
    drug = load_spec().table("drug_exposure")
    assert drug.field("lot_number").base_type == "varchar"
    assert drug.field("lot_number").max_length == 50
    assert drug.field("sig").max_length is None
    assert drug.field("quantity").base_type == "float"
    assert drug.field("quantity").max_length is None


def make_field(name: str = "x_id", **changes: Any) -> Field:
    values: dict[str, Any] = {
        "name": name,
        "datatype": "integer",
        "required": True,
        "description": "An identifier.",
    }
    values.update(changes)
    return Field(**values)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"datatype": "int"}, "unknown CDM datatype 'int'"),
        ({"datatype": "varchar(0)"}, "unknown CDM datatype"),
        ({"name": "Bad Name"}, "invalid field name"),
        ({"primary_key": True, "required": False}, "must be required"),
        ({"fk_domain": "Gender"}, "has no foreign key"),
        ({"description": "two\nlines"}, "one-line description"),
    ],
)
def test_field_validation(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        make_field(**changes)


def test_table_validation() -> None:
    with pytest.raises(DataError, match="repeats fields: x_id"):
        Table("t", "clinical", "T.", (make_field(), make_field()), ())
    with pytest.raises(DataError, match="fields flag"):
        Table("t", "clinical", "T.", (make_field(primary_key=True),), ())
    with pytest.raises(DataError, match="unknown category 'misc'"):
        Table("t", "misc", "T.", (make_field(),), ())  # type: ignore[arg-type]


def test_a_foreign_key_to_an_unknown_table_is_caught() -> None:
    orphan = Table(
        "t",
        "clinical",
        "T.",
        (make_field(foreign_key=ForeignKey("nowhere", "nowhere_id")),),
        (),
    )
    with pytest.raises(DataError, match=r"t\.x_id -> nowhere\.nowhere_id: no table 'nowhere'"):
        validate_references([orphan])
    with pytest.raises(DataError, match="no table 'nowhere'"):
        CdmSpec(version="test", tables={"t": orphan})


def test_foreign_key_problems_are_reported_together() -> None:
    parent = Table("p", "clinical", "P.", (make_field("p_id", primary_key=True),), ("p_id",))
    child = Table(
        "c",
        "clinical",
        "C.",
        (
            make_field("a", foreign_key=ForeignKey("p", "missing")),
            make_field("b", datatype="date", foreign_key=ForeignKey("p", "p_id")),
        ),
        (),
    )
    with pytest.raises(DataError) as info:
        validate_references([parent, child])
    assert "has no field 'missing'" in str(info.value)
    assert "date does not match integer" in str(info.value)


def test_parse_spec_reports_what_is_missing() -> None:
    document = spec_document()
    broken = copy.deepcopy(document)
    del broken["tables"][0]["fields"][2]["required"]
    with pytest.raises(
        DataError, match="table 'person' field 'year_of_birth' is missing 'required'"
    ):
        parse_spec(broken)
    broken = copy.deepcopy(document)
    broken["tables"][0]["fields"][0]["primary_key"] = "yes"
    with pytest.raises(DataError, match="expected a JSON bool"):
        parse_spec(broken)
    broken = copy.deepcopy(document)
    broken["tables"][0]["fields"][1]["foreign_key"]["table"] = "concepts"
    with pytest.raises(DataError, match="no table 'concepts'"):
        parse_spec(broken)


def test_parse_spec_round_trips_the_shipped_file() -> None:
    assert parse_spec(spec_document()) == load_spec()
