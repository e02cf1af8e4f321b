"""ATLAS (Circe) cohort definitions read into Accord cohorts: what maps to what, what is
noted, and every refusal with its JSON path."""

from __future__ import annotations

import csv
import doctest
import json
import math
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from accord.query import QueryValidationError, atlas, query_from_json
from accord.query.atlas import (
    EXAMPLES,
    MAX_GROUP_DEPTH,
    AtlasImport,
    cohort_from_atlas,
    example_definition,
)
from accord.query.builders import (
    age_between,
    all_of,
    any_of,
    at_least_of,
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
from accord.query.model import AllOf, Cohort, CountPersons, Not

AS_OF = date(2025, 12, 31)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "atlas"

T2DM = 201826
SECONDARY_DIABETES = 195771
METFORMIN = 1503297
INSULINS = 21600713
HBA1C = 3004410
HBA1C_HPLC = 3005673
PERCENT = 8554
ECG = 4163951
SMOKER = 4298794
OUTPATIENT = 9202
MALE, FEMALE = 8507, 8532

# Small Circe documents, built the way ATLAS writes them.


def item(
    concept_id: object, *, descendants: bool = True, excluded: bool = False, mapped: bool = False
) -> dict[str, Any]:
    return {
        "concept": {"CONCEPT_ID": concept_id, "CONCEPT_NAME": f"concept {concept_id}"},
        "isExcluded": excluded,
        "includeDescendants": descendants,
        "includeMapped": mapped,
    }


def concept_set(number: int, *items: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "id": number,
        "name": name if name is not None else f"set {number}",
        "expression": {"items": list(items)},
    }


SETS = [
    concept_set(0, item(T2DM), name="T2DM"),
    concept_set(1, item(METFORMIN), name="Metformin"),
    concept_set(2, item(HBA1C, descendants=False), name="HbA1c"),
    concept_set(3, item(ECG), name="ECG"),
    concept_set(4, item(SMOKER, descendants=False), name="Smoker"),
    concept_set(5, item(OUTPATIENT, descendants=False), name="Outpatient"),
]


def condition(codeset: object = 0, **attributes: Any) -> dict[str, Any]:
    return {"ConditionOccurrence": {"CodesetId": codeset, **attributes}}


def drug(codeset: object = 1, **attributes: Any) -> dict[str, Any]:
    return {"DrugExposure": {"CodesetId": codeset, **attributes}}


def lab(codeset: object = 2, **attributes: Any) -> dict[str, Any]:
    return {"Measurement": {"CodesetId": codeset, **attributes}}


def window(
    start: tuple[int | None, int] = (None, -1), end: tuple[int | None, int] = (0, 1), **extra: Any
) -> dict[str, Any]:
    def endpoint(days: int | None, coeff: int) -> dict[str, Any]:
        return {"Coeff": coeff} if days is None else {"Days": days, "Coeff": coeff}

    return {"Start": endpoint(*start), "End": endpoint(*end), **extra}


def correlated(
    criteria: dict[str, Any],
    *,
    start: tuple[int | None, int] = (None, -1),
    end: tuple[int | None, int] = (0, 1),
    occurrence: tuple[int, int] = (2, 1),
    **extra: Any,
) -> dict[str, Any]:
    kind, count = occurrence
    return {
        "Criteria": criteria,
        "StartWindow": window(start, end),
        "Occurrence": {"Type": kind, "Count": count, "IsDistinct": False},
        **extra,
    }


def group(
    *criteria: dict[str, Any],
    kind: str = "ALL",
    count: int | None = None,
    demographics: tuple[dict[str, Any], ...] = (),
    groups: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    made: dict[str, Any] = {
        "Type": kind,
        "CriteriaList": list(criteria),
        "DemographicCriteriaList": list(demographics),
        "Groups": list(groups),
    }
    if count is not None:
        made["Count"] = count
    return made


def rule(expression: dict[str, Any], name: str = "a rule") -> dict[str, Any]:
    return {"name": name, "description": "", "expression": expression}


def document(
    *rules: dict[str, Any],
    primary: tuple[dict[str, Any], ...] | None = None,
    prior: int = 0,
    post: int = 0,
    limit: str = "First",
    sets: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "ConceptSets": SETS if sets is None else sets,
        "PrimaryCriteria": {
            "CriteriaList": list(primary if primary is not None else (condition(),)),
            "ObservationWindow": {"PriorDays": prior, "PostDays": post},
            "PrimaryCriteriaLimit": {"Type": limit},
        },
        "InclusionRules": list(rules),
        **extra,
    }


def read(doc: object) -> AtlasImport:
    return cohort_from_atlas(doc, as_of=AS_OF)  # type: ignore[arg-type]


def refused(doc: object) -> tuple[str, ...]:
    with pytest.raises(QueryValidationError) as caught:
        read(doc)
    return caught.value.problems


def only_rule(doc: dict[str, Any]) -> object:
    """The criterion the document's only inclusion rule became."""
    criteria = read(doc).cohort.criteria
    assert len(criteria) == 1
    return criteria[0]


ENTRY = entry(has_condition(T2DM))
T2DM_SET, METFORMIN_SET = concepts(T2DM), concepts(METFORMIN)


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


# Correlated criteria: occurrences and windows


@pytest.mark.parametrize(
    ("occurrence", "at_least", "at_most"),
    [
        ((0, 2), 2, 2),  # exactly 2
        ((0, 0), 0, 0),  # exactly 0: none
        ((1, 3), 0, 3),  # at most 3
        ((1, 0), 0, 0),  # at most 0
        ((2, 1), 1, None),  # at least 1
        ((2, 4), 4, None),  # at least 4
    ],
)
def test_occurrences_become_counts(
    occurrence: tuple[int, int], at_least: int, at_most: int | None
) -> None:
    doc = document(rule(group(correlated(drug(), occurrence=occurrence))))
    assert only_rule(doc) == has_drug(METFORMIN, at_least=at_least, at_most=at_most)


def test_at_least_zero_restricts_nothing() -> None:
    imported = read(document(rule(group(correlated(drug(), occurrence=(2, 0))))))
    assert imported.cohort.criteria == (AllOf(()),)
    assert any("at least 0 records always holds" in n for n in imported.notes)


def test_distinct_counts_are_taken_where_they_agree_with_record_counts() -> None:
    def distinct(occurrence: tuple[int, int]) -> dict[str, Any]:
        made = correlated(drug(), occurrence=occurrence)
        made["Occurrence"]["IsDistinct"] = True
        return document(rule(group(made)))

    assert only_rule(distinct((2, 1))) == has_drug(METFORMIN)
    assert only_rule(distinct((0, 0))) == has_drug(METFORMIN, at_least=0, at_most=0)
    (problem,) = refused(distinct((2, 2)))
    assert problem.startswith("InclusionRules[0].expression.CriteriaList[0].Occurrence.IsDistinct:")


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        ((365, -1), (0, 1), (-365, 0)),
        ((None, -1), (1, -1), (None, -1)),
        ((0, 1), (90, 1), (0, 90)),
        ((1, 1), (None, 1), (1, None)),
        ((None, -1), (None, 1), (None, None)),
        ((30, -1), (7, -1), (-30, -7)),
    ],
)
def test_windows_become_days_relative_to_the_index(
    start: tuple[int | None, int], end: tuple[int | None, int], days: tuple[int | None, int | None]
) -> None:
    doc = document(rule(group(correlated(drug(), start=start, end=end))))
    assert only_rule(doc) == has_drug(METFORMIN, days=days)


