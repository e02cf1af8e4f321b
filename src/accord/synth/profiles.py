"""Who the synthetic members are: kinds of organisation, their names, and how each kind's
population and records differ.

Everything here is data. A hospital sees sicker, older people in short bursts with many
emergency and inpatient stays; a clinic sees the same people often; an insurer holds
claims for everyone it covers; a trial site recruits older cardiometabolic patients; a
public-health agency sees a broad population mostly through surveillance reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from accord.vocab import concepts as c

MEMBER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class MemberKind(StrEnum):
    HOSPITAL = "hospital"
    CLINIC = "clinic"
    INSURER = "insurer"
    TRIAL_SITE = "trial-site"
    PUBLIC_HEALTH = "public-health"


KIND_CYCLE: tuple[MemberKind, ...] = (
    MemberKind.HOSPITAL,
    MemberKind.CLINIC,
    MemberKind.INSURER,
    MemberKind.TRIAL_SITE,
    MemberKind.PUBLIC_HEALTH,
)

MEMBER_NAMES: dict[MemberKind, tuple[tuple[str, str], ...]] = {
    MemberKind.HOSPITAL: (
        ("northgate-hospital", "Northgate Hospital"),
        ("st-brigid-hospital", "St Brigid's Hospital"),
        ("lakeside-general", "Lakeside General Hospital"),
    ),
    MemberKind.CLINIC: (
        ("riverside-clinic", "Riverside Clinic"),
        ("hillcrest-practice", "Hillcrest Family Practice"),
        ("westfield-health-centre", "Westfield Health Centre"),
    ),
    MemberKind.INSURER: (
        ("unity-insurance", "Unity Insurance"),
        ("meridian-health-plan", "Meridian Health Plan"),
    ),
    MemberKind.TRIAL_SITE: (
        ("helix-trials", "Helix Trials"),
        ("apex-clinical-research", "Apex Clinical Research"),
    ),
    MemberKind.PUBLIC_HEALTH: (
        ("regional-health-agency", "Regional Health Agency"),
        ("coastal-public-health", "Coastal Public Health Office"),
    ),
}


@dataclass(frozen=True)
class Region:
    """A region of the consortium's catchment; every member's location table lists them."""

    code: str
    name: str
    state: str
    latitude: float
    longitude: float
    wave_offset_days: int
    """When this region's influenza wave peaks, relative to the consortium's season peak."""


REGIONS: tuple[Region, ...] = (
    Region("NTH", "Northgate", "NG", 53.48, -2.24, -24),
    Region("RIV", "Riverside", "RV", 53.40, -2.98, -12),
    Region("CEN", "Central", "CE", 52.95, -1.15, 0),
    Region("EST", "Eastmoor", "EM", 52.63, 1.30, 12),
    Region("WST", "Westfield", "WF", 51.45, -2.59, 24),
    Region("CST", "Coastal", "CO", 50.82, -0.14, 36),
)


@dataclass(frozen=True)
class RecordTypes:
    """The OMOP type concept each table's rows carry at a kind of member."""

    visit: int
    condition: int
    drug: int
    procedure: int
    measurement: int
    lab: int
    observation_period: int
    death: int


EHR_TYPES = RecordTypes(
    visit=c.EHR_ENCOUNTER_RECORD,
    condition=c.EHR,
    drug=c.EHR_PRESCRIPTION,
    procedure=c.EHR,
    measurement=c.EHR,
    lab=c.LAB,
    observation_period=c.EHR,
    death=c.DEATH_CERTIFICATE,
)
CLAIM_TYPES = RecordTypes(
    visit=c.CLAIM,
    condition=c.CLAIM,
    drug=c.PHARMACY_CLAIM,
    procedure=c.CLAIM,
    measurement=c.CLAIM,
    lab=c.CLAIM,
    observation_period=c.CLAIM_ENROLMENT_RECORD,
    death=c.CLAIM,
)
REGISTRY_TYPES = RecordTypes(
    visit=c.REGISTRY,
    condition=c.REGISTRY,
    drug=c.REGISTRY,
    procedure=c.REGISTRY,
    measurement=c.REGISTRY,
    lab=c.LAB,
    observation_period=c.REGISTRY,
    death=c.DEATH_CERTIFICATE,
)


@dataclass(frozen=True)
class MemberProfile:
    """How one kind of member's population and records look."""

    age_mixture: tuple[tuple[float, float, float], ...]
    """(weight, mean, sd) of normal components for age at the as-of date."""
    history_years: tuple[float, float]
    """Uniform range of how many years back a person's observation period reaches."""
    visit_rate: float
    """Routine visits per observed year for a 30-year-old; rises with age and illness."""
    visit_mix: tuple[float, float, float]
    """Shares of inpatient, outpatient and emergency among routine visits."""
    ili_visit_mix: tuple[float, float, float]
    """The same shares for influenza-like illness visits."""
    ili_rate: float
    """Medically attended influenza-like illness episodes per person-year."""
    capture: float
    """Chance that a visit records each chronic condition the person has."""
    hypertension_risk: float
    """Multiplier on the odds of hypertension for the people this member recruits."""
    blood_pressure_rate: float
    """Chance that an outpatient visit measures blood pressure."""
    lab_rate: float
    """Multiplier on the chance that a visit measures HbA1c."""
    vaccination_rate: float
    """Multiplier on the yearly chance of an influenza vaccination."""
    providers: int
    """Clinicians per 1,000 persons (at least five)."""
    home_region: int
    types: RecordTypes
    claims: bool = False


