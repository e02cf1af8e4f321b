"""The query model: a small tree of frozen, validated nodes.

A researcher's analysis travels between hub and nodes as JSON and becomes this tree on
arrival. Every node checks itself when it is built, so a tree that exists is a tree every
engine can compile; engines never re-validate. JSON decoding collects every problem in
the document, each with its JSON path (``cohort.criteria[1].concepts.ids[0]``), so a
researcher fixes a query in one round trip.

Example:
    >>> from datetime import date
    >>> q = CountPersons(Cohort((AgeBetween(45, 75),), as_of=date(2025, 12, 31)))
    >>> query_from_json(q.to_json()) == q
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from typing import Any, ClassVar, Self, TypeAlias, cast

from accord.errors import QueryError
from accord.query.kinds import (
    MAX_CONCEPT_IDS,
    MAX_COVARIATES,
    MAX_CRITERIA,
    MAX_DEPTH,
    Boolean,
    Choice,
    ConceptIds,
    Date,
    Integer,
    Kind,
    Number,
    Numbers,
    at,
    show,
    where,
)


class QueryValidationError(QueryError):
    """A query failed validation; ``problems`` lists each one with its JSON path."""

    # A document built to fail everywhere should not make a megabyte-long message.
    SHOWN: ClassVar[int] = 50

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        shown = list(self.problems[: self.SHOWN])
        if count > self.SHOWN:
            shown.append(f"and {count - self.SHOWN} more")
        super().__init__(f"invalid query ({count} {noun}): " + "; ".join(shown))


class Node:
    """Base of every query node: validation, JSON encoding and decoding.

    A subclass is a frozen dataclass whose fields carry their ``Kind`` in the field
    metadata; ``TYPE`` is the JSON discriminator and ``CATEGORY`` says where in a tree
    the node may stand.
    """

    TYPE: ClassVar[str]
    CATEGORY: ClassVar[str]
    _registry: ClassVar[dict[str, type[Node]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            Node._registry[cls.TYPE] = cls

    def __post_init__(self) -> None:
        problems: list[str] = []
        good: dict[str, Any] = {}
        for f in fields(cast(Any, self)):
            value = getattr(self, f.name)
            found = _kind(f.metadata).check(value, f.name)
            problems += found
            if not found:
                good[f.name] = value
        problems += self.relations(good, "")
        if problems:
            raise QueryValidationError(problems)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        """Checks across fields; ``values`` holds only the fields that are valid alone."""
        return []

    def to_json(self) -> dict[str, Any]:
        """This node as JSON-ready data, every field spelled out (defaults included)."""
        encoded: dict[str, Any] = {"type": self.TYPE}
        for f in fields(cast(Any, self)):
            encoded[f.name] = _kind(f.metadata).encode(getattr(self, f.name))
        return encoded

    @classmethod
    def from_json(cls, obj: object) -> Self:
        """Decode and validate ``obj``; raise ``QueryValidationError`` with every problem."""
        allowed = (cls,) if "TYPE" in cls.__dict__ else node_types(cls.CATEGORY)
        problems: list[str] = []
        node = decode_node(obj, "", allowed, problems, depth=0)
        if problems or node is None:
            raise QueryValidationError(problems)
        return cast(Self, node)


def node_types(category: str) -> tuple[type[Node], ...]:
    """Every registered node type of a category, in registration order."""
    return tuple(c for c in Node._registry.values() if category == c.CATEGORY)


def _kind(metadata: Mapping[str, Any]) -> Kind:
    return cast(Kind, metadata["kind"])


def decode_node(
    raw: object,
    path: str,
    allowed: tuple[type[Node], ...],
    problems: list[str],
    *,
    depth: int,
) -> Node | None:
    """Decode one node of one of the ``allowed`` types, appending problems found."""
    names = ", ".join(repr(c.TYPE) for c in allowed)
    if depth > MAX_DEPTH:
        problems.append(f"{where(path)}: nested more than {MAX_DEPTH} levels deep")
        return None
    if not isinstance(raw, Mapping):
        kind = "of type" if len(allowed) == 1 else "of one of the types"
        problems.append(f"{where(path)}: expected an object {kind} {names}, got {show(raw)}")
        return None
    cls = next((c for c in allowed if raw.get("type") == c.TYPE), None)
    if cls is None:
        got = f"got {show(raw['type'])}" if "type" in raw else "field missing"
        problems.append(f"{at(path, 'type')}: expected one of {names}, {got}")
        return None
    before = len(problems)
    values: dict[str, Any] = {}
    known = {"type"}
    for f in fields(cast(Any, cls)):
        known.add(f.name)
        field_path = at(path, f.name)
        if f.name not in raw:
            if f.default is MISSING:
                problems.append(f"{field_path}: required field missing")
            else:
                values[f.name] = f.default
            continue
        found: list[str] = []
        value = _kind(f.metadata).decode(raw[f.name], field_path, found, depth + 1)
        problems += found
        if not found:
            values[f.name] = value
    problems += [f"{at(path, str(k))}: unknown field" for k in raw if k not in known]
    problems += cls.relations(values, path)
    if len(problems) > before:
        return None
    return cls(**values)


class Child(Kind):
    """A field holding one node of a category."""

    def __init__(self, category: str, what: str) -> None:
        self.category = category
        self.what = what

    def check(self, value: object, path: str) -> list[str]:
        if isinstance(value, node_types(self.category)):
            return []
        return [f"{path}: expected {self.what}, got {type(value).__name__}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        return decode_node(raw, path, node_types(self.category), problems, depth=depth)

    def encode(self, value: Any) -> Any:
        return cast(Node, value).to_json()


class Children(Kind):
    """A field holding a tuple of nodes of a category."""

    def __init__(self, category: str, item: str, items: str, *, most: int) -> None:
        self.category = category
        self.item = item
        self.items = items
        self.most = most

    def check(self, value: object, path: str) -> list[str]:
        if not isinstance(value, tuple):
            return [f"{path}: expected a tuple of {self.items}, got {type(value).__name__}"]
        allowed = node_types(self.category)
        problems = [
            f"{path}[{i}]: expected {self.item}, got {type(item).__name__}"
            for i, item in enumerate(value)
            if not isinstance(item, allowed)
        ]
        if len(value) > self.most:
            problems.append(f"{path}: at most {self.most} allowed, got {len(value)}")
        return problems

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        if not isinstance(raw, list):
            problems.append(f"{path}: expected a list of {self.items}, got {show(raw)}")
            return None
        if len(raw) > self.most:
            problems.append(f"{path}: at most {self.most} allowed, got {len(raw)}")
            return None
        allowed = node_types(self.category)
        return tuple(
            decode_node(item, f"{path}[{i}]", allowed, problems, depth=depth)
            for i, item in enumerate(raw)
        )

    def encode(self, value: Any) -> Any:
        return [cast(Node, item).to_json() for item in value]


def _meta(kind: Kind) -> dict[str, Kind]:
    return {"kind": kind}


_CONCEPT_IDS = _meta(ConceptIds(required=True, most=MAX_CONCEPT_IDS))
_EXCLUDED_IDS = _meta(ConceptIds(required=False, most=MAX_CONCEPT_IDS))
_AGE = _meta(Integer(0, 150, "an age in whole years from 0 to 150"))
_MIN_COUNT = _meta(Integer(1, 10_000, "a number of records from 1 to 10000"))
_WITHIN_DAYS = _meta(
    Integer(1, 36_500, "a number of days from 1 to 36500, or null for any time", optional=True)
)
_CONCEPT_SET = _meta(Child("concept_set", "a ConceptSet"))
_CRITERION = _meta(Child("criterion", "a criterion"))


def _bounds_in_order(values: Mapping[str, Any], path: str, low: str, high: str) -> list[str]:
    lo, hi = values.get(low), values.get(high)
    if lo is not None and hi is not None and lo > hi:
        return [f"{at(path, low)}: {show(lo)} is greater than {high} {show(hi)}"]
    return []


@dataclass(frozen=True)
class ConceptSet(Node):
    """Standard concepts to match, optionally with all their descendants.

    ``exclude`` removes concepts from the set; when ``include_descendants`` is true the
    excluded concepts' descendants are removed too, so a whole branch can be cut off.
    """

    TYPE: ClassVar[str] = "concept_set"
    CATEGORY: ClassVar[str] = "concept_set"

    ids: tuple[int, ...] = field(metadata=_CONCEPT_IDS)
    include_descendants: bool = field(default=True, metadata=_meta(Boolean()))
    exclude: tuple[int, ...] = field(default=(), metadata=_EXCLUDED_IDS)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        included = set(values.get("ids", ()))
        return [
            f"{at(path, 'exclude')}[{i}]: concept {c} is also in ids; remove it from one"
            for i, c in enumerate(values.get("exclude", ()))
            if c in included
        ]


class Criterion(Node):
    """Something a person is or has at the cohort's ``as_of`` date; ``~c`` negates."""

    CATEGORY: ClassVar[str] = "criterion"

    def __invert__(self) -> Not:
        return Not(self)