def test_records_outside_the_observation_period_are_noted_unless_ignored() -> None:
    noted = read(document(rule(group(correlated(drug())))))
    assert any("1 correlated criteria: Circe counts only records inside" in n for n in noted.notes)
    ignoring = document(rule(group(correlated(drug(), IgnoreObservationPeriod=True))))
    assert not any("correlated criteria: Circe" in n for n in read(ignoring).notes)


def test_windows_accord_cannot_place_are_refused() -> None:
    here = "InclusionRules[0].expression.CriteriaList[0]"
    cases = {
        f"{here}.StartWindow.UseEventEnd": correlated(drug())
        | {"StartWindow": window(UseEventEnd=True)},
        f"{here}.StartWindow.UseIndexEnd": correlated(drug())
        | {"StartWindow": window(UseIndexEnd=True)},
        f"{here}.EndWindow": correlated(drug(), EndWindow=window()),
        f"{here}.RestrictVisit": correlated(drug(), RestrictVisit=True),
        f"{here}.StartWindow.Start.Days": correlated(drug(), start=(None, 1), end=(None, 1)),
        f"{here}.StartWindow.End.Days": correlated(drug(), start=(None, -1), end=(None, -1)),
        f"{here}.StartWindow": correlated(drug(), start=(0, 1), end=(10, -1)),
        f"{here}.StartWindow.Start.TimeUnit": correlated(drug())
        | {
            "StartWindow": {
                "Start": {"Days": 2, "Coeff": -1, "TimeUnit": "hour"},
                "End": {"Days": 0, "Coeff": 1},
            }
        },
    }
    for path, criterion in cases.items():
        (problem,) = refused(document(rule(group(criterion))))
        assert problem.startswith(f"{path}: "), (path, problem)


