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
from accord.query.builders import (
    age,
    age_group,
    all_of,
    any_of,
    at_least_of,
    count_by,
    distinct_persons,
    entry,
    has_observation,
    has_procedure,
    has_visit,
    in_observation,
    kaplan_meier,
    measurement_value,
    sex,
)
from accord.query.kinds import MAX_CONCEPT_ID, MAX_CRITERIA, MAX_DAYS, MAX_DEPTH
from accord.query.model import (
    Age,
    AgeGroup,
    AllOf,
    Analysis,
    AnyOf,
    AtLeastOf,
    Correlation,
    CountBy,
    DistinctPersons,
    Entry,
    GlmStep,
    HasObservation,
    HasProcedure,
    HasVisit,
    Histogram,
    Indicator,
    InObservation,
    KaplanMeier,
    MeasurementValue,
    Node,
    Sex,
    Summary,
)
from accord.query.scenarios import trial_recruitment
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION
from query_strategies import analyses

AS_OF = date(2025, 12, 31)

ANALYSES = (
    "'count_persons', 'glm_step', 'count_by', 'histogram', 'summary', 'correlation', "
    "'kaplan_meier', 'distinct_persons'"
)
CRITERIA = (
    "'age_between', 'sex_is', 'has_condition', 'has_drug_exposure', 'has_procedure', "
    "'has_visit', 'has_measurement', 'has_observation', 'in_observation', 'not', 'all_of', "
    "'any_of', 'at_least_of'"
)
CONCEPTS = ConceptSet((1,))
EVERYONE = Cohort((), AS_OF)
ENTERED = Cohort((), AS_OF, Entry((HasCondition(CONCEPTS),)))


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


def entered(*events: Any) -> dict[str, Any]:
    """A count of the persons entering on ``events``."""
    document = wrap()
    document["cohort"]["entry"] = {"type": "entry", "events": list(events)}
    return document


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


def test_builders_of_events_windows_and_combinations() -> None:
    assert count_persons(
        cohort(
            has_procedure(1, at_least=2, at_most=3, days=(-30, 30)),
            has_visit(2, within_days=365),
            has_observation(3, min_value=10, units=[4, 5], at_least=0, at_most=0),
            in_observation(prior_days=365, post_days=30),
            any_of(has_condition(6, days=(None, None)), all_of()),
            at_least_of(1, sex_is(8507), age_between(18, 65)),
            as_of=AS_OF,
            entry=entry(has_condition(7), has_drug(8), prior_days=180),
        )
    ) == CountPersons(
        Cohort(
            (
                HasProcedure(ConceptSet((1,)), min_count=2, max_count=3, from_day=-30, to_day=30),
                # The 365 days up to and including the index date.
                HasVisit(ConceptSet((2,)), from_day=-364, to_day=0),
                HasObservation(
                    ConceptSet((3,)),
                    min_count=0,
                    max_count=0,
                    min_value=10,
                    unit_concept_ids=(4, 5),
                ),
                InObservation(365, 30),
                AnyOf((HasCondition(ConceptSet((6,)), from_day=None, to_day=None), AllOf(()))),
                AtLeastOf(1, (SexIs((8507,)), AgeBetween(18, 65))),
            ),
            AS_OF,
            Entry(
                (HasCondition(ConceptSet((7,))), HasDrugExposure(ConceptSet((8,)))),
                prior_days=180,
            ),
        )
    )


def test_a_window_is_within_days_or_days_not_both() -> None:
    assert has_condition(1, within_days=1) == HasCondition(ConceptSet((1,)), from_day=0, to_day=0)
    with pytest.raises(TypeError, match="give within_days or days, not both"):
        has_condition(1, within_days=30, days=(-29, 0))


def test_builders_of_variables_and_analyses() -> None:
    everyone = cohort(as_of=AS_OF)
    entered = cohort(as_of=AS_OF, entry=entry(has_condition(1)))
    blood_pressure = measurement_value(2, units=[3], summary="mean", within_days=30)
    assert blood_pressure == MeasurementValue(ConceptSet((2,)), (3,), "mean", -29, 0)
    assert count_by(everyone, age_group(5), sex(), blood_pressure) == CountBy(
        EVERYONE, (AgeGroup(5), Sex(), blood_pressure)
    )
    assert kaplan_meier(entered, has_condition(4), horizon_days=720, step_days=60) == (
        KaplanMeier(entered, HasCondition(ConceptSet((4,))), 720, 60)
    )
    assert distinct_persons(everyone, precision=12) == DistinctPersons(EVERYONE, 12)
    assert age() == Age()


