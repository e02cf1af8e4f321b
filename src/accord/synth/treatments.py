"""Prescriptions and measurements, consistent with the diagnoses.

Hypertension is treated from its first record with an ACE inhibitor, a beta blocker or a
calcium channel blocker (sometimes two), refilled every 90 days; diabetes with
metformin, hyperlipidemia with atorvastatin, some influenza with oseltamivir, and a few
people get propranolol for other reasons. Blood pressure is higher with hypertension and
lower again on treatment, by an amount that varies between people (the "treatment
response" a study can model); HbA1c is higher with diabetes and lower on metformin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from accord.synth.population import NEVER, People
from accord.synth.profiles import MemberProfile
from accord.synth.records import (
    NO_VISIT,
    ROUTINE,
    VACCINATION,
    Conditions,
    Drugs,
    Measurements,
    Periods,
    Visits,
)
from accord.vocab import concepts as c

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

REFILL_DAYS = 90
MAX_FILLS = 8

BETA_BLOCKER_CHOICES = (
    np.array(c.BETA_BLOCKER_INGREDIENTS, np.int32),
    np.array([0.35, 0.25, 0.2, 0.12, 0.08]),
)
ACE_INHIBITOR_CHOICES = (
    np.array(c.ACE_INHIBITOR_INGREDIENTS, np.int32),
    np.array([0.55, 0.2, 0.25]),
)
# Antihypertensive classes: share of first-line choice and mean systolic drop in mmHg.
ACE, BETA, CALCIUM = 0, 1, 2
CLASS_SHARE = np.array([0.45, 0.35, 0.2])
CLASS_EFFECT = np.array([13.0, 10.0, 12.0])


@dataclass(frozen=True)
class Treatment:
    """Per person: when antihypertensive and metformin treatment start (``NEVER`` if not)
    and how far treatment lowers systolic pressure."""

    antihypertensive_start: I32
    systolic_drop: F64
    metformin_start: I32


def first_records(conditions: Conditions, concepts: tuple[int, ...]) -> tuple[I64, I32, I64]:
    """Person, date and visit of each person's first record of any of ``concepts``."""
    rows = np.flatnonzero(np.isin(conditions.concept, concepts))
    order = rows[np.lexsort((conditions.date[rows], conditions.person[rows]))]
    person, first = np.unique(conditions.person[order], return_index=True)
    chosen = order[first]
    return person, conditions.date[chosen], conditions.visit[chosen]


def draw_drugs(
    people: People,
    periods: Periods,
    visits: Visits,
    conditions: Conditions,
    rng: np.random.Generator,
) -> tuple[Drugs, Treatment]:
    size = len(people)
    parts: list[Drugs] = []

    person, start, visit = first_records(conditions, (c.HYPERTENSION,))
    treated = rng.random(len(person)) < 0.7
    person, start, visit = person[treated], start[treated], visit[treated]
    first_class = rng.choice(3, size=len(person), p=CLASS_SHARE)
    second_class = (first_class + rng.integers(1, 3, size=len(person))) % 3
    combined = rng.random(len(person)) < 0.25
    parts.append(_chronic(person, start, visit, _ingredient(first_class, rng), periods, rng))
    parts.append(
        _chronic(
            person[combined],
            start[combined],
            visit[combined],
            _ingredient(second_class[combined], rng),
            periods,
            rng,
        )
    )
    responder = rng.lognormal(0.0, 0.4, size=len(person))
    drop = CLASS_EFFECT[first_class] + np.where(combined, 0.6 * CLASS_EFFECT[second_class], 0.0)
    antihypertensive_start = np.full(size, NEVER, np.int32)
    antihypertensive_start[person] = start
    systolic_drop = np.zeros(size)
    systolic_drop[person] = drop * responder

    age = people.age_years(periods.end)
    untreated = antihypertensive_start == NEVER
    other = np.flatnonzero(untreated & (age >= 18) & (rng.random(size) < 0.012))
    other_visit = _random_visit(visits, other, rng)
    keep = other_visit >= 0
    other, other_visit = other[keep], other_visit[keep]
    parts.append(
        _chronic(
            other.astype(np.int64),
            visits.start[other_visit],
            other_visit,
            np.full(len(other), c.PROPRANOLOL, np.int32),
            periods,
            rng,
            fills=2,
        )
    )

    diabetic, start, visit = first_records(conditions, (c.TYPE_2_DIABETES_WITHOUT_COMPLICATION,))
    on_metformin = rng.random(len(diabetic)) < 0.75
    diabetic, start, visit = diabetic[on_metformin], start[on_metformin], visit[on_metformin]
    parts.append(
        _chronic(
            diabetic, start, visit, np.full(len(diabetic), c.METFORMIN, np.int32), periods, rng
        )
    )
    metformin_start = np.full(size, NEVER, np.int32)
    metformin_start[diabetic] = start

    lipid, start, visit = first_records(conditions, (c.HYPERLIPIDEMIA,))
    on_statin = rng.random(len(lipid)) < 0.55
    parts.append(
        _chronic(
            lipid[on_statin],
            start[on_statin],
            visit[on_statin],
            np.full(int(on_statin.sum()), c.ATORVASTATIN, np.int32),
            periods,
            rng,
        )
    )

    flu = np.flatnonzero(np.isin(conditions.concept, (c.INFLUENZA, c.INFLUENZAL_ACUTE_URI)))
    flu = flu[rng.random(len(flu)) < 0.35]
    parts.append(
        Drugs(
            person=conditions.person[flu],
            visit=conditions.visit[flu],
            start=conditions.date[flu],
            end=conditions.date[flu] + 4,
            concept=np.full(len(flu), c.OSELTAMIVIR, np.int32),
            days_supply=np.full(len(flu), 5, np.int32),
        )
    )
    treatment = Treatment(antihypertensive_start, systolic_drop, metformin_start)
    return _observed(Drugs.concat(parts), periods), treatment


