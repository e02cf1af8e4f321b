"""The consortium's people: who they are, what chronic illness they carry, when they die,
and which members they attend.

People are drawn once for the whole consortium, so a person shared by two members has the
same birth date, sex, region, national id, illnesses and death at both. Each member then
records what it sees of them (``accord.synth.encounters``). Dates are whole days since
1970-01-01 in ``int32`` arrays; ``NEVER`` marks an event that does not happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from accord.synth.profiles import REGIONS, MemberProfile, MemberSpec, shared_rate
from accord.vocab import concepts as c

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
BOOL = NDArray[np.bool_]

NEVER = np.int32(2**31 - 1)
DAYS_PER_YEAR = 365.25
CHRONIC = (
    "hypertension",
    "diabetes",
    "asthma",
    "hyperlipidemia",
    "copd",
    "depression",
    "osteoarthritis",
)

# A 10-digit national id: 9 digits from an affine map on a prime field, which is a
# bijection, so ids are distinct without drawing and rejecting; then a Luhn check digit
# as many real schemes have.
_NATIONAL_ID_PRIME = 899_999_963
_NATIONAL_ID_FLOOR = 100_000_000


@dataclass(frozen=True)
class People:
    """Latent attributes of a set of people, one array element per person."""

    national_id: I64
    gender: I32
    race: I32
    ethnicity: I32
    birth: I32
    region: I32
    death: I32
    onset: dict[str, I32]
    """Date each chronic condition starts, ``NEVER`` if the person never has it."""
    frailty: F64
    """Person-level multiplier on how often they seek care."""

    def __len__(self) -> int:
        return len(self.birth)

    def take(self, index: I64) -> People:
        return People(
            national_id=self.national_id[index],
            gender=self.gender[index],
            race=self.race[index],
            ethnicity=self.ethnicity[index],
            birth=self.birth[index],
            region=self.region[index],
            death=self.death[index],
            onset={name: dates[index] for name, dates in self.onset.items()},
            frailty=self.frailty[index],
        )

    def age_years(self, on: int | I32) -> F64:
        """Each person's exact age in years on a date (or on a date per person)."""
        return np.asarray((np.asarray(on) - self.birth) / DAYS_PER_YEAR, dtype=np.float64)

    def age_at(self, person: I64, on: I32) -> F64:
        """Exact age in years of ``person[i]`` on ``on[i]``, for rows of events."""
        return np.asarray((on - self.birth[person]) / DAYS_PER_YEAR, dtype=np.float64)


@dataclass(frozen=True)
class SharingPlan:
    """How many people each pair of members shares, and which people those are."""

    pairs: dict[tuple[int, int], int]
    members: tuple[I64, ...]
    """For each member, the indices into the consortium's people it holds."""
    partner: tuple[I32, ...]
    """For each member and each of its people, the other member holding them, or -1."""


def plan_sharing(specs: tuple[MemberSpec, ...], persons: int) -> dict[tuple[int, int], int]:
    """Number of shared people for each pair of members (only pairs that share any)."""
    pairs: dict[tuple[int, int], int] = {}
    for a, b in combinations(specs, 2):
        count = round(shared_rate(a, b, specs) * persons)
        if count:
            pairs[(a.index, b.index)] = count
    return pairs


