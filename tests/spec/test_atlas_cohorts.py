"""ATLAS cohort definitions counted on every engine, against counts worked out by hand.

Each case is an ATLAS (Circe) document, the CDM rows, and the number of persons ATLAS
would put in the cohort. The rows lie inside the persons' observation periods, where
Accord and Circe agree (see ``accord.query.atlas``), so the hand count is both answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from accord.query.atlas import cohort_from_atlas, example_definition
from cdm_testing import (
    FEMALE,
    MALE,
    Row,
    Tables,
    TestEngine,
    ancestor,
    condition,
    drug,
    measurement,
    observation,
    observation_period,
    person,
    procedure,
    visit,
)

AS_OF = date(2025, 12, 31)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "atlas"

# Concepts of the realistic export (tests/fixtures/atlas/t2dm_metformin_new_users.json).
T2DM = 201826
T2DM_WITHOUT_COMPLICATION = 4230254  # a descendant of T2DM
SECONDARY_DIABETES = 195771  # excluded from the T2DM set
METFORMIN = 1503297
METFORMIN_TABLET = 40163924  # a clinical drug under metformin
INSULINS = 21600713  # ATC A10A
INSULIN_GLARGINE = 1502905  # an ingredient under it
HBA1C = 3004410
HBA1C_HPLC = 3005673
PERCENT = 8554
MG_PER_DL = 8840

HYPERTENSION = 320128
HYPERTENSION_CHILD = 900_001
ECG = 4163951
SMOKER = 4298794
OUTPATIENT = 9202

VOCABULARY = [
    ancestor(T2DM, T2DM_WITHOUT_COMPLICATION),
    # As if the vocabulary put secondary diabetes under type 2, so that excluding it matters.
    ancestor(T2DM, SECONDARY_DIABETES),
    ancestor(METFORMIN, METFORMIN_TABLET),
    ancestor(INSULINS, INSULIN_GLARGINE),
    ancestor(HYPERTENSION, HYPERTENSION_CHILD),
]

INDEX = date(2020, 3, 1)
OBSERVED = (date(2010, 1, 1), AS_OF)


def day(n: int) -> date:
    """The day ``n`` days after (negative: before) the index date of most cases."""
    return INDEX + timedelta(days=n)


def lab(person_id: int, concept_id: int, value: float, unit: int, on: date) -> Row:
    return measurement(person_id, concept_id, value, on=on, unit=unit)


# Small Circe documents, as ATLAS writes them.


def concept_set(number: int, *items: tuple[int, bool]) -> dict[str, Any]:
    return {
        "id": number,
        "name": f"set {number}",
        "expression": {
            "items": [
                {
                    "concept": {"CONCEPT_ID": concept_id},
                    "isExcluded": False,
                    "includeDescendants": descendants,
                    "includeMapped": False,
                }
                for concept_id, descendants in items
            ]
        },
    }


def correlated(
    criteria: dict[str, Any],
    start: tuple[int | None, int],
    end: tuple[int | None, int],
    occurrence: tuple[int, int] = (2, 1),
) -> dict[str, Any]:
    def endpoint(days: int | None, coeff: int) -> dict[str, Any]:
        return {"Coeff": coeff} if days is None else {"Days": days, "Coeff": coeff}

    return {
        "Criteria": criteria,
        "StartWindow": {"Start": endpoint(*start), "End": endpoint(*end)},
        "Occurrence": {"Type": occurrence[0], "Count": occurrence[1], "IsDistinct": False},
    }


def document(
    primary: list[dict[str, Any]],
    sets: list[dict[str, Any]],
    *rules: dict[str, Any],
    prior: int = 0,
    post: int = 0,
    limit: str = "First",
) -> dict[str, Any]:
    return {
        "ConceptSets": sets,
        "PrimaryCriteria": {
            "CriteriaList": primary,
            "ObservationWindow": {"PriorDays": prior, "PostDays": post},
            "PrimaryCriteriaLimit": {"Type": limit},
        },
        "InclusionRules": [
            {"name": f"rule {i}", "expression": expression} for i, expression in enumerate(rules)
        ],
    }


def observed(*people: Row) -> list[Row]:
    return [observation_period(p["person_id"], *OBSERVED) for p in people]


@dataclass(frozen=True)
class Case:
    document: str | dict[str, Any]
    tables: Tables
    expected: int


def _realistic() -> Case:
    """The realistic export: first T2DM diagnosis with a year observed before it,
    metformin within 90 days after, no insulin before, HbA1c >= 6.5 % in the year before,
    aged 40 to 75."""

    def qualifying(
        i: int, *, metformin_day: int = 31, a1c: Row | None = None, born: int = 1960
    ) -> dict[str, list[Row]]:
        return {
            "person": [person(i, born=born)],
            "condition_occurrence": [condition(i, T2DM_WITHOUT_COMPLICATION, on=INDEX)],
            "drug_exposure": [drug(i, METFORMIN_TABLET, on=day(metformin_day))],
            "measurement": [a1c or lab(i, HBA1C, 7.2, PERCENT, day(-182))],
        }

    people = {
        1: qualifying(1),
        2: qualifying(2),  # and insulin a year before: out
        3: qualifying(3),  # and insulin on the index day, not before it: in
        4: qualifying(4, metformin_day=91),  # out
        5: qualifying(5, metformin_day=90),  # the window's last day: in
        6: qualifying(6, a1c=lab(6, HBA1C, 6.5, PERCENT, day(-365))),  # both bounds met: in
        7: qualifying(7, a1c=lab(7, HBA1C, 7.2, PERCENT, day(-366))),  # too early: out
        8: qualifying(8, a1c=lab(8, HBA1C, 7.2, MG_PER_DL, day(-182))),  # other unit: out
        9: qualifying(9, a1c=lab(9, HBA1C, 6.4, PERCENT, day(-182))),  # too low: out
        10: qualifying(10, born=1940),  # 80 at the index date: out
        11: qualifying(11),  # and a first diagnosis with too little observed before it: out
        12: qualifying(12),  # diagnosed after as_of: out
        13: qualifying(13, a1c=lab(13, HBA1C_HPLC, 7.0, PERCENT, day(-30))),  # in
        14: qualifying(14),  # diagnosed only with the excluded concept: out
        15: qualifying(15),  # and the excluded concept earlier, which is no diagnosis: in
        16: qualifying(16),  # observed from 200 days before the diagnosis only: out
    }
    people[2]["drug_exposure"].append(drug(2, INSULIN_GLARGINE, on=day(-365)))
    people[3]["drug_exposure"].append(drug(3, INSULIN_GLARGINE, on=INDEX))
    people[11]["condition_occurrence"].insert(0, condition(11, T2DM, on=date(2010, 6, 1)))
    people[12]["condition_occurrence"] = [condition(12, T2DM, on=date(2026, 2, 1))]
    people[14]["condition_occurrence"] = [condition(14, SECONDARY_DIABETES, on=INDEX)]
    people[15]["condition_occurrence"].insert(
        0, condition(15, SECONDARY_DIABETES, on=date(2018, 1, 1))
    )
    tables: dict[str, list[Row]] = {"concept_ancestor": list(VOCABULARY)}
    for rows in people.values():
        for table, found in rows.items():
            tables.setdefault(table, []).extend(found)
    tables["observation_period"] = [
        observation_period(16, day(-200), AS_OF) if row["person_id"] == 16 else row
        for row in observed(*tables["person"])
    ]
    text = (FIXTURES / "t2dm_metformin_new_users.json").read_text(encoding="utf-8")
    return Case(text, tables, expected=6)


def _example() -> Case:
    """The shipped example: one person meets it, one started metformin before."""
    rows: dict[str, list[Row]] = {
        "person": [person(1, born=1970), person(2, born=1970)],
        "condition_occurrence": [condition(1, T2DM, on=INDEX), condition(2, T2DM, on=INDEX)],
        "drug_exposure": [
            drug(1, METFORMIN, on=day(10)),
            drug(2, METFORMIN, on=day(-10)),
            drug(2, METFORMIN, on=day(10)),
        ],
        "measurement": [
            lab(1, HBA1C, 7.1, PERCENT, day(-20)),
            lab(2, HBA1C, 7.1, PERCENT, day(-20)),
        ],
    }
    rows["observation_period"] = observed(*rows["person"])
    return Case(example_definition(), rows, expected=1)


GROUP_SETS = [
    concept_set(0, (T2DM, True)),
    concept_set(1, (ECG, True)),
    concept_set(2, (SMOKER, False)),
    concept_set(3, (OUTPATIENT, False)),
]
TWO_OF_THREE = [
    correlated({"ProcedureOccurrence": {"CodesetId": 1}}, (30, -1), (0, 1)),
    correlated(
        {"Observation": {"CodesetId": 2, "ValueAsNumber": {"Value": 10, "Op": "gte"}}},
        (None, -1),
        (0, 1),
    ),
    correlated({"VisitOccurrence": {"CodesetId": 3}}, (0, -1), (0, 1)),
]


def _groups() -> Tables:
    """Six diagnosed persons meeting 2, 1, 1, 2, 3 and 0 of the three criteria."""
    rows: dict[str, list[Row]] = {
        "person": [person(i, born=1970) for i in range(1, 7)],
        "condition_occurrence": [condition(i, T2DM, on=INDEX) for i in range(1, 7)],
        "procedure_occurrence": [
            procedure(1, ECG, on=day(-10)),
            procedure(2, ECG, on=day(-10)),
            procedure(4, ECG, on=day(-40)),  # outside the 30 days
            procedure(5, ECG, on=day(-30)),
        ],
        "observation": [
            observation(1, SMOKER, 20, on=day(-100)),
            observation(3, SMOKER, 5, on=day(-100)),  # below the value
            observation(4, SMOKER, 15, on=day(-1)),
            observation(5, SMOKER, 10, on=day(-1)),
        ],
        "visit_occurrence": [
            visit(3, OUTPATIENT, on=INDEX),
            visit(4, OUTPATIENT, on=INDEX),
            visit(5, OUTPATIENT, on=INDEX),
            visit(6, OUTPATIENT, on=day(1)),  # the day after
        ],
    }
    rows["observation_period"] = observed(*rows["person"])
    return rows


def _first_at_a_value() -> Tables:
    """Entry at an HbA1c of 6.5 or more, any of them (limit "All"), for women."""
    rows: dict[str, list[Row]] = {
        "person": [
            person(1, born=1970, sex=FEMALE),
            person(2, born=1970, sex=MALE),
            person(3, born=1970, sex=FEMALE),
            person(4, born=1970, sex=FEMALE),
        ],
        "measurement": [
            lab(1, HBA1C, 7.0, PERCENT, INDEX),
            lab(2, HBA1C, 7.0, PERCENT, INDEX),
            lab(3, HBA1C, 6.0, PERCENT, INDEX),  # never high enough: never enters
            lab(4, HBA1C, 6.0, PERCENT, INDEX),
            lab(4, HBA1C, 7.5, PERCENT, day(200)),  # enters here
        ],
    }
    rows["observation_period"] = observed(*rows["person"])
    return rows


def _ages() -> Tables:
    """Diagnosed at 70, 40, 10, 64 and 65; outside 18 to 64 are the first, third and
    last."""
    born = {1: 1950, 2: 1980, 3: 2010, 4: 1956, 5: 1955}
    rows: dict[str, list[Row]] = {
        "person": [person(i, born=year) for i, year in born.items()],
        "condition_occurrence": [condition(i, T2DM, on=INDEX) for i in born],
    }
    rows["observation_period"] = observed(*rows["person"])
    return rows


MIXED_SETS = [concept_set(0, (HYPERTENSION, True), (T2DM, False))]


def _mixed() -> Tables:
    """A set of hypertension with descendants and T2DM without: the first person has a
    T2DM descendant only, the second T2DM and later hypertension, the third a
    hypertension descendant only."""
    rows: dict[str, list[Row]] = {
        "person": [person(i, born=1970) for i in (1, 2, 3)],
        "condition_occurrence": [
            condition(1, T2DM_WITHOUT_COMPLICATION, on=INDEX),
            condition(2, T2DM, on=INDEX),
            condition(2, HYPERTENSION_CHILD, on=day(100)),
            condition(3, HYPERTENSION_CHILD, on=INDEX),
        ],
        "concept_ancestor": list(VOCABULARY),
    }
    rows["observation_period"] = observed(*rows["person"])
    return rows


def _observed_after() -> Tables:
    """Diagnosed on the index date, observed until 10, 30 and 31 days after it."""
    rows: dict[str, list[Row]] = {
        "person": [person(i, born=1970) for i in (1, 2, 3)],
        "condition_occurrence": [condition(i, T2DM, on=INDEX) for i in (1, 2, 3)],
        "observation_period": [
            observation_period(1, OBSERVED[0], day(10)),
            observation_period(2, OBSERVED[0], day(30)),
            observation_period(3, OBSERVED[0], day(31)),
        ],
    }
    return rows


T2DM_ENTRY = [{"ConditionOccurrence": {"CodesetId": 0}}]


def _group(kind: str, count: int) -> dict[str, Any]:
    return {"Type": kind, "Count": count, "CriteriaList": TWO_OF_THREE}


CASES = {
    "the realistic export counts the persons it describes": _realistic(),
    "the shipped example runs on the CDM it was written for": _example(),
    "at least 2 of 3 criteria": Case(
        document(T2DM_ENTRY, GROUP_SETS, _group("AT_LEAST", 2)), _groups(), expected=3
    ),
    "at most 1 of 3 criteria": Case(
        document(T2DM_ENTRY, GROUP_SETS, _group("AT_MOST", 1)), _groups(), expected=3
    ),
    "any of 3 criteria": Case(
        document(T2DM_ENTRY, GROUP_SETS, {"Type": "ANY", "CriteriaList": TWO_OF_THREE}),
        _groups(),
        expected=5,
    ),
    "entry at a measurement value, limit All, a rule on sex only": Case(
        document(
            [{"Measurement": {"CodesetId": 2, "ValueAsNumber": {"Value": 6.5, "Op": "gte"}}}],
            [concept_set(2, (HBA1C, False))],
            {"Type": "ALL", "DemographicCriteriaList": [{"Gender": [{"CONCEPT_ID": FEMALE}]}]},
            limit="All",
        ),
        _first_at_a_value(),
        expected=2,
    ),
    "an age outside 18 to 64": Case(
        document(
            T2DM_ENTRY,
            GROUP_SETS,
            {
                "Type": "ALL",
                "DemographicCriteriaList": [{"Age": {"Value": 18, "Op": "!bt", "Extent": 64}}],
            },
        ),
        _ages(),
        expected=3,
    ),
    "older than 64": Case(
        document(
            T2DM_ENTRY,
            GROUP_SETS,
            {"Type": "ALL", "DemographicCriteriaList": [{"Age": {"Value": 64, "Op": "gt"}}]},
        ),
        _ages(),
        expected=2,
    ),
    "a set mixing descendant settings enters on either part": Case(
        document(T2DM_ENTRY, MIXED_SETS), _mixed(), expected=2
    ),
    "a set mixing descendant settings, a record of it in the year after": Case(
        document(
            T2DM_ENTRY,
            MIXED_SETS,
            {
                "Type": "ALL",
                "CriteriaList": [
                    correlated({"ConditionOccurrence": {"CodesetId": 0}}, (1, 1), (365, 1))
                ],
            },
        ),
        _mixed(),
        expected=1,
    ),
    "a set mixing descendant settings, no other record of it in the year after": Case(
        document(
            T2DM_ENTRY,
            MIXED_SETS,
            {
                "Type": "ALL",
                "CriteriaList": [
                    correlated({"ConditionOccurrence": {"CodesetId": 0}}, (1, 1), (365, 1), (0, 0))
                ],
            },
        ),
        _mixed(),
        expected=1,
    ),
    "30 days observed after the entry event": Case(
        document(T2DM_ENTRY, GROUP_SETS, post=30), _observed_after(), expected=2
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_atlas_cohort_counts(engine: TestEngine, name: str) -> None:
    case = CASES[name]
    text = case.document if isinstance(case.document, str) else json.dumps(case.document)
    imported = cohort_from_atlas(text, as_of=AS_OF)
    engine.load(case.tables)
    assert engine.count(imported.count_persons()) == case.expected
