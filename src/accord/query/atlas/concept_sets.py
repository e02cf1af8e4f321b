"""Concept sets: Circe's ``ConceptSets`` read into Accord ``ConceptSet`` nodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accord.query.atlas.reading import _Reading, _whole
from accord.query.kinds import MAX_CONCEPT_ID, show
from accord.query.model import (
    ConceptSet,
)


class _ConceptSetReader(_Reading):
    """Reads the concept sets a document defines and the ones its criteria name."""

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