@dataclass(frozen=True)
class AgeBetween(Criterion):
    """Age in whole years, year(as_of) - year_of_birth, within inclusive bounds."""

    TYPE: ClassVar[str] = "age_between"

    min_age: int = field(metadata=_AGE)
    max_age: int = field(metadata=_AGE)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        return _bounds_in_order(values, path, "min_age", "max_age")


@dataclass(frozen=True)
class SexIs(Criterion):
    """Recorded sex (``person.gender_concept_id``) is one of the given concepts."""

    TYPE: ClassVar[str] = "sex_is"

    concept_ids: tuple[int, ...] = field(metadata=_CONCEPT_IDS)


@dataclass(frozen=True)
class HasCondition(Criterion):
    """At least ``min_count`` conditions in the set started on or before ``as_of`` (and,
    with ``within_days``, in the ``within_days`` days up to and including it)."""

    TYPE: ClassVar[str] = "has_condition"

    concepts: ConceptSet = field(metadata=_CONCEPT_SET)
    min_count: int = field(default=1, metadata=_MIN_COUNT)
    within_days: int | None = field(default=None, metadata=_WITHIN_DAYS)


@dataclass(frozen=True)
class HasDrugExposure(Criterion):
    """At least ``min_count`` exposures to drugs in the set started on or before
    ``as_of`` (and, with ``within_days``, in the ``within_days`` days up to it)."""

    TYPE: ClassVar[str] = "has_drug_exposure"

    concepts: ConceptSet = field(metadata=_CONCEPT_SET)
    min_count: int = field(default=1, metadata=_MIN_COUNT)
    within_days: int | None = field(default=None, metadata=_WITHIN_DAYS)


