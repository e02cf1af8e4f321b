"""ATLAS (Circe) cohort definitions read into Accord cohorts: the realistic export and the
shipped example, concept sets, and primary criteria as the entry."""

from __future__ import annotations

import csv
import doctest
import json
from importlib import resources

import pytest

from accord.query import atlas, query_from_json
from accord.query.atlas import (
    EXAMPLES,
    example_definition,
)
from accord.query.builders import (
    age_between,
    all_of,
    any_of,
    cohort,
    concepts,
    entry,
    has_condition,
    has_drug,
    has_measurement,
    has_observation,
    has_procedure,
    has_visit,
    sex_is,
)
from accord.query.model import Cohort, CountPersons
from atlas_documents import (
    AS_OF,
    ECG,
    ENTRY,
    FEMALE,
    FIXTURES,
    HBA1C,
    HBA1C_HPLC,
    INSULINS,
    METFORMIN,
    OUTPATIENT,
    PERCENT,
    SECONDARY_DIABETES,
    SETS,
    SMOKER,
    T2DM,
    concept_set,
    condition,
    correlated,
    document,
    drug,
    group,
    item,
    lab,
    only_rule,
    read,
    refused,
    rule,
)

# The realistic export


def test_a_realistic_atlas_export_becomes_the_cohort_it_describes() -> None:
    imported = read((FIXTURES / "t2dm_metformin_new_users.json").read_text(encoding="utf-8"))
    t2dm = concepts(T2DM, exclude=[SECONDARY_DIABETES])
    expected = cohort(
        # First: true, the first diagnosis ever: no diagnosis before the index date
        has_condition(t2dm, at_least=0, at_most=0, days=(None, -1)),
        has_drug(METFORMIN, days=(0, 90)),
        has_drug(INSULINS, at_least=0, at_most=0, days=(None, -1)),
        has_measurement(
            concepts(HBA1C, HBA1C_HPLC, descendants=False),
            min_value=6.5,
            units=[PERCENT],
            days=(-365, 0),
        ),
        age_between(40, 75),
        as_of=AS_OF,
        entry=entry(has_condition(t2dm), prior_days=365),
    )
    assert imported.cohort == expected
    assert imported.name is None
    notes = "\n".join(imported.notes)
    assert 'InclusionRules[1] "no prior insulin" → HasDrugExposure(' in notes
    assert "First: true" in notes
    assert "observation period" in notes
    assert "EndStrategy (DateOffset), CollapseSettings" in notes
    assert "as_of 2025-12-31" in notes


def test_the_imported_cohort_survives_a_json_round_trip() -> None:
    imported = read((FIXTURES / "t2dm_metformin_new_users.json").read_bytes())
    assert Cohort.from_json(json.loads(json.dumps(imported.cohort.to_json()))) == imported.cohort
    query = imported.count_persons()
    assert query == CountPersons(imported.cohort)
    assert query_from_json(json.dumps(query.to_json())) == query


def test_parsed_json_and_text_give_the_same_cohort() -> None:
    text = (FIXTURES / "t2dm_metformin_new_users.json").read_text(encoding="utf-8")
    assert read(json.loads(text)) == read(text)


def test_a_webapi_cohort_definition_is_read_with_its_name() -> None:
    inner = document(rule(group(correlated(drug()))))
    wrapped = {"id": 17, "name": "Diabetes on metformin", "expression": json.dumps(inner)}
    imported = read(wrapped)
    assert imported.name == "Diabetes on metformin"
    assert imported.cohort == read(inner).cohort
    assert read({**wrapped, "expression": inner}).cohort == imported.cohort
    inner["InclusionRules"][0]["expression"]["CriteriaList"][0]["RestrictVisit"] = True
    (problem,) = refused({**wrapped, "expression": inner})
    assert problem.startswith(
        "expression.InclusionRules[0].expression.CriteriaList[0].RestrictVisit:"
    )


