"""Small Circe (ATLAS) cohort documents for the tests of ``accord.query.atlas``, built
the way ATLAS writes them, and the readers that import them."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from accord.query import QueryValidationError
from accord.query.atlas import AtlasImport, cohort_from_atlas
from accord.query.builders import concepts, entry, has_condition

AS_OF = date(2025, 12, 31)
FIXTURES = Path(__file__).parent / "fixtures" / "atlas"

T2DM = 201826
SECONDARY_DIABETES = 195771
METFORMIN = 1503297
INSULINS = 21600713
HBA1C = 3004410
HBA1C_HPLC = 3005673
PERCENT = 8554
ECG = 4163951
SMOKER = 4298794
OUTPATIENT = 9202
MALE, FEMALE = 8507, 8532


def item(
    concept_id: object, *, descendants: bool = True, excluded: bool = False, mapped: bool = False
) -> dict[str, Any]:
    return {
        "concept": {"CONCEPT_ID": concept_id, "CONCEPT_NAME": f"concept {concept_id}"},
        "isExcluded": excluded,
        "includeDescendants": descendants,
        "includeMapped": mapped,
    }


def concept_set(number: int, *items: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "id": number,
        "name": name if name is not None else f"set {number}",
        "expression": {"items": list(items)},
    }


SETS = [
    concept_set(0, item(T2DM), name="T2DM"),
    concept_set(1, item(METFORMIN), name="Metformin"),
    concept_set(2, item(HBA1C, descendants=False), name="HbA1c"),
    concept_set(3, item(ECG), name="ECG"),
    concept_set(4, item(SMOKER, descendants=False), name="Smoker"),
    concept_set(5, item(OUTPATIENT, descendants=False), name="Outpatient"),
]


def condition(codeset: object = 0, **attributes: Any) -> dict[str, Any]:
    return {"ConditionOccurrence": {"CodesetId": codeset, **attributes}}


def drug(codeset: object = 1, **attributes: Any) -> dict[str, Any]:
    return {"DrugExposure": {"CodesetId": codeset, **attributes}}


def lab(codeset: object = 2, **attributes: Any) -> dict[str, Any]:
    return {"Measurement": {"CodesetId": codeset, **attributes}}


def window(
    start: tuple[int | None, int] = (None, -1), end: tuple[int | None, int] = (0, 1), **extra: Any
) -> dict[str, Any]:
    def endpoint(days: int | None, coeff: int) -> dict[str, Any]:
        return {"Coeff": coeff} if days is None else {"Days": days, "Coeff": coeff}

    return {"Start": endpoint(*start), "End": endpoint(*end), **extra}


def correlated(
    criteria: dict[str, Any],
    *,
    start: tuple[int | None, int] = (None, -1),
    end: tuple[int | None, int] = (0, 1),
    occurrence: tuple[int, int] = (2, 1),
    **extra: Any,
) -> dict[str, Any]:
    kind, count = occurrence
    return {
        "Criteria": criteria,
        "StartWindow": window(start, end),
        "Occurrence": {"Type": kind, "Count": count, "IsDistinct": False},
        **extra,
    }


def group(
    *criteria: dict[str, Any],
    kind: str = "ALL",
    count: int | None = None,
    demographics: tuple[dict[str, Any], ...] = (),
    groups: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    made: dict[str, Any] = {
        "Type": kind,
        "CriteriaList": list(criteria),
        "DemographicCriteriaList": list(demographics),
        "Groups": list(groups),
    }
    if count is not None:
        made["Count"] = count
    return made


def rule(expression: dict[str, Any], name: str = "a rule") -> dict[str, Any]:
    return {"name": name, "description": "", "expression": expression}


def document(
    *rules: dict[str, Any],
    primary: tuple[dict[str, Any], ...] | None = None,
    prior: int = 0,
    post: int = 0,
    limit: str = "First",
    sets: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "ConceptSets": SETS if sets is None else sets,
        "PrimaryCriteria": {
            "CriteriaList": list(primary if primary is not None else (condition(),)),
            "ObservationWindow": {"PriorDays": prior, "PostDays": post},
            "PrimaryCriteriaLimit": {"Type": limit},
        },
        "InclusionRules": list(rules),
        **extra,
    }


def read(doc: object) -> AtlasImport:
    return cohort_from_atlas(doc, as_of=AS_OF)  # type: ignore[arg-type]


def refused(doc: object) -> tuple[str, ...]:
    with pytest.raises(QueryValidationError) as caught:
        read(doc)
    return caught.value.problems


def only_rule(doc: dict[str, Any]) -> object:
    """The criterion the document's only inclusion rule became."""
    criteria = read(doc).cohort.criteria
    assert len(criteria) == 1
    return criteria[0]


ENTRY = entry(has_condition(T2DM))
T2DM_SET, METFORMIN_SET = concepts(T2DM), concepts(METFORMIN)