@dataclass(frozen=True)
class HasMeasurement(Criterion):
    """At least ``min_count`` measurements in the set on or before ``as_of`` (and, with
    ``within_days``, in the ``within_days`` days up to it), values within the bounds.

    With a bound given, measurements without a numeric value do not match.
    """

    TYPE: ClassVar[str] = "has_measurement"

    concepts: ConceptSet = field(metadata=_CONCEPT_SET)
    min_value: float | None = field(default=None, metadata=_meta(Number()))
    max_value: float | None = field(default=None, metadata=_meta(Number()))
    min_count: int = field(default=1, metadata=_MIN_COUNT)
    within_days: int | None = field(default=None, metadata=_WITHIN_DAYS)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        return _bounds_in_order(values, path, "min_value", "max_value")


@dataclass(frozen=True)
class Not(Criterion):
    """The person does not meet ``criterion``."""

    TYPE: ClassVar[str] = "not"

    criterion: Criterion = field(metadata=_CRITERION)


@dataclass(frozen=True)
class Cohort(Node):
    """Persons meeting every criterion, evaluated at ``as_of``.

    Ages are taken at ``as_of`` and only records starting on or before it count, so a
    cohort gives the same answer whenever it is run. No criteria means every person.
    """

    TYPE: ClassVar[str] = "cohort"
    CATEGORY: ClassVar[str] = "cohort"

    criteria: tuple[Criterion, ...] = field(
        metadata=_meta(Children("criterion", "a criterion", "criteria", most=MAX_CRITERIA))
    )
    as_of: date = field(metadata=_meta(Date()))