def test_the_shipped_example_uses_concepts_of_the_starter_vocabulary() -> None:
    assert EXAMPLES == ("t2dm_metformin",)
    imported = read(example_definition())
    assert imported.name == "Type 2 diabetes, new users of metformin"
    starter = resources.files("accord.vocab").joinpath("starter", "CONCEPT.csv")
    with starter.open(encoding="utf-8") as rows:
        known = {int(row["concept_id"]) for row in csv.DictReader(rows, delimiter="\t")}
    used: set[int] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("ids", "exclude", "unit_concept_ids", "concept_ids"):
                    used.update(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(imported.cohort.to_json())
    assert used
    assert used <= known
    with pytest.raises(ValueError, match="no example named"):
        example_definition("nothing")


def test_the_module_examples_are_true() -> None:
    assert doctest.testmod(atlas).failed == 0


# Concept sets


def test_excluded_concepts_stay_in_the_concept_set() -> None:
    sets = [concept_set(0, item(T2DM), item(SECONDARY_DIABETES, excluded=True))]
    imported = read(document(sets=sets))
    assert imported.cohort.entry == entry(
        has_condition(concepts(T2DM, exclude=[SECONDARY_DIABETES]))
    )


def test_a_set_without_descendants_keeps_that_setting() -> None:
    sets = [concept_set(0, item(T2DM, descendants=False), item(4230254, descendants=False))]
    imported = read(document(sets=sets))
    assert imported.cohort.entry == entry(has_condition(concepts(T2DM, 4230254, descendants=False)))


MIXED = [*SETS, concept_set(9, item(T2DM), item(4230254, descendants=False), name="Mixed")]
WITH, WITHOUT = concepts(T2DM), concepts(4230254, descendants=False)


def test_a_set_mixing_descendant_settings_becomes_two_entry_events() -> None:
    imported = read(document(primary=(condition(9),), sets=MIXED))
    assert imported.cohort.entry == entry(has_condition(WITH), has_condition(WITHOUT))
    assert any("mixes items with and without descendants" in n for n in imported.notes)


def test_a_mixed_set_in_a_rule_becomes_any_of_or_all_of() -> None:
    at_least_one = document(rule(group(correlated(condition(9)))), sets=MIXED)
    assert only_rule(at_least_one) == any_of(
        has_condition(WITH, days=(None, 0)), has_condition(WITHOUT, days=(None, 0))
    )
    none = document(rule(group(correlated(condition(9), occurrence=(0, 0)))), sets=MIXED)
    assert only_rule(none) == all_of(
        has_condition(WITH, at_least=0, at_most=0), has_condition(WITHOUT, at_least=0, at_most=0)
    )
    two = document(rule(group(correlated(condition(9), occurrence=(2, 2)))), sets=MIXED)
    (problem,) = refused(two)
    assert problem.startswith("InclusionRules[0].expression.CriteriaList[0].Occurrence: ")
    assert "at least 2" in problem


def test_exclusions_with_another_descendant_setting_are_refused() -> None:
    sets = [concept_set(0, item(T2DM), item(SECONDARY_DIABETES, descendants=False, excluded=True))]
    (problem,) = refused(document(sets=sets))
    assert problem.startswith("ConceptSets[0].expression.items: not supported by Accord")
    assert 'concept set "set 0" (id 0)' in problem


def test_include_mapped_is_noted() -> None:
    sets = [concept_set(0, item(T2DM, mapped=True))]
    imported = read(document(sets=sets))
    assert imported.cohort.entry == ENTRY
    assert any("includeMapped" in n and "201826" in n for n in imported.notes)


def test_concept_set_problems_name_the_set() -> None:
    sets = [
        concept_set(0, name="Nothing here"),
        concept_set(1, item(METFORMIN), item(METFORMIN, excluded=True)),
        concept_set(2, item(0), item("x"), item(2**31)),
        concept_set(2, item(HBA1C)),
    ]
    doc = document(
        rule(group(correlated(drug(1)), correlated(lab(2)), correlated(lab(7)))), sets=sets
    )
    problems = refused(doc)
    assert problems == (
        "ConceptSets[3].id: 2 repeats ConceptSets[2].id",
        'ConceptSets[0]: concept set "Nothing here" (id 0) includes no concepts, so no record '
        "can match it",
        "ConceptSets[1].expression.items[1]: concept 1503297 is both included and excluded in "
        'concept set "set 1" (id 1) (first at ConceptSets[1].expression.items[0]); remove one',
        "ConceptSets[2].expression.items[0].concept.CONCEPT_ID: expected a positive integer "
        "concept id, got 0",
        "ConceptSets[2].expression.items[1].concept.CONCEPT_ID: expected a positive integer "
        'concept id, got "x"',
        "ConceptSets[2].expression.items[2].concept.CONCEPT_ID: expected a positive integer "
        "concept id, got 2147483648",
        "InclusionRules[0].expression.CriteriaList[2].Criteria.Measurement.CodesetId: concept "
        "set 7 is not defined in ConceptSets (defined: 0, 1, 2)",
    )


def test_a_criterion_without_a_concept_set_is_refused() -> None:
    (problem,) = refused(document(primary=(condition(None),)))
    assert problem.startswith("PrimaryCriteria.CriteriaList[0].ConditionOccurrence.CodesetId: ")
    assert "every record" in problem


def test_unused_concept_sets_are_noted() -> None:
    imported = read(document())
    assert any(n.startswith("concept sets not used") and '"HbA1c"' in n for n in imported.notes)


# Primary criteria


def test_primary_criteria_become_entry_events_with_the_observation_window() -> None:
    primary = (
        condition(),
        drug(),
        lab(ValueAsNumber={"Value": 7, "Op": "gte"}),
        {"ProcedureOccurrence": {"CodesetId": 3}},
        {"Observation": {"CodesetId": 4}},
        {"VisitOccurrence": {"CodesetId": 5}},
    )
    imported = read(document(primary=primary, prior=365, post=30))
    assert imported.cohort == cohort(
        as_of=AS_OF,
        entry=entry(
            has_condition(T2DM),
            has_drug(METFORMIN),
            has_measurement(concepts(HBA1C, descendants=False), min_value=7),
            has_procedure(ECG),
            has_observation(concepts(SMOKER, descendants=False)),
            has_visit(concepts(OUTPATIENT, descendants=False)),
            prior_days=365,
            post_days=30,
        ),
    )


def test_a_missing_observation_window_and_limit_mean_zero_days_and_first() -> None:
    doc = {"ConceptSets": SETS, "PrimaryCriteria": {"CriteriaList": [condition()]}}
    assert read(doc).cohort == cohort(as_of=AS_OF, entry=ENTRY)


def test_first_on_several_primary_criteria_is_noted_without_a_window() -> None:
    imported = read(document(primary=(condition(First=True), drug(First=True))))
    assert imported.cohort == cohort(
        as_of=AS_OF, entry=entry(has_condition(T2DM), has_drug(METFORMIN))
    )
    assert any("the earliest of the entry events is the same date" in n for n in imported.notes)


def test_first_on_several_primary_criteria_is_refused_where_it_changes_the_index() -> None:
    problems = refused(document(primary=(condition(First=True), drug()), prior=365))
    assert len(problems) == 1
    assert problems[0].startswith(
        "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.First: true on one of several"
    )
    valued = (condition(), lab(First=True, ValueAsNumber={"Value": 7, "Op": "gte"}))
    (problem,) = refused(document(primary=valued))
    assert "value or unit filters" in problem


def test_limit_last_is_refused() -> None:
    (problem,) = refused(document(limit="Last"))
    assert problem.startswith("PrimaryCriteria.PrimaryCriteriaLimit.Type: 'Last' is not supported")


def test_limit_all_is_taken_when_no_rule_depends_on_the_index() -> None:
    sex_only = document(
        rule(group(demographics=({"Gender": [{"CONCEPT_ID": FEMALE}]},))), limit="All"
    )
    imported = read(sex_only)
    assert imported.cohort == cohort(sex_is(FEMALE), as_of=AS_OF, entry=ENTRY)
    assert any("'All': no rule depends on which event is the index" in n for n in imported.notes)
    first_only = read(
        document(rule(group(correlated(drug()))), primary=(condition(First=True),), limit="all")
    )
    assert any("'All': with First: true" in n for n in first_only.notes)


def test_limit_all_is_refused_when_a_rule_depends_on_the_index() -> None:
    doc = document(rule(group(correlated(drug()))), limit="All")
    (problem,) = refused(doc)
    assert problem.startswith("PrimaryCriteria.PrimaryCriteriaLimit.Type: 'All' is not supported")


def test_additional_criteria_become_a_criterion() -> None:
    doc = document(AdditionalCriteria=group(correlated(drug(), start=(30, -1), end=(0, 1))))
    imported = read(doc)
    assert imported.cohort.criteria == (has_drug(METFORMIN, days=(-30, 0)),)
    assert any(
        n.startswith("AdditionalCriteria (restricting initial events)") for n in imported.notes
    )
    empty = read(document(AdditionalCriteria=group()))
    assert empty.cohort.criteria == ()
