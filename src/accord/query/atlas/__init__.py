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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any, Final

from accord.query.atlas.entry import _Reader
from accord.query.atlas.reading import CRITERIA, MAX_GROUP_DEPTH
from accord.query.kinds import show
from accord.query.model import Cohort, CountPersons
from accord.query.nodes import QueryValidationError

__all__ = [
    "CRITERIA",
    "EXAMPLES",
    "MAX_GROUP_DEPTH",
    "AtlasImport",
    "cohort_from_atlas",
    "example_definition",
]

EXAMPLES: Final[tuple[str, ...]] = ("t2dm_metformin",)


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
    folder = resources.files("accord.query.atlas").joinpath("examples")
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