def test_open_windows_towards_the_observation_period_edge_are_taken_when_it_is_ignored() -> None:
    doc = document(
        rule(
            group(correlated(drug(), start=(None, 1), end=(None, 1), IgnoreObservationPeriod=True))
        )
    )
    assert only_rule(doc) == has_drug(METFORMIN, days=(None, None))


def test_days_beyond_a_hundred_years_are_refused() -> None:
    (problem,) = refused(document(rule(group(correlated(drug(), start=(40_000, -1))))))
    assert problem == (
        "InclusionRules[0].expression.CriteriaList[0].StartWindow.Start.Days: 40000 days is "
        "more than the 36500 Accord allows"
    )


# Criteria groups


def test_group_types_become_all_any_at_least_and_not_at_least() -> None:
    a, b, c = (correlated(drug(), start=(d, -1)) for d in (10, 20, 30))
    ta, tb, tc = (has_drug(METFORMIN, days=(-d, 0)) for d in (10, 20, 30))
    assert only_rule(document(rule(group(a, b, c)))) == all_of(ta, tb, tc)
    assert only_rule(document(rule(group(a, b, c, kind="ANY")))) == any_of(ta, tb, tc)
    assert only_rule(document(rule(group(a, b, c, kind="AT_LEAST", count=2)))) == at_least_of(
        2, ta, tb, tc
    )
    assert only_rule(document(rule(group(a, b, c, kind="AT_LEAST", count=3)))) == all_of(ta, tb, tc)
    assert only_rule(document(rule(group(a, b, c, kind="AT_LEAST", count=1)))) == any_of(ta, tb, tc)
    assert only_rule(document(rule(group(a, b, c, kind="AT_MOST", count=1)))) == Not(
        at_least_of(2, ta, tb, tc)
    )
    assert only_rule(document(rule(group(a, b, c, kind="AT_MOST", count=0)))) == Not(
        any_of(ta, tb, tc)
    )
    assert only_rule(document(rule(group(a, kind="any")))) == ta


def test_groups_that_restrict_nothing_become_everyone() -> None:
    a, b = correlated(drug()), correlated(condition())
    for expression in (
        group(),
        group(a, b, kind="AT_MOST", count=2),
        group(a, kind="AT_LEAST", count=0),
    ):
        imported = read(document(rule(expression)))
        assert imported.cohort.criteria == (AllOf(()),)
        assert any("restricts nothing" in n for n in imported.notes)


def test_nested_groups_nest() -> None:
    inner = group(
        correlated(drug()), demographics=({"Gender": [{"CONCEPT_ID": MALE}]},), kind="ANY"
    )
    doc = document(
        rule(group(correlated(condition(), start=(None, -1), end=(1, -1)), groups=(inner,)))
    )
    assert only_rule(doc) == all_of(
        has_condition(T2DM, days=(None, -1)),
        any_of(has_drug(METFORMIN, days=(None, 0)), sex_is(MALE)),
    )


def test_group_problems() -> None:
    deep = group(correlated(drug()))
    for _ in range(MAX_GROUP_DEPTH + 1):
        deep = group(groups=(deep,))
    problems = refused(
        document(
            rule(group(correlated(drug()), kind="AT_LEAST", count=2)),
            rule(group(correlated(drug()), kind="SOME")),
            rule(group(correlated(drug()), kind="AT_MOST")),
            rule(deep),
        )
    )
    assert problems[:3] == (
        "InclusionRules[0].expression.Count: at least 2 of 1 criteria can never hold; no one "
        "would be in the cohort",
        "InclusionRules[1].expression.Type: expected one of ALL, ANY, AT_LEAST, AT_MOST, got "
        '"SOME"',
        "InclusionRules[2].expression.Count: expected a whole number of criteria, got null",
    )
    assert problems[3].endswith(f"nested more than {MAX_GROUP_DEPTH} levels deep")


