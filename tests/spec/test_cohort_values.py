"""What the rows behind stratified counts, variables, survival and distinct patients
mean, written once and checked on every engine.

Each case is data: the CDM rows, the analysis, and the rows its query reads worked out by
hand (in any order): strata and ``n`` for a stratified count, each person's values for a
model or a correlation, index, event and censor dates for survival, national ids for
distinct patients. The same cases also check the plain-Python reference engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from accord.query.builders import (
    age,
    age_group,
    cohort,
    correlation,
    count_by,
    distinct_persons,
    entry,
    has_condition,
    histogram,
    kaplan_meier,
    measurement_value,
    sex,
)
from accord.query.model import Analysis, Cohort, Entry, Variable
from accord.query.run import run_rows
from cdm_testing import (
    FEMALE,
    MALE,
    Row,
    Tables,
    TestEngine,
    condition,
    measurement,
    observation_period,
    person,
)
from reference_engine import reference_rows

AS_OF = date(2025, 12, 31)
LATER = date(2026, 3, 1)
DISCHARGED = date(2025, 6, 1)
ALWAYS = date(2000, 1, 1), date(2040, 12, 31)

# Made-up concept ids.
SYSTOLIC_BP = 900_040
DIASTOLIC_BP = 900_041
MM_HG = 900_050  # units
KILOPASCAL = 900_051
HOSPITAL_DISCHARGE = 900_090
READMISSION = 900_091
DISCHARGE = entry(has_condition(HOSPITAL_DISCHARGE))


@dataclass(frozen=True)
class Case:
    tables: Tables
    query: Analysis
    expected: list[tuple[Any, ...]]


def everyone(entering: Entry | None = None) -> Cohort:
    return cohort(as_of=AS_OF, entry=entering)


def by_age(variable: Variable, entering: Entry | None = None) -> Analysis:
    """Each person's age (telling the persons of a case apart) and ``variable``."""
    return correlation(everyone(entering), age(), variable)


def after(offset: int) -> date:
    """The day ``offset`` days from the discharge (before it when negative)."""
    return DISCHARGED + timedelta(days=offset)


def discharged(*ids: int, on: date = DISCHARGED) -> list[Row]:
    return [condition(i, HOSPITAL_DISCHARGE, on=on) for i in ids]


def observed(*ids: int) -> list[Row]:
    return [observation_period(i, *ALWAYS) for i in ids]


def with_national_id(row: Row, national_id: str | None) -> Row:
    return {**row, "person_source_value": national_id}


BORN = {1: 1976, 2: 1975, 3: 1966, 4: 1985, 5: 1986}  # 49, 50, 59, 40 and 39 at as_of


