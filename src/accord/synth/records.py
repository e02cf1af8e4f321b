"""Column arrays of one member's generated events, before they become CDM tables.

Persons are local indices ``0..n-1`` (``person_id`` is the index plus one); events point
at visits by index into the member's ``Visits`` (``-1`` for none). Every class is a bundle
of equal-length arrays with ``take`` and ``concat`` that keep those links right.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self, cast

import numpy as np
from numpy.typing import NDArray

I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

NO_VISIT = -1


def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cast(Any, kind)))


class Columns:
    """Equal-length arrays as the fields of a frozen dataclass."""

    def columns(self) -> dict[str, Any]:
        """Field name to array."""
        return {name: getattr(self, name) for name in _field_names(type(self))}

    def __len__(self) -> int:
        return len(getattr(self, _field_names(type(self))[0]))

    def take(self, index: NDArray[Any]) -> Self:
        """The rows at ``index`` (an index array or a boolean mask)."""
        return type(self)(**{name: value[index] for name, value in self.columns().items()})

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        """All rows of ``parts``, in order; links are not adjusted."""
        return cls(
            **{
                name: np.concatenate([getattr(part, name) for part in parts])
                for name in _field_names(cls)
            }
        )

    def relinked(self, person_map: I64, visit_map: I64 | None) -> Self:
        """The same rows with persons (and visits, where the rows have them) renumbered."""
        values = self.columns()
        values["person"] = person_map[values["person"]]
        if "visit" in values and visit_map is not None:
            visit = values["visit"]
            values["visit"] = np.where(visit >= 0, visit_map[np.maximum(visit, 0)], NO_VISIT)
        return type(self)(**values)


@dataclass(frozen=True)
class Visits(Columns):
    person: I64
    start: I32
    end: I32
    concept: I32
    provider: I32
    reason: NDArray[np.int8]
    """Why the visit happened: ``ROUTINE``, ``ILLNESS`` (influenza-like) or ``VACCINATION``."""


ROUTINE, ILLNESS, VACCINATION = 0, 1, 2


@dataclass(frozen=True)
class Conditions(Columns):
    person: I64
    visit: I64
    date: I32
    concept: I32
    source_concept: I32


@dataclass(frozen=True)
class Drugs(Columns):
    person: I64
    visit: I64
    start: I32
    end: I32
    concept: I32
    days_supply: I32


@dataclass(frozen=True)
class Measurements(Columns):
    person: I64
    visit: I64
    date: I32
    concept: I32
    value: F64
    unit: I32
    lab: NDArray[np.bool_]


@dataclass(frozen=True)
class Procedures(Columns):
    person: I64
    visit: I64
    date: I32
    concept: I32
    provider: I32


@dataclass(frozen=True)
class Periods(Columns):
    """One observation period per person, in person order."""

    start: I32
    end: I32


@dataclass(frozen=True)
class Events:
    """Everything recorded for a set of persons at one member."""

    periods: Periods
    visits: Visits
    conditions: Conditions
    drugs: Drugs
    measurements: Measurements
    procedures: Procedures

    def relinked(self, person_map: I64, persons: int) -> Events:
        """These events moved onto other person indices (``person_map[old] = new``, or -1
        for a person who has no events here); the periods are spread into an array of
        ``persons`` rows, rows of nobody moved there being zero."""
        visit_map = np.arange(len(self.visits), dtype=np.int64)
        moved = person_map >= 0
        start = np.zeros(persons, dtype=np.int32)
        end = np.zeros(persons, dtype=np.int32)
        start[person_map[moved]] = self.periods.start[moved]
        end[person_map[moved]] = self.periods.end[moved]
        return Events(
            periods=Periods(start=start, end=end),
            visits=self.visits.relinked(person_map, None),
            conditions=self.conditions.relinked(person_map, visit_map),
            drugs=self.drugs.relinked(person_map, visit_map),
            measurements=self.measurements.relinked(person_map, visit_map),
            procedures=self.procedures.relinked(person_map, visit_map),
        )

    def for_persons(self, keep: NDArray[np.bool_]) -> Events:
        """Only the events of persons where ``keep`` is true; person indices unchanged,
        visit links renumbered to the kept visits."""
        kept_visits = np.flatnonzero(keep[self.visits.person])
        visit_map = np.full(len(self.visits), NO_VISIT, dtype=np.int64)
        visit_map[kept_visits] = np.arange(len(kept_visits))
        identity = np.arange(len(keep), dtype=np.int64)

        def subset(rows: Any) -> Any:
            return rows.take(np.flatnonzero(keep[rows.person])).relinked(identity, visit_map)

        return Events(
            periods=self.periods,
            visits=self.visits.take(kept_visits),
            conditions=subset(self.conditions),
            drugs=subset(self.drugs),
            measurements=subset(self.measurements),
            procedures=subset(self.procedures),
        )

    @staticmethod
    def merge(first: Events, second: Events, second_rows: NDArray[np.bool_]) -> Events:
        """Both sets of events over the same persons; periods come from ``second`` where
        ``second_rows`` is true. Visit links of ``second`` are shifted past ``first``'s."""
        shift = len(first.visits)

        def shifted(rows: Any) -> Any:
            values = rows.columns()
            values["visit"] = np.where(values["visit"] >= 0, values["visit"] + shift, NO_VISIT)
            return type(rows)(**values)

        return Events(
            periods=Periods(
                start=np.where(second_rows, second.periods.start, first.periods.start),
                end=np.where(second_rows, second.periods.end, first.periods.end),
            ),
            visits=Visits.concat([first.visits, second.visits]),
            conditions=Conditions.concat([first.conditions, shifted(second.conditions)]),
            drugs=Drugs.concat([first.drugs, shifted(second.drugs)]),
            measurements=Measurements.concat([first.measurements, shifted(second.measurements)]),
            procedures=Procedures.concat([first.procedures, shifted(second.procedures)]),
        )