@dataclass(frozen=True)
class CountPersons(Node):
    """The number of distinct persons in a cohort."""

    TYPE: ClassVar[str] = "count_persons"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_meta(Child("cohort", "a Cohort")))


class Variable(Node):
    """A number per person of a cohort, at the cohort's ``as_of`` date: a model's outcome
    or covariate. It is computed at the member; only the model's sums leave."""

    CATEGORY: ClassVar[str] = "variable"


@dataclass(frozen=True)
class Age(Variable):
    """Age in whole years at ``as_of``: year(as_of) - year_of_birth."""

    TYPE: ClassVar[str] = "age"


@dataclass(frozen=True)
class Indicator(Variable):
    """1 if the person meets ``criterion`` at ``as_of``, else 0."""

    TYPE: ClassVar[str] = "indicator"

    criterion: Criterion = field(metadata=_CRITERION)


FAMILIES: tuple[str, ...] = ("gaussian", "binomial", "poisson")
_VARIABLE = _meta(Child("variable", "a variable"))


@dataclass(frozen=True)
class GlmStep(Node):
    """One member's part of one Newton-Raphson step of a generalised linear model.

    The model is ``outcome ~ 1 + covariates`` over the cohort's persons, with the
    family's canonical link; ``beta`` holds the current coefficients, the intercept
    first. The member answers with its score vector, information matrix, deviance and
    number of persons, which the researcher's client sums over members to take the step.
    """

    TYPE: ClassVar[str] = "glm_step"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_meta(Child("cohort", "a Cohort")))
    outcome: Variable = field(metadata=_VARIABLE)
    covariates: tuple[Variable, ...] = field(
        metadata=_meta(Children("variable", "a variable", "variables", most=MAX_COVARIATES))
    )
    family: str = field(metadata=_meta(Choice(FAMILIES)))
    beta: tuple[float, ...] = field(metadata=_meta(Numbers(most=MAX_COVARIATES + 1)))

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        covariates, beta = values.get("covariates"), values.get("beta")
        if covariates is None or beta is None or len(beta) == len(covariates) + 1:
            return []
        return [
            f"{at(path, 'beta')}: expected {len(covariates) + 1} coefficients (the "
            f"intercept and one per covariate), got {len(beta)}"
        ]

    def with_beta(self, beta: Sequence[float]) -> GlmStep:
        """The same model at other coefficients: the next step's question."""
        return GlmStep(
            self.cohort, self.outcome, self.covariates, self.family, tuple(map(float, beta))
        )


Analysis: TypeAlias = CountPersons | GlmStep


def query_from_json(obj: object) -> Analysis:
    """Decode an analysis from a JSON string or already-parsed JSON data.

    Raises ``QueryValidationError`` naming every problem with its JSON path.
    """
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj, parse_constant=_reject_constant)
        except ValueError as error:
            raise QueryValidationError([f"query: not valid JSON: {error}"]) from None
        except RecursionError:
            raise QueryValidationError(
                [f"query: nested more than {MAX_DEPTH} levels deep"]
            ) from None
    problems: list[str] = []
    node = decode_node(obj, "", node_types("analysis"), problems, depth=0)
    if problems or node is None:
        raise QueryValidationError(problems)
    return cast(Analysis, node)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")