# Demographics


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ({"Value": 40, "Op": "gt"}, age_between(41, 150)),
        ({"Value": 40, "Op": "gte"}, age_between(40, 150)),
        ({"Value": 40, "Op": "lt"}, age_between(0, 39)),
        ({"Value": 40, "Op": "lte"}, age_between(0, 40)),
        ({"Value": 40, "Op": "eq"}, age_between(40, 40)),
        ({"Value": 40, "Op": "bt", "Extent": 75}, age_between(40, 75)),
        ({"Value": 40.0, "Op": "bt", "Extent": 200}, age_between(40, 150)),
        (
            {"Value": 40, "Op": "!bt", "Extent": 75},
            any_of(age_between(0, 39), age_between(76, 150)),
        ),
        ({"Value": 40, "Op": "!eq"}, any_of(age_between(0, 39), age_between(41, 150))),
        ({"Value": 0, "Op": "!bt", "Extent": 17}, age_between(18, 150)),
    ],
)
def test_ages_become_inclusive_bounds_from_0_to_150(age: dict[str, Any], expected: object) -> None:
    assert only_rule(document(rule(group(demographics=({"Age": age},))))) == expected


def test_age_and_gender_in_one_demographic_criterion_are_both_required() -> None:
    demographic = {
        "Age": {"Value": 18, "Op": "gte"},
        "Gender": [{"CONCEPT_ID": FEMALE}, {"CONCEPT_ID": MALE}],
    }
    doc = document(rule(group(demographics=(demographic,))))
    assert only_rule(doc) == all_of(age_between(18, 150), sex_is(FEMALE, MALE))


def test_demographic_problems() -> None:
    demographics = (
        {"Age": {"Value": 40.5, "Op": "gt"}},
        {"Age": {"Value": 200, "Op": "gt"}},
        {"Age": {"Value": 75, "Op": "bt", "Extent": 40}},
        {"Age": {"Value": 40, "Op": "about"}},
        {"Race": [{"CONCEPT_ID": 8527}]},
        {"Gender": [{"CONCEPT_ID": -1}]},
    )
    problems = refused(document(rule(group(demographics=demographics))))
    here = "InclusionRules[0].expression.DemographicCriteriaList"
    assert problems == (
        f"{here}[0].Age.Value: expected a whole number, got 40.5",
        f'{here}[1].Age: no age from 0 to 150 meets gt {{"Value": 200, "Op": "gt"}}',
        f"{here}[2].Age: Value 75 is greater than Extent 40; the range is empty",
        f'{here}[3].Age.Op: expected one of lt, lte, eq, !eq, gt, gte, bt, !bt, got "about"',
        f"{here}[4].Race: not supported by Accord (Accord's demographic criteria are age and sex)",
        f"{here}[5].Gender[0].CONCEPT_ID: expected a positive integer concept id, got -1",
    )


# Values and units


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ({"Value": 6.5, "Op": "gte"}, 6.5, None),
        ({"Value": 6.5, "Op": "lte"}, None, 6.5),
        ({"Value": 6.5, "Op": "eq"}, 6.5, 6.5),
        ({"Value": 6.5, "Op": "bt", "Extent": 8}, 6.5, 8),
        ({"Value": 6.5, "Op": "gt"}, math.nextafter(6.5, math.inf), None),
        ({"Value": 6.5, "Op": "lt"}, None, math.nextafter(6.5, -math.inf)),
    ],
)
def test_values_become_inclusive_bounds(
    value: dict[str, Any], low: float | None, high: float | None
) -> None:
    doc = document(
        rule(group(correlated(lab(ValueAsNumber=value, Unit=[{"CONCEPT_ID": PERCENT}]))))
    )
    assert only_rule(doc) == has_measurement(
        concepts(HBA1C, descendants=False),
        min_value=low,
        max_value=high,
        units=[PERCENT],
        days=(None, 0),
    )


