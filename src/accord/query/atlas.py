"""Cohort definitions from OHDSI ATLAS: a Circe cohort expression as an Accord ``Cohort``.

ATLAS saves a cohort definition as a Circe *cohort expression*: concept sets, primary
criteria whose events give each person's index date, inclusion rules tested at that
date, and settings that shape cohort eras. ``cohort_from_atlas`` reads the common part
of it into a ``Cohort`` with an ``Entry``, so that ``CountPersons(result.cohort)``
counts the persons ATLAS puts in the cohort. Whatever Accord cannot express it refuses,
naming the JSON path of every such place in one ``QueryValidationError``; whatever it
carries over with a difference of meaning it says in ``AtlasImport.notes``.

How the parts map:

- ``ConceptSets``: each set becomes a ``ConceptSet``. Accord has one descendants flag
  per set, so a set whose included items differ in ``includeDescendants`` (and that
  excludes nothing) becomes two sets, one with descendants and one without, and every
  criterion on it an ``AnyOf`` (at least one record) or ``AllOf`` (no record) over
  both; any other count over such a set, and exclusions whose flag differs from that of
  the included items, are refused. ``includeMapped`` is noted: it adds source concepts,
  which never stand in the standard concept columns criteria match on.
- ``PrimaryCriteria``: its criteria become the ``Entry`` events, its
  ``ObservationWindow`` the entry's ``prior_days`` and ``post_days``. The index date is
  each person's first qualifying event, as with ``PrimaryCriteriaLimit`` "First".
  "All" is taken when no rule depends on which event is the index (rules on sex only)
  or when each person has one entry event at most; otherwise it, and "Last", are
  refused. ``First: true`` (the first record ever) on the only primary criterion adds
  "no record of the set before the index date", which makes it exact; on one of several
  primary criteria it is taken when it cannot change the index date (no observation
  window, no value filters), else refused.
- ``AdditionalCriteria`` and each of ``InclusionRules``: one criterion each. A criteria
  group of type ALL, ANY, AT_LEAST n or AT_MOST n becomes ``AllOf``, ``AnyOf``,
  ``AtLeastOf(n, ...)`` or ``Not(AtLeastOf(n + 1, ...))``; an empty group, "at least
  0" and "at most n of n" restrict nothing and become ``AllOf(())``.
- Correlated criteria: an event criterion whose ``min_count`` and ``max_count`` come
  from ``Occurrence`` (exactly n, at most n, at least n) and whose ``from_day`` and
  ``to_day`` are the ``StartWindow`` ends, ``Days`` times ``Coeff`` (no ``Days``: no
  limit on that side). Circe counts only records inside the observation period that
  holds the index date, unless ``IgnoreObservationPeriod`` is set; Accord counts every
  record in the window, which is noted. Windows on the index or event end date,
  ``EndWindow``, ``RestrictVisit``, and distinct counts that differ from record counts
  are refused.
- Demographic criteria: ``Age`` becomes ``AgeBetween`` (ages 0 to 150 at the index
  date, as Circe takes them), ``Gender`` becomes ``SexIs``.
- Attributes of a criterion other than ``CodesetId``, ``First`` and, on measurements
  and observations, ``ValueAsNumber`` and ``Unit`` are refused, each by its path.
- ``EndStrategy``, ``CensoringCriteria``, ``CollapseSettings``, ``QualifiedLimit`` and
  ``ExpressionLimit`` only shape cohort eras or pick among one person's events, never
  who is counted, and are noted as ignored; a ``CensorWindow`` can drop persons and is
  refused.

The cohort's ``as_of`` date is the importer's: records starting after it never count,
which Circe has no notion of. A cohort definition as ATLAS's WebAPI returns it (an
object with ``name`` and ``expression``) is read as well as the bare expression. Names
and descriptions in the document are only ever data: they appear in notes and errors
quoted, shortened and as valid UTF-8.

Example:
    >>> from datetime import date
    >>> imported = cohort_from_atlas(example_definition(), as_of=date(2025, 12, 31))
    >>> imported.name
    'Type 2 diabetes, new users of metformin'
    >>> type(imported.cohort.entry.events[0]).__name__, imported.cohort.entry.prior_days
    ('HasCondition', 365)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from importlib import resources
from typing import Any, Final, Literal, TypeAlias, TypeVar

from accord.query.kinds import MAX_CONCEPT_ID, MAX_DAYS, show
from accord.query.model import (
    AgeBetween,
    AllOf,
    AnyOf,
    AtLeastOf,
    Cohort,
    ConceptSet,
    CountPersons,
    Criterion,
    Entry,
    EventCriterion,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    HasObservation,
    HasProcedure,
    HasVisit,
    Not,
    QueryValidationError,
    SexIs,
    ValuedEventCriterion,
)

# Circe criterion types Accord has an event criterion for.
CRITERIA: Final[Mapping[str, type[EventCriterion]]] = {
    "ConditionOccurrence": HasCondition,
    "DrugExposure": HasDrugExposure,
    "Measurement": HasMeasurement,
    "Observation": HasObservation,
    "ProcedureOccurrence": HasProcedure,
    "VisitOccurrence": HasVisit,
}
EXAMPLES: Final[tuple[str, ...]] = ("t2dm_metformin",)

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
_TOP_LEVEL: Final = frozenset(
    {
        "cdmVersionRange",
        "Title",
        "ConceptSets",
        "PrimaryCriteria",
        "AdditionalCriteria",
        "QualifiedLimit",
        "ExpressionLimit",
        "InclusionRules",
        "EndStrategy",
        "CensoringCriteria",
        "CollapseSettings",
        "CensorWindow",
    }
)

Counts: TypeAlias = tuple[int, int | None]
Days: TypeAlias = tuple[int | None, int | None]
_N = TypeVar("_N")


@dataclass(frozen=True)
class AtlasImport:
    """An ATLAS cohort definition as an Accord cohort.

    ``name`` is the definition's name (its ``Title``, or the ``name`` of a WebAPI
    cohort definition) when it has one; ``notes`` say what was interpreted and how,
    and every difference of meaning from ATLAS that the import accepted.
    """

    cohort: Cohort
    name: str | None
    notes: tuple[str, ...]

    def count_persons(self) -> CountPersons:
        """The number of persons in the cohort, as a query for members."""
        return CountPersons(self.cohort)


def cohort_from_atlas(document: str | bytes | Mapping[str, Any], *, as_of: date) -> AtlasImport:
    """Read an ATLAS (Circe) cohort definition, as JSON text or parsed JSON.

    Raises ``QueryValidationError`` listing every problem with its JSON path in the
    document: a part Accord cannot express, a malformed part, a concept set that is
    empty or not defined.
    """
    parsed = _parse(document, "document")
    if not isinstance(parsed, Mapping):
        raise QueryValidationError(
            [f"document: expected a JSON object (an ATLAS cohort definition), got {show(parsed)}"]
        )
    root, name_value, name_path = "", parsed.get("Title"), "Title"
    if "PrimaryCriteria" not in parsed and "expression" in parsed:
        # A cohort definition as ATLAS's WebAPI returns it, expression inside.
        inner = parsed["expression"]
        if isinstance(inner, str):
            inner = _parse(inner, "expression")
        if not isinstance(inner, Mapping):
            raise QueryValidationError(
                [f"expression: expected a JSON object (a cohort expression), got {show(inner)}"]
            )
        root, name_value, name_path = "expression.", parsed.get("name"), "name"
        if inner.get("Title") is not None and name_value is None:
            name_value, name_path = inner.get("Title"), "expression.Title"
        parsed = inner
    reader = _Reader(as_of, root)
    name = reader.text(name_value, name_path)
    where = root.rstrip(".") or "document"
    try:
        cohort = reader.read(parsed)
    except RecursionError:
        raise QueryValidationError([f"{where}: nested too deeply to read"]) from None
    if reader.problems or cohort is None:
        raise QueryValidationError(reader.problems or [f"{where}: could not be read"])
    return AtlasImport(cohort, name, tuple(reader.notes))


def example_definition(name: str = "t2dm_metformin") -> str:
    """The text of an ATLAS cohort definition shipped with Accord, one of ``EXAMPLES``;
    its concepts are in the starter vocabulary, so it runs on synthetic data."""
    if name not in EXAMPLES:
        raise ValueError(f"no example named {name!r}; there are {', '.join(EXAMPLES)}")
    folder = resources.files("accord.query").joinpath("examples")
    return folder.joinpath(f"{name}.atlas.json").read_text(encoding="utf-8")


def _parse(text: str | bytes | Mapping[str, Any], path: str) -> object:
    if not isinstance(text, str | bytes):
        return text
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise QueryValidationError([f"{path}: not valid JSON: {error}"]) from None
    except RecursionError:
        raise QueryValidationError([f"{path}: nested too deeply to read"]) from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


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


def _uses_index(criterion: Criterion) -> bool:
    """Whether a criterion's answer can depend on which event is the index."""
    if isinstance(criterion, SexIs):
        return False
    if isinstance(criterion, Not):
        return _uses_index(criterion.criterion)
    if isinstance(criterion, AllOf | AnyOf | AtLeastOf):
        return any(_uses_index(c) for c in criterion.criteria)
    return True


