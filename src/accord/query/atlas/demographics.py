"""Demographic criteria (age and sex) and the numeric ranges of ages and values."""

from __future__ import annotations

import math

from accord.query.atlas.concept_sets import _ConceptSetReader
from accord.query.atlas.reading import _EVERYONE, _OLDEST, _is_set, _whole
from accord.query.kinds import show
from accord.query.model import (
    AgeBetween,
    AllOf,
    AnyOf,
    Criterion,
    SexIs,
)


class _DemographicReader(_ConceptSetReader):
    """Reads demographic criteria and numeric ranges, on top of concept sets."""

    def demographic(self, raw: object, path: str) -> Criterion | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        before = len(self.problems)
        self.refuse_unknown(
            obj, path, {"Age", "Gender"}, "Accord's demographic criteria are age and sex"
        )
        parts: list[Criterion] = []
        if _is_set(obj.get("Age")):
            age = self.age(obj["Age"], f"{path}.Age")
            if age is not None:
                parts.append(age)
        if _is_set(obj.get("Gender")):
            sexes = self.concept_list(obj["Gender"], f"{path}.Gender")
            if sexes is not None:
                parts.append(SexIs(sexes))
        if len(self.problems) > before:
            return None
        if not parts:
            self.notes.append(f"{path}: an empty demographic criterion restricts nothing")
            return _EVERYONE
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def age(self, raw: object, path: str) -> Criterion | None:
        found = self.numeric_range(raw, path, whole=True)
        if found is None:
            return None
        op, value, extent = found
        low, high = int(value), int(extent) if extent is not None else 0
        ranges: list[tuple[int, int]] = {
            "lt": [(0, low - 1)],
            "lte": [(0, low)],
            "eq": [(low, low)],
            "!eq": [(0, low - 1), (low + 1, _OLDEST)],
            "gt": [(low + 1, _OLDEST)],
            "gte": [(low, _OLDEST)],
            "bt": [(low, high)],
            "!bt": [(0, low - 1), (high + 1, _OLDEST)],
        }[op]
        kept = [(max(a, 0), min(b, _OLDEST)) for a, b in ranges if max(a, 0) <= min(b, _OLDEST)]
        if not kept:
            self.problem(path, f"no age from 0 to {_OLDEST} meets {op} {show(raw)}")
            return None
        ages = [AgeBetween(a, b) for a, b in kept]
        return ages[0] if len(ages) == 1 else AnyOf(tuple(ages))

    def value_range(self, raw: object, path: str) -> tuple[float | None, float | None] | None:
        found = self.numeric_range(raw, path, whole=False)
        if found is None:
            return None
        op, value, extent = found
        if op in ("!eq", "!bt"):
            self.refuse(f"{path}.Op", f"{op}: a value outside a range")
            return None
        if op in ("lt", "gt"):
            # Accord's bounds are inclusive; the next float past the value excludes it.
            towards = math.inf if op == "gt" else -math.inf
            bound = math.nextafter(value, towards)
            self.notes.append(
                f"{path}: {op} {value:g} → {'min' if op == 'gt' else 'max'}_value {bound!r}, "
                "the next number past it, as Accord's bounds are inclusive"
            )
            return (bound, None) if op == "gt" else (None, bound)
        return {
            "lte": (None, value),
            "eq": (value, value),
            "gte": (value, None),
            "bt": (value, extent),
        }[op]

    def numeric_range(
        self, raw: object, path: str, *, whole: bool
    ) -> tuple[str, float, float | None] | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        before = len(self.problems)
        self.refuse_unknown(obj, path, {"Value", "Op", "Extent"}, "")
        op = obj.get("Op")
        ops = ("lt", "lte", "eq", "!eq", "gt", "gte", "bt", "!bt")
        if op not in ops:
            self.problem(f"{path}.Op", f"expected one of {', '.join(ops)}, got {show(op)}")
        value = self.number(obj.get("Value"), f"{path}.Value", whole=whole)
        extent = None
        if op in ("bt", "!bt"):
            extent = self.number(obj.get("Extent"), f"{path}.Extent", whole=whole)
            if value is not None and extent is not None and value > extent:
                self.problem(
                    path,
                    f"Value {show(obj.get('Value'))} is greater than Extent "
                    f"{show(obj.get('Extent'))}; the range is empty",
                )
        if len(self.problems) > before or value is None:
            return None
        assert isinstance(op, str)
        return op, value, extent

    def number(self, raw: object, path: str, *, whole: bool) -> float | None:
        value: float | None = None
        number = _whole(raw)
        if number is not None and abs(number) < 2**53:
            value = float(number)
        elif isinstance(raw, float) and math.isfinite(raw):
            value = raw
        if value is None or (whole and not value.is_integer()):
            what = "a whole number" if whole else "a finite number"
            self.problem(path, f"expected {what}, got {show(raw)}")
            return None
        return value
