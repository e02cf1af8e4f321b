"""Diagnoses recorded at visits, coded as a real member would code them.

A chronic condition is recorded at some of the visits after it starts (how often depends
on the member: a clinic codes more diligently than an emergency department); every
influenza-like illness visit records influenza; acute bronchitis turns up at winter
visits. Records before the US switch to ICD-10-CM (2015-10-01) carry ICD-9-CM source
codes. Each source code maps to the standard SNOMED concept its 'Maps to' row names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

from accord.synth.population import People
from accord.synth.records import ILLNESS, ROUTINE, Conditions, Visits
from accord.synth.seasons import day_number
from accord.vocab import concepts as c

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]

ICD10CM_START = day_number(date(2015, 10, 1))


@dataclass(frozen=True)
class Coding:
    """How one condition is coded: ICD-10-CM and ICD-9-CM source concepts with their codes
    and the standard concept each maps to."""

    icd10: int
    icd10_code: str
    icd10_standard: int
    icd9: int
    icd9_code: str
    icd9_standard: int


CODINGS: dict[str, Coding] = {
    "hypertension": Coding(
        c.ICD10CM_I10, "I10", c.HYPERTENSION, c.ICD9CM_401_9, "401.9", c.HYPERTENSION
    ),
    "diabetes": Coding(
        c.ICD10CM_E11_9,
        "E11.9",
        c.TYPE_2_DIABETES_WITHOUT_COMPLICATION,
        c.ICD9CM_250_00,
        "250.00",
        c.TYPE_2_DIABETES_WITHOUT_COMPLICATION,
    ),
    "asthma": Coding(c.ICD10CM_J45_909, "J45.909", c.ASTHMA, c.ICD9CM_493_90, "493.90", c.ASTHMA),
    "hyperlipidemia": Coding(
        c.ICD10CM_E78_5, "E78.5", c.HYPERLIPIDEMIA, c.ICD9CM_272_4, "272.4", c.HYPERLIPIDEMIA
    ),
    "copd": Coding(c.ICD10CM_J44_9, "J44.9", c.COPD, c.ICD9CM_496, "496", c.COPD),
    "depression": Coding(
        c.ICD10CM_F32_9, "F32.9", c.DEPRESSION, c.ICD9CM_296_20, "296.20", c.DEPRESSION
    ),
    "osteoarthritis": Coding(
        c.ICD10CM_M17_10,
        "M17.10",
        c.KNEE_OSTEOARTHRITIS,
        c.ICD9CM_715_16,
        "715.16",
        c.KNEE_OSTEOARTHRITIS,
    ),
    "influenza": Coding(
        c.ICD10CM_J11_1, "J11.1", c.INFLUENZA, c.ICD9CM_487_1, "487.1", c.INFLUENZAL_ACUTE_URI
    ),
    "bronchitis": Coding(
        c.ICD10CM_J20_9, "J20.9", c.ACUTE_BRONCHITIS, c.ICD9CM_466_0, "466.0", c.ACUTE_BRONCHITIS
    ),
}

SOURCE_CODES: dict[int, str] = {
    concept: code
    for coding in CODINGS.values()
    for concept, code in ((coding.icd10, coding.icd10_code), (coding.icd9, coding.icd9_code))
}
"""Source concept id to the code written in ``condition_source_value``."""

CHRONIC_CODED = (
    "hypertension",
    "diabetes",
    "asthma",
    "hyperlipidemia",
    "copd",
    "depression",
    "osteoarthritis",
)


def draw_conditions(
    people: People, visits: Visits, capture: float, rng: np.random.Generator
) -> Conditions:
    """Condition records for ``visits``, in visit order within each condition."""
    parts: list[tuple[I64, str]] = []
    size = len(visits)
    for name in CHRONIC_CODED:
        # Once a condition has started, routine visits code it at the member's rate;
        # illness and vaccination visits, focused on something else, less often.
        active = visits.start >= people.onset[name][visits.person]
        chance = np.where(visits.reason == ROUTINE, capture, capture * 0.4)
        parts.append((np.flatnonzero(active & (rng.random(size) < chance)), name))
    parts.append((np.flatnonzero(visits.reason == ILLNESS), "influenza"))
    month = visits.start.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    winter = (month >= 9) | (month <= 2)
    bronchitis_chance = np.where(winter, 0.015, 0.004)
    bronchitis = (visits.reason == ROUTINE) & (rng.random(size) < bronchitis_chance)
    parts.append((np.flatnonzero(bronchitis), "bronchitis"))
    visit = np.concatenate([rows for rows, _ in parts]).astype(np.int64)
    day = visits.start[visit]
    codings = [CODINGS[name] for _, name in parts]
    sizes = [len(rows) for rows, _ in parts]

    def per_row(values: list[int]) -> I32:
        return np.repeat(np.array(values, dtype=np.int32), sizes)

    icd10 = day >= ICD10CM_START
    source = np.where(
        icd10, per_row([k.icd10 for k in codings]), per_row([k.icd9 for k in codings])
    )
    standard = np.where(
        icd10,
        per_row([k.icd10_standard for k in codings]),
        per_row([k.icd9_standard for k in codings]),
    )
    return Conditions(
        person=visits.person[visit],
        visit=visit,
        date=day,
        concept=standard.astype(np.int32),
        source_concept=source.astype(np.int32),
    )