def test_a_value_outside_a_range_is_refused() -> None:
    doc = document(
        rule(group(correlated(lab(ValueAsNumber={"Value": 4, "Op": "!bt", "Extent": 6}))))
    )
    (problem,) = refused(doc)
    assert problem.startswith(
        "InclusionRules[0].expression.CriteriaList[0].Criteria.Measurement.ValueAsNumber.Op: "
        "not supported by Accord"
    )


def test_an_observation_takes_a_value_and_a_unit() -> None:
    observation = {
        "Observation": {
            "CodesetId": 4,
            "ValueAsNumber": {"Value": 10, "Op": "gte"},
            "Unit": [{"CONCEPT_ID": 8554}],
        }
    }
    doc = document(rule(group(correlated(observation))))
    assert only_rule(doc) == has_observation(
        concepts(SMOKER, descendants=False), min_value=10, units=[PERCENT], days=(None, 0)
    )


# Attributes Accord has no place for


def test_the_path_of_each_unsupported_attribute_is_named() -> None:
    doc = document(
        rule(group(correlated(drug()))),
        rule(
            group(
                correlated(condition(OccurrenceStartDate={"Value": "2020-01-01", "Op": "gt"})),
                correlated(condition(Age={"Value": 18, "Op": "gte"}, First=True)),
            )
        ),
        primary=(
            condition(Gender=[{"CONCEPT_ID": FEMALE}], ConditionTypeExclude=False, VisitType=[]),
            drug(VisitType=[{"CONCEPT_ID": 9201}], DateAdjustment={"StartOffset": 1}),
            {"DrugEra": {"CodesetId": 1}},
            lab(CorrelatedCriteria=group(correlated(drug()))),
            lab(RangeHigh={"Value": 7, "Op": "gt"}, Abnormal=True),
        ),
    )
    problems = refused(doc)
    rule_1 = "InclusionRules[1].expression.CriteriaList"
    assert [p.split(": ", 1)[0] for p in problems] == [
        "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.Gender",
        "PrimaryCriteria.CriteriaList[1].DrugExposure.VisitType",
        "PrimaryCriteria.CriteriaList[1].DrugExposure.DateAdjustment",
        "PrimaryCriteria.CriteriaList[2].DrugEra",
        "PrimaryCriteria.CriteriaList[3].Measurement.CorrelatedCriteria",
        "PrimaryCriteria.CriteriaList[4].Measurement.RangeHigh",
        "PrimaryCriteria.CriteriaList[4].Measurement.Abnormal",
        f"{rule_1}[0].Criteria.ConditionOccurrence.OccurrenceStartDate",
        f"{rule_1}[1].Criteria.ConditionOccurrence.Age",
        f"{rule_1}[1].Criteria.ConditionOccurrence.First",
    ]
    assert all("not supported by Accord" in p for p in problems)
    assert "use a Gender demographic criterion" in problems[0]
    assert "it supports ConditionOccurrence, DrugExposure, Measurement" in problems[3]


def test_a_message_reads_as_the_path_then_the_reason() -> None:
    doc = document(
        rule(group(correlated(condition(OccurrenceStartDate={"Value": "2020-01-01", "Op": "gt"}))))
    )
    (problem,) = refused(doc)
    assert problem == (
        "InclusionRules[0].expression.CriteriaList[0].Criteria.ConditionOccurrence."
        "OccurrenceStartDate: not supported by Accord (calendar dates; Accord places records "
        "relative to the index date)"
    )
    with pytest.raises(QueryValidationError, match=r"invalid query \(1 problem\)"):
        read(doc)


# Settings that only shape cohort eras


def test_era_settings_are_noted_as_ignored() -> None:
    doc = document(
        EndStrategy={"CustomEra": {"DrugCodesetId": 1, "GapDays": 30, "Offset": 0}},
        CensoringCriteria=[drug(), condition()],
        CollapseSettings={"CollapseType": "ERA", "EraPad": 30},
        CensorWindow={},
        QualifiedLimit={"Type": "All"},
        ExpressionLimit={"Type": "Last"},
    )
    notes = "\n".join(read(doc).notes)
    assert "EndStrategy (CustomEra), CensoringCriteria (2), CollapseSettings" in notes
    assert 'QualifiedLimit "All" ignored' in notes
    assert 'ExpressionLimit "Last" ignored' in notes