NEW_NODES: list[Node] = [
    HasProcedure(CONCEPTS, min_count=2, max_count=5, from_day=-30, to_day=30),
    HasVisit(CONCEPTS, min_count=0, max_count=0, from_day=None, to_day=None),
    HasObservation(
        CONCEPTS, min_value=1.5, max_value=2, unit_concept_ids=(8, 9), from_day=1, to_day=None
    ),
    HasMeasurement(CONCEPTS, unit_concept_ids=(8,), to_day=-1),
    InObservation(365, 0),
    AllOf(()),
    AnyOf((SexIs((1,)), Not(InObservation(0, 30)))),
    AtLeastOf(2, (SexIs((1,)), AgeBetween(1, 2), HasCondition(CONCEPTS))),
    Entry((HasCondition(CONCEPTS), HasMeasurement(CONCEPTS, min_value=140)), 365, 30),
    ENTERED,
    AgeGroup(5),
    Sex(),
    MeasurementValue(CONCEPTS, (8,), "max", -365, 365),
    MeasurementValue(CONCEPTS, summary="min", from_day=None, to_day=None),
    CountBy(ENTERED, (Age(), Sex(), Indicator(InObservation(0, 0)))),
    Histogram(EVERYONE, AgeGroup(10), (0.0, 18.5, 65.0)),
    Summary(ENTERED, MeasurementValue(CONCEPTS), (-1.0, 0.0, 1e6)),
    Correlation(EVERYONE, (Age(), MeasurementValue(CONCEPTS, summary="mean"))),
    KaplanMeier(ENTERED, HasVisit(CONCEPTS), 720, 30),
    DistinctPersons(ENTERED, 10),
]


