"""The query model: validation when built, every problem reported, exact JSON round trips."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import ExitCode, QueryError
from accord.query import (
    AgeBetween,
    Cohort,
    ConceptSet,
    CountPersons,
    Criterion,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    Not,
    QueryValidationError,
    SexIs,
    age_between,
    cohort,
    concepts,
    count_persons,
    has_condition,
    has_drug,
    has_measurement,
    query_from_json,
    sex_is,
)
from accord.query.kinds import MAX_CONCEPT_ID, MAX_CRITERIA, MAX_DEPTH
from accord.query.scenarios import trial_recruitment
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from query_strategies import queries

AS_OF = date(2025, 12, 31)

ANALYSES = "'count_persons', 'glm_step'"


def problems_of(obj: Any) -> set[str]:
    with pytest.raises(QueryValidationError) as raised:
        query_from_json(obj)
    return set(raised.value.problems)


def concept_set(*ids: Any, **more: Any) -> dict[str, Any]:
    return {"type": "concept_set", "ids": list(ids), **more}


def wrap(*criteria: Any, as_of: Any = "2025-12-31") -> dict[str, Any]:
    return {
        "type": "count_persons",
        "cohort": {"type": "cohort", "criteria": list(criteria), "as_of": as_of},
    }


# Building in Python


def test_builders_make_the_same_tree_as_the_classes() -> None:
    built = count_persons(
        cohort(
            age_between(45, 75),
            sex_is(8532),
            has_condition(HYPERTENSION),
            ~has_drug(concepts(BETA_BLOCKERS, exclude=[5])),
            has_measurement([3004249, 3012888], min_value=140),
            as_of=AS_OF,
        )
    )
    assert built == CountPersons(
        Cohort(
            (
                AgeBetween(45, 75),
                SexIs((8532,)),
                HasCondition(ConceptSet((HYPERTENSION,))),
                Not(HasDrugExposure(ConceptSet((BETA_BLOCKERS,), exclude=(5,)))),
                HasMeasurement(ConceptSet((3004249, 3012888)), min_value=140),
            ),
            as_of=AS_OF,
        )
    )


def test_trial_recruitment_is_the_scenario() -> None:
    assert trial_recruitment(AS_OF) == count_persons(
        cohort(
            age_between(45, 75),
            has_condition(concepts(HYPERTENSION, descendants=True)),
            ~has_drug(concepts(BETA_BLOCKERS, descendants=True)),
            as_of=AS_OF,
        )
    )


def test_nodes_are_frozen_and_hashable() -> None:
    query = trial_recruitment(AS_OF)
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.cohort = query.cohort  # type: ignore[misc]
    assert hash(query) == hash(trial_recruitment(AS_OF))


def test_python_construction_reports_each_field() -> None:
    with pytest.raises(QueryValidationError) as raised:
        ConceptSet((320128, -3, 320128), include_descendants="yes", exclude=(320128,))  # type: ignore[arg-type]
    assert raised.value.problems == (
        "ids[1]: expected a positive integer concept id, got -3",
        "ids[2]: concept id 320128 repeats ids[0]",
        'include_descendants: expected true or false, got "yes"',
    )


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: ConceptSet(()), "ids: expected at least one concept id, got none"),
        (lambda: ConceptSet([1]), "ids: expected a tuple of concept ids, got list"),  # type: ignore[arg-type]
        (lambda: ConceptSet((1,), exclude=(1,)), "exclude[0]: concept 1 is also in ids"),
        (lambda: AgeBetween(80, 45), "min_age: 80 is greater than max_age 45"),
        (lambda: AgeBetween(True, 50), "min_age: expected an age in whole years"),
        (lambda: AgeBetween(45.0, 50), "min_age: expected an age in whole years"),  # type: ignore[arg-type]
        (lambda: AgeBetween(-1, 50), "min_age: expected an age in whole years"),
        (lambda: SexIs(()), "concept_ids: expected at least one concept id"),
        (lambda: HasCondition(320128), "concepts: expected a ConceptSet, got int"),  # type: ignore[arg-type]
        (lambda: HasMeasurement(ConceptSet((1,)), 10, 5), "min_value: 10 is greater than"),
        (lambda: HasMeasurement(ConceptSet((1,)), float("nan")), "min_value: expected a finite"),
        (lambda: Not(ConceptSet((1,))), "criterion: expected a criterion, got ConceptSet"),  # type: ignore[arg-type]
        (lambda: Cohort([AgeBetween(1, 2)], AS_OF), "criteria: expected a tuple of criteria"),  # type: ignore[arg-type]
        (lambda: Cohort((ConceptSet((1,)),), AS_OF), "criteria[0]: expected a criterion"),  # type: ignore[arg-type]
        (lambda: Cohort((), datetime(2025, 1, 1)), "as_of: expected a date, got datetime"),
        (lambda: Cohort((), "2025-12-31"), "as_of: expected a date, got str"),  # type: ignore[arg-type]
        (lambda: CountPersons(AgeBetween(1, 2)), "cohort: expected a Cohort, got AgeBetween"),  # type: ignore[arg-type]
    ],
)
def test_python_construction_rejects(build: Any, problem: str) -> None:
    with pytest.raises(QueryValidationError) as raised:
        build()
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_validation_error_is_a_user_error_with_the_query_exit_code() -> None:
    with pytest.raises(QueryError) as raised:
        AgeBetween(80, 45)
    assert raised.value.exit_code == ExitCode.QUERY
    assert str(raised.value) == "invalid query (1 problem): min_age: 80 is greater than max_age 45"


# Decoding JSON


def test_every_problem_is_reported_with_its_path() -> None:
    document = wrap(
        {"type": "age_between", "min_age": 80, "max_age": 45, "colour": "red"},
        {"type": "has_condition", "concepts": concept_set(320128, -3, "7", 320128)},
        {"type": "has_drug_exposure", "concepts": concept_set()},
        {"type": "no_such_criterion"},
        {"type": "not", "criterion": {"type": "sex_is", "concept_ids": [True]}},
        {"type": "has_measurement", "concepts": concept_set(1), "min_value": "high"},
        {"type": "has_condition"},
        as_of="31/12/2025",
    )
    assert problems_of(document) == {
        "cohort.criteria[0].min_age: 80 is greater than max_age 45",
        "cohort.criteria[0].colour: unknown field",
        "cohort.criteria[1].concepts.ids[1]: expected a positive integer concept id, got -3",
        'cohort.criteria[1].concepts.ids[2]: expected a positive integer concept id, got "7"',
        "cohort.criteria[1].concepts.ids[3]: concept id 320128 repeats "
        "cohort.criteria[1].concepts.ids[0]",
        "cohort.criteria[2].concepts.ids: expected at least one concept id, got none",
        "cohort.criteria[3].type: expected one of 'age_between', 'sex_is', 'has_condition', "
        "'has_drug_exposure', 'has_measurement', 'not', got \"no_such_criterion\"",
        "cohort.criteria[4].criterion.concept_ids[0]: expected a positive integer concept id, "
        "got true",
        'cohort.criteria[5].min_value: expected a finite number or null, got "high"',
        "cohort.criteria[6].concepts: required field missing",
        'cohort.as_of: expected a date as YYYY-MM-DD, got "31/12/2025"',
    }


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], f"query: expected an object of one of the types {ANALYSES}, got []"),
        (None, f"query: expected an object of one of the types {ANALYSES}, got null"),
        ({"cohort": {}}, f"type: expected one of {ANALYSES}, field missing"),
        ({"type": "cohort"}, f"type: expected one of {ANALYSES}, got \"cohort\""),
        ({"type": "count_persons"}, "cohort: required field missing"),
        ({"type": "count_persons", "cohort": 3}, "cohort: expected an object of type 'cohort'"),
        (wrap(as_of="20251231"), "cohort.as_of: expected a date as YYYY-MM-DD"),
        (wrap(as_of="2025-02-30"), "cohort.as_of: expected a date as YYYY-MM-DD"),
        (wrap(as_of=20251231), "cohort.as_of: expected a date as YYYY-MM-DD, got 20251231"),
        ({**wrap(), "extra": 1}, "extra: unknown field"),
        ({"type": "count_persons", "cohort": {"type": "cohort", "as_of": "2025-12-31"}},
         "cohort.criteria: required field missing"),
        ({"type": "count_persons", "cohort": {**wrap()["cohort"], "criteria": {}}},
         "cohort.criteria: expected a list of criteria"),
        (wrap({"type": "age_between", "min_age": 45.0, "max_age": 75}),
         "cohort.criteria[0].min_age: expected an age in whole years from 0 to 150, got 45.0"),
        (wrap({"type": "age_between", "min_age": 45}), "cohort.criteria[0].max_age: required"),
        (wrap({"type": "has_condition", "concepts": concept_set(2**31)}),
         "cohort.criteria[0].concepts.ids[0]: expected a positive integer concept id"),
        (wrap({"type": "has_condition", "concepts": concept_set(1, exclude=[1])}),
         "cohort.criteria[0].concepts.exclude[0]: concept 1 is also in ids"),
        (wrap({"type": "has_condition", "concepts": {"type": "concept_set", "ids": "1,2"}}),
         'cohort.criteria[0].concepts.ids: expected a list of concept ids, got "1,2"'),
        (wrap({"type": "has_condition", "concepts": concept_set(1, include_descendants=1)}),
         "cohort.criteria[0].concepts.include_descendants: expected true or false, got 1"),
        (wrap({"type": "has_condition", "concepts": {"type": "age_between"}}),
         "cohort.criteria[0].concepts.type: expected one of 'concept_set', got \"age_between\""),
        (wrap(*[{"type": "age_between", "min_age": 1, "max_age": 2}] * (MAX_CRITERIA + 1)),
         f"cohort.criteria: at most {MAX_CRITERIA} allowed"),
    ],
)  # fmt: skip
def test_json_rejects(document: Any, problem: str) -> None:
    found = problems_of(document)
    assert any(p.startswith(problem) for p in found), found


def test_deep_nesting_is_refused_not_a_crash() -> None:
    criterion: dict[str, Any] = {"type": "sex_is", "concept_ids": [8507]}
    for _ in range(2000):
        criterion = {"type": "not", "criterion": criterion}
    (problem,) = problems_of(wrap(criterion))
    assert problem.endswith(f"nested more than {MAX_DEPTH} levels deep")


def test_json_text_is_accepted_and_bad_text_reported() -> None:
    query = trial_recruitment(AS_OF)
    assert query_from_json(json.dumps(query.to_json())) == query
    assert query_from_json(json.dumps(query.to_json()).encode()) == query
    (problem,) = problems_of("{not json")
    assert problem.startswith("query: not valid JSON")
    nan = json.dumps(wrap()).replace('"criteria": []', '"criteria": [NaN]')
    (problem,) = problems_of(nan)
    assert problem.startswith("query: not valid JSON: NaN")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_count": 0}, "min_count: expected a number of records from 1 to 10000"),
        ({"within_days": 0}, "within_days: expected a number of days from 1 to 36500"),
        ({"within_days": "30"}, "within_days: expected a number of days"),
    ],
)
def test_counts_and_windows_are_checked(change: dict[str, object], message: str) -> None:
    criterion = {"type": "has_condition", "concepts": concept_set(HYPERTENSION), **change}
    (problem,) = problems_of(wrap(criterion))
    assert message in problem


def test_defaults_may_be_left_out_of_json() -> None:
    document = wrap(
        {"type": "has_condition", "concepts": {"type": "concept_set", "ids": [HYPERTENSION]}},
        {"type": "has_measurement", "concepts": concept_set(3004249)},
    )
    query = query_from_json(document)
    assert query.cohort.criteria == (
        HasCondition(ConceptSet((HYPERTENSION,), include_descendants=True, exclude=())),
        HasMeasurement(ConceptSet((3004249,)), None, None),
    )


def test_node_from_json_decodes_its_own_type() -> None:
    assert ConceptSet.from_json(concept_set(5)) == ConceptSet((5,))
    sex = {"type": "sex_is", "concept_ids": [8507]}
    assert Criterion.from_json({"type": "not", "criterion": sex}) == Not(SexIs((8507,)))
    with pytest.raises(QueryValidationError) as raised:
        ConceptSet.from_json(sex)
    assert raised.value.problems == ("type: expected one of 'concept_set', got \"sex_is\"",)


def test_trial_recruitment_json() -> None:
    assert trial_recruitment(AS_OF).to_json() == {
        "type": "count_persons",
        "cohort": {
            "type": "cohort",
            "criteria": [
                {"type": "age_between", "min_age": 45, "max_age": 75},
                {
                    "type": "has_condition",
                    "concepts": {
                        "type": "concept_set",
                        "ids": [HYPERTENSION],
                        "include_descendants": True,
                        "exclude": [],
                    },
                    "min_count": 1,
                    "within_days": None,
                },
                {
                    "type": "not",
                    "criterion": {
                        "type": "has_drug_exposure",
                        "concepts": {
                            "type": "concept_set",
                            "ids": [BETA_BLOCKERS],
                            "include_descendants": True,
                            "exclude": [],
                        },
                        "min_count": 1,
                        "within_days": None,
                    },
                },
            ],
            "as_of": "2025-12-31",
        },
    }


@given(queries())
def test_json_round_trip_is_exact(query: CountPersons) -> None:
    document = query.to_json()
    text = json.dumps(document)
    decoded = query_from_json(text)
    assert decoded == query
    assert json.dumps(decoded.to_json()) == text


# Injection: hostile values cannot become concept ids

HOSTILE = [
    "1); DROP TABLE person; --",
    "1 OR 1=1",
    "320128'",
    "0x4E2",
    "1e3",
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_strings_are_never_concept_ids(value: str) -> None:
    with pytest.raises(QueryValidationError):
        ConceptSet((value,))  # type: ignore[arg-type]
    with pytest.raises(QueryValidationError):
        SexIs((value,))  # type: ignore[arg-type]
    problems = problems_of(wrap({"type": "has_condition", "concepts": concept_set(value)}))
    assert problems == {
        f"cohort.criteria[0].concepts.ids[0]: expected a positive integer concept id, "
        f"got {json.dumps(value)}"
    }


@given(st.one_of(st.text(), st.floats(), st.booleans(), st.none(), st.lists(st.integers())))
def test_no_non_integer_becomes_a_concept_id(value: object) -> None:
    with pytest.raises(QueryValidationError):
        ConceptSet((value,))  # type: ignore[arg-type]
    with pytest.raises(QueryValidationError):
        query_from_json(wrap({"type": "has_drug_exposure", "concepts": concept_set(value)}))


@given(st.integers().filter(lambda i: not 0 < i <= MAX_CONCEPT_ID))
def test_out_of_range_integers_are_refused(value: int) -> None:
    with pytest.raises(QueryValidationError):
        ConceptSet((value,))


def test_a_flood_of_problems_keeps_the_message_short() -> None:
    bad_ids = concept_set(*range(-1, -201, -1))
    with pytest.raises(QueryValidationError) as raised:
        query_from_json(wrap({"type": "has_condition", "concepts": bad_ids}))
    assert len(raised.value.problems) == 200
    assert str(raised.value).startswith("invalid query (200 problems): ")
    assert str(raised.value).endswith("; and 150 more")
