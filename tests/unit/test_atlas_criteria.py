"""ATLAS (Circe) inclusion rules read into Accord criteria: correlated criteria with their
occurrences and windows, criteria groups, demographics, and values and units."""

from __future__ import annotations

import math
from typing import Any

import pytest

from accord.query.atlas import (
    MAX_GROUP_DEPTH,
)
from accord.query.builders import (
    age_between,
    all_of,
    any_of,
    at_least_of,
    concepts,
    has_condition,
    has_drug,
    has_measurement,
    has_observation,
    sex_is,
)
from accord.query.model import AllOf, Not
from atlas_documents import (
    FEMALE,
    HBA1C,
    MALE,
    METFORMIN,
    PERCENT,
    SMOKER,
    T2DM,
    condition,
    correlated,
    document,
    drug,
    group,
    lab,
    only_rule,
    read,
    refused,
    rule,
    window,
)

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
