"""What a synthetic consortium holds, counted exactly from the generated arrays.

Tests and demos check SQL analyses against these figures, so each count here has a
plain definition a query can reproduce (see ``DEFINITIONS``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from accord.errors import DataError
from accord.synth.claims import duplicate_procedures
from accord.synth.population import NEVER
from accord.synth.records import Events
from accord.vocab import concepts as c
from accord.vocab.starter import starter_tables

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"

CONDITION_GROUPS: dict[str, int] = {
    "hypertension": c.HYPERTENSION,
    "type_2_diabetes": c.TYPE_2_DIABETES,
    "influenza": c.INFLUENZA,
    "asthma": c.ASTHMA,
    "hyperlipidemia": c.HYPERLIPIDEMIA,
    "acute_bronchitis": c.ACUTE_BRONCHITIS,
    "copd": c.COPD,
    "depression": c.DEPRESSION,
    "knee_osteoarthritis": c.KNEE_OSTEOARTHRITIS,
}
DRUG_GROUPS: dict[str, int] = {
    "beta_blockers": c.BETA_BLOCKERS,
    "ace_inhibitors": c.ACE_INHIBITORS,
    "calcium_channel_blockers": c.CALCIUM_CHANNEL_BLOCKERS,
    "biguanides": c.BIGUANIDES,
    "statins": c.STATINS,
    "oseltamivir": c.OSELTAMIVIR,
}
TRIAL_AGE = (45, 75)

DEFINITIONS: dict[str, str] = {
    "conditions": (
        "persons: distinct person_id with at least one condition_occurrence whose "
        "condition_concept_id is the group's concept or a descendant of it in "
        "concept_ancestor; prevalence: persons divided by the member's persons"
    ),
    "drugs": (
        "distinct person_id with at least one drug_exposure whose drug_concept_id is the "
        "group's concept or a descendant of it in concept_ancestor"
    ),
    "trial_recruitment": (
        "distinct person_id whose age, year(as_of) - year_of_birth, is between 45 and 75 "
        "inclusive; with at least one condition_occurrence whose condition_concept_id is "
        f"HYPERTENSION ({c.HYPERTENSION}) or a descendant of it in concept_ancestor; and "
        "with no drug_exposure, at any date, whose drug_concept_id is a descendant of "
        f"BETA_BLOCKERS ({c.BETA_BLOCKERS}, ATC C07) in concept_ancestor"
    ),
    "influenza_last_7_days": (
        "condition_occurrence rows whose condition_concept_id is INFLUENZA or a descendant "
        "and whose condition_start_date is within the 7 days ending on as_of"
    ),
    "procedure_duplicates": (
        "distinct (person_id, procedure_concept_id, procedure_date) recorded with two or "
        "more different provider_id values"
    ),
    "overlaps": (
        "for each other member, how many person_source_value (national ids) the two "
        "members' person tables have in common"
    ),
    "planted_defects": (
        "per data quality check id, the rows planted to violate it (accord.synth.defects) "
        "in defect_rate of the eligible rows of each defect class; the quality gate run "
        "with today = as_of counts exactly these. The other figures describe the data "
        "before planting"
    ),
}


@dataclass(frozen=True)
class ConditionCount:
    persons: int
    prevalence: float


@dataclass(frozen=True)
class MemberManifest:
    id: str
    name: str
    kind: str
    db_file: str
    persons: int
    deaths: int
    conditions: dict[str, ConditionCount]
    drugs: dict[str, int]
    overlaps: dict[str, int]
    trial_recruitment: int
    influenza_last_7_days: int
    procedure_duplicates: int
    rows: dict[str, int] = field(default_factory=dict)
    planted_defects: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsortiumManifest:
    """The generated consortium: parameters, vocabulary and exact per-member figures."""

    seed: int
    as_of: date
    vocabulary_version: str
    persons_per_member: int
    members: tuple[MemberManifest, ...]
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    condition_concepts: dict[str, int] = field(default_factory=lambda: dict(CONDITION_GROUPS))
    drug_concepts: dict[str, int] = field(default_factory=lambda: dict(DRUG_GROUPS))
    format: int = FORMAT_VERSION
    defect_rate: float = 0.0

    def member(self, member_id: str) -> MemberManifest:
        for member in self.members:
            if member.id == member_id:
                return member
        raise KeyError(member_id)

    def overlap(self, first: str, second: str) -> int:
        """Persons the two members share (by national id)."""
        return self.member(first).overlaps.get(second, 0)

    def to_json(self) -> str:
        data = asdict(self)
        data["as_of"] = self.as_of.isoformat()
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ConsortiumManifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {data.get('format')!r} is not {FORMAT_VERSION}")
            members = tuple(
                MemberManifest(
                    **{
                        **member,
                        "conditions": {
                            name: ConditionCount(**count)
                            for name, count in member["conditions"].items()
                        },
                    }
                )
                for member in data.pop("members")
            )
            data["as_of"] = date.fromisoformat(data["as_of"])
            return cls(members=members, **data)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"not a synthetic consortium manifest: {exc}",
                hint="point at the manifest.json that generate_consortium wrote",
            ) from exc

    @classmethod
    def load(cls, path: Path) -> ConsortiumManifest:
        """Read a manifest from a file, or from ``manifest.json`` in a directory."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(
                f"cannot read manifest {path}: {exc.strerror}",
                hint="generate the consortium first or give the right directory",
            ) from exc
        return cls.from_json(text)


