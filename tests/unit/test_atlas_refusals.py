"""What an ATLAS (Circe) import refuses or ignores, each with its JSON path: attributes
Accord has no place for, settings that only shape cohort eras, documents that are not
cohort definitions, malformed parts, and hostile strings."""

from __future__ import annotations

import json

import pytest

from accord.query import QueryValidationError
from accord.query.builders import (
    cohort,
    has_drug,
)
from atlas_documents import (
    AS_OF,
    ENTRY,
    FEMALE,
    METFORMIN,
    T2DM,
    concept_set,
    condition,
    correlated,
    document,
    drug,
    group,
    item,
    lab,
    read,
    refused,
    rule,
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
