"""Event criteria, correlated criteria with their windows and occurrences, and the
criteria groups of inclusion rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from accord.query.atlas.demographics import _DemographicReader
from accord.query.atlas.reading import (
    _EVERYONE,
    _HINTS,
    _WHAT_ACCORD_MATCHES,
    CRITERIA,
    MAX_GROUP_DEPTH,
    Counts,
    Days,
    _is_set,
    _whole,
)
from accord.query.kinds import MAX_DAYS, show
from accord.query.model import (
    AllOf,
    AnyOf,
    AtLeastOf,
    ConceptSet,
    Criterion,
    EventCriterion,
    Not,
    ValuedEventCriterion,
)


@dataclass(frozen=True)
class _Event:
    """A Circe criterion on one CDM table, read but not yet given counts and days."""

    kind: type[EventCriterion]
    concepts: tuple[ConceptSet, ...]
    values: Mapping[str, Any]
    first: bool
    path: str
    label: str


class _CriteriaReader(_DemographicReader):
    """Reads criteria and groups of them, on top of demographics and concept sets."""

    def event(self, raw: object, path: str, *, primary: bool) -> _Event | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        supported = ", ".join(CRITERIA)
        if len(obj) != 1:
            self.problem(
                path,
                f"expected an object with one criterion type ({supported}), got "
                f"{show(sorted(map(str, obj)))}",
            )
            return None
        ((kind_name, body),) = obj.items()
        here = f"{path}.{kind_name}"
        kind = CRITERIA.get(str(kind_name))
        if kind is None:
            self.problem(here, f"criterion type not supported by Accord; it supports {supported}")
            return None
        body_obj = self.object(body, here)
        if body_obj is None:
            return None
        valued = issubclass(kind, ValuedEventCriterion)
        allowed = {"CodesetId", "First", "CorrelatedCriteria"}
        if valued:
            allowed |= {"ValueAsNumber", "Unit"}
        before = len(self.problems)
        self.refuse_unknown(body_obj, here, allowed, _WHAT_ACCORD_MATCHES)
        if self.group_is_set(body_obj.get("CorrelatedCriteria")):
            self.refuse(f"{here}.CorrelatedCriteria", _HINTS["CorrelatedCriteria"])
        first = self.flag(body_obj, "First", here)
        if first and not primary:
            self.problem(
                f"{here}.First",
                "true (the person's first record ever) is not supported by Accord on a "
                "correlated criterion",
            )
        values: dict[str, Any] = {}
        if valued and _is_set(body_obj.get("ValueAsNumber")):
            bounds = self.value_range(body_obj["ValueAsNumber"], f"{here}.ValueAsNumber")
            if bounds is not None:
                values["min_value"], values["max_value"] = bounds
        if valued and _is_set(body_obj.get("Unit")):
            units = self.concept_list(body_obj["Unit"], f"{here}.Unit")
            if units is not None:
                values["unit_concept_ids"] = units
        found = self.concepts(body_obj.get("CodesetId"), f"{here}.CodesetId")
        if found is None or len(self.problems) > before:
            return None
        concept_sets, label = found
        return _Event(kind, concept_sets, values, first, here, label)

    def correlated(self, raw: object, path: str) -> Criterion | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        allowed = {
            "Criteria",
            "StartWindow",
            "EndWindow",
            "RestrictVisit",
            "IgnoreObservationPeriod",
            "Occurrence",
        }
        before = len(self.problems)
        self.refuse_unknown(obj, path, allowed, _WHAT_ACCORD_MATCHES)
        if _is_set(obj.get("EndWindow")):
            self.refuse(
                f"{path}.EndWindow",
                "a window on when records end; Accord places records by their start",
            )
        if self.flag(obj, "RestrictVisit", path):
            self.refuse(f"{path}.RestrictVisit", "records in the same visit as the index event")
        ignore_period = self.flag(obj, "IgnoreObservationPeriod", path)
        if obj.get("Criteria") is None:
            self.problem(f"{path}.Criteria", "required field missing")
            event = None
        else:
            event = self.event(obj["Criteria"], f"{path}.Criteria", primary=False)
        days = self.window(obj.get("StartWindow"), f"{path}.StartWindow", ignore_period)
        counts = self.occurrence(obj.get("Occurrence"), f"{path}.Occurrence")
        if event is None or days is None or counts is None or len(self.problems) > before:
            return None
        if not ignore_period:
            self.outside_period += 1
        if counts == "always":
            self.notes.append(f"{path}: at least 0 records always holds; it restricts nothing")
            return _EVERYONE
        low, high = counts
        start, end = days
        made = [
            self.build(
                path,
                partial(
                    event.kind,
                    cs,
                    min_count=low,
                    max_count=high,
                    from_day=start,
                    to_day=end,
                    **event.values,
                ),
            )
            for cs in event.concepts
        ]
        if any(c is None for c in made):
            return None
        criteria = tuple(c for c in made if c is not None)
        if len(criteria) == 1:
            return criteria[0]
        if counts == (1, None):
            return AnyOf(criteria)
        if high == 0:
            return AllOf(criteria)
        self.refuse(
            f"{path}.Occurrence",
            f"counting {self.counts_text(counts)} records over {event.label}, which mixes "
            "items with and without descendants and so is two sets in Accord; only 'at "
            "least 1' and 'none' can be said over two sets",
        )
        return None

    def window(self, raw: object, path: str, ignore_period: bool) -> Days | None:
        if raw is None:
            self.problem(path, "required field missing")
            return None
        obj = self.object(raw, path)
        if obj is None:
            return None
        before = len(self.problems)
        self.refuse_unknown(obj, path, {"Start", "End", "UseIndexEnd", "UseEventEnd"}, "")
        if self.flag(obj, "UseIndexEnd", path):
            self.refuse(
                f"{path}.UseIndexEnd",
                "a window from the index event's end date; Accord's index is a date",
            )
        if self.flag(obj, "UseEventEnd", path):
            self.refuse(f"{path}.UseEventEnd", "records placed by their end date")
        low = self.endpoint(obj.get("Start"), f"{path}.Start", ignore_period, lower=True)
        high = self.endpoint(obj.get("End"), f"{path}.End", ignore_period, lower=False)
        if len(self.problems) > before:
            return None
        if low is not None and high is not None and low > high:
            self.problem(
                path,
                f"starts on day {low} and ends on day {high}, before it starts; no record "
                "can fall in it",
            )
            return None
        return low, high

    def endpoint(self, raw: object, path: str, ignore_period: bool, *, lower: bool) -> int | None:
        """A window end as a day relative to the index, or ``None`` for no limit; after a
        problem the answer is ``None`` too, and the caller looks at the problems."""
        if raw is None:
            self.problem(path, "required field missing")
            return None
        obj = self.object(raw, path)
        if obj is None:
            return None
        self.refuse_unknown(obj, path, {"Days", "Coeff", "TimeUnit", "TimeUnitValue"}, "")
        unit = obj.get("TimeUnit")
        if unit is not None and str(unit).lower() != "day":
            self.refuse(f"{path}.TimeUnit", f"{show(unit)}; Accord windows are in days")
            return None
        coeff = obj.get("Coeff")
        if coeff not in (-1, 1) or isinstance(coeff, bool):
            self.problem(f"{path}.Coeff", f"expected -1 (before) or 1 (after), got {show(coeff)}")
            return None
        assert isinstance(coeff, int)
        days = obj.get("Days")
        other = obj.get("TimeUnitValue")
        if other is not None and other != days:
            self.problem(f"{path}.TimeUnitValue", f"{show(other)} differs from Days {show(days)}")
            return None
        if days is None:
            # Circe bounds an open end by the observation period, unless told not to.
            towards_start = coeff == -1
            if ignore_period or towards_start == lower:
                return None
            edge = "start" if towards_start else "end"
            side = "ends" if not lower else "starts"
            self.refuse(
                f"{path}.Days",
                f"a window that {side} at the {edge} of the observation period",
            )
            return None
        whole = _whole(days)
        if whole is None or whole < 0:
            self.problem(f"{path}.Days", f"expected a whole number of days, got {show(days)}")
            return None
        day = whole * coeff
        if abs(day) > MAX_DAYS:
            self.problem(f"{path}.Days", f"{days} days is more than the {MAX_DAYS} Accord allows")
            return None
        return day

    def occurrence(self, raw: object, path: str) -> Counts | Literal["always"] | None:
        if raw is None:
            self.problem(path, "required field missing")
            return None
        obj = self.object(raw, path)
        if obj is None:
            return None
        self.refuse_unknown(obj, path, {"Type", "Count", "IsDistinct", "CountColumn"}, "")
        kind, count = obj.get("Type"), obj.get("Count")
        problems = len(self.problems)
        if kind not in (0, 1, 2) or isinstance(kind, bool):
            self.problem(
                f"{path}.Type",
                f"expected 0 (exactly), 1 (at most) or 2 (at least), got {show(kind)}",
            )
        number = _whole(count)
        if number is None or not 0 <= number <= 10_000:
            self.problem(f"{path}.Count", f"expected a count from 0 to 10000, got {show(count)}")
        column = obj.get("CountColumn")
        if column is not None and column not in ("DOMAIN_CONCEPT", "START_DATE"):
            self.refuse(f"{path}.CountColumn", f"counting {show(column)}")
        if len(self.problems) > problems:
            return None
        assert number is not None
        counts: Counts | Literal["always"]
        if kind == 0:
            counts = (number, number)
        elif kind == 1:
            counts = (0, number)
        else:
            counts = "always" if number == 0 else (number, None)
        if self.flag(obj, "IsDistinct", path):
            # Distinct values number at least one exactly when records do, and none
            # exactly when there are none; other counts differ.
            same = not isinstance(counts, tuple) or counts == (1, None) or counts[1] == 0
            if not same:
                self.refuse(
                    f"{path}.IsDistinct",
                    f"counting {self.counts_text(counts)} distinct values; Accord counts "
                    "records, which agrees only for 'at least 1' and 'none'",
                )
                return None
        return counts

    # Criteria groups

    def group(self, raw: object, path: str, *, depth: int) -> Criterion | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        if depth > MAX_GROUP_DEPTH:
            self.problem(path, f"groups nested more than {MAX_GROUP_DEPTH} levels deep")
            return None
        self.refuse_unknown(
            obj, path, {"Type", "Count", "CriteriaList", "DemographicCriteriaList", "Groups"}, ""
        )
        kind = obj.get("Type")
        kinds = ("ALL", "ANY", "AT_LEAST", "AT_MOST")
        normal = kind.upper() if isinstance(kind, str) else None
        before = len(self.problems)
        if normal not in kinds:
            self.problem(f"{path}.Type", f"expected one of {', '.join(kinds)}, got {show(kind)}")
        count = obj.get("Count")
        number = _whole(count)
        if normal in ("AT_LEAST", "AT_MOST") and (number is None or number < 0):
            self.problem(f"{path}.Count", f"expected a whole number of criteria, got {show(count)}")
        members: list[Criterion | None] = [
            self.correlated(c, f"{path}.CriteriaList[{i}]")
            for i, c in self.items(obj, "CriteriaList", path)
        ]
        members += [
            self.demographic(d, f"{path}.DemographicCriteriaList[{i}]")
            for i, d in self.items(obj, "DemographicCriteriaList", path)
        ]
        members += [
            self.group(g, f"{path}.Groups[{i}]", depth=depth + 1)
            for i, g in self.items(obj, "Groups", path)
        ]
        if len(self.problems) > before or any(m is None for m in members):
            return None
        criteria = tuple(m for m in members if m is not None)
        if not criteria:
            self.notes.append(f"{path}: an empty group restricts nothing")
            return _EVERYONE
        assert isinstance(normal, str)
        return self.combine(normal, number, criteria, path)

    def combine(
        self, kind: str, count: int | None, criteria: tuple[Criterion, ...], path: str
    ) -> Criterion | None:
        size = len(criteria)

        def every() -> Criterion:
            return criteria[0] if size == 1 else AllOf(criteria)

        def some() -> Criterion:
            return criteria[0] if size == 1 else AnyOf(criteria)

        if kind == "ALL":
            return self.build(path, every)
        if kind == "ANY":
            return self.build(path, some)
        assert isinstance(count, int)
        if kind == "AT_LEAST":
            if count == 0:
                self.notes.append(f"{path}: at least 0 criteria always holds; it restricts nothing")
                return _EVERYONE
            if count > size:
                self.problem(
                    f"{path}.Count",
                    f"at least {count} of {size} criteria can never hold; no one would be "
                    "in the cohort",
                )
                return None
            if count == size:
                return self.build(path, every)
            if count == 1:
                return self.build(path, some)
            return self.build(path, lambda: AtLeastOf(count, criteria))
        if count >= size:
            self.notes.append(
                f"{path}: at most {count} of {size} criteria always holds; it restricts nothing"
            )
            return _EVERYONE
        if count == 0:
            return self.build(path, lambda: Not(some()))
        return self.build(path, lambda: Not(AtLeastOf(count + 1, criteria)))

    def group_is_set(self, raw: object) -> bool:
        if not isinstance(raw, Mapping):
            return _is_set(raw)
        return any(
            _is_set(raw.get(key)) for key in ("CriteriaList", "DemographicCriteriaList", "Groups")
        )
