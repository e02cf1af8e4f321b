"""One member's records: its persons (shuffled, so shared persons are not recognisable by
position) and everything it recorded about them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from accord.synth.claims import Costs, add_duplicate_claims, draw_costs, mirrored_claims
from accord.synth.diagnoses import draw_conditions
from accord.synth.encounters import draw_procedures, draw_visits, observation_periods
from accord.synth.population import People, SharingPlan
from accord.synth.profiles import MemberProfile, MemberSpec
from accord.synth.records import Events
from accord.synth.seasons import InfluenzaSeasons
from accord.synth.treatments import draw_drugs, draw_measurements

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class MemberData:
    """Everything needed to write one member's CDM database and its manifest entry."""

    spec: MemberSpec
    people: People
    """The member's persons; ``person_id`` is the index plus one."""
    consortium_index: I64
    """Each person's index among the consortium's people."""
    partner: I32
    """The other member index holding each person, or -1."""
    events: Events
    providers: int
    costs: Costs | None


def simulate(
    people: People,
    profile: MemberProfile,
    as_of: int,
    seasons: InfluenzaSeasons,
    providers: int,
    rng: np.random.Generator,
) -> Events:
    """Everything a member of ``profile``'s kind records about ``people``."""
    periods = observation_periods(people, profile, as_of, rng)
    visits = draw_visits(people, periods, profile, seasons, providers, rng)
    conditions = draw_conditions(people, visits, profile.capture, rng)
    drugs, treatment = draw_drugs(people, periods, visits, conditions, rng)
    measurements = draw_measurements(people, visits, treatment, profile, rng)
    procedures = draw_procedures(visits, conditions, rng)
    return Events(
        periods=periods,
        visits=visits,
        conditions=conditions,
        drugs=drugs,
        measurements=measurements,
        procedures=procedures,
    )


def build_member(
    spec: MemberSpec,
    consortium: People,
    plan: SharingPlan,
    as_of: int,
    seasons: InfluenzaSeasons,
    finished: dict[int, MemberData],
    rng: np.random.Generator,
) -> MemberData:
    """Simulate one member. An insurer needs the care providers it shares persons with in
    ``finished`` already, because it holds claims for their encounters."""
    order = rng.permutation(len(plan.members[spec.index]))
    held = plan.members[spec.index][order]
    partner = plan.partner[spec.index][order]
    people = consortium.take(held)
    profile = spec.profile
    providers = max(5, math.ceil(len(held) / 1000 * profile.providers))
    if not profile.claims:
        events = simulate(people, profile, as_of, seasons, providers, rng)
        return MemberData(spec, people, held, partner, events, providers, costs=None)

    own = np.flatnonzero(partner < 0)
    events = simulate(people.take(own), profile, as_of, seasons, providers, rng)
    events = events.relinked(own, len(held))
    position = np.full(len(consortium), -1, dtype=np.int64)
    position[held] = np.arange(len(held))
    for other in np.unique(partner[partner >= 0]).tolist():
        provider = finished[other]
        shared = provider.partner == spec.index
        mirrored = mirrored_claims(
            provider.events, shared, position[provider.consortium_index], len(held)
        )
        events = Events.merge(events, mirrored, partner == other)
    # A provider's clinicians are billed under the insurer's own provider numbers.
    visits = dataclasses.replace(
        events.visits, provider=((events.visits.provider - 1) % providers + 1).astype(np.int32)
    )
    procedures = dataclasses.replace(
        events.procedures,
        provider=((events.procedures.provider - 1) % providers + 1).astype(np.int32),
    )
    procedures = add_duplicate_claims(procedures, providers, rng)
    events = dataclasses.replace(events, visits=visits, procedures=procedures)
    return MemberData(spec, people, held, partner, events, providers, draw_costs(events, rng))