@pytest.mark.parametrize("node", NEW_NODES, ids=lambda n: type(n).__name__)
def test_every_node_round_trips_through_json(node: Node) -> None:
    text = json.dumps(node.to_json())
    assert type(node).from_json(json.loads(text)) == node
    assert json.dumps(type(node).from_json(json.loads(text)).to_json()) == text


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
        (
            lambda: HasMeasurement(CONCEPTS, min_value=10, max_value=5),
            "min_value: 10 is greater than",
        ),
        (lambda: HasMeasurement(CONCEPTS, min_value=float("nan")), "min_value: expected a finite"),
        (
            lambda: HasObservation(CONCEPTS, unit_concept_ids=(0,)),
            "unit_concept_ids[0]: expected a positive",
        ),
        (
            lambda: HasCondition(CONCEPTS, min_count=0),
            "min_count: 0 with no max_count matches everyone; give a max_count or a min_count "
            "of at least 1",
        ),
        (
            lambda: HasCondition(CONCEPTS, min_count=3, max_count=2),
            "min_count: 3 is greater than max_count 2",
        ),
        (
            lambda: HasCondition(CONCEPTS, max_count=-1),
            "max_count: expected a number of records from 0",
        ),
        (
            lambda: HasProcedure(CONCEPTS, from_day=5, to_day=-5),
            "from_day: 5 is greater than to_day -5",
        ),
        (lambda: HasVisit(CONCEPTS, from_day=1), "from_day: 1 is greater than to_day 0"),
        (
            lambda: HasCondition(CONCEPTS, from_day=-MAX_DAYS - 1),
            f"from_day: expected a day from {-MAX_DAYS} to {MAX_DAYS} relative to the index date",
        ),
        (lambda: InObservation(-1), f"prior_days: expected a number of days from 0 to {MAX_DAYS}"),
        (lambda: AnyOf(()), "criteria: expected at least one criterion, got none"),
        (
            lambda: AtLeastOf(3, (SexIs((1,)), SexIs((2,)))),
            "count: 3 is more than the 2 criteria given",
        ),
        (lambda: AtLeastOf(0, (SexIs((1,)),)), "count: expected a number of criteria, got 0"),
        (lambda: Entry(()), "events: expected at least one event, got none"),
        (lambda: Entry((SexIs((1,)),)), "events[0]: expected an event criterion"),
        (
            lambda: Entry((HasCondition(CONCEPTS, min_count=2),)),
            "events[0]: an entry event takes no min_count, max_count, from_day or to_day",
        ),
        (
            lambda: Entry((HasCondition(CONCEPTS, from_day=-30),)),
            "events[0]: an entry event takes no min_count, max_count, from_day or to_day",
        ),
        (lambda: Cohort((), AS_OF, SexIs((1,))), "entry: expected an Entry, got SexIs"),  # type: ignore[arg-type]
        (lambda: AgeGroup(0), "width: expected a width in years, 1 to 150, got 0"),
        (
            lambda: MeasurementValue(CONCEPTS, summary="median"),
            'summary: expected one of latest, mean, min, max, got "median"',
        ),
        (
            lambda: MeasurementValue(CONCEPTS, from_day=1, to_day=0),
            "from_day: 1 is greater than to_day 0",
        ),
        (
            lambda: CountBy(EVERYONE, ()),
            "by: expected at least one variable to stratify by, got none",
        ),
        (
            lambda: CountBy(EVERYONE, (Age(), Sex(), AgeGroup(), Age())),
            "by: at most 3 allowed, got 4",
        ),
        (
            lambda: Histogram(EVERYONE, Age(), (0.0, 10.0, 10.0)),
            "edges[2]: 10.0 is not greater than the edge before it",
        ),
        (
            lambda: Summary(EVERYONE, Age(), (5.0, 1.0)),
            "edges[1]: 1.0 is not greater than the edge",
        ),
        (lambda: Histogram(EVERYONE, Age(), (1.0,)), "edges: expected at least 2 bin edges, got 1"),
        (
            lambda: Correlation(EVERYONE, (Age(),)),
            "variables: expected at least 2 variables, got 1",
        ),
        (
            lambda: GlmStep(EVERYONE, Age(), (Sex(),), "gaussian", (0.0,)),
            "beta: expected 2 coefficients",
        ),
        (
            lambda: KaplanMeier(EVERYONE, HasCondition(CONCEPTS), 365),
            "cohort.entry: survival needs an entry event to start from",
        ),
        (
            lambda: KaplanMeier(ENTERED, SexIs((1,)), 365),
            "event: expected an event criterion (has_condition, has_drug_exposure, ...), "
            "got sex_is",
        ),
        (
            lambda: KaplanMeier(ENTERED, HasCondition(CONCEPTS, min_count=2), 365),
            "event: a survival event takes no min_count, max_count, from_day or to_day",
        ),
        (
            lambda: KaplanMeier(ENTERED, HasCondition(CONCEPTS), 30, 31),
            "step_days: 31 is more than horizon_days",
        ),
        (
            lambda: KaplanMeier(ENTERED, HasCondition(CONCEPTS), MAX_DAYS, 1),
            f"step_days: gives {MAX_DAYS} grid points; at most 200 allowed",
        ),
        (
            lambda: DistinctPersons(EVERYONE, 3),
            "precision: expected a precision from 4 to 16, got 3",
        ),
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
        f'cohort.criteria[3].type: expected one of {CRITERIA}, got "no_such_criterion"',
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
        (wrap({"type": "has_condition", "concepts": concept_set(1), "min_count": 0}),
         "cohort.criteria[0].min_count: 0 with no max_count matches everyone"),
        (wrap({"type": "has_condition", "concepts": concept_set(1), "from_day": 5}),
         "cohort.criteria[0].from_day: 5 is greater than to_day 0"),
        (wrap({"type": "not", "criterion": {"type": "has_visit", "concepts": concept_set(1),
                                            "from_day": 30, "to_day": -30}}),
         "cohort.criteria[0].criterion.from_day: 30 is greater than to_day -30"),
        (wrap({"type": "any_of", "criteria": []}),
         "cohort.criteria[0].criteria: expected at least one criterion, got none"),
        (wrap({"type": "at_least_of", "count": 2,
               "criteria": [{"type": "all_of", "criteria": []}]}),
         "cohort.criteria[0].count: 2 is more than the 1 criteria given"),
        (wrap({"type": "in_observation", "prior_days": 36501}),
         "cohort.criteria[0].prior_days: expected a number of days from 0 to 36500, got 36501"),
        (entered({"type": "has_condition", "concepts": concept_set(1), "min_count": 2}),
         "cohort.entry.events[0]: an entry event takes no min_count, max_count, from_day or "
         "to_day"),
        (entered({"type": "sex_is", "concept_ids": [8507]}),
         "cohort.entry.events[0]: expected an event criterion (has_condition, has_drug_exposure, "
         "...), got sex_is"),
        (entered(), "cohort.entry.events: expected at least one event, got none"),
        ({"type": "kaplan_meier", "cohort": wrap()["cohort"], "horizon_days": 365,
          "event": {"type": "has_condition", "concepts": concept_set(1)}},
         "cohort.entry: survival needs an entry event to start from"),
        ({"type": "histogram", "cohort": wrap()["cohort"], "variable": {"type": "age"},
          "edges": [0, 50, 50]},
         "edges[2]: 50.0 is not greater than the edge before it"),
        ({"type": "summary", "cohort": wrap()["cohort"], "variable": {"type": "age"}, "edges": [1]},
         "edges: expected at least 2 bin edges, got 1"),
        ({"type": "count_by", "cohort": wrap()["cohort"], "by": []},
         "by: expected at least one variable to stratify by, got none"),
        ({"type": "count_by", "cohort": wrap()["cohort"],
          "by": [{"type": "measurement_value", "concepts": concept_set(1), "summary": "median"}]},
         'by[0].summary: expected one of latest, mean, min, max, got "median"'),
        ({"type": "correlation", "cohort": wrap()["cohort"], "variables": [{"type": "sex"}]},
         "variables: expected at least 2 variables, got 1"),
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
        ({"min_count": -1}, "min_count: expected a number of records from 0 to 10000, got -1"),
        ({"min_count": 0}, "min_count: 0 with no max_count matches everyone; give a max_count "
                           "or a min_count of at least 1"),
        ({"min_count": 3, "max_count": 2}, "min_count: 3 is greater than max_count 2"),
        ({"max_count": "2"}, "max_count: expected a number of records from 0 to 10000, or null "
                             "for no limit, got \"2\""),
        ({"from_day": 5}, "from_day: 5 is greater than to_day 0"),
        ({"to_day": MAX_DAYS + 1}, f"to_day: expected a day from {-MAX_DAYS} to {MAX_DAYS} "
                                   "relative to the index date, or null for no limit"),
        ({"from_day": 1.5, "to_day": None}, "from_day: expected a day from"),
        ({"within_days": 30}, "within_days: unknown field"),
    ],
)  # fmt: skip
def test_counts_and_windows_are_checked(change: dict[str, object], message: str) -> None:
    criterion = {"type": "has_condition", "concepts": concept_set(HYPERTENSION), **change}
    (problem,) = problems_of(wrap(criterion))
    assert problem.startswith(f"cohort.criteria[0].{message}"), problem


