"""An insurer's view: claims mirroring care given elsewhere, enrolment periods and costs.

For a person the insurer shares with a care provider, the insurer holds claims for that
provider's encounters (same dates, diagnoses, procedures and prescriptions), so a claim
can be checked against the recorded encounter. A few procedure claims are billed twice
by different providers on the same day, for the duplicate-claim check to find.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from accord.synth.records import Events, Procedures, Visits
from accord.vocab import concepts as c

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

DUPLICATE_SHARE = 0.004

VISIT_CHARGE = {
    c.INPATIENT_VISIT: 9000.0,
    c.EMERGENCY_ROOM_VISIT: 1100.0,
    c.OUTPATIENT_VISIT: 140.0,
}
PROCEDURE_CHARGE = {c.ECG: 60.0, c.GENERAL_EXAMINATION: 90.0, c.FLU_VACCINATION: 35.0}
DRUG_FILL_CHARGE = 30.0


def mirrored_claims(
    provider_events: Events, shared: NDArray[np.bool_], person_map: I64, persons: int
) -> Events:
    """The provider's events for its persons marked ``shared``, moved onto the insurer's
    person indices (``person_map[provider index] = insurer index``); claims carry no
    measurement results, so those are dropped."""
    events = provider_events.for_persons(shared)
    events = dataclasses.replace(
        events, measurements=events.measurements.take(np.zeros(0, np.int64))
    )
    return events.relinked(np.where(shared, person_map, -1), persons)


def add_duplicate_claims(
    procedures: Procedures, providers: int, rng: np.random.Generator
) -> Procedures:
    """A few procedure claims billed again, same day, by a different provider."""
    if len(procedures) == 0 or providers < 2:
        return procedures
    count = max(1, round(DUPLICATE_SHARE * len(procedures)))
    rows = np.sort(rng.choice(len(procedures), size=count, replace=False))
    copies = procedures.take(rows)
    other = (copies.provider - 1 + rng.integers(1, providers, size=count)) % providers + 1
    copies = dataclasses.replace(copies, provider=other.astype(np.int32))
    return Procedures.concat([procedures, copies])


def duplicate_procedures(procedures: Procedures) -> int:
    """How many (person, procedure, date) are recorded with two or more providers."""
    if len(procedures) == 0:
        return 0
    order = np.lexsort(
        (procedures.provider, procedures.date, procedures.concept, procedures.person)
    )
    person, concept = procedures.person[order], procedures.concept[order]
    day, provider = procedures.date[order], procedures.provider[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (person[1:] != person[:-1]) | (concept[1:] != concept[:-1]) | (day[1:] != day[:-1])
    first = np.flatnonzero(starts)
    last = np.append(first[1:], len(order)) - 1
    # Providers are sorted within a group, so it has two or more exactly when its first
    # and last provider differ.
    return int((provider[first] != provider[last]).sum())


@dataclass(frozen=True)
class Costs:
    event: I64
    """The visit or drug exposure index the cost belongs to."""
    domain: NDArray[np.int8]
    """Index into ``COST_DOMAINS``."""
    person: I64
    charge: F64
    paid_by_payer: F64


COST_DOMAINS = ("Visit", "Drug")


def draw_costs(events: Events, rng: np.random.Generator) -> Costs:
    """One cost row per visit claim and per pharmacy claim, paid mostly by the insurer.

    A visit's charge includes the procedures done at it, as a facility claim's total does.
    """
    visits: Visits = events.visits
    procedures = events.procedures
    visit_mean = _lookup(visits.concept, VISIT_CHARGE)
    linked = procedures.visit >= 0
    visit_mean = visit_mean + np.bincount(
        procedures.visit[linked],
        weights=_lookup(procedures.concept[linked], PROCEDURE_CHARGE),
        minlength=len(visits),
    )
    mean = np.concatenate([visit_mean, np.full(len(events.drugs), DRUG_FILL_CHARGE)])
    charge = np.round(mean * rng.lognormal(-0.08, 0.4, size=len(mean)), 2)
    paid = np.round(charge * rng.uniform(0.7, 0.9, size=len(mean)), 2)
    return Costs(
        event=np.concatenate(
            [np.arange(len(visits), dtype=np.int64), np.arange(len(events.drugs), dtype=np.int64)]
        ),
        domain=np.concatenate(
            [np.zeros(len(visits), np.int8), np.ones(len(events.drugs), np.int8)]
        ),
        person=np.concatenate([visits.person, events.drugs.person]),
        charge=charge,
        paid_by_payer=paid,
    )


def _lookup(concepts: I32, table: dict[int, float]) -> F64:
    keys = np.array(list(table), dtype=np.int32)
    values = np.array(list(table.values()), dtype=np.float64)
    order = np.argsort(keys)
    position = np.searchsorted(keys[order], concepts)
    return np.asarray(values[order][np.clip(position, 0, len(keys) - 1)], dtype=np.float64)