PROFILES: dict[MemberKind, MemberProfile] = {
    MemberKind.HOSPITAL: MemberProfile(
        age_mixture=((0.14, 10.0, 6.0), (0.48, 46.0, 15.0), (0.38, 72.0, 10.0)),
        history_years=(1.0, 12.0),
        visit_rate=0.9,
        visit_mix=(0.18, 0.57, 0.25),
        ili_visit_mix=(0.06, 0.44, 0.50),
        ili_rate=0.035,
        capture=0.5,
        hypertension_risk=1.0,
        blood_pressure_rate=0.4,
        lab_rate=1.0,
        vaccination_rate=0.3,
        providers=6,
        home_region=0,
        types=EHR_TYPES,
    ),
    MemberKind.CLINIC: MemberProfile(
        age_mixture=((0.2, 10.0, 6.0), (0.55, 42.0, 14.0), (0.25, 70.0, 9.0)),
        history_years=(2.0, 15.0),
        visit_rate=1.1,
        visit_mix=(0.0, 0.97, 0.03),
        ili_visit_mix=(0.0, 0.97, 0.03),
        ili_rate=0.045,
        capture=0.7,
        hypertension_risk=1.0,
        blood_pressure_rate=0.45,
        lab_rate=1.2,
        vaccination_rate=1.0,
        providers=3,
        home_region=1,
        types=EHR_TYPES,
    ),
    MemberKind.INSURER: MemberProfile(
        age_mixture=((0.2, 12.0, 6.0), (0.64, 41.0, 12.0), (0.16, 68.0, 8.0)),
        history_years=(1.0, 10.0),
        visit_rate=1.2,
        visit_mix=(0.07, 0.82, 0.11),
        ili_visit_mix=(0.03, 0.77, 0.20),
        ili_rate=0.04,
        capture=0.6,
        hypertension_risk=1.0,
        blood_pressure_rate=0.0,
        lab_rate=0.0,
        vaccination_rate=0.8,
        providers=4,
        home_region=2,
        types=CLAIM_TYPES,
        claims=True,
    ),
    MemberKind.TRIAL_SITE: MemberProfile(
        age_mixture=((0.12, 38.0, 9.0), (0.88, 62.0, 10.0)),
        history_years=(1.0, 8.0),
        visit_rate=1.0,
        visit_mix=(0.02, 0.95, 0.03),
        ili_visit_mix=(0.02, 0.93, 0.05),
        ili_rate=0.025,
        capture=0.75,
        hypertension_risk=1.5,
        blood_pressure_rate=0.55,
        lab_rate=1.5,
        vaccination_rate=0.6,
        providers=4,
        home_region=3,
        types=EHR_TYPES,
    ),
    MemberKind.PUBLIC_HEALTH: MemberProfile(
        age_mixture=((0.22, 11.0, 7.0), (0.55, 42.0, 16.0), (0.23, 72.0, 10.0)),
        history_years=(3.0, 14.0),
        visit_rate=0.4,
        visit_mix=(0.03, 0.72, 0.25),
        ili_visit_mix=(0.04, 0.66, 0.30),
        ili_rate=0.07,
        capture=0.35,
        hypertension_risk=1.0,
        blood_pressure_rate=0.2,
        lab_rate=0.3,
        vaccination_rate=1.2,
        providers=2,
        home_region=-1,
        types=REGISTRY_TYPES,
    ),
}


@dataclass(frozen=True)
class MemberSpec:
    """One member of the synthetic consortium: identity, kind and database file."""

    index: int
    id: str
    name: str
    kind: MemberKind

    @property
    def profile(self) -> MemberProfile:
        return PROFILES[self.kind]

    @property
    def db_file(self) -> str:
        return f"{self.id}.duckdb"


def plan_members(count: int) -> tuple[MemberSpec, ...]:
    """The first ``count`` members, kinds cycling hospital, clinic, insurer, trial site,
    public health; names are reused with a numeric suffix once a kind's list runs out."""
    specs: list[MemberSpec] = []
    seen: dict[MemberKind, int] = {}
    for index in range(count):
        kind = KIND_CYCLE[index % len(KIND_CYCLE)]
        nth = seen.get(kind, 0)
        seen[kind] = nth + 1
        names = MEMBER_NAMES[kind]
        member_id, name = names[nth % len(names)]
        if nth >= len(names):
            round_ = nth // len(names) + 1
            member_id, name = f"{member_id}-{round_}", f"{name} {round_}"
        specs.append(MemberSpec(index=index, id=member_id, name=name, kind=kind))
    return tuple(specs)


CARE_PROVIDERS = frozenset({MemberKind.HOSPITAL, MemberKind.CLINIC, MemberKind.TRIAL_SITE})


def shared_rate(a: MemberSpec, b: MemberSpec, specs: tuple[MemberSpec, ...]) -> float:
    """Share of a member's persons who also attend member ``b`` under the same national id.

    Neighbours in the member list share 4%. An insurer also covers some patients of every
    other care provider (3% each, less when there are many), so its claims can be checked
    against the encounters recorded there.
    """
    members = len(specs)
    distance = abs(a.index - b.index)
    if distance == 1 or (members > 2 and distance == members - 1):
        return 0.04
    kinds = {a.kind, b.kind}
    if MemberKind.INSURER in kinds and len(kinds & CARE_PROVIDERS) == 1:
        providers = sum(1 for spec in specs if spec.kind in CARE_PROVIDERS)
        return min(0.03, 0.3 / providers)
    return 0.0