def test_defaults_may_be_left_out_of_json() -> None:
    document = wrap(
        {"type": "has_condition", "concepts": {"type": "concept_set", "ids": [HYPERTENSION]}},
        {"type": "has_measurement", "concepts": concept_set(3004249)},
    )
    query = query_from_json(document)
    assert query.cohort.criteria == (
        HasCondition(
            ConceptSet((HYPERTENSION,), include_descendants=True, exclude=()),
            min_count=1,
            max_count=None,
            from_day=None,
            to_day=0,
        ),
        HasMeasurement(ConceptSet((3004249,)), min_value=None, max_value=None, unit_concept_ids=()),
    )
    assert query.cohort.entry is None


def test_new_nodes_fill_in_their_defaults_from_json() -> None:
    one = concept_set(1)
    document = {
        "type": "kaplan_meier",
        "cohort": {
            "type": "cohort",
            "criteria": [{"type": "in_observation"}],
            "as_of": "2025-12-31",
            "entry": {"type": "entry", "events": [{"type": "has_visit", "concepts": one}]},
        },
        "event": {"type": "has_procedure", "concepts": one},
        "horizon_days": 365,
    }
    assert query_from_json(document) == KaplanMeier(
        Cohort(
            (InObservation(prior_days=0, post_days=0),),
            AS_OF,
            Entry((HasVisit(CONCEPTS),), prior_days=0, post_days=0),
        ),
        HasProcedure(CONCEPTS),
        horizon_days=365,
        step_days=30,
    )
    by = {
        "type": "count_by",
        "cohort": wrap()["cohort"],
        "by": [{"type": "age_group"}, {"type": "measurement_value", "concepts": one}],
    }
    assert query_from_json(by) == CountBy(
        EVERYONE,
        (AgeGroup(width=10), MeasurementValue(CONCEPTS, (), "latest", from_day=None, to_day=0)),
    )
    assert query_from_json({"type": "distinct_persons", "cohort": wrap()["cohort"]}) == (
        DistinctPersons(EVERYONE, precision=14)
    )


def test_node_from_json_decodes_its_own_type() -> None:
    assert ConceptSet.from_json(concept_set(5)) == ConceptSet((5,))
    male = {"type": "sex_is", "concept_ids": [8507]}
    assert Criterion.from_json({"type": "not", "criterion": male}) == Not(SexIs((8507,)))
    with pytest.raises(QueryValidationError) as raised:
        ConceptSet.from_json(male)
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
                    "max_count": None,
                    "from_day": None,
                    "to_day": 0,
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
                        "max_count": None,
                        "from_day": None,
                        "to_day": 0,
                    },
                },
            ],
            "as_of": "2025-12-31",
            "entry": None,
        },
    }


@given(analyses())
def test_json_round_trip_is_exact(query: Analysis) -> None:
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
