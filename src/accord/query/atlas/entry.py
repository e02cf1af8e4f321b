"""The document as a whole: its primary criteria as the ``Entry`` with their limit,
its additional criteria and inclusion rules, and the settings that only shape eras."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from accord.query.atlas.criteria import _CriteriaReader, _Event
from accord.query.atlas.reading import _is_set
from accord.query.kinds import show
from accord.query.model import (
    AllOf,
    AnyOf,
    AtLeastOf,
    Cohort,
    Criterion,
    Entry,
    Not,
    SexIs,
)

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
class _Primary:
    """The primary criteria as read: ``complete`` when every part of them was."""

    events: list[_Event]
    size: int
    complete: bool
    prior_days: int
    post_days: int
    limit: str | None
    limit_path: str


class _Reader(_CriteriaReader):
    """Reads one cohort expression, collecting problems and notes as it goes."""

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