def _observed(drugs: Drugs, periods: Periods) -> Drugs:
    """Only dispensings while the person is observed, their supply censored at the end
    of observation (death, moving away, the as-of date), so no exposure starts or ends
    after the data were extracted. Done after every draw, so the seed's draws stay."""
    last = periods.end[drugs.person]
    kept = drugs.take(np.flatnonzero(drugs.start <= last))
    return dataclasses.replace(
        kept, end=np.minimum(kept.end, periods.end[kept.person]).astype(np.int32)
    )


def _ingredient(drug_class: I64, rng: np.random.Generator) -> I32:
    beta = BETA_BLOCKER_CHOICES[0][rng.choice(5, size=len(drug_class), p=BETA_BLOCKER_CHOICES[1])]
    ace = ACE_INHIBITOR_CHOICES[0][rng.choice(3, size=len(drug_class), p=ACE_INHIBITOR_CHOICES[1])]
    return np.where(
        drug_class == ACE, ace, np.where(drug_class == BETA, beta, c.AMLODIPINE)
    ).astype(np.int32)


def _random_visit(visits: Visits, persons: I64, rng: np.random.Generator) -> I64:
    """A random visit of each person (visits are sorted by person), or -1 if none."""
    first = np.searchsorted(visits.person, persons, side="left")
    last = np.searchsorted(visits.person, persons, side="right")
    count = last - first
    pick = first + np.floor(rng.random(len(persons)) * count).astype(np.int64)
    return np.where(count > 0, pick, NO_VISIT).astype(np.int64)