def draw_consortium(
    specs: tuple[MemberSpec, ...], persons: int, as_of: int, rng: np.random.Generator
) -> tuple[People, SharingPlan]:
    """Draw every person of the consortium and decide who belongs to which member."""
    pairs = plan_sharing(specs, persons)
    shared_by = np.zeros(len(specs), dtype=np.int64)
    for (a, b), count in pairs.items():
        shared_by[a] += count
        shared_by[b] += count
    # Groups of people drawn from one profile: each member's own, then each shared pair,
    # whose people look like the pair's care provider rather than its insurer.
    if shared_by.max(initial=0) > persons:
        raise ValueError(f"{persons} persons per member cannot cover the shared persons")
    groups: list[tuple[MemberSpec, int]] = [
        (spec, persons - int(shared_by[spec.index])) for spec in specs
    ]
    for (a, b), count in pairs.items():
        first, second = specs[a], specs[b]
        groups.append((second if first.profile.claims else first, count))
    parts = [draw_people(spec.profile, size, as_of, rng) for spec, size in groups]
    people = _concatenate(parts)
    starts = np.cumsum([0] + [size for _, size in groups])
    members: list[I64] = []
    partners: list[I32] = []
    for spec in specs:
        own = np.arange(starts[spec.index], starts[spec.index + 1], dtype=np.int64)
        held = [own]
        partner = [np.full(len(own), -1, dtype=np.int32)]
        for group, ((a, b), count) in enumerate(pairs.items(), start=len(specs)):
            if spec.index in (a, b):
                held.append(np.arange(starts[group], starts[group] + count, dtype=np.int64))
                partner.append(np.full(count, b if spec.index == a else a, dtype=np.int32))
        members.append(np.concatenate(held))
        partners.append(np.concatenate(partner))
    people = _with_national_ids(people, rng)
    return people, SharingPlan(pairs=pairs, members=tuple(members), partner=tuple(partners))


def draw_people(profile: MemberProfile, size: int, as_of: int, rng: np.random.Generator) -> People:
    """Draw ``size`` people of the kind a member with ``profile`` serves."""
    weights = np.array([w for w, _, _ in profile.age_mixture])
    component = rng.choice(len(weights), size=size, p=weights / weights.sum())
    means = np.array([m for _, m, _ in profile.age_mixture])[component]
    sds = np.array([s for _, _, s in profile.age_mixture])[component]
    age = np.clip(rng.normal(means, sds), 0.05, 99.5)
    birth = (as_of - np.floor(age * DAYS_PER_YEAR)).astype(np.int32)
    male = rng.random(size) < 0.49
    gender = np.where(male, c.MALE, c.FEMALE).astype(np.int32)
    race = rng.choice(
        np.array([c.WHITE, c.BLACK_OR_AFRICAN_AMERICAN, c.ASIAN, c.NO_MATCHING_CONCEPT], np.int32),
        size=size,
        p=[0.64, 0.16, 0.1, 0.1],
    )
    ethnicity = np.where(
        rng.random(size) < 0.16, c.HISPANIC_OR_LATINO, c.NOT_HISPANIC_OR_LATINO
    ).astype(np.int32)
    if profile.home_region < 0:
        region = rng.integers(0, len(REGIONS), size=size, dtype=np.int32)
    else:
        weights = np.full(len(REGIONS), 0.4 / (len(REGIONS) - 1))
        weights[profile.home_region] = 0.6
        region = rng.choice(len(REGIONS), size=size, p=weights).astype(np.int32)
    onset = _draw_chronic(profile, age, male, birth, as_of, rng)
    death = _draw_death(age, onset, birth, as_of, rng)
    frailty = rng.gamma(4.0, 0.25, size=size)
    return People(
        national_id=np.zeros(size, dtype=np.int64),
        gender=gender,
        race=race,
        ethnicity=ethnicity,
        birth=birth,
        region=region,
        death=death,
        onset=onset,
        frailty=frailty,
    )


def _logistic(age: F64, ceiling: float, midpoint: float, scale: float) -> F64:
    return np.asarray(ceiling / (1.0 + np.exp(-(age - midpoint) / scale)), dtype=np.float64)