@functools.cache
def descendants(ancestor: int) -> NDArray[np.int32]:
    """The concept and its descendants, per the starter vocabulary's concept_ancestor."""
    table = starter_tables()["concept_ancestor"]
    ancestors = table.column("ancestor_concept_id").to_numpy()
    found = table.column("descendant_concept_id").to_numpy()[ancestors == ancestor]
    return np.unique(np.append(found, ancestor)).astype(np.int32)


def persons_with(
    person: NDArray[np.int64], concept: NDArray[np.int32], ancestor: int, size: int
) -> NDArray[np.bool_]:
    """Per person, whether any row has ``ancestor`` or one of its descendants."""
    has = np.zeros(size, dtype=bool)
    has[person[np.isin(concept, descendants(ancestor))]] = True
    return has


def year_of(days: NDArray[np.int32]) -> NDArray[np.int64]:
    return np.asarray(days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)


def member_figures(
    *,
    member_id: str,
    name: str,
    kind: str,
    db_file: str,
    birth: NDArray[np.int32],
    death: NDArray[np.int32],
    events: Events,
    overlaps: dict[str, int],
    as_of: date,
    as_of_day: int,
) -> MemberManifest:
    """Count one member's figures from its arrays (never from its database)."""
    size = len(birth)
    conditions = events.conditions
    drugs = events.drugs
    condition_counts: dict[str, ConditionCount] = {}
    for group, concept in CONDITION_GROUPS.items():
        persons = int(persons_with(conditions.person, conditions.concept, concept, size).sum())
        condition_counts[group] = ConditionCount(persons, round(persons / size, 6))
    drug_counts = {
        group: int(persons_with(drugs.person, drugs.concept, concept, size).sum())
        for group, concept in DRUG_GROUPS.items()
    }
    age = as_of.year - year_of(birth)
    eligible_age = (age >= TRIAL_AGE[0]) & (age <= TRIAL_AGE[1])
    hypertensive = persons_with(conditions.person, conditions.concept, c.HYPERTENSION, size)
    on_beta_blocker = persons_with(drugs.person, drugs.concept, c.BETA_BLOCKERS, size)
    recent = (conditions.date > as_of_day - 7) & (conditions.date <= as_of_day)
    influenza = np.isin(conditions.concept, descendants(c.INFLUENZA))
    return MemberManifest(
        id=member_id,
        name=name,
        kind=kind,
        db_file=db_file,
        persons=size,
        deaths=int((death != NEVER).sum()),
        conditions=condition_counts,
        drugs=drug_counts,
        overlaps=overlaps,
        trial_recruitment=int((eligible_age & hypertensive & ~on_beta_blocker).sum()),
        influenza_last_7_days=int((recent & influenza).sum()),
        procedure_duplicates=duplicate_procedures(events.procedures),
    )