def test_a_censor_window_is_refused() -> None:
    (problem,) = refused(document(CensorWindow={"startDate": "2020-01-01", "endDate": None}))
    assert problem.startswith("CensorWindow: not supported by Accord")


# Documents that are not cohort definitions


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "document: not valid JSON: "),
        (b"\xff\xfe\x00", "document: not valid JSON: "),
        ('{"PrimaryCriteria": NaN}', "document: not valid JSON: NaN is not a number JSON allows"),
        ("[1, 2]", "document: expected a JSON object (an ATLAS cohort definition), got [1, 2]"),
        ("{}", "PrimaryCriteria: required field missing: a cohort needs its entry events"),
        ({"name": "x", "expression": "{"}, "expression: not valid JSON: "),
        (
            {"name": "x", "expression": 3},
            "expression: expected a JSON object (a cohort expression), got 3",
        ),
        ("[" * 100_000 + "]" * 100_000, "document: nested too deeply to read"),
    ],
)
def test_documents_that_are_not_cohort_definitions(doc: object, message: str) -> None:
    (problem,) = refused(doc)
    assert problem.startswith(message)


def test_an_empty_primary_criteria_list_is_refused() -> None:
    (problem,) = refused(document(primary=()))
    assert problem == "PrimaryCriteria.CriteriaList: expected at least one entry event, got none"
    assert refused({"PrimaryCriteria": {"CriteriaList": None}}) == (problem,)


def test_deeply_nested_attributes_are_refused_not_crashed_on() -> None:
    deep: object = []
    for _ in range(5_000):
        deep = [deep]
    (problem,) = refused(document(primary=(condition(VisitType=deep),)))
    assert problem.startswith("PrimaryCriteria.CriteriaList[0].ConditionOccurrence.VisitType:")
    deeper: object = {}
    for _ in range(50_000):
        deeper = {"x": deeper}
    (problem,) = refused(document(primary=(condition(VisitType=deeper),)))
    assert problem == "document: nested too deeply to read"


def test_the_module_examples_are_true() -> None:
    assert doctest.testmod(atlas).failed == 0


def test_malformed_parts_are_named() -> None:
    doc = document(rule(group(correlated(drug()))), ConceptSets={"id": 0})
    doc["PrimaryCriteria"]["ObservationWindow"] = {"PriorDays": -1, "PostDays": "x"}
    doc["InclusionRules"].append({"name": 5, "expression": None})
    doc["InclusionRules"].append("rule")
    problems = refused(doc)
    assert problems[:4] == (
        'ConceptSets: expected a list of concept sets, got {"id": 0}',
        "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.CodesetId: concept set 0 is not "
        "defined in ConceptSets (defined: none)",
        "PrimaryCriteria.ObservationWindow.PriorDays: expected a number of days from 0 to "
        "36500, got -1",
        "PrimaryCriteria.ObservationWindow.PostDays: expected a number of days from 0 to "
        '36500, got "x"',
    )
    assert "InclusionRules[1].name: expected a string, got 5" in problems
    assert "InclusionRules[1].expression: required field missing" in problems
    assert 'InclusionRules[2]: expected an object, got "rule"' in problems


# Hostile strings stay data


HOSTILE = [
    "'; DROP TABLE person; --",
    'say "hello" \\ world',
    "Typ‑2‑Diabetes ✓ 糖尿病 \u202e",
    "\ud800 lone surrogate",
    "x" * 10_000,
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_data(name: str) -> None:
    sets = [concept_set(0, item(T2DM), name=name), concept_set(1, item(METFORMIN), name=name)]
    doc = document(rule(group(correlated(drug())), name=name), sets=sets, Title=name)
    imported = read(doc)
    assert imported.cohort == cohort(has_drug(METFORMIN, days=(None, 0)), as_of=AS_OF, entry=ENTRY)
    assert imported.name is not None
    for text in (imported.name, *imported.notes):
        text.encode("utf-8")  # every note is valid UTF-8
        assert len(text) < 12_000
    assert all(len(note) < 2_000 for note in imported.notes)
    text = json.dumps(doc)
    assert read(text).cohort == imported.cohort


def test_hostile_names_in_errors_stay_short_and_valid() -> None:
    name = "\ud800" + "'" * 5_000
    (problem,) = refused(document(sets=[concept_set(0, name=name)]))
    problem.encode("utf-8")
    assert len(problem) < 300