def _draw_chronic(
    profile: MemberProfile,
    age: F64,
    male: BOOL,
    birth: I32,
    as_of: int,
    rng: np.random.Generator,
) -> dict[str, I32]:
    size = len(age)
    # Prevalence at the as-of date by age; hypertension is about 30% at 60 and 60% at 80.
    hypertension = _logistic(age, 0.75, 64.0, 10.0) * np.where(male, 1.08, 0.93)
    odds = hypertension / np.maximum(1.0 - hypertension, 1e-6) * profile.hypertension_risk
    has_hypertension = rng.random(size) < odds / (1.0 + odds)
    diabetes = _logistic(age, 0.3, 62.0, 11.0) * np.where(has_hypertension, 1.6, 0.75)
    hyperlipidemia = _logistic(age, 0.45, 58.0, 10.0) * np.where(has_hypertension, 1.4, 0.85)
    prevalence = {
        "hypertension": (has_hypertension, 25.0),
        "diabetes": (rng.random(size) < diabetes, 30.0),
        "asthma": (rng.random(size) < np.where(age < 18, 0.1, 0.075), 2.0),
        "hyperlipidemia": (rng.random(size) < hyperlipidemia, 25.0),
        "copd": (rng.random(size) < _logistic(age, 0.15, 68.0, 8.0), 40.0),
        "depression": (rng.random(size) < np.where(age >= 15, 0.07, 0.0), 15.0),
        "osteoarthritis": (rng.random(size) < _logistic(age, 0.35, 70.0, 9.0), 40.0),
    }
    onset: dict[str, I32] = {}
    for name in CHRONIC:
        has, earliest_age = prevalence[name]
        has = has & (age > earliest_age)
        # Onset some time in the last 25 years, never before the condition's earliest age.
        low = np.maximum(earliest_age, age - 25.0)
        onset_age = low + rng.random(size) * np.maximum(age - low, 0.0)
        dates = (birth + np.floor(onset_age * DAYS_PER_YEAR)).astype(np.int32)
        onset[name] = np.where(has, np.minimum(dates, as_of), NEVER).astype(np.int32)
    return onset


def _draw_death(
    age: F64, onset: dict[str, I32], birth: I32, as_of: int, rng: np.random.Generator
) -> I32:
    # Gompertz hazard per year, raised by chronic illness, over an eight-year look-back.
    hazard = np.exp(-9.8 + 0.085 * age)
    for name, factor in (("hypertension", 1.3), ("diabetes", 1.5), ("copd", 2.0)):
        hazard = hazard * np.where(onset[name] != NEVER, factor, 1.0)
    window = 8.0
    dies = rng.random(len(age)) < 1.0 - np.exp(-hazard * window)
    when = as_of - np.floor(rng.random(len(age)) * window * DAYS_PER_YEAR)
    when = np.maximum(when, birth + 1)
    return np.where(dies & (when <= as_of), when, NEVER).astype(np.int32)


def _concatenate(parts: list[People]) -> People:
    return People(
        national_id=np.concatenate([p.national_id for p in parts]),
        gender=np.concatenate([p.gender for p in parts]),
        race=np.concatenate([p.race for p in parts]),
        ethnicity=np.concatenate([p.ethnicity for p in parts]),
        birth=np.concatenate([p.birth for p in parts]),
        region=np.concatenate([p.region for p in parts]),
        death=np.concatenate([p.death for p in parts]),
        onset={name: np.concatenate([p.onset[name] for p in parts]) for name in CHRONIC},
        frailty=np.concatenate([p.frailty for p in parts]),
    )


def _with_national_ids(people: People, rng: np.random.Generator) -> People:
    size = len(people)
    if size >= _NATIONAL_ID_PRIME:
        raise ValueError(f"cannot give {size} people distinct national ids")
    multiplier = int(rng.integers(1, _NATIONAL_ID_PRIME))
    offset = int(rng.integers(0, _NATIONAL_ID_PRIME))
    index = np.arange(size, dtype=np.int64)
    body = (index * multiplier + offset) % _NATIONAL_ID_PRIME + _NATIONAL_ID_FLOOR
    return People(
        national_id=body * 10 + luhn_check_digit(body),
        gender=people.gender,
        race=people.race,
        ethnicity=people.ethnicity,
        birth=people.birth,
        region=people.region,
        death=people.death,
        onset=people.onset,
        frailty=people.frailty,
    )


def luhn_check_digit(body: I64) -> I64:
    """The Luhn check digit of each 9-digit number in ``body``."""
    total = np.zeros(len(body), dtype=np.int64)
    rest = body.copy()
    for position in range(9):
        digit = rest % 10
        rest //= 10
        if position % 2 == 0:
            digit = digit * 2
            digit = np.where(digit > 9, digit - 9, digit)
        total += digit
    return np.asarray((10 - total % 10) % 10, dtype=np.int64)