@dataclass(frozen=True)
class _Event:
    """A Circe criterion on one CDM table, read but not yet given counts and days."""

    kind: type[EventCriterion]
    concepts: tuple[ConceptSet, ...]
    values: Mapping[str, Any]
    first: bool
    path: str
    label: str


@dataclass(frozen=True)
class _Primary:
    """The primary criteria as read: ``complete`` when every part of them was."""

    events: list[_Event]
    size: int
    complete: bool
    prior_days: int
    post_days: int
    limit: str | None
    limit_path: str


class _Reader:
    """Reads one cohort expression, collecting problems and notes as it goes."""

    def __init__(self, as_of: date, root: str) -> None:
        self.as_of = as_of
        self.root = root
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.sets: dict[int, tuple[Mapping[str, Any], str, str]] = {}
        self.converted: dict[int, tuple[ConceptSet, ...] | None] = {}
        self.labels: dict[ConceptSet, str] = {}
        self.outside_period = 0

    # The document

    def read(self, expression: Mapping[str, Any]) -> Cohort | None:
        root = self.root
        self.concept_sets(expression.get("ConceptSets"), root + "ConceptSets")
        primary = self.primary(expression.get("PrimaryCriteria"), root + "PrimaryCriteria")
        entry: Entry | None = None
        leading: list[Criterion] | None = None
        if primary is not None and primary.complete:
            entry = self.entry(primary.events, primary.prior_days, primary.post_days)
            leading = self.first_records(primary.events, primary.prior_days, primary.post_days)
        rules: list[Criterion] = []
        additional = expression.get("AdditionalCriteria")
        if self.group_is_set(additional):
            here = root + "AdditionalCriteria"
            criterion = self.group(additional, here, depth=0)
            if criterion is not None:
                rules.append(criterion)
                self.notes.append(
                    f"{here} (restricting initial events) → {self.describe(criterion)}"
                )
        for i, raw in self.items(expression, "InclusionRules", root.rstrip(".")):
            criterion = self.inclusion_rule(raw, f"{root}InclusionRules[{i}]")
            if criterion is not None:
                rules.append(criterion)
        if primary is not None and primary.limit is not None:
            self.primary_limit(primary, rules)
        self.result_limits(expression)
        self.era_settings(expression)
        unknown = sorted(str(k) for k in expression if k not in _TOP_LEVEL)
        if unknown:
            self.notes.append(
                "ignored fields ATLAS does not use either: " + ", ".join(map(show, unknown))
            )
        unused = sorted(set(self.sets) - set(self.converted))
        if unused:
            self.notes.append(
                "concept sets not used by any criterion: "
                + ", ".join(self.sets[i][2] for i in unused)
            )
        if self.outside_period:
            self.notes.append(
                f"{self.outside_period} correlated criteria: Circe counts only records inside "
                "the observation period holding the index date (IgnoreObservationPeriod "
                "false); Accord counts every record in the window, so a record outside the "
                "person's observation periods can change the answer"
            )
        self.notes.append(
            f"as_of {self.as_of.isoformat()}: records and entry events starting after it "
            "never count; Circe has no such date and reads the whole database"
        )
        if self.problems or entry is None or leading is None:
            return None
        criteria = (*leading, *rules)
        return self.build(
            root.rstrip(".") or "document",
            lambda: Cohort(criteria, as_of=self.as_of, entry=entry),
        )

    def entry(self, events: Sequence[_Event], prior_days: int, post_days: int) -> Entry | None:
        """The entry: every primary criterion as an event, one per concept set."""
        made = [
            self.build(e.path, partial(e.kind, cs, **e.values)) for e in events for cs in e.concepts
        ]
        entry_events = tuple(e for e in made if e is not None)
        if len(entry_events) < len(made):
            return None
        entry = self.build(
            self.root + "PrimaryCriteria", lambda: Entry(entry_events, prior_days, post_days)
        )
        if entry is not None:
            described = "; ".join(self.describe(e) for e in entry_events)
            self.notes.append(
                f"{self.root}PrimaryCriteria → entry at each person's first of: {described}; "
                f"with at least {prior_days} days observed before it and {post_days} after"
            )
        return entry

    def primary(self, raw: object, path: str) -> _Primary | None:
        if raw is None:
            self.problem(path, "required field missing: a cohort needs its entry events")
            return None
        obj = self.object(raw, path)
        if obj is None:
            return None
        self.refuse_unknown(
            obj, path, {"CriteriaList", "ObservationWindow", "PrimaryCriteriaLimit"}, ""
        )
        listed = self.items(obj, "CriteriaList", path)
        if obj.get("CriteriaList") in (None, []):
            self.problem(f"{path}.CriteriaList", "expected at least one entry event, got none")
        events = [
            self.event(raw_event, f"{path}.CriteriaList[{i}]", primary=True)
            for i, raw_event in listed
        ]
        prior_days, post_days = 0, 0
        window = obj.get("ObservationWindow")
        window_path = f"{path}.ObservationWindow"
        if window is not None:
            window_obj = self.object(window, window_path)
            if window_obj is not None:
                self.refuse_unknown(window_obj, window_path, {"PriorDays", "PostDays"}, "")
                prior_days = self.days(window_obj.get("PriorDays", 0), f"{window_path}.PriorDays")
                post_days = self.days(window_obj.get("PostDays", 0), f"{window_path}.PostDays")
        limit_path = f"{path}.PrimaryCriteriaLimit"
        limit = self.limit(obj.get("PrimaryCriteriaLimit"), limit_path)
        read = [e for e in events if e is not None]
        complete = bool(events) and len(read) == len(events) and limit is not None
        return _Primary(read, len(events), complete, prior_days, post_days, limit, limit_path)

    def first_records(
        self, events: Sequence[_Event], prior_days: int, post_days: int
    ) -> list[Criterion] | None:
        """Criteria that make ``First: true`` on primary criteria exact, or ``None``."""
        firsts = [e for e in events if e.first]
        if not firsts:
            return []
        if len(events) == 1:
            event = events[0]
            nothing_before = [
                self.build(event.path, partial(event.kind, cs, min_count=0, max_count=0, to_day=-1))
                for cs in event.concepts
            ]
            if any(c is None for c in nothing_before):
                return None
            made = [c for c in nothing_before if c is not None]
            criterion = made[0] if len(made) == 1 else AllOf(tuple(made))
            ties = ""
            if any(_is_set(v) for v in event.values.values()):
                ties = (
                    "; when several records of the set fall on that first day, Circe tests "
                    "the value and unit of the one with the lowest id, Accord of any of them"
                )
            self.notes.append(
                f"{event.path}.First: true (the person's first record of {event.label} "
                f"ever) → the entry event must have no record of the set before it: "
                f"{self.describe(criterion)}{ties}"
            )
            return [criterion]
        valued = [e for e in firsts if any(_is_set(v) for v in e.values.values())]
        if prior_days or post_days or valued:
            reason = (
                "the first record ever must itself meet the value or unit filters"
                if valued
                else "the first record ever must itself lie in the observation window"
            )
            for event in firsts:
                self.problem(
                    f"{event.path}.First",
                    "true on one of several primary criteria is not supported by Accord: "
                    f"in Circe {reason}, which Accord cannot say for one entry event among "
                    "several; Accord already enters each person at their first qualifying "
                    "entry event",
                )
            return None
        self.notes.append(
            "First: true on "
            + ", ".join(e.path for e in firsts)
            + ": the earliest of the entry events is the same date with or without it, "
            "unless a first record lies outside every observation period, where Circe "
            "drops it and Accord enters at the next record"
        )
        return []

    def primary_limit(self, primary: _Primary, rules: Sequence[Criterion]) -> None:
        limit, path, events = primary.limit, primary.limit_path, primary.events
        if limit == "First":
            return
        if limit == "Last":
            self.problem(
                f"{path}.Type",
                "'Last' is not supported by Accord: its index date is each person's first "
                "qualifying entry event",
            )
            return
        if primary.size == 1 and events and events[0].first:
            self.notes.append(
                f"{path} 'All': with First: true each person has one entry event at most, "
                "so it is the same as 'First'"
            )
        elif any(_uses_index(rule) for rule in rules):
            self.problem(
                f"{path}.Type",
                "'All' is not supported by Accord here: Circe keeps a person when any of "
                "their entry events meets the rules, Accord tests the rules at the first "
                "one only, and these rules depend on the index date; use 'First' (earliest "
                "event)",
            )
        else:
            self.notes.append(
                f"{path} 'All': no rule depends on which event is the index, so entering "
                "at each person's first event counts the same persons"
            )

    def inclusion_rule(self, raw: object, path: str) -> Criterion | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        name = self.text(obj.get("name"), f"{path}.name")
        self.text(obj.get("description"), f"{path}.description")
        if obj.get("expression") is None:
            self.problem(f"{path}.expression", "required field missing")
            return None
        criterion = self.group(obj["expression"], f"{path}.expression", depth=0)
        if criterion is not None:
            title = f" {show(name, 60)}" if name is not None else ""
            self.notes.append(f"{path}{title} → {self.describe(criterion)}")
        return criterion

    def result_limits(self, expression: Mapping[str, Any]) -> None:
        for key in ("QualifiedLimit", "ExpressionLimit"):
            path = self.root + key
            limit = self.limit(expression.get(key), path)
            if limit is not None and limit != "First":
                self.notes.append(
                    f"{path} {show(limit)} ignored: it picks among one person's events and "
                    "does not change who is counted once the index is the first event"
                )

    def era_settings(self, expression: Mapping[str, Any]) -> None:
        censor = expression.get("CensorWindow")
        if _is_set(censor):
            self.problem(
                self.root + "CensorWindow",
                "not supported by Accord: clipping cohort eras to calendar dates drops "
                "persons whose era falls outside them",
            )
        ignored = []
        if _is_set(expression.get("EndStrategy")):
            strategy = expression["EndStrategy"]
            kinds = ", ".join(map(str, strategy)) if isinstance(strategy, Mapping) else ""
            ignored.append(f"EndStrategy ({kinds})" if kinds else "EndStrategy")
        censoring = expression.get("CensoringCriteria")
        if _is_set(censoring):
            many = len(censoring) if isinstance(censoring, list) else 1
            ignored.append(f"CensoringCriteria ({many})")
        if _is_set(expression.get("CollapseSettings")):
            ignored.append("CollapseSettings")
        if ignored:
            self.notes.append(
                "ignored, as they shape cohort eras (exit dates), which Accord does not "
                "produce, and never change who is counted: " + ", ".join(ignored)
            )

    # Concept sets

    def concept_sets(self, raw: object, path: str) -> None:
        if raw is None:
            return
        if not isinstance(raw, list):
            self.problem(path, f"expected a list of concept sets, got {show(raw)}")
            return
        for i, item in enumerate(raw):
            here = f"{path}[{i}]"
            obj = self.object(item, here)
            if obj is None:
                continue
            number = _whole(obj.get("id"))
            if number is None:
                self.problem(f"{here}.id", f"expected a whole number, got {show(obj.get('id'))}")
                continue
            if number in self.sets:
                self.problem(f"{here}.id", f"{number} repeats {self.sets[number][1]}.id")
                continue
            name = self.text(obj.get("name"), f"{here}.name")
            label = (
                f"concept set {show(name, 60)} (id {number})" if name else f"concept set {number}"
            )
            self.sets[number] = (obj, here, label)

    def concepts(self, raw: object, path: str) -> tuple[tuple[ConceptSet, ...], str] | None:
        """The concept sets a ``CodesetId`` names, and its label."""
        if raw is None:
            self.problem(
                path,
                "missing: Circe then matches every record of the table, Accord needs a concept set",
            )
            return None
        number = _whole(raw)
        if number is None:
            self.problem(path, f"expected the id of a concept set, got {show(raw)}")
            return None
        if number not in self.sets:
            defined = ", ".join(str(i) for i in sorted(self.sets)) or "none"
            self.problem(
                path, f"concept set {number} is not defined in ConceptSets (defined: {defined})"
            )
            return None
        if number not in self.converted:
            self.converted[number] = self.concept_set(*self.sets[number])
        converted = self.converted[number]
        return None if converted is None else (converted, self.sets[number][2])

    def concept_set(
        self, obj: Mapping[str, Any], path: str, label: str
    ) -> tuple[ConceptSet, ...] | None:
        expression = obj.get("expression")
        items_path = f"{path}.expression.items"
        if expression is None:
            self.problem(path, f"{label} has no expression: it names no concepts")
            return None
        expression_obj = self.object(expression, f"{path}.expression")
        if expression_obj is None:
            return None
        included: dict[bool, list[int]] = {True: [], False: []}
        excluded: dict[bool, list[int]] = {True: [], False: []}
        first_path: dict[int, str] = {}
        mapped: list[int] = []
        before = len(self.problems)
        for j, raw_item in self.items(expression_obj, "items", f"{path}.expression"):
            here = f"{items_path}[{j}]"
            item = self.object(raw_item, here)
            if item is None:
                continue
            concept = item.get("concept")
            concept_obj = self.object(concept, f"{here}.concept") if concept is not None else None
            if concept is None:
                self.problem(f"{here}.concept", "required field missing")
            if concept_obj is None:
                continue
            concept_id = self.concept_id(
                concept_obj.get("CONCEPT_ID"), f"{here}.concept.CONCEPT_ID"
            )
            is_excluded = self.flag(item, "isExcluded", here)
            descendants = self.flag(item, "includeDescendants", here)
            if self.flag(item, "includeMapped", here) and concept_id is not None:
                mapped.append(concept_id)
            if concept_id is None:
                continue
            side = excluded if is_excluded else included
            other = included if is_excluded else excluded
            if any(concept_id in ids for ids in other.values()):
                self.problem(
                    here,
                    f"concept {concept_id} is both included and excluded in {label} (first "
                    f"at {first_path[concept_id]}); remove one",
                )
            elif concept_id not in side[descendants]:
                side[descendants].append(concept_id)
                first_path.setdefault(concept_id, here)
        if len(self.problems) > before:
            return None
        if not included[True] and not included[False]:
            self.problem(path, f"{label} includes no concepts, so no record can match it")
            return None
        if mapped:
            self.notes.append(
                f"{path}: includeMapped on concepts {', '.join(map(str, mapped))} of {label} "
                "adds source concepts mapped to them, which never stand in the standard "
                "concept columns Accord and Circe match criteria on; left out"
            )
        flags = [flag for flag in (True, False) if included[flag]]
        excluded_flags = [flag for flag in (True, False) if excluded[flag]]
        if len(flags) == 1 and set(excluded_flags) <= set(flags):
            flag = flags[0]
            made = self.build(
                items_path,
                lambda: ConceptSet(tuple(included[flag]), flag, tuple(excluded[flag])),
            )
            return None if made is None else self.labelled((made,), label)
        if not excluded_flags:
            with_descendants = self.build(
                items_path, lambda: ConceptSet(tuple(included[True]), True)
            )
            without = self.build(items_path, lambda: ConceptSet(tuple(included[False]), False))
            if with_descendants is None or without is None:
                return None
            self.notes.append(
                f"{path}: {label} mixes items with and without descendants; Accord has one "
                "flag per set, so it is two sets, {with descendants: "
                f"{', '.join(map(str, included[True]))}}} and {{without: "
                f"{', '.join(map(str, included[False]))}}}, and criteria on it hold for "
                "either"
            )
            return self.labelled((with_descendants, without), label)
        self.problem(
            items_path,
            f"not supported by Accord: {label} excludes concepts with a different "
            "includeDescendants setting from the concepts it includes; Accord applies one "
            "setting to a whole set, exclusions included",
        )
        return None

    def labelled(self, sets: tuple[ConceptSet, ...], label: str) -> tuple[ConceptSet, ...]:
        for concept_set in sets:
            self.labels.setdefault(concept_set, label)
        return sets

    def concept_id(self, raw: object, path: str) -> int | None:
        number = _whole(raw)
        if number is not None and 0 < number <= MAX_CONCEPT_ID:
            return number
        self.problem(path, f"expected a positive integer concept id, got {show(raw)}")
        return None

    def concept_list(self, raw: object, path: str) -> tuple[int, ...] | None:
        """Concept ids of a list of concepts such as ``Gender`` or ``Unit``."""
        if not isinstance(raw, list):
            self.problem(path, f"expected a list of concepts, got {show(raw)}")
            return None
        ids: list[int] = []
        before = len(self.problems)
        for i, item in enumerate(raw):
            obj = self.object(item, f"{path}[{i}]")
            if obj is None:
                continue
            concept_id = self.concept_id(obj.get("CONCEPT_ID"), f"{path}[{i}].CONCEPT_ID")
            if concept_id is not None and concept_id not in ids:
                ids.append(concept_id)
        return tuple(ids) if len(self.problems) == before else None

    # Criteria

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