def _chronic(
    person: I64,
    start: I32,
    visit: I64,
    concept: I32,
    periods: Periods,
    rng: np.random.Generator,
    fills: int = MAX_FILLS,
) -> Drugs:
    """Refills every 90 days from ``start`` while the person is observed."""
    span = periods.end[person].astype(np.int64) - start
    count = np.clip(span // REFILL_DAYS + 1, 1, fills)
    row_person = np.repeat(person, count)
    nth = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    first_day = np.repeat(start.astype(np.int64), count)
    day = first_day + nth * REFILL_DAYS + np.where(nth > 0, rng.integers(0, 10, size=len(nth)), 0)
    # Only the first prescription is written at a visit; refills come from the pharmacy.
    row_visit = np.where(nth == 0, np.repeat(visit, count), NO_VISIT)
    return Drugs(
        person=row_person,
        visit=row_visit.astype(np.int64),
        start=day.astype(np.int32),
        end=(day + REFILL_DAYS - 1).astype(np.int32),
        concept=np.repeat(concept, count),
        days_supply=np.full(len(row_person), REFILL_DAYS, np.int32),
    )


def draw_measurements(
    people: People,
    visits: Visits,
    treatment: Treatment,
    profile: MemberProfile,
    rng: np.random.Generator,
) -> Measurements:
    """Blood pressure, HbA1c and BMI at visits; none at an insurer (claims carry no results)."""
    if profile.claims:
        return _empty_measurements()
    size = len(visits)
    person = visits.person
    age = people.age_at(person, visits.start)
    male = people.gender[person] == c.MALE
    attended = visits.reason != VACCINATION
    hypertensive = visits.start >= people.onset["hypertension"][person]
    diabetic = visits.start >= people.onset["diabetes"][person]

    bp_chance = np.where(visits.concept == c.OUTPATIENT_VISIT, profile.blood_pressure_rate, 0.3)
    bp_chance = np.minimum(bp_chance * np.where(hypertensive, 1.3, 1.0), 1.0)
    bp = np.flatnonzero(attended & (age >= 3) & (rng.random(size) < bp_chance))
    baseline = rng.normal(0.0, 9.0, size=len(people))
    on_treatment = visits.start[bp] >= treatment.antihypertensive_start[person[bp]]
    systolic: F64 = (
        108.0
        + 0.45 * np.maximum(age[bp] - 25.0, 0.0)
        + np.where(male[bp], 4.0, 0.0)
        + baseline[person[bp]]
        + rng.normal(0.0, 7.0, size=len(bp))
        + np.where(hypertensive[bp], 24.0, 0.0)
        - np.where(on_treatment, treatment.systolic_drop[person[bp]], 0.0)
    )
    systolic = np.round(np.clip(systolic, 75.0, 240.0)).astype(np.float64)
    diastolic = np.round(
        np.clip(0.42 * systolic + 22.0 + rng.normal(0.0, 5.0, size=len(bp)), 40.0, 140.0)
    )

    lab_chance = np.where(diabetic, 0.45, 0.03) * profile.lab_rate
    a1c = np.flatnonzero(attended & (age >= 18) & (rng.random(size) < lab_chance))
    on_metformin = visits.start[a1c] >= treatment.metformin_start[person[a1c]]
    hba1c = np.where(
        diabetic[a1c],
        rng.normal(7.9, 1.0, size=len(a1c)) - np.where(on_metformin, 0.8, 0.0),
        rng.normal(5.4, 0.3, size=len(a1c)),
    )
    hba1c = np.round(np.clip(hba1c, 4.0, 15.0), 1)

    routine = (visits.reason == ROUTINE) & (visits.concept == c.OUTPATIENT_VISIT)
    weighed = np.flatnonzero(
        routine & (age >= 2) & (rng.random(size) < 0.12 * min(profile.lab_rate, 1.0))
    )
    adult_bmi = rng.normal(26.5, 4.0, size=len(people))
    adult_bmi += np.where(people.onset["diabetes"] != NEVER, 3.5, 0.0)
    adult_bmi += np.where(people.onset["hypertension"] != NEVER, 1.5, 0.0)
    child = age[weighed] < 18
    bmi = np.where(child, rng.normal(18.5, 2.5, size=len(weighed)), adult_bmi[person[weighed]])
    bmi = np.round(np.clip(bmi + rng.normal(0.0, 0.5, size=len(weighed)), 12.0, 60.0), 1)

    rows = [
        (bp, c.SYSTOLIC_BP, systolic, c.MILLIMETER_MERCURY, False),
        (bp, c.DIASTOLIC_BP, diastolic, c.MILLIMETER_MERCURY, False),
        (a1c, c.HBA1C, hba1c, c.PERCENT, True),
        (weighed, c.BMI, bmi, c.KILOGRAM_PER_SQUARE_METER, False),
    ]
    visit = np.concatenate([r[0] for r in rows]).astype(np.int64)
    return Measurements(
        person=person[visit],
        visit=visit,
        date=visits.start[visit],
        concept=np.concatenate([np.full(len(r[0]), r[1], np.int32) for r in rows]),
        value=np.concatenate([r[2] for r in rows]).astype(np.float64),
        unit=np.concatenate([np.full(len(r[0]), r[3], np.int32) for r in rows]),
        lab=np.concatenate([np.full(len(r[0]), r[4], np.bool_) for r in rows]),
    )


def _empty_measurements() -> Measurements:
    return Measurements(
        person=np.zeros(0, np.int64),
        visit=np.zeros(0, np.int64),
        date=np.zeros(0, np.int32),
        concept=np.zeros(0, np.int32),
        value=np.zeros(0, np.float64),
        unit=np.zeros(0, np.int32),
        lab=np.zeros(0, np.bool_),
    )
