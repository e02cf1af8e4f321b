"""Shipped plausibility rules: sex-specific concepts, measurement ranges, market dates.

The rules live in ``plausibility.json`` next to this module, one entry per concept with
a note on where it comes from. Concept ids are real OMOP ids, so the rules apply to any
member whose vocabulary comes from Athena. Dates of first marketing are January 1 of
the year a drug was first sold anywhere, so a check against them errs toward silence.

>>> rules = plausibility_rules()
>>> 198803 in rules.male_only  # benign prostatic hyperplasia
True
>>> rules.first_marketed[1545958]  # atorvastatin
datetime.date(1996, 1, 1)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from accord.errors import DataError

RESOURCE: Final = "plausibility.json"


@dataclass(frozen=True)
class MeasurementRange:
    """The plausible values of one measurement in one unit, inclusive."""

    concept_id: int
    unit_concept_id: int
    low: float
    high: float
    name: str

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise DataError(f"plausible range of {self.name!r} has low above high")


@dataclass(frozen=True)
class PlausibilityRules:
    """Everything the plausibility checks look values up in."""

    female_only: frozenset[int]
    male_only: frozenset[int]
    ranges: tuple[MeasurementRange, ...]
    first_marketed: Mapping[int, date]


@functools.cache
def plausibility_rules() -> PlausibilityRules:
    """The rules shipped with Accord (read once, then cached)."""
    text = resources.files("accord.quality").joinpath(RESOURCE).read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{RESOURCE} is not valid JSON: {exc}") from exc
    return parse_rules(document)


def parse_rules(document: Mapping[str, Any]) -> PlausibilityRules:
    """Build :class:`PlausibilityRules` from the JSON document's parsed form."""
    try:
        sexes: dict[str, set[int]] = {"female": set(), "male": set()}
        for entry in document["sex_specific"]:
            sexes[entry["sex"]].add(_concept(entry["concept_id"]))
        ranges = tuple(
            MeasurementRange(
                concept_id=_concept(entry["concept_id"]),
                unit_concept_id=_concept(entry["unit_concept_id"]),
                low=float(entry["low"]),
                high=float(entry["high"]),
                name=str(entry["name"]),
            )
            for entry in document["measurement_ranges"]
        )
        marketed = {
            _concept(entry["concept_id"]): date.fromisoformat(entry["date"])
            for entry in document["first_marketed"]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{RESOURCE} is malformed: {exc!r}") from exc
    both = sexes["female"] & sexes["male"]
    if both:
        raise DataError(f"{RESOURCE} lists concepts as both female- and male-only: {sorted(both)}")
    pairs = [(r.concept_id, r.unit_concept_id) for r in ranges]
    if len(set(pairs)) != len(pairs):
        raise DataError(f"{RESOURCE} gives one measurement and unit two ranges")
    return PlausibilityRules(
        female_only=frozenset(sexes["female"]),
        male_only=frozenset(sexes["male"]),
        ranges=ranges,
        first_marketed=MappingProxyType(marketed),
    )


def _concept(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"concept id {value!r} is not a positive integer")
    return value