CASES = {
    # Age groups and sex
    "age groups of 10 years: 49 is in the 40s, 50 in the 50s": Case(
        {"person": [person(i, born=y) for i, y in BORN.items()]},
        count_by(everyone(), age_group(10)),
        expected=[(30, 1), (40, 2), (50, 2)],
    ),
    "age groups of 5 years, each named by its first age": Case(
        {"person": [person(i, born=y) for i, y in BORN.items()]},
        count_by(everyone(), age_group(5)),
        expected=[(35, 1), (40, 1), (45, 1), (50, 1), (55, 1)],
    ),
    "a crosstab of sex by age group counts each cell": Case(
        {
            "person": [
                person(1, born=1976, sex=FEMALE),
                person(2, born=1970, sex=FEMALE),
                person(3, born=1976),
                person(4, born=1960),
            ]
        },
        count_by(everyone(), sex(), age_group(10)),
        expected=[(FEMALE, 40, 1), (FEMALE, 50, 1), (MALE, 40, 1), (MALE, 60, 1)],
    ),
    "a birth year after the index date is a negative age, grouped downwards": Case(
        {"person": [person(1, born=2026), person(2, born=2025)]},
        count_by(everyone(), age_group(10)),
        expected=[(-10, 1), (0, 1)],
    ),
    "age groups are taken at the index date, not at as_of": Case(
        {
            # 50 and 49 when discharged in 2010; 65 and 64 at as_of.
            "person": [person(1, born=1960), person(2, born=1961), person(3, born=1960)],
            "condition_occurrence": discharged(1, 2, on=date(2010, 6, 1)),
            "observation_period": observed(1, 2, 3),
        },
        count_by(everyone(DISCHARGE), age_group(10)),
        expected=[(40, 1), (50, 1)],
    ),
    # Measurement values
    "latest is the largest value on the latest day with a value, on or before as_of": Case(
        {
            "person": [person(1, born=1970), person(2, born=1980)],
            "measurement": [
                measurement(1, SYSTOLIC_BP, 170, on=date(2025, 1, 1)),
                measurement(1, SYSTOLIC_BP, 140, on=date(2025, 6, 1)),
                measurement(1, SYSTOLIC_BP, 150, on=date(2025, 6, 1)),
                measurement(1, SYSTOLIC_BP, None, on=date(2025, 9, 1)),
                measurement(1, SYSTOLIC_BP, 200, on=LATER),
                measurement(1, DIASTOLIC_BP, 90, on=date(2025, 10, 1)),
            ],
        },
        by_age(measurement_value(SYSTOLIC_BP)),
        # Person 2 has no measurement: unknown.
        expected=[(55, 150.0), (45, None)],
    ),
    "mean, min and max of the measurements in the last year": Case(
        {
            "person": [person(1, born=1970)],
            "measurement": [
                measurement(1, SYSTOLIC_BP, 100, on=AS_OF - timedelta(days=365)),
                measurement(1, SYSTOLIC_BP, 120, on=AS_OF - timedelta(days=364)),
                measurement(1, SYSTOLIC_BP, 130, on=date(2025, 6, 1)),
                measurement(1, SYSTOLIC_BP, 150, on=AS_OF),
                measurement(1, SYSTOLIC_BP, 190, on=LATER),
            ],
        },
        correlation(
            everyone(),
            measurement_value(SYSTOLIC_BP, summary="mean", within_days=365),
            measurement_value(SYSTOLIC_BP, summary="min", within_days=365),
            measurement_value(SYSTOLIC_BP, summary="max", within_days=365),
        ),
        expected=[((120 + 130 + 150) / 3, 120.0, 150.0)],
    ),
    "only measurements in the units asked for are summarised": Case(
        {
            "person": [person(1, born=1970), person(2, born=1980)],
            "measurement": [
                measurement(1, SYSTOLIC_BP, 120, unit=MM_HG),
                measurement(1, SYSTOLIC_BP, 16, unit=KILOPASCAL, on=date(2021, 1, 1)),
                measurement(1, SYSTOLIC_BP, 130),
                measurement(2, SYSTOLIC_BP, 17, unit=KILOPASCAL),
            ],
        },
        by_age(measurement_value(SYSTOLIC_BP, units=[MM_HG], summary="max")),
        expected=[(55, 120.0), (45, None)],
    ),
    "a measurement value in the days after the index date": Case(
        {
            "person": [person(1, born=1970), person(2, born=1980), person(3, born=1990)],
            "condition_occurrence": discharged(1, 2, 3),
            "measurement": [
                measurement(1, SYSTOLIC_BP, 130, on=after(-1)),
                measurement(1, SYSTOLIC_BP, 140, on=after(0)),
                measurement(1, SYSTOLIC_BP, 150, on=after(30)),
                measurement(2, SYSTOLIC_BP, 160, on=after(31)),
                measurement(3, SYSTOLIC_BP, 170, on=after(-1)),
            ],
            "observation_period": observed(1, 2, 3),
        },
        by_age(measurement_value(SYSTOLIC_BP, summary="min", days=(0, 30)), DISCHARGE),
        expected=[(55, 140.0), (45, None), (35, None)],
    ),
    "unknown values form a stratum of their own": Case(
        {
            "person": [person(i, born=1970) for i in (1, 2, 3)],
            "measurement": [
                measurement(1, SYSTOLIC_BP, 120),
                measurement(2, SYSTOLIC_BP, None),
            ],
        },
        count_by(everyone(), measurement_value(SYSTOLIC_BP)),
        expected=[(120.0, 1), (None, 2)],
    ),
    "a histogram reads one value per person": Case(
        {"person": [person(i, born=y) for i, y in BORN.items()]},
        histogram(everyone(), age(), [0, 50, 100]),
        expected=[(49,), (50,), (59,), (40,), (39,)],
    ),
    # Survival
    "survival rows: index date, first event from the day after it, end of the period": Case(
        {
            "person": [person(i, born=1970) for i in (1, 2, 3, 4, 5)],
            "condition_occurrence": [
                *discharged(1, 2, 3, 4),
                # Person 1: readmitted on the day (not counted), then after 10 and 20 days.
                condition(1, READMISSION, on=DISCHARGED),
                condition(1, READMISSION, on=after(20)),
                condition(1, READMISSION, on=after(10)),
                # Person 3: readmitted only after as_of; person 4 only before discharge.
                condition(3, READMISSION, on=LATER),
                condition(4, READMISSION, on=after(-5)),
                # Person 5 never discharged: not in the cohort.
                condition(5, READMISSION, on=after(1)),
            ],
            "observation_period": [
                *observed(1, 3, 4, 5),
                observation_period(2, date(2020, 1, 1), date(2025, 9, 1)),
            ],
        },
        kaplan_meier(everyone(DISCHARGE), has_condition(READMISSION), horizon_days=365),
        expected=[
            (DISCHARGED, after(10), ALWAYS[1]),
            (DISCHARGED, None, date(2025, 9, 1)),
            (DISCHARGED, None, ALWAYS[1]),
            (DISCHARGED, None, ALWAYS[1]),
        ],
    ),
    "survival starts at the first entry event with 30 days observed before it": Case(
        {
            "person": [person(1, born=1970)],
            "condition_occurrence": [
                # 17 days into a period, then on the first day of the next: passed over.
                *discharged(1, on=date(2019, 1, 1)),
                *discharged(1, on=after(-100)),
                *discharged(1),
                condition(1, READMISSION, on=after(-50)),
                condition(1, READMISSION, on=after(40)),
            ],
            "observation_period": [
                observation_period(1, date(2018, 12, 15), date(2019, 12, 31)),
                observation_period(1, after(-100), ALWAYS[1]),
            ],
        },
        kaplan_meier(
            everyone(entry(has_condition(HOSPITAL_DISCHARGE), prior_days=30)),
            has_condition(READMISSION),
            horizon_days=365,
        ),
        expected=[(DISCHARGED, after(40), ALWAYS[1])],
    ),
    # Distinct patients
    "distinct patients read each person's national id, unknown ones as null": Case(
        {
            "person": [
                with_national_id(person(1, born=1970), "120345-1234"),
                with_national_id(person(2, born=1970), "120345-1234"),
                with_national_id(person(3, born=1970), None),
                with_national_id(person(4, born=1970), "010101-0101"),
            ],
            "condition_occurrence": discharged(1, 2, 3),
            "observation_period": observed(1, 2, 3, 4),
        },
        distinct_persons(everyone(DISCHARGE)),
        expected=[("120345-1234",), ("120345-1234",), (None,)],
    ),
}

cases = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


def same(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row with its numbers as floats to nine decimal places (a mean may differ in its
    last bits from one engine to another); dates, text and nulls as they are."""
    return tuple(
        round(float(v), 9) if isinstance(v, int | float) and not isinstance(v, bool) else v
        for v in row
    )


def rows(found: Any) -> Counter[tuple[Any, ...]]:
    return Counter(same(tuple(row)) for row in found)


@cases
def test_engine_rows(engine: TestEngine, case: Case) -> None:
    engine.load(case.tables)
    found = run_rows(engine.connection, case.query, engine.dialect, schema=engine.schema)
    assert rows(found) == rows(case.expected)


@cases
def test_reference_engine_rows(case: Case) -> None:
    assert rows(reference_rows(case.tables, case.query).elements()) == rows(case.expected)
