"""What every reading stage of an ATLAS import shares: the reader's state, the
problems and notes it collects, small readers for the parts of a Circe document, and
the short readings of criteria that the notes quote."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, Final, Literal, TypeAlias, TypeVar

from accord.query.kinds import MAX_DAYS, show
from accord.query.model import (
    AgeBetween,
    AllOf,
    AnyOf,
    AtLeastOf,
    ConceptSet,
    Criterion,
    EventCriterion,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    HasObservation,
    HasProcedure,
    HasVisit,
    Not,
    SexIs,
    ValuedEventCriterion,
)
from accord.query.nodes import QueryValidationError

# Circe criterion types Accord has an event criterion for.
CRITERIA: Final[Mapping[str, type[EventCriterion]]] = {
    "ConditionOccurrence": HasCondition,
    "DrugExposure": HasDrugExposure,
    "Measurement": HasMeasurement,
    "Observation": HasObservation,
    "ProcedureOccurrence": HasProcedure,
    "VisitOccurrence": HasVisit,
}

# Groups nested deeper than this are not a cohort anyone wrote by hand.
MAX_GROUP_DEPTH: Final = 8
_OLDEST: Final = 150
_EVERYONE: Final = AllOf(())

_WHAT_ACCORD_MATCHES: Final = (
    "Accord's event criteria match a concept set, days relative to the index date, a "
    "number of records and, for measurements and observations, the value and unit"
)
_HINTS: Final[Mapping[str, str]] = {
    "Age": (
        "age at the record; Accord takes ages at the index date: use an Age demographic "
        "criterion in an inclusion rule"
    ),
    "Gender": "sex on the record; use a Gender demographic criterion in an inclusion rule",
    "OccurrenceStartDate": "calendar dates; Accord places records relative to the index date",
    "OccurrenceEndDate": "calendar dates; Accord places records relative to the index date",
    "DateAdjustment": "shifted record dates",
    "CorrelatedCriteria": "criteria nested inside a criterion",
}

Counts: TypeAlias = tuple[int, int | None]
Days: TypeAlias = tuple[int | None, int | None]
_N = TypeVar("_N")


def _is_set(value: object) -> bool:
    """Whether an attribute says anything: null, false, "", [] and {} say nothing."""
    if isinstance(value, Mapping):
        return any(_is_set(v) for v in value.values())
    if isinstance(value, list | str):
        return bool(value)
    return value is not None and value is not False


def _whole(value: object) -> int | None:
    """``value`` when it is a whole number (``true`` is not one), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Reading:
    """The reader's state, problems and notes, which every reading stage builds on."""

    def __init__(self, as_of: date, root: str) -> None:
        self.as_of = as_of
        self.root = root
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.sets: dict[int, tuple[Mapping[str, Any], str, str]] = {}
        self.converted: dict[int, tuple[ConceptSet, ...] | None] = {}
        self.labels: dict[ConceptSet, str] = {}
        self.outside_period = 0

    # Small readers

    def limit(self, raw: object, path: str) -> str | None:
        """A result limit's type, "First" when none is given."""
        if raw is None:
            return "First"
        obj = self.object(raw, path)
        if obj is None:
            return None
        self.refuse_unknown(obj, path, {"Type"}, "")
        kind = obj.get("Type", "First")
        names = {"first": "First", "all": "All", "last": "Last"}
        if not isinstance(kind, str) or kind.lower() not in names:
            self.problem(f"{path}.Type", f"expected First, All or Last, got {show(kind)}")
            return None
        return names[kind.lower()]

    def days(self, raw: object, path: str) -> int:
        number = _whole(raw)
        if number is not None and 0 <= number <= MAX_DAYS:
            return number
        self.problem(path, f"expected a number of days from 0 to {MAX_DAYS}, got {show(raw)}")
        return 0

    def flag(self, obj: Mapping[str, Any], key: str, path: str) -> bool:
        value = obj.get(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        self.problem(f"{path}.{key}", f"expected true or false, got {show(value)}")
        return False

    def text(self, raw: object, path: str) -> str | None:
        """A name from the document, made valid UTF-8; it is only ever data."""
        if raw is None:
            return None
        if not isinstance(raw, str):
            self.problem(path, f"expected a string, got {show(raw)}")
            return None
        return raw.encode("utf-8", "backslashreplace").decode("utf-8")

    def items(self, obj: Mapping[str, Any], key: str, path: str) -> list[tuple[int, object]]:
        """The items of an optional list field, numbered; a problem if it is no list."""
        raw = obj.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            here = f"{path}.{key}" if path else key
            self.problem(here, f"expected a list, got {show(raw)}")
            return []
        return list(enumerate(raw))

    def object(self, raw: object, path: str) -> Mapping[str, Any] | None:
        if isinstance(raw, Mapping):
            return raw
        self.problem(path, f"expected an object, got {show(raw)}")
        return None

    def refuse_unknown(
        self, obj: Mapping[str, Any], path: str, allowed: set[str], what: str
    ) -> None:
        """Refuse every attribute outside ``allowed`` that says something."""
        for key, value in obj.items():
            if key in allowed or not _is_set(value):
                continue
            self.refuse(f"{path}.{key}", _HINTS.get(str(key), what))

    def refuse(self, path: str, what: str) -> None:
        self.problem(
            path, f"not supported by Accord ({what})" if what else "not supported by Accord"
        )

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def build(self, path: str, make: Callable[[], _N]) -> _N | None:
        """A node from ``make``, or ``None`` with Accord's problems under ``path``."""
        try:
            return make()
        except QueryValidationError as error:
            self.problems += [
                f"{path}: Accord cannot represent it: {problem}" for problem in error.problems
            ]
            return None

    # Notes

    def describe(self, criterion: Criterion) -> str:
        """A short reading of a criterion for the notes."""
        if isinstance(criterion, AgeBetween):
            return f"AgeBetween({criterion.min_age}, {criterion.max_age})"
        if isinstance(criterion, SexIs):
            return f"SexIs({', '.join(map(str, criterion.concept_ids))})"
        if isinstance(criterion, Not):
            return f"Not({self.describe(criterion.criterion)})"
        if isinstance(criterion, AllOf | AnyOf):
            if not criterion.criteria:
                return "AllOf() (everyone)"
            inner = "; ".join(self.describe(c) for c in criterion.criteria)
            return f"{type(criterion).__name__}({inner})"
        if isinstance(criterion, AtLeastOf):
            inner = "; ".join(self.describe(c) for c in criterion.criteria)
            return f"AtLeastOf({criterion.count}: {inner})"
        if isinstance(criterion, EventCriterion):
            return self.describe_event(criterion)
        return type(criterion).__name__

    def describe_event(self, event: EventCriterion) -> str:
        parts = [self.labels.get(event.concepts, "a concept set")]
        if not event.concepts.include_descendants:
            parts[0] += " without descendants"
        default = (event.min_count, event.max_count, event.from_day, event.to_day)
        if default != (1, None, None, 0):
            parts.append(self.counts_text((event.min_count, event.max_count)))
            parts.append(self.days_text(event.from_day, event.to_day))
        if isinstance(event, ValuedEventCriterion):
            if event.min_value is not None:
                parts.append(f"value ≥ {event.min_value!r}")
            if event.max_value is not None:
                parts.append(f"value ≤ {event.max_value!r}")
            if event.unit_concept_ids:
                parts.append(f"unit in {', '.join(map(str, event.unit_concept_ids))}")
        return f"{type(event).__name__}({', '.join(parts)})"

    @staticmethod
    def counts_text(counts: Counts | Literal["always"]) -> str:
        if counts == "always":
            return "at least 0"
        low, high = counts
        if high is None:
            return f"at least {low}"
        if low == high:
            return "none" if high == 0 else f"exactly {low}"
        return f"at most {high}" if low == 0 else f"{low} to {high}"

    @staticmethod
    def days_text(start: int | None, end: int | None) -> str:
        if start is None and end is None:
            return "on any day"
        if start is None:
            return f"up to day {end}"
        if end is None:
            return f"from day {start}"
        return f"days {start} to {end}"
