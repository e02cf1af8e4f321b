"""What a member sees of its people: observation periods, visits and procedures.

Visits come from three causes: routine care (more often for the old, the frail and the
chronically ill), influenza-like illness (dated by the regional waves of
``accord.synth.seasons``) and autumn influenza vaccination. All draws are vectorised over
persons and visits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from accord.synth.population import CHRONIC, DAYS_PER_YEAR, NEVER, People
from accord.synth.profiles import MemberProfile
from accord.synth.records import (
    ILLNESS,
    ROUTINE,
    VACCINATION,
    Conditions,
    Periods,
    Procedures,
    Visits,
)
from accord.synth.seasons import InfluenzaSeasons
from accord.vocab import concepts as c

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]

VISIT_CONCEPTS = np.array([c.INPATIENT_VISIT, c.OUTPATIENT_VISIT, c.EMERGENCY_ROOM_VISIT], np.int32)
MAX_ROUTINE_VISITS = 60


def observation_periods(
    people: People, profile: MemberProfile, as_of: int, rng: np.random.Generator
) -> Periods:
    """One period per person: it ends at death, at the as-of date, or (for a few who moved
    away) earlier, and reaches back a profile-dependent number of years."""
    size = len(people)
    alive = people.death == NEVER
    end = np.where(alive, as_of, people.death).astype(np.int64)
    moved_away = alive & (rng.random(size) < 0.06)
    end = np.where(moved_away, end - rng.integers(30, 3 * 365, size=size), end)
    low, high = profile.history_years
    span = np.floor(rng.uniform(low, high, size=size) * DAYS_PER_YEAR).astype(np.int64)
    end = np.maximum(end, people.birth)
    start = np.maximum(people.birth, end - span)
    return Periods(start=start.astype(np.int32), end=end.astype(np.int32))


def draw_visits(
    people: People,
    periods: Periods,
    profile: MemberProfile,
    seasons: InfluenzaSeasons,
    providers: int,
    rng: np.random.Generator,
) -> Visits:
    """Routine, illness and vaccination visits, sorted by person then date."""
    routine = _routine_visits(people, periods, profile, rng)
    illness = _illness_visits(people, periods, profile, seasons, rng)
    vaccination = _vaccination_visits(people, periods, profile, rng)
    person = np.concatenate([routine[0], illness[0], vaccination[0]])
    start = np.concatenate([routine[1], illness[1], vaccination[1]])
    concept = np.concatenate([routine[2], illness[2], vaccination[2]])
    reason = np.concatenate(
        [
            np.full(len(routine[0]), ROUTINE, np.int8),
            np.full(len(illness[0]), ILLNESS, np.int8),
            np.full(len(vaccination[0]), VACCINATION, np.int8),
        ]
    )
    order = np.lexsort((start, person))
    person, start, concept, reason = person[order], start[order], concept[order], reason[order]
    stay = rng.geometric(0.3, size=len(person)).astype(np.int32)
    inpatient = concept == c.INPATIENT_VISIT
    end = np.where(inpatient, np.minimum(start + np.minimum(stay, 21), periods.end[person]), start)
    return Visits(
        person=person,
        start=start,
        end=end.astype(np.int32),
        concept=concept,
        provider=rng.integers(1, providers + 1, size=len(person), dtype=np.int32),
        reason=reason,
    )


def _within(person: I64, day: I32, periods: Periods) -> NDArray[np.bool_]:
    return (day >= periods.start[person]) & (day <= periods.end[person])


def _routine_visits(
    people: People, periods: Periods, profile: MemberProfile, rng: np.random.Generator
) -> tuple[I64, I32, I32]:
    length = (periods.end - periods.start + 1).astype(np.int64)
    years = length / DAYS_PER_YEAR
    age = people.age_years((periods.start + periods.end) // 2)
    chronic = sum((people.onset[name] <= periods.end).astype(np.float64) for name in CHRONIC)
    rate = profile.visit_rate * people.frailty * (0.6 + 0.015 * np.maximum(age - 20.0, 0.0))
    expected = rate * years * (1.0 + 0.25 * chronic)
    count = np.minimum(1 + rng.poisson(expected), MAX_ROUTINE_VISITS)
    person = np.repeat(np.arange(len(people), dtype=np.int64), count)
    day = periods.start[person] + np.floor(rng.random(len(person)) * length[person])
    mix = np.array(profile.visit_mix)
    concept = VISIT_CONCEPTS[rng.choice(3, size=len(person), p=mix / mix.sum())]
    return person, day.astype(np.int32), concept


def _illness_visits(
    people: People,
    periods: Periods,
    profile: MemberProfile,
    seasons: InfluenzaSeasons,
    rng: np.random.Generator,
) -> tuple[I64, I32, I32]:
    # Episodes are drawn over the seasons' whole window and kept where the person is
    # observed, which leaves the seasonal shape intact.
    window_years = seasons.cumulative.shape[1] / DAYS_PER_YEAR
    age = people.age_years(periods.end)
    susceptibility = np.where(age < 15, 1.8, np.where(age >= 65, 1.3, 1.0))
    count = rng.poisson(profile.ili_rate * window_years * susceptibility)
    person = np.repeat(np.arange(len(people), dtype=np.int64), count)
    day = seasons.draw_dates(people.region[person], rng)
    kept = _within(person, day, periods)
    person, day = person[kept], day[kept]
    mix = np.array(profile.ili_visit_mix)
    concept = VISIT_CONCEPTS[rng.choice(3, size=len(person), p=mix / mix.sum())]
    return person, day, concept


def _vaccination_visits(
    people: People, periods: Periods, profile: MemberProfile, rng: np.random.Generator
) -> tuple[I64, I32, I32]:
    years = (periods.end - periods.start + 1) / DAYS_PER_YEAR
    age = people.age_years(periods.end)
    yearly = np.where(age >= 65, 0.55, np.where(age < 18, 0.3, 0.2)) * profile.vaccination_rate
    count = rng.poisson(np.minimum(yearly, 0.95) * years)
    person = np.repeat(np.arange(len(people), dtype=np.int64), count)
    # A random observed day picks the season; the jab falls in October to mid-December.
    length = (periods.end - periods.start + 1)[person]
    anchor = periods.start[person] + np.floor(rng.random(len(person)) * length).astype(np.int64)
    year = anchor.astype("datetime64[D]").astype("datetime64[Y]")
    october = (year.astype("datetime64[M]") + np.timedelta64(9, "M")).astype("datetime64[D]")
    day = (october.astype(np.int64) + rng.integers(0, 75, size=len(person))).astype(np.int32)
    kept = _within(person, day, periods)
    person, day = person[kept], day[kept]
    return person, day, np.full(len(person), c.OUTPATIENT_VISIT, np.int32)


def draw_procedures(visits: Visits, conditions: Conditions, rng: np.random.Generator) -> Procedures:
    """ECGs in emergency and inpatient care and when hypertension is first recorded,
    general examinations at some routine outpatient visits, and every vaccination."""
    size = len(visits)
    acute = (visits.concept != c.OUTPATIENT_VISIT) & (visits.reason != VACCINATION)
    ecg = acute & (rng.random(size) < 0.45)
    hypertension = np.flatnonzero(conditions.concept == c.HYPERTENSION)
    _, first = np.unique(conditions.person[hypertension], return_index=True)
    diagnosis_visits = conditions.visit[hypertension[first]]
    ecg[diagnosis_visits[rng.random(len(diagnosis_visits)) < 0.35]] = True
    routine = (visits.reason == ROUTINE) & (visits.concept == c.OUTPATIENT_VISIT)
    examination = routine & (rng.random(size) < 0.12)
    vaccination = visits.reason == VACCINATION
    chosen = [
        (np.flatnonzero(ecg), c.ECG),
        (np.flatnonzero(examination), c.GENERAL_EXAMINATION),
        (np.flatnonzero(vaccination), c.FLU_VACCINATION),
    ]
    visit = np.concatenate([rows for rows, _ in chosen]).astype(np.int64)
    concept = np.concatenate([np.full(len(rows), code, np.int32) for rows, code in chosen])
    return Procedures(
        person=visits.person[visit],
        visit=visit,
        date=visits.start[visit],
        concept=concept,
        provider=visits.provider[visit],
    )
